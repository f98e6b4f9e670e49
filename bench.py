"""Benchmarks: speed figures for the README, measured against peer implementations in the same run.

    python bench.py bpe      # tokenizer training and encoding vs HF tokenizers, tiktoken, RobertaTokenizer
    python bench.py model    # training-step tokens/s and MFU, optionally vs transformers (--compare-hf)
    python bench.py data     # corpus preparation MB/s, peak memory, masking + batching tokens/s

Peers are optional: a peer that is not installed is reported as such. The text is ~8 MB of English
from ../shared/data (WikiText-2 valid+test, tiny shakespeare, RACE dev+test articles).
"""
import argparse
import glob
import json
import multiprocessing
import os
import resource
import sys
import time

import bpe

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "shared", "data")


def bench_lines(shared=SHARED):
    """The ~8 MB English mix, as a list of lines (newlines kept)."""
    files = ["corpora/wikitext-2/valid.txt", "corpora/wikitext-2/test.txt", "corpora/tinyshakespeare/input.txt"]
    if not all(os.path.isfile(os.path.join(shared, f)) for f in files):
        sys.exit(f"error: the benchmark text needs {shared} (the project's shared data)")
    lines = []
    for f in files:
        with open(os.path.join(shared, f), encoding="utf-8") as fh:
            lines += fh.read().splitlines(keepends=True)
    for path in sorted(glob.glob(os.path.join(shared, "race", "*", "*", "*.txt"))):
        with open(path, encoding="utf-8") as fh:
            lines += json.load(fh)["article"].splitlines(keepends=True)
    return lines


def timed(fn, *args, repeat=5):
    """(best seconds of `repeat` runs, result). The machine is shared and noisy: the minimum is the
    figure that reproduces."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t)
    return best, out


def _peak_rss_of(fn, *args):
    """Run fn(*args) in a fresh process and return its peak resident memory in MB."""
    ctx = multiprocessing.get_context("fork")
    p = ctx.Process(target=fn, args=args)
    p.start()
    p.join()
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def _train_only(lines, vocab_size):
    bpe.Tokenizer.train(lines, vocab_size)


def naive_merge_seconds(lines, n=3):
    """minbpe-style training (recount every pair of the whole text for each merge): seconds per merge."""
    pattern = bpe.regex.compile(bpe.GPT2_PATTERN)
    chunks = [list(p.encode("utf-8")) for line in lines for p in pattern.findall(line)]
    t = time.perf_counter()
    for new_id in range(256, 256 + n):
        counts = {}
        for c in chunks:
            for pair in zip(c, c[1:]):
                counts[pair] = counts.get(pair, 0) + 1
        pair = max(counts, key=counts.get)
        chunks = [bpe.merge_word(c, pair, new_id)[0] for c in chunks]
    return (time.perf_counter() - t) / n


def bench_bpe(args):
    lines = bench_lines()
    mb = sum(len(s.encode()) for s in lines) / 1e6
    print(f"text: {mb:.1f} MB, {len(lines)} lines; vocabulary {args.vocab_size}")
    rows = []

    # ---- training
    ours, tok = timed(bpe.Tokenizer.train, lines, args.vocab_size)
    rows.append(("train", "bpe.py", ours))
    n_merges = len(tok.merges)
    try:
        from tokenizers import ByteLevelBPETokenizer
        t, _ = timed(lambda: ByteLevelBPETokenizer().train_from_iterator(lines, vocab_size=args.vocab_size, min_frequency=2,
                                                    show_progress=False,
                                                    special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"]))
        rows.append(("train", "HF tokenizers (Rust)", t))
    except ImportError:
        rows.append(("train", "HF tokenizers: not installed", None))
    naive = naive_merge_seconds(lines) * n_merges
    rows.append(("train", f"naive minbpe-style (extrapolated from 3 of {n_merges} merges)", naive))
    rss = _peak_rss_of(_train_only, lines, args.vocab_size)

    # ---- encoding, line by line, on the released RoBERTa / GPT-2 vocabularies (cold caches)
    roberta = bpe.Tokenizer.load(os.path.join(SHARED, "roberta"))
    gpt2 = bpe.Tokenizer.load(os.path.join(SHARED, "gpt2"))

    def encode_cold(tok):
        tok.cache.clear()  # every run starts with an empty pre-token cache
        return [tok.encode(s) for s in lines]
    t, ids = timed(encode_cold, roberta)
    rows.append(("encode", "bpe.py (RoBERTa vocab)", t))
    n_tokens = sum(map(len, ids))
    t, _ = timed(encode_cold, gpt2)
    rows.append(("encode", "bpe.py (GPT-2 vocab)", t))
    try:
        import tiktoken
        from tiktoken.load import data_gym_to_mergeable_bpe_ranks
        ranks = data_gym_to_mergeable_bpe_ranks(os.path.join(SHARED, "gpt2", "vocab.bpe"),
                                                os.path.join(SHARED, "gpt2", "encoder.json"))
        enc = tiktoken.Encoding("gpt2", pat_str=bpe.GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={})
        t, _ = timed(lambda: [enc.encode_ordinary(s) for s in lines])
        rows.append(("encode", "tiktoken (Rust, GPT-2 vocab)", t))
    except ImportError:
        rows.append(("encode", "tiktoken: not installed", None))
    try:
        from transformers import RobertaTokenizer
        hf = RobertaTokenizer(os.path.join(SHARED, "roberta", "vocab.json"),
                              os.path.join(SHARED, "roberta", "merges.txt"))
        t, _ = timed(lambda: [hf.encode(s, add_special_tokens=False) for s in lines], repeat=1)
        rows.append(("encode", "transformers RobertaTokenizer (Python)", t))
    except ImportError:
        rows.append(("encode", "transformers: not installed", None))

    print(f"\n| task | implementation | seconds | MB/s |\n|---|---|---|---|")
    for task, name, t in rows:
        print(f"| {task} | {name} | {t:.2f} | {mb / t:.2f} |" if t else f"| {task} | {name} | - | - |")
    print(f"\nbpe.py training peak memory: {rss:.0f} MB; {n_merges} merges; "
          f"encoding gives {n_tokens:,} tokens ({n_tokens / mb / 1e6:.3f} per byte)")
    ref = {name: t for task, name, t in rows if t}
    print(f"ratios: train ours/HF = {ours / ref.get('HF tokenizers (Rust)', float('nan')):.2f}, "
          f"naive/ours = {naive / ours:.0f}x, "
          f"encode ours(GPT-2)/tiktoken = "
          f"{ref['bpe.py (GPT-2 vocab)'] / ref.get('tiktoken (Rust, GPT-2 vocab)', float('nan')):.2f}, "
          f"RobertaTokenizer/ours = "
          f"{ref.get('transformers RobertaTokenizer (Python)', float('nan')) / ref['bpe.py (RoBERTa vocab)']:.2f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("bpe", help="tokenizer training and encoding")
    p.add_argument("--vocab-size", type=int, default=8000)
    args = parser.parse_args()
    {"bpe": bench_bpe}[args.what](args)


if __name__ == "__main__":
    main()
