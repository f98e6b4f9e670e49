"""Benchmarks: the speed figures of BENCHMARKS.md, measured against peer implementations in the same run
(`python bench.py COMMAND`; a peer not installed is reported as such). `bpe` and `data` read ~8 MB of English
(WikiText-2 valid+test, tiny shakespeare, RACE dev+test articles) and RoBERTa's and GPT-2's tokenizer files from
the shared data folder beside the repository; without it they stop with a one-line error."""
import argparse
import glob
import importlib.util
import json
import os
import re
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc

import numpy as np
import torch

import bpe
import data
import evaluate
import roberta
from machinery.basics import cli, files, memory, speed
from machinery.commands import bench_device
from machinery.commands.bench_tools import (timed, interleaved, memory_mb, in_fresh_process, run_command, train_py,
                                            mlm_batch, train_step, hf_twin, builtin_data, machine,
                                            AMP_DTYPES)
from machinery.datafolder import index, preparation
from machinery.fast import orders
from machinery.formats import prepared

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "shared", "data")


# ------------------------------------------------------------------------------------------ bpe
def bench_lines(shared=SHARED):
    """The ~8 MB English mix, as a list of lines (newlines kept)."""
    texts = ["corpora/wikitext-2/valid.txt", "corpora/wikitext-2/test.txt", "corpora/tinyshakespeare/input.txt"]
    missing = [f for f in texts + ["roberta", "gpt2"] if not os.path.exists(os.path.join(shared, f))]
    if missing:
        raise FileNotFoundError(f"{os.path.join(shared, missing[0])}: missing (the benchmarks need the shared data)")
    lines = [line for f in texts for line in files.read_text(os.path.join(shared, f)).splitlines(keepends=True)]
    for path in sorted(glob.glob(os.path.join(shared, "race", "*", "*", "*.txt"))):
        try:
            lines += json.loads(files.read_text(path))["article"].splitlines(keepends=True)
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise ValueError(f"{path}: not a RACE passage (a JSON object with an \"article\" text)") from None
    return lines


OURS, HF_TOKENIZERS, NAIVE = "bpe.py", "HF tokenizers (Rust)", "naive minbpe-style (extrapolated)"
OURS_ROBERTA, OURS_GPT2 = "bpe.py (RoBERTa vocab)", "bpe.py (GPT-2 vocab)"
TIKTOKEN, HF_PYTHON = "tiktoken (Rust, GPT-2 vocab)", "transformers RobertaTokenizer (Python)"
BPE_RATIOS = [  # (what, numerator row, denominator row): rows (task, implementation) of the tokenizer table
    ("training time, bpe.py / HF tokenizers", ("train", OURS), ("train", HF_TOKENIZERS)),
    ("training speed-up over the naive trainer", ("train", NAIVE), ("train", OURS)),
    ("encoding time, bpe.py / tiktoken (GPT-2 vocab)", ("encode", OURS_GPT2), ("encode", TIKTOKEN)),
    ("encoding speed-up over RobertaTokenizer", ("encode", HF_PYTHON), ("encode", OURS_ROBERTA)),
]


def bpe_ratios(rows):  # {what: ratio} for BPE_RATIOS from table rows (task, implementation, seconds or None)
    seconds = {(task, name): t for task, name, t in rows}
    return {what: seconds[a] / seconds[b] if seconds.get(a) and seconds.get(b) else None for what, a, b in BPE_RATIOS}


def bpe_training_rows(lines, vocab_size, n=3):
    """Training rows: ours, HF tokenizers, the naive trainer (every pair recounted per merge; n merges, scaled)."""
    ours, tok = timed(bpe.Tokenizer.train, lines, vocab_size)
    try:
        from tokenizers import ByteLevelBPETokenizer
        hf = timed(lambda: ByteLevelBPETokenizer().train_from_iterator(lines, vocab_size=vocab_size, min_frequency=2,
                   show_progress=False, special_tokens=list(bpe.SPECIALS) + [bpe.MASK]))[0]
    except ImportError:
        hf = None
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
    naive = (time.perf_counter() - t) / n * len(tok.merges)
    return [("train", OURS, ours), ("train", HF_TOKENIZERS, hf), ("train", NAIVE, naive)], len(tok.merges)


def encode_cold(tok, texts):  # every text encoded from an empty pre-token cache
    tok.cache.clear()
    return [tok.encode(s) for s in texts]


def bpe_encoding_rows(lines):
    """Table rows for encoding line by line from an empty cache (the released files; tiktoken interleaved)."""
    roberta_tok, gpt2_tok = (bpe.Tokenizer.load(os.path.join(SHARED, name)) for name in ("roberta", "gpt2"))
    t, ids = timed(encode_cold, roberta_tok, lines)
    try:
        import tiktoken
        from tiktoken.load import data_gym_to_mergeable_bpe_ranks
        folder = os.path.join(SHARED, "gpt2")
        ranks = data_gym_to_mergeable_bpe_ranks(os.path.join(folder, "vocab.bpe"), os.path.join(folder, "encoder.json"))
        enc = tiktoken.Encoding("gpt2", pat_str=bpe.GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={})
        gpt2 = interleaved([lambda: encode_cold(gpt2_tok, lines), lambda: [enc.encode_ordinary(s) for s in lines]], 5)
    except ImportError:
        gpt2 = timed(encode_cold, gpt2_tok, lines)[0], None
    try:
        from transformers import RobertaTokenizer
        hf = RobertaTokenizer(*(os.path.join(SHARED, "roberta", f) for f in ("vocab.json", "merges.txt")))
        python = timed(lambda: [hf.encode(s, add_special_tokens=False) for s in lines], repeat=1)[0]
    except ImportError:
        python = None
    rows = [(OURS_ROBERTA, t), (OURS_GPT2, gpt2[0]), (TIKTOKEN, gpt2[1]), (HF_PYTHON, python)]
    return [("encode", name, seconds) for name, seconds in rows], sum(map(len, ids))


def long_word_rows(tok, lengths=(1_000, 10_000, 100_000, 1_000_000), plain_up_to=10_000, seed=0):
    """(characters, seconds of encode, of the plain loop or None) for a word of random letters (one pre-token); the
    plain loop is O(n^2): at 1M characters it would take hours."""
    import random
    import string
    rng = random.Random(seed)
    word = "".join(rng.choice(string.ascii_letters) for _ in range(max(lengths)))
    rows = []
    for n in lengths:
        w, repeat = word[:n], 5 if n < max(lengths) else 2
        t, (out,) = timed(encode_cold, tok, [w], repeat=repeat)
        plain = timed(tok.apply_merges, [tok.byte_ids[b] for b in w.encode()], repeat=2) if n <= plain_up_to else None
        if plain is not None and plain[1] != out:
            raise RuntimeError(f"a word of {n:,} letters: encode and the plain loop differ")
        rows.append((n, t, plain and plain[0]))
    return rows


def bench_bpe(args):
    lines = bench_lines()
    mb = sum(len(s.encode()) for s in lines) / 1e6
    print(f"text: {mb:.1f} MB, {len(lines)} lines; vocabulary {args.vocab_size}")
    (rows, n_merges), (encoding, n_tokens) = bpe_training_rows(lines, args.vocab_size), bpe_encoding_rows(lines)
    rows += encoding
    print("\n| task | implementation | seconds | MB/s |\n|---|---|---|---|")
    for task, name, t in rows:
        print(f"| {task} | {name} | {t:,.2f} | {mb / t:.3g} |" if t else f"| {task} | {name}: not installed | - | - |")
    with tempfile.TemporaryDirectory() as tmp:  # bpe.py's training peak: a fresh process, as `python bpe.py train`
        path = os.path.join(tmp, "text.txt")
        files.write_atomic(path, "".join(lines))
        code = ("import sys, bpe; from machinery.basics import files; bpe.Tokenizer.train(files.read_lines("
                "sys.argv[1]), int(sys.argv[2])); print(open('/proc/self/status').read())")
        peak = memory_mb(status=run_command(["-c", code, path, str(args.vocab_size)], "the training process").stdout)
    print(f"\nnaive trainer: 3 merges timed, scaled to bpe.py's {n_merges}; bpe.py training peak: {peak:.0f} MB; "
          f"encoding gives {n_tokens:,} tokens ({n_tokens / mb / 1e6:.3f} per byte)")
    for what, ratio in bpe_ratios(rows).items():
        print(f"{what}: {ratio:,.2f}x" if ratio else f"{what}: - (a peer is not installed)")
    print("\none long word (random letters, RoBERTa vocabulary) from an empty cache, and the plain loop (apply_merges)"
          "\n\n| characters | seconds | us per character | plain loop, us per character |\n|---|---|---|---|")
    for n, t, plain in long_word_rows(bpe.Tokenizer.load(os.path.join(SHARED, "roberta"))):
        print(f"| {n:,} | {t:.3f} | {t / n * 1e6:.2f} | " + (f"{plain / n * 1e6:.1f} |" if plain else "- (O(n^2)) |"))


# ------------------------------------------------------------------------------------------ model
def bench_model(args):
    device = torch.device(args.device)
    torch.manual_seed(0)
    peaks = {amp: speed.peak_flops(device, AMP_DTYPES[amp]) for amp in args.amp}
    print(f"torch {torch.__version__}, {machine(device)}; MFU's denominator: " +
          ", ".join(f"{amp}: {peak / 1e12:,.3g} TFLOP/s ({label})" for amp, (peak, label) in peaks.items()))
    print("MFU counts the model FLOPs a training step needs (3x forward; LM head on the 15% targets); both eager.\n\n"
          "| config | batch | amp | ours tokens/s | ours MFU | transformers tokens/s | speed-up |\n" + "|---" * 7 + "|")
    for name, batch, seq_len in args.runs:  # one row per --amp
        cfg, tokens = roberta.RobertaConfig.preset(name, dropout=0.1), batch * seq_len
        try:
            model = roberta.RobertaForMaskedLM(cfg).to(device).train()
            ids, labels = mlm_batch(cfg, batch, seq_len, device)  # the LM head runs on the targets only:
            flops = 3 * speed.flops_per_token(cfg, seq_len, labels.ne(-100).float().mean().item()) * tokens
            twin = hf_twin(model) if args.compare_hf else None
            hf_loss = lambda m, i, y: m(input_ids=i, labels=y).loss  # noqa: E731
            for amp in args.amp:
                twin_step = [train_step(twin, ids, labels, amp, hf_loss)] if twin else []
                seconds = interleaved([train_step(model, ids, labels, amp)] + twin_step, args.steps)
                peak, label = speed.peak_flops(device, AMP_DTYPES[amp])  # MFU's denominator: the spec peak or measured:
                peak = max(peak, peaks[amp][0]) if label == "measured peak" else peak  # the highest (noise lowers it)
                hf = " - | - |" if twin is None else f" {tokens / seconds[1]:,.0f} | {seconds[1] / seconds[0]:.2f}x |"
                print(f"| {name} | {batch}x{seq_len} | {amp} | {tokens / seconds[0]:,.0f} | "
                      f"{flops / seconds[0] / peak:.1%} |{hf}", flush=True)
        except RuntimeError as e:  # torch.OutOfMemoryError on a GPU; the allocator's RuntimeError on a CPU
            if not memory.is_out_of_memory(e):
                raise
            raise RuntimeError(f"{name}:{batch}:{seq_len}: out of memory on {device}; try a smaller batch") from None


# ------------------------------------------------------------------------------------------ data
def _prepare(paths, tokenizer, out, workers):  # data.py's preparation: (seconds, peak MB, largest worker's peak MB)
    t = time.perf_counter()
    preparation.prepare(paths, tokenizer, out, valid_fraction=0.01, workers=workers, overwrite=True, verbose=False)
    return time.perf_counter() - t, memory_mb(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def bench_data(args):
    lines, tokenizer = bench_lines(), os.path.join(SHARED, "roberta")
    with tempfile.TemporaryDirectory() as tmp:
        small = os.path.join(tmp, "mix.txt")
        files.write_atomic(small, "".join(lines))
        mb = os.path.getsize(small) / 1e6
        print("| corpus | workers | seconds | MB/s | peak memory: main / largest worker (MB) |\n|---|---|---|---|---|")
        for copies in (1, args.copies):
            label = f"{mb:.1f} MB mix" if copies == 1 else f"{mb * copies:.0f} MB ({copies} copies)"
            out = os.path.join(tmp, f"out{copies}")  # out1: the mix, for masking below
            seconds, main_mb, worker_mb = in_fresh_process(_prepare, [small] * copies, tokenizer, out, args.workers)
            print(f"| {label} | {args.workers} | {seconds:.1f} | {mb * copies / seconds:.2f} | "
                  f"{main_mb:.0f} / {worker_mb:.0f} |", flush=True)
        torch.set_num_threads(1)  # masking and batching on one core: FULL-SENTENCES blocks of 512, batches of 8
        tokens, ends, _ = prepared.load_split(os.path.join(tmp, "out1"), "train")
        tok = bpe.Tokenizer.load(tokenizer)
        ex = data.examples(tokens, ends, "full-sentences", 512, tok.eos_id)
        batches = data.epoch_batches(data.example_lengths(ex, "full-sentences"), 8, seed=0, epoch=0)[:200]

        def serve():  # tokens masked and batched
            return sum(data.mask_batch(data.collate(tokens, ex[i], 512, tok)[0], i, tok, seed=0, epoch=1)[0].numel()
                       for i in batches)
        seconds, n = timed(serve, repeat=3)
    print(f"\nmasking + batching (8 x 512, one core): {n / seconds / 1e6:.1f}M tokens/s")


# ------------------------------------------------------------------------------------------ the training loop
def loop_seconds(data_dir, folder, args, *extra):
    """Seconds per update of `python train.py`, eager fp32: the best runs of 3N and N updates differ by 2N updates."""
    best = {}
    for i, steps in enumerate([args.steps, 3 * args.steps] * 2):
        t, out = time.perf_counter(), os.path.join(folder, f"out{i}")
        train_py("train.py", data_dir, out, args, "--config", args.config, "--max-steps", steps, "--log-interval", 1,
                 "--amp", "none", "--no-compile", *extra)
        best[steps] = min(best.get(steps, float("inf")), time.perf_counter() - t)
        shutil.rmtree(out)
    return (best[3 * args.steps] - best[args.steps]) / (2 * args.steps)


def bench_train(args):
    """train.py's seconds per update against the bare step's in this process; with --delay, also with that much
    sleep (no core taken from the step) added to each update's preparation, prepared in the loop or the thread."""
    ms = f"train.py +{args.delay * 1000:.0f} ms"
    rows = [("train.py, thread", 0, ())] + [(f"{ms}, in the loop (--prefetch 0)", args.delay, ("--prefetch", 0)),
                                            (f"{ms}, thread", args.delay, ())] * bool(args.delay)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = builtin_data(tmp, args.vocab_size)
        seconds = [loop_seconds(data_dir, tmp, args, *extra, "--prepare-delay", delay) for _, delay, extra in rows]
    cfg = roberta.RobertaConfig.preset(args.config, vocab_size=args.vocab_size)
    ids, labels = mlm_batch(cfg, args.batch_size, args.seq_len, args.device)
    step = train_step(roberta.RobertaForMaskedLM(cfg).to(args.device).train(), ids, labels, "none")
    # timed as the loop is: the mean of a run of 2N steps in a row, the better of two runs (not the best step)
    bare = timed(lambda: [step() for _ in range(2 * args.steps)], repeat=2)[0] / (2 * args.steps)
    print(f"{args.config}, {args.batch_size}x{args.seq_len} on {args.device}, N = {args.steps}\n\n| update | ms | |\n"
          f"|---|---|---|\n| bare step | {bare * 1000:.1f} | |")
    for i, ((name, *_), s) in enumerate(zip(rows, seconds)):
        print(f"| {name} | {s * 1000:.1f} | " + (f"{100 * (1 - (s - seconds[0]) / args.delay):.0f}% of the delay hidden"
                                                 if i else f"the loop adds {100 * (s / bare - 1):.1f}%") + " |")


# ------------------------------------------------------------------------------------------ continued pretraining
def logged_losses(folder):  # {step: loss} of a run folder's log.jsonl ({} without one: a Hugging Face folder)
    path = os.path.join(folder, "log.jsonl")
    records = [json.loads(x) for x in files.read_text(path).splitlines() if x.strip()] if os.path.isfile(path) else []
    return {r["step"]: r["loss"] for r in records if isinstance(r.get("loss"), float)}


def bench_continue(args):
    """train.py --init-from's first losses beside its source's last and a random start's (same data, order, masks)."""
    with tempfile.TemporaryDirectory() as tmp:  # the commands run in the repository's folder: paths made absolute
        source, data_dir = (os.path.abspath(p) if p else None for p in (args.init_from, args.data))
        if source is None:
            data_dir = data_dir or builtin_data(tmp, args.vocab_size)
            src, source = os.path.join(tmp, "src"), os.path.join(tmp, "hf")
            train_py("the source run", data_dir, src, args, "--max-steps", args.source_steps, "--warmup-steps",
                     max(args.source_steps // 10, 1), "--dropout", 0)
            run_command(["roberta.py", "export", "--checkpoint", src, "--out", source], "roberta.py export")
        before = logged_losses(src if args.init_from is None else source)
        model, tok = evaluate.load_checkpoint(source, verbose=False)  # the random start: its sizes, fresh weights
        torch.manual_seed(0)
        roberta.save_pretrained(roberta.RobertaForMaskedLM(model.cfg), os.path.join(tmp, "random"))
        tok.save(os.path.join(tmp, "random"))
        for name, start in (("continued", source), ("random", os.path.join(tmp, "random"))):
            train_py(f"train.py --init-from ({name})", data_dir, os.path.join(tmp, name + "-run"), args, "--init-from",
                     start, "--max-steps", args.steps, "--warmup-steps", args.steps, "--lr", args.lr,
                     "--log-interval", 1, "--dropout", 0)
        losses = [logged_losses(os.path.join(tmp, name + "-run")) for name in ("continued", "random")]
    tail = [before[s] for s in sorted(before)[-5:]]  # one update's loss is noisy: its last five logged beside it
    last = (f"{tail[-1]:.3f} at its step {max(before):,} (its last {len(tail)} logged: mean {np.mean(tail):.3f}, "
            f"{min(tail):.3f} to {max(tail):.3f})" if before else "none (no log.jsonl beside it)")
    steps = list(losses[0])
    print(f"source: {args.init_from or f'a tiny run of {args.source_steps} updates, exported'}; its last logged loss: "
          f"{last}\n\n| start | " + " | ".join(f"update {s}" for s in steps) + " |\n|---|" + "---|" * len(steps))
    for name, row in zip(("continued from the source", "random weights, same sizes"), losses):
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in row.values()) + " |")
    gap = f"{losses[0][1] - before[max(before)]:+.3f} nats from the source's last; " if before else ""
    print(f"\nfirst update: {gap}{losses[1][1] - losses[0][1]:.3f} nats below the random start")


# ------------------------------------------------------------------------------------------ start-up at scale
def synthetic_corpus(folder, n_tokens, seed=0):
    """A prepared folder of random ids: lines of 5-60 tokens + </s>, documents of 5-50 lines, each + a lone </s>."""
    os.makedirs(folder, exist_ok=True)
    rng, done, lines, docs = np.random.default_rng(seed), 0, 0, 0
    with open(os.path.join(folder, "train.bin"), "wb") as fb, open(os.path.join(folder, "train.idx"), "wb") as fi:
        while done < n_tokens:
            per_doc = rng.integers(5, 51, min(20_000, (n_tokens - done) // 900 + 1))  # ~900 tokens a document
            lengths = np.insert(rng.integers(6, 62, int(per_doc.sum())), np.cumsum(per_doc), 1)  # 1: a separator
            ends = np.cumsum(lengths) + done
            tokens = rng.integers(4, 50_000, int(lengths.sum()), dtype=np.uint16)
            tokens[ends - done - 1] = 2  # every line ends with </s>
            fb.write(tokens.tobytes())
            fi.write(ends.tobytes())
            done, lines, docs = int(ends[-1]), lines + len(ends), docs + int(np.sum(lengths == 1))
    meta = {"tokenizer_sha256": "synthetic", "vocab_size": 50265, "dtype": "uint16", "bos_id": 0, "pad_id": 1,
            "eos_id": 2, "mask_id": 50264, "train": {"tokens": done, "lines": lines, "documents": docs},
            "valid": {"tokens": 0, "lines": 0, "documents": 0}}
    files.write_atomic(os.path.join(folder, "meta.json"), files.json_text(meta))
    return done


def _start(folder, fmt, build, batch_size):
    """A rank's start, the index built or mapped, then epoch 0's order: (seconds of each, private MB, examples)."""
    base = memory_mb("RssAnon")
    tokens, ends, _ = prepared.load_split(folder, "train")
    t = time.perf_counter()
    kept = index.cached_examples(folder, tokens, ends, fmt, 512, 2, build=build)
    t_index = time.perf_counter() - t
    budget = batch_size * 512 if data.FORMATS[fmt].by_tokens else None
    batches = data.epoch_batches(kept.lengths, batch_size, 0, 0, budget)
    assert batches.get(0) is not None  # what train.py asks for first
    return t_index, time.perf_counter() - t - t_index, memory_mb("RssAnon") - base, len(kept.lengths)


def _first_batch(path, n, batch_size, offset):
    """A rank ordering an epoch and finding its first batch: (seconds, private MB, numpy's peak MB, its examples)."""
    base = memory_mb("RssAnon")
    lengths = np.memmap(path, np.uint16, "r", shape=(n,))
    tracemalloc.start()
    t = time.perf_counter()
    batches = data.epoch_batches(lengths, batch_size, 0, 0, batch_size * 512, first=1 if offset else 0, offset=offset)
    batch = batches.get(batches.first)
    seconds, peak = time.perf_counter() - t, tracemalloc.get_traced_memory()[1] / 2 ** 20
    return seconds, memory_mb("RssAnon") - base, peak, len(batch)


def bench_startup(args):
    """The examples index per format, in fresh processes: its first build, and every later start (map, order)."""
    print("| tokens | format | examples | build (once) s | start: map index s | start: epoch order s | "
          "start: private MB |\n" + "|---" * 7 + "|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.tokens:
            folder = os.path.join(tmp, f"c{n}")
            n = synthetic_corpus(folder, n)
            for fmt in args.formats:
                built = in_fresh_process(_start, folder, fmt, True, args.batch_size)
                index_s, epoch_s, mb, count = in_fresh_process(_start, folder, fmt, False, args.batch_size)
                print(f"| {n:,} | {fmt} | {count:,} | {built[0]:.2f} | {index_s:.3f} | {epoch_s:.2f} | {mb:.0f} |")
            shutil.rmtree(folder)
        if not args.epoch_examples:
            return
        n = args.epoch_examples  # an epoch of n examples of 10-100 tokens (a sentence pair's; 0.8B: ~44B tokens)
        print(f"\nAn epoch of {n:,} examples of 10-100 tokens, batches of {args.batch_size:,} x 512 tokens:\n\n| "
              "start | order | seconds | private MB after | peak MB on the way | examples in the first batch |\n"
              + "|---" * 6 + "|")
        path, rng = os.path.join(tmp, "lengths.u16"), np.random.default_rng(0)
        with open(path, "wb") as f:  # in pieces of 16M lengths
            for at in range(0, n, 1 << 24):
                f.write(rng.integers(10, 101, min(1 << 24, n - at), dtype=np.uint16).tobytes())
        kind = "computed (index.Shuffle)" if n > orders.SHUFFLE_ABOVE else "torch.randperm"
        for what, offset in (("epoch start", 0), ("resume half way", n // 2)):
            seconds, mb, peak, size = in_fresh_process(_first_batch, path, n, args.batch_size, offset)
            print(f"| {what} | {kind} | {seconds:.2f} | {mb:.0f} | {peak:.0f} | {size:,} |")


# ------------------------------------------------------------------------------------------ command line
MAX_POSITIONS = roberta.RobertaConfig.max_positions
RUNS = ["tiny:8:128", "small:8:128", "base:4:128", "tiny:4:512", "small:4:512", "base:2:512"]
VOCAB_SIZE = cli.number(int, bpe.MIN_VOCAB, why=" (256 bytes + 5 special tokens)")
SEQ_LEN = cli.number(int, 1, MAX_POSITIONS, why=" (the model's positions)")


def run_spec(text):
    """--runs: CONFIG:BATCH:SEQ_LEN -> (config, batch, seq_len), each checked."""
    name, *numbers = text.split(":")
    if len(numbers) != 2 or name not in roberta.PRESETS:
        raise argparse.ArgumentTypeError(f"expected CONFIG:BATCH:SEQ_LEN with CONFIG one of "
                                         f"{', '.join(roberta.PRESETS)}, like tiny:8:128; got {text!r}")
    checked = [name]
    try:
        for what, value, parse in (("BATCH", numbers[0], cli.number(int, 1)), ("SEQ_LEN", numbers[1], SEQ_LEN)):
            checked.append(parse(value))
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(f"{text}: {what} {e}") from None
    return tuple(checked)


def device_spec(text):
    """--device: cpu, cuda or cuda:N, and only a device this machine has."""
    if not re.fullmatch(r"cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N; got {text!r}")
    if text != "cpu" and int(text[5:] or 0) >= torch.cuda.device_count():  # 0 without CUDA
        raise argparse.ArgumentTypeError(f"{text}: this machine has {torch.cuda.device_count()} CUDA devices")
    return text


def option(name, default, help, low=1, high=None, **keywords):
    """One option: a whole number in [low, high], or a flag (default False), unless `keywords` say otherwise; its
    default said in its help."""
    shown = "off" if default is False else " ".join(map(str, default)) if isinstance(default, list) else "%(default)s"
    kind = {"action": "store_true"} if default is False else {"type": cli.number(int, low, high)}
    return name, {**kind, "default": default, **keywords, "help": f"{help} (default: {shown})"}


def sizes(batch, seq_len, low=1, shortest=8):  # --batch-size and --seq-len
    return [option("--batch-size", batch, "sequences per update", low),
            option("--seq-len", seq_len, "tokens per sequence", shortest, MAX_POSITIONS)]


DEVICE = option("--device", "cuda" if torch.cuda.is_available() else "cpu", "cpu, cuda or cuda:N; cuda when available",
                type=device_spec)
BUILTIN_VOCAB = option("--vocab-size", 8192, "vocabulary trained on the built-in corpus", type=VOCAB_SIZE)

# (command, the function it runs, help, [(option, argparse keywords)])
COMMANDS = [
    ("bpe", bench_bpe, "tokenizer training and encoding vs HF tokenizers, tiktoken, RobertaTokenizer", [
        option("--vocab-size", 8000, "vocabulary to train", type=VOCAB_SIZE)]),
    ("model", bench_model, "training-step tokens/s and MFU, optionally vs transformers (--compare-hf)", [
        ("--runs", dict(nargs="+", type=run_spec, metavar="CONFIG:BATCH:SEQ_LEN", default=list(map(run_spec, RUNS)),
                        help=f"model configs ({', '.join(roberta.PRESETS)}), batch and sequence length (at most "
                             f"{MAX_POSITIONS}) to time (default: {' '.join(RUNS)})")),
        option("--amp", ["none", "bf16"], "precisions: fp32 (none), bf16 autocast", type=None, nargs="+",
               choices=list(AMP_DTYPES)), option("--steps", 5, "timed steps of each model, interleaved; the best"),
        DEVICE, option("--compare-hf", False, "also time transformers' model, interleaved")]),
    ("data", bench_data, "corpus preparation MB/s and peak memory, masking + batching tokens/s", [
        option("--workers", 2, "encoding processes", 1, 1024),
        option("--copies", 8, "the large corpus: this many copies of the ~8 MB mix", 1, 1000)]),
    ("train", bench_train, "what train.py's loop adds to the bare step; with --delay, what its batch thread hides", [
        option("--config", "tiny", "model size", type=None, choices=list(roberta.PRESETS)), *sizes(8, 128),
        BUILTIN_VOCAB, DEVICE, option("--steps", 150, "N: runs of N and 3N updates"),
        option("--delay", 0.0, "seconds of sleep in each preparation; 0: none", type=cli.number(float, 0, 10))]),
    ("startup", bench_startup, "start-up time and memory of the examples index, synthetic corpora at scale", [
        option("--tokens", [10 ** 7, 10 ** 8], "corpus sizes, >= 600 x --batch-size", 10_000, 10 ** 10, nargs="+"),
        option("--formats", list(data.FORMATS), "input formats", type=None, choices=list(data.FORMATS), nargs="+"),
        option("--batch-size", 8192, "sequences per update, for the epoch's order (Table 9)"),
        option("--epoch-examples", 0, "also order an epoch of this many examples (40B tokens of sentence pairs: "
                                      "800000000); 0: skipped", 0, 4 * 10 ** 9)]),
    ("compile", bench_device.bench_compile, "train.py's step eager vs torch.compile'd: time, graphs, recompiles", [
        option("--configs", ["tiny", "small"], "model sizes", type=None, choices=list(roberta.PRESETS), nargs="+"),
        *sizes(8, 128, 4, 16), option("--steps", 5, "timed rounds of 4 updates per kind, interleaved; the best"),
        option("--backend", "inductor", "torch.compile's backend (aot_eager: dynamo's graphs, no kernels)", type=None,
               choices=["inductor", "aot_eager", "eager"]), DEVICE,
        option("--before", False, "also time the step compiled as before (the LM head on the exact targets)")]),
    ("continue", bench_continue, "train.py --init-from's first losses beside its source's and a random start's", [
        option("--init-from", None, "a run or Hugging Face folder; none: a tiny run made here", type=cli.path_arg),
        option("--data", None, "prepared with its tokenizer (needed with --init-from)", type=cli.path_arg),
        option("--source-steps", 300, "updates of the source made here"), option("--steps", 5, "updates of each run"),
        option("--lr", 1e-4, "peak learning rate, at the last update", type=cli.number(float, 0, 1, low_open=True)),
        *sizes(16, 64),
        option("--vocab-size", 2048, "vocabulary trained on the built-in corpus", type=VOCAB_SIZE), DEVICE]),
    ("gpu", bench_device.bench_gpu, "the GPU table (docs/gpu-benchmark.md): train.py, the bare step, transformers", [
        option("--config", "base", "model size", type=None, choices=list(roberta.PRESETS)), *sizes(32, 512, 4, 16),
        option("--steps", 10, "updates per timed window"),
        option("--windows", 3, "timed windows of each row, after one untimed"), BUILTIN_VOCAB,
        option("--run-timeout", 300, "seconds each train.py run may take", 10),
        option("--out", "docs/gpu-benchmark.md", "the table; a .json of its figures beside it", type=cli.path_arg),
        option("--overwrite", False, "replace an existing --out")]),
]


def parser():
    p = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    for command, run, help, options in COMMANDS:
        c = sub.add_parser(command, help=help, description=help)
        c.set_defaults(run=run)
        for option, keywords in options:
            c.add_argument(option, **keywords)
    return p


def check(args):
    """What argparse cannot see alone: the peers and precisions a run asks for, start-up's sizes."""
    if getattr(args, "compare_hf", False) and importlib.util.find_spec("transformers") is None:
        raise ValueError("--compare-hf needs transformers, which is not installed")
    if "bf16" in getattr(args, "amp", []) and args.device != "cpu" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"--amp bf16: {torch.cuda.get_device_name(args.device)} has no bfloat16; use --amp none")
    if args.what == "continue" and args.init_from and not args.data:
        raise ValueError("--init-from needs --data: a folder prepared with its tokenizer (python data.py --tokenizer "
                         f"{args.init_from} ...)")
    if args.what == "startup" and min(args.tokens) < args.batch_size * 600:  # one update: batch-size x 512 tokens
        raise ValueError(f"--tokens {min(args.tokens):,}: too few for one update of --batch-size {args.batch_size} "
                         f"sequences of 512 tokens (at least {args.batch_size * 600:,})")


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        check(args)
        args.run(args)
    except (OSError, ValueError, RuntimeError) as err:  # RuntimeError: torch's, out of memory among them
        sys.exit(f"error: {cli.describe(err).strip().splitlines()[0]}")
    except KeyboardInterrupt:
        sys.exit("error: interrupted")


if __name__ == "__main__":
    main()
