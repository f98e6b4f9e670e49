"""The command line of roberta.py: export a checkpoint as a Hugging Face RoBERTa folder.

    python roberta.py export --checkpoint out/ --out hf/   # transformers loads hf/ as it loads roberta-base
"""
import os

import roberta
from machinery import cli, hf
from machinery import files, lock


def export_command(args):
    hf.check_export(args.checkpoint, args.out, args.overwrite)  # before the lock: a refusal makes no folder
    with lock.writing(args.out, "roberta.py export"):  # one writer: a second export, or a run, into --out is refused
        before = {name for name in EXPORTED if os.path.lexists(os.path.join(args.out, name))}
        try:
            model = hf.export(args.checkpoint, args.out, args.overwrite)
        except files.WriteFailed as e:  # a full disk: this export's files go, or say what is mixed
            raise export_failed(e, args.out, before) from None
    print(f"{args.out}: {type(model).__name__}, {roberta.num_parameters(model):,} parameters")


EXPORTED = ("config.json", "model.safetensors", *hf.TOKENIZER_FILES, *hf.tokenizer_configs(512))  # what export writes


def export_failed(err, out, before):
    """A write of the export failed (a full disk): with no export there before, the files it wrote go (nothing
    was exported); else the folder mixes the previous export and this one's files, said so."""
    written = [n for n in EXPORTED if os.path.lexists(os.path.join(out, n)) and n not in before]
    if not before:
        for name in written:
            os.remove(os.path.join(out, name))
        intact = "nothing was exported"
    else:
        intact = (f"{out} now mixes the previous export with this one's files: export again (--overwrite) once "
                  f"there is room")
    return files.write_failed(err, out, "the export", intact)


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
