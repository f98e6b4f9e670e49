"""What every command line shares: argparse with one-line errors, typed numbers and paths, the --out check,
and `run`, which turns an expected failure into one line on stderr and a non-zero exit (no traceback).

    p = cli.ArgumentParser(description="...")
    p.add_argument("--lr", type=cli.number(float, 0, low_open=True))
    cli.run(lambda: work(p.parse_args(argv)))
"""
import argparse
import os
import sys


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with its errors on one line ("bpe.py train: error: argument --vocab-size: ...")."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def number(kind, low=None, high=None, low_open=False, why="", high_open=False):
    """An argparse type: a number of `kind` (int or float) within [low, high] (low_open, high_open: without the
    bound itself). `why` is added to the error: the reason for the range."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'a whole number' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if value != value or (low is not None and (value <= low if low_open else value < low)) \
                or (high is not None and (value >= high if high_open else value > high)):
            where = f"{'>' if low_open else 'at least'} {low}" if high is None else \
                f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
            raise argparse.ArgumentTypeError(f"must be {where}{why}, got {text}")
        return value
    return parse


def path_arg(text):
    """An argparse type: a non-empty path."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return text


def describe(err):
    """One line for an error: an OSError names its file and reason, as 'path: No such file or directory'."""
    if isinstance(err, OSError) and err.filename and err.strerror:
        return f"{err.filename}: {err.strerror}"
    return str(err)


def max_seq_len(asked, positions):
    """--max-seq-len (at least 8, as its argparse type checks): the length asked, which the model's positions
    must hold; none asked, min(512, positions)."""
    if asked is not None and asked > positions:
        raise ValueError(f"--max-seq-len {asked}: must be in [8, {positions}] (the model's positions)")
    return asked or min(512, positions)


def check_out(folder, overwrite, finished=("vocab.json", "merges.txt"), what="a tokenizer"):
    """Before any work: --out is a folder, or can be made in a writable one; `what` is already there (one of
    the `finished` files) is replaced only with --overwrite."""
    parent = os.path.abspath(folder)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise FileExistsError(f"--out {folder}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"--out {folder}: {parent} is not writable")
    held = [name for name in finished if os.path.exists(os.path.join(folder, name))]
    if held and not overwrite:
        raise FileExistsError(f"--out {folder} already holds {what} ({held[0]}); pass --overwrite to replace it")


def run(work):
    """Call `work()`; bad input (OSError, ValueError) ends the process with one line, `error: ...`, exit 1. The
    folders it locked to write give back what their lock made (lock.abandon: a refusal leaves no folder)."""
    from machinery.basics import lock
    try:
        return work()
    except (OSError, ValueError) as err:
        lock.abandon_all()
        sys.exit(f"error: {describe(err)}")
    except KeyboardInterrupt:
        lock.abandon_all()
        sys.exit("error: interrupted")


def warn_short_warmup(cfg, demo=False):
    """A warning (first process only) when the warmup is as long as the run: the learning rate never reaches
    its peak and never decays (`small`'s 500 warmup updates in a run of 50)."""
    if cfg.warmup_steps < cfg.max_steps or int(os.environ.get("RANK", 0)) != 0:
        return
    top = cfg.lr * cfg.max_steps / max(cfg.warmup_steps, 1)
    fix = "(the demo's warmup is fixed; a run with --data takes --warmup-steps)" if demo else \
        f"(pass --warmup-steps, e.g. {max(cfg.max_steps // 10, 1)}, a tenth of the run)"
    climb = f"reaches its peak {cfg.lr:g} only at the last update" if top >= cfg.lr else \
        f"climbs to {top:.3g}, short of its peak {cfg.lr:g},"
    print(f"warning: the warmup ({cfg.warmup_steps:,} updates) is not shorter than the run (--max-steps "
          f"{cfg.max_steps:,}): the learning rate {climb} and never decays {fix}", file=sys.stderr)
