"""The command line of roberta.py: export a checkpoint as a Hugging Face RoBERTa folder that transformers'
Auto* classes and pipeline("fill-mask") load as they load roberta-base.

    python roberta.py export --checkpoint out/ --out hf/   # + vocab.json, merges.txt, the tokenizer configuration
"""
import os
import pathlib
import shutil
import sys

import bpe
import roberta
from machinery.basics import cli, files, lock
from machinery.formats import checkpoints, hf, vocab_files


# What transformers needs beside vocab.json and merges.txt to tokenize as roberta-base does: <mask> takes the space
# on its left (lstrip), so "is <mask>." reads " is" <mask> "." as fill_mask feeds it, and inputs are truncated at
# the model's positions; both files spell it as transformers' own save of roberta-base does.
SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
                  "pad_token": "<pad>", "cls_token": "<s>"}
MASK_TOKEN = {"content": "<mask>", "single_word": False, "lstrip": True, "rstrip": False, "normalized": False}
TOKENIZER_FILES = vocab_files.VOCAB_FILES[0]  # vocab.json, merges.txt


def tokenizer_configs(max_positions):
    """{file name: content} of the tokenizer configuration written beside vocab.json and merges.txt."""
    config = {"tokenizer_class": "RobertaTokenizer", "model_max_length": max_positions, "add_prefix_space": False,
              "errors": "replace", **SPECIAL_TOKENS, "mask_token": {"__type": "AddedToken", **MASK_TOKEN}}
    return {"tokenizer_config.json": config, "special_tokens_map.json": {**SPECIAL_TOKENS, "mask_token": MASK_TOKEN}}


EXPORTED = ("config.json", "model.safetensors", *TOKENIZER_FILES, *tokenizer_configs(512))  # what export writes


def check_export(checkpoint, out, overwrite):
    """Before any work: the checkpoint folder exists; --out is another folder, or can become one, and
    holds no exported model unless --overwrite."""
    if not os.path.isdir(checkpoint):
        raise FileNotFoundError(f"{checkpoint}: no such checkpoint folder")
    if os.path.isdir(out) and os.path.samefile(out, checkpoint):
        raise ValueError(f"--out {out} is the checkpoint folder itself: export to another folder")
    cli.check_out(out, overwrite, finished=EXPORTED, what="an exported model")  # no file of the user's replaced


def export(checkpoint, out, overwrite=False):
    """Write a train.py/finetune.py folder (or a Hugging Face one) as a Hugging Face RoBERTa folder: config.json (a
    classifier's id2label) + model.safetensors, and the tokenizer with the configuration transformers needs. All is
    written in a temporary folder inside --out, then moved in by renames: a failed write leaves --out as it was."""
    check_export(checkpoint, out, overwrite)
    model = roberta.load_pretrained(checkpoint, cls=None)  # the class it holds; says so if a head is new
    blobs = None  # the tokenizer files, checked to fit the model (its size, the one it trained with, the specials)
    if all(os.path.isfile(os.path.join(checkpoint, name)) for name in TOKENIZER_FILES):
        checkpoints.check_pair(checkpoint, model, bpe.Tokenizer.load(checkpoint))
        blobs = [pathlib.Path(checkpoint, name).read_bytes() for name in TOKENIZER_FILES]
    classifier = isinstance(model, roberta.RobertaForSequenceClassification)
    tmp = files.temp_name(os.path.join(out, "export"))  # swept once this process is gone (files.sweep)
    try:
        hf.save_pretrained(model, tmp, checkpoints.id2label(checkpoint) if classifier else None)  # not LABEL_i
        if blobs is not None:
            for name, blob in zip(TOKENIZER_FILES, blobs):
                files.write_atomic(os.path.join(tmp, name), blob)
            for name, content in tokenizer_configs(model.cfg.max_positions).items():
                files.write_atomic(os.path.join(tmp, name), files.json_text(content, indent=2))
        for name in EXPORTED:  # an earlier export's file this one lacks (its tokenizer) goes: no mixed folder
            if os.path.exists(os.path.join(tmp, name)):
                os.replace(os.path.join(tmp, name), os.path.join(out, name))
            elif os.path.lexists(os.path.join(out, name)):
                os.remove(os.path.join(out, name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if blobs is None:
        print(f"warning: {checkpoint} has no {' and '.join(TOKENIZER_FILES)}: {out} has no tokenizer", file=sys.stderr)
    return model


def export_command(args):
    check_export(args.checkpoint, args.out, args.overwrite)  # before the lock: a refusal makes no folder
    with lock.writing(args.out, "roberta.py export"):  # one writer: a second export, or a run, into --out is refused
        before = any(os.path.lexists(os.path.join(args.out, name)) for name in EXPORTED)
        try:
            model = export(args.checkpoint, args.out, args.overwrite)
        except files.WriteFailed as e:  # a full disk: nothing of this export is in --out
            intact = f"the export already in {args.out} is intact" if before else "nothing was exported"
            raise files.write_failed(e, args.out, "the export", intact) from None
    print(f"{args.out}: {type(model).__name__}, {roberta.num_parameters(model):,} parameters")


def parser():
    p = cli.ArgumentParser(prog="roberta.py",
                           description="Export a checkpoint (train.py / finetune.py output) to the Hugging Face "
                                       "layout: config.json + model.safetensors + tokenizer files.")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="write a Hugging Face RoBERTa folder",
                       description="Write a checkpoint as a Hugging Face RoBERTa folder that transformers' "
                                   "Auto* classes and pipeline('fill-mask') load as they load roberta-base.")
    e.set_defaults(run=export_command)
    e.add_argument("--checkpoint", required=True,
                   help="a folder with checkpoint.pt (train.py/finetune.py output) or a Hugging Face RoBERTa folder; "
                        "its vocab.json and merges.txt are exported too")
    e.add_argument("--out", required=True, help="the folder to write (created if needed)")
    e.add_argument("--overwrite", action="store_true",
                   help="replace an exported model already in --out (default: refuse)")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    cli.run(lambda: args.run(args))
