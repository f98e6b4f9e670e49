"""The command line of bpe.py: train a vocabulary from text files, or show how a text is encoded.

    python bpe.py train --input corpus.txt --vocab-size 8000 --out tok/
    python bpe.py encode --tokenizer tok/ "Hello world!"
"""
import os

import bpe
from machinery.basics import cli, lock
from machinery.basics.files import read_lines
from machinery.commands import char_bpe
from machinery.formats import vocab_files


def check_inputs(paths):
    for path in paths:
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such file")
        if os.path.isdir(path):
            raise IsADirectoryError(f"{path}: a folder, not a file")
        if not os.access(path, os.R_OK):
            raise PermissionError(f"{path}: not readable (permission denied)")
    if all(os.path.isfile(p) and os.path.getsize(p) == 0 for p in paths):
        raise ValueError(f"{', '.join(paths)}: no text to train on (empty)")


def train_command(args):
    cli.check_out(args.out, args.overwrite)
    check_inputs(args.input)
    with lock.writing(args.out, "bpe.py train"):  # one writer: a second bpe.py train into --out is refused
        lines = (line for path in args.input for line in read_lines(path, args.errors))
        train = char_bpe.train if args.characters else bpe.Tokenizer.train
        tok = train(lines, args.vocab_size, args.min_frequency, verbose=True)
        tok.save(args.out)
    written = vocab_files.CHAR_BPE_FILE if args.characters else "vocab.json and merges.txt"
    print(f"wrote {args.out}/{written}: {len(tok)} tokens, {len(tok.merges)} merges")


def encode_command(args):
    tok = bpe.Tokenizer.load(args.tokenizer)
    ids = tok.encode(args.text)
    print(ids)
    print(" ".join(tok.id_to_token(i) for i in ids))


def parser():
    p = cli.ArgumentParser(prog="bpe.py", description="Byte-level BPE (RoBERTa Section 4.4): train or encode.")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="learn a vocabulary from text files")
    t.set_defaults(run=train_command)
    t.add_argument("--input", nargs="+", type=cli.path_arg, required=True, help="UTF-8 text files (required)")
    t.add_argument("--vocab-size", type=cli.number(int, bpe.MIN_VOCAB, why=" (256 bytes + 5 special tokens)"),
                   required=True, help=f"tokens in the vocabulary, the 5 specials included (required; at least "
                                       f"{bpe.MIN_VOCAB})")
    t.add_argument("--min-frequency", type=cli.number(int, 1), default=2,
                   help="merge only pairs that occur at least this often (default: %(default)s)")
    t.add_argument("--out", type=cli.path_arg, required=True, help="folder for vocab.json + merges.txt (required)")
    t.add_argument("--overwrite", action="store_true", help="replace a tokenizer already in --out (default: refuse)")
    t.add_argument("--characters", action="store_true", help="a character-level BPE (BERT's units, Section 4.4: "
                   "characters outside the training text's alphabet become <unk>) instead of byte-level")
    t.add_argument("--errors", choices=["strict", "replace"], default="strict",
                   help="bytes that are not UTF-8: an error, or U+FFFD (default: %(default)s)")
    e = sub.add_parser("encode", help="print the token ids of a text")
    e.set_defaults(run=encode_command)
    e.add_argument("--tokenizer", type=cli.path_arg, required=True,
                   help="folder with vocab.json + merges.txt, or encoder.json + vocab.bpe (required)")
    e.add_argument("text", help="the text to encode (plain text: no special tokens are added)")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    cli.run(lambda: args.run(args))
