"""The command line of data.py: prepare a corpus for pretraining, or fetch a dataset.

    python data.py --input corpus.txt --tokenizer tok/ --out data/
    python data.py download tinyshakespeare
"""
import os
import sys

from machinery.basics import cli
from machinery.commands.corpora import DATASETS, DEFAULT_CACHE, download
from machinery.datafolder import preparation


MAX_WORKERS = max(256, 4 * (os.cpu_count() or 1))  # more processes than that only wait for the cores


def download_main(argv):
    p = cli.ArgumentParser(prog="data.py download", description="Fetch a dataset, sha256-checked.")
    p.add_argument("name", choices=sorted(DATASETS), metavar="NAME", help="one of: " + ", ".join(sorted(DATASETS)))
    p.add_argument("--cache", default=DEFAULT_CACHE, help="where datasets are kept (default: %(default)s)")
    args = p.parse_args(argv)
    cli.run(lambda: print(download(args.name, check_cache(args.cache))))


def check_cache(cache):
    """--cache, made if need be; else one line naming it, why, and how to choose another folder (the default one
    lies in HOME, or, HOME unset, in the account's home directory: a service account's may not be writable)."""
    try:
        os.makedirs(cache, exist_ok=True)
        why = None if os.access(cache, os.W_OK | os.X_OK) else "not writable"
    except OSError as e:
        why = e.strerror or str(e)
    if why is None:
        return cache
    if cache != DEFAULT_CACHE:
        raise OSError(f"--cache {cache}: the download cache cannot be made there ({why}); choose another folder")
    home = f"under HOME ({os.environ['HOME']})" if os.environ.get("HOME") else \
        "in this account's home directory, as HOME is unset"
    raise OSError(f"{cache}: the download cache cannot be made there ({why}): it lies {home}; pass --cache DIR, "
                  f"or set HOME, to keep the datasets elsewhere")


def prepare_command(args):
    with preparation.stopped_by_sigterm():  # as Ctrl-C: the workers end quietly, --out stays as it was
        meta = preparation.prepare(args.input, args.tokenizer, args.out, args.valid_fraction, args.workers,
                                   args.overwrite, args.errors)
    print(f"{args.out}: train {meta['train']['tokens']:,} tokens in {meta['train']['documents']:,} documents, "
          f"valid {meta['valid']['tokens']:,} tokens in {meta['valid']['documents']:,} documents")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["download"]:
        return download_main(argv[1:])
    p = cli.ArgumentParser(prog="data.py",
                           description="Prepare a text corpus for pretraining (or: data.py download NAME).")
    p.add_argument("--input", nargs="+", type=cli.path_arg, required=True,
                   help="UTF-8 text files; a blank line ends a document")
    p.add_argument("--tokenizer", type=cli.path_arg, required=True, help="folder with vocab.json + merges.txt")
    p.add_argument("--out", type=cli.path_arg, required=True,
                   help="folder for train/valid .bin/.idx, meta.json and the tokenizer")
    p.add_argument("--valid-fraction", type=cli.number(float, 0, 1, high_open=True), default=0.01,
                   help="share of the text held out, in whole documents (default: %(default)s)")
    p.add_argument("--workers", type=cli.number(int, 1, MAX_WORKERS, why=" (encoding processes)"),
                   default=os.cpu_count() or 1,
                   help=f"encoding processes, at most {MAX_WORKERS} (default: the number of cores, %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace data made with another tokenizer")
    p.add_argument("--errors", choices=["strict", "replace"], default="strict",
                   help="bytes that are not UTF-8: an error, or U+FFFD (default: %(default)s)")
    args = p.parse_args(argv)
    cli.run(lambda: prepare_command(args))
