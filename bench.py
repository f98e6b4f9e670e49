"""Benchmarks: speed figures for the README, measured against peer implementations in the same run.

    python bench.py bpe      # tokenizer training and encoding vs HF tokenizers, tiktoken, RobertaTokenizer
    python bench.py model    # training-step tokens/s and MFU, optionally vs transformers (--compare-hf)
    python bench.py data     # corpus preparation MB/s, peak memory, masking + batching tokens/s
    python bench.py train    # what train.py's loop adds to the bare training step

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

import torch

import bpe
import data
import roberta

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


def peak_mb(status=None):
    """Peak resident memory in MB from /proc/PID/status (this process's by default). Linux's VmHWM, not
    ru_maxrss: ru_maxrss survives exec, so a process started from a big one reports its parent's peak."""
    if status is None:
        with open("/proc/self/status") as f:
            status = f.read()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")) / 1024


def _measured(fn, args, conn):
    t = time.perf_counter()
    fn(*args)
    conn.send((time.perf_counter() - t, peak_mb(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024))


def in_fresh_process(fn, *args):
    """Run fn(*args) in a fresh process: (seconds, its peak memory in MB, its largest child's peak in MB)."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_measured, args=(fn, args, child))
    p.start()
    p.join()  # the result is a few numbers: the child has sent them before it exits
    if p.exitcode != 0:
        raise RuntimeError(f"the measured process failed (exit code {p.exitcode})")
    return parent.recv()


def training_peak_mb(lines, vocab_size):
    """Peak memory of a fresh process that imports bpe.py alone and trains from the text file, streaming it
    as `python bpe.py train` does."""
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "text.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(lines)
        code = ("import sys, bpe; bpe.Tokenizer.train(bpe.read_lines(sys.argv[1]), int(sys.argv[2])); "
                "print(open('/proc/self/status').read())")
        out = subprocess.run([sys.executable, "-c", code, path, str(vocab_size)], capture_output=True, text=True,
                             check=True, cwd=os.path.dirname(os.path.abspath(__file__)))
    return peak_mb(out.stdout)


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
    rss = training_peak_mb(lines, args.vocab_size)

    # ---- encoding, line by line, on the released RoBERTa / GPT-2 vocabularies (cold caches)
    roberta = bpe.Tokenizer.load(os.path.join(SHARED, "roberta"))
    gpt2 = bpe.Tokenizer.load(os.path.join(SHARED, "gpt2"))

    def encode_cold(tok):
        tok.cache.clear()  # every run starts with an empty pre-token cache
        return [tok.encode(s) for s in lines]
    t, ids = timed(encode_cold, roberta)
    rows.append(("encode", "bpe.py (RoBERTa vocab)", t))
    n_tokens = sum(map(len, ids))
    try:
        import tiktoken
        from tiktoken.load import data_gym_to_mergeable_bpe_ranks
        ranks = data_gym_to_mergeable_bpe_ranks(os.path.join(SHARED, "gpt2", "vocab.bpe"),
                                                os.path.join(SHARED, "gpt2", "encoder.json"))
        enc = tiktoken.Encoding("gpt2", pat_str=bpe.GPT2_PATTERN, mergeable_ranks=ranks, special_tokens={})
        ours, theirs = interleaved([lambda: encode_cold(gpt2), lambda: [enc.encode_ordinary(s) for s in lines]], 5)
        rows += [("encode", "bpe.py (GPT-2 vocab)", ours), ("encode", "tiktoken (Rust, GPT-2 vocab)", theirs)]
    except ImportError:
        rows += [("encode", "bpe.py (GPT-2 vocab)", timed(encode_cold, gpt2)[0]),
                 ("encode", "tiktoken: not installed", None)]
    try:
        from transformers import RobertaTokenizer
        hf = RobertaTokenizer(os.path.join(SHARED, "roberta", "vocab.json"),
                              os.path.join(SHARED, "roberta", "merges.txt"))
        t, _ = timed(lambda: [hf.encode(s, add_special_tokens=False) for s in lines], repeat=1)
        rows.append(("encode", "transformers RobertaTokenizer (Python)", t))
    except ImportError:
        rows.append(("encode", "transformers: not installed", None))

    print("\n| task | implementation | seconds | MB/s |\n|---|---|---|---|")
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


# ------------------------------------------------------------------------------------------ model
def mlm_batch(cfg, batch, seq_len, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, cfg.vocab_size - 1, (batch, seq_len), generator=g)
    labels = torch.where(torch.rand(batch, seq_len, generator=g) < 0.15, ids, -100)
    return ids, labels


def train_step(model, loss_fn, ids, labels, amp):
    """A closure running one training step: forward + backward + AdamW (fused, as train.py uses)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-6, fused=True)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp == "bf16"):
            loss = loss_fn(model, ids, labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    step()  # warm-up: allocations, optimizer state
    return step


def interleaved(steps, rounds):
    """Best seconds of each step function, run in turns so that machine noise hits all of them alike."""
    best = [float("inf")] * len(steps)
    for _ in range(rounds):
        for i, step in enumerate(steps):
            best[i] = min(best[i], timed(step, repeat=1)[0])
    return best


def ours_loss(model, ids, labels):
    return model(ids, labels=labels)


def hf_loss(model, ids, labels):
    return model(input_ids=ids, labels=labels).loss


def hf_twin(model):
    """transformers' RobertaForMaskedLM with our model's weights (None when transformers is missing)."""
    try:
        import transformers
    except ImportError:
        return None
    transformers.logging.set_verbosity_error()
    twin = transformers.RobertaForMaskedLM(transformers.RobertaConfig(**{
        k: v for k, v in roberta.hf_config(model).items() if k != "architectures"}))
    missing, unexpected = twin.load_state_dict(roberta.to_hf_state(model), strict=False)
    assert not unexpected and all("decoder" in k for k in missing), (missing, unexpected)
    return twin.train()


def bench_model(args):
    torch.manual_seed(0)
    peaks = {"none": roberta.matmul_peak("cpu", torch.float32), "bf16": roberta.matmul_peak("cpu", torch.bfloat16)}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; matmul peak: "
          f"fp32 {peaks['none'] / 1e9:.0f} GFLOP/s, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s")
    print("MFU counts the model FLOPs a training step needs (3x forward; LM head on the 15% targets).\n")
    print("| config | batch | amp | ours tokens/s | ours MFU | transformers tokens/s | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for spec in args.runs:
        name, batch, seq_len = spec.split(":")
        batch, seq_len = int(batch), int(seq_len)
        cfg = roberta.RobertaConfig.preset(name, dropout=0.1)
        model = roberta.RobertaForMaskedLM(cfg).train()
        ids, labels = mlm_batch(cfg, batch, seq_len)
        tokens = batch * seq_len
        flops = 3 * roberta.flops_per_token(cfg, seq_len, lm_positions_fraction=0.15) * tokens
        twin = hf_twin(model) if args.compare_hf else None
        for amp in args.amp:
            steps = [train_step(model, ours_loss, ids, labels, amp)]
            if twin is not None:
                steps.append(train_step(twin, hf_loss, ids, labels, amp))
            peak = max(peaks[amp], roberta.matmul_peak("cpu", torch.float32 if amp == "none" else torch.bfloat16))
            seconds = interleaved(steps, args.steps)
            ours = seconds[0]
            row = f"| {name} | {batch}x{seq_len} | {amp} | {tokens / ours:,.0f} | {flops / ours / peak:.1%} |"
            if twin is not None:
                row += f" {tokens / seconds[1]:,.0f} | {seconds[1] / ours:.2f}x |"
            else:
                row += " - | - |"
            print(row, flush=True)


# ------------------------------------------------------------------------------------------ data
def _prepare(paths, tokenizer, out, workers):
    data.prepare(paths, tokenizer, out, valid_fraction=0.01, workers=workers, overwrite=True, verbose=False)


def bench_data(args):
    import tempfile
    lines = bench_lines()
    tokenizer = os.path.join(SHARED, "roberta")
    with tempfile.TemporaryDirectory() as tmp:
        small = os.path.join(tmp, "mix.txt")
        with open(small, "w", encoding="utf-8") as f:
            f.writelines(lines)
        mb = os.path.getsize(small) / 1e6
        print("| corpus | workers | seconds | MB/s | peak memory: main / largest worker (MB) |\n|---|---|---|---|---|")
        for paths, label in (([small], f"{mb:.1f} MB mix"), ([small] * args.copies, f"{mb * args.copies:.0f} MB "
                                                                                    f"({args.copies} copies)")):
            seconds, main_mb, worker_mb = in_fresh_process(_prepare, paths, tokenizer, os.path.join(tmp, "out"),
                                                            args.workers)
            size = sum(os.path.getsize(p) for p in paths) / 1e6
            print(f"| {label} | {args.workers} | {seconds:.1f} | {size / seconds:.2f} | {main_mb:.0f} / {worker_mb:.0f} |",
                  flush=True)
        # masking and batching on one core: collate FULL-SENTENCES blocks and mask them
        torch.set_num_threads(1)
        _prepare([small], tokenizer, os.path.join(tmp, "out"), args.workers)
        tokens, ends, _ = data.load_split(os.path.join(tmp, "out"), "train")
        tok = bpe.Tokenizer.load(tokenizer)
        ex = data.examples(tokens, ends, "full-sentences", 512, tok.eos_id)
        batches = data.epoch_batches(data.example_lengths(ex), 8, seed=0, epoch=0)[:200]

        def serve():
            n = 0
            for idx in batches:
                ids, _ = data.collate(tokens, ex[idx], 512, tok)
                inputs, labels = data.mask_batch(ids, idx, tok, seed=0, epoch=1)
                n += ids.numel()
            return n
        seconds, n = timed(serve, repeat=3)
        print(f"\nmasking + batching (8 x 512, one core): {n / seconds / 1e6:.1f}M tokens/s")


# ------------------------------------------------------------------------------------------ the training loop
def bench_train(args):
    """train.py's loop (data, masking, logging) against the bare training step of `bench.py model`."""
    import tempfile
    import train
    torch.set_num_threads(torch.get_num_threads())
    with tempfile.TemporaryDirectory() as tmp:
        corpus = data.builtin_corpus(os.path.join(tmp, "corpus.txt"))
        bpe.Tokenizer.train(bpe.read_lines(corpus), args.vocab_size).save(os.path.join(tmp, "tok"))
        data.prepare([corpus], os.path.join(tmp, "tok"), os.path.join(tmp, "data"), verbose=False)

        runs = []

        def run(steps):
            runs.append(steps)
            cfg = train.TrainConfig(config=args.config, data=os.path.join(tmp, "data"), seq_len=args.seq_len,
                                    batch_size=args.batch_size, max_steps=steps, out=os.path.join(tmp, f"out{len(runs)}"),
                                    log_interval=1, eval_interval=10 ** 9, save_interval=10 ** 9, eval_sequences=8)
            t = time.perf_counter()
            train.train(cfg)
            return time.perf_counter() - t
        run(args.steps)  # warm-up: the first run in a process pays one-time initialisation
        short, long = run(args.steps), run(3 * args.steps)
        loop = (long - short) / (2 * args.steps)  # start-up and the final evaluation cancel out
        cfg = roberta.RobertaConfig.preset(args.config, vocab_size=args.vocab_size)
        model = roberta.RobertaForMaskedLM(cfg).train()
        ids, labels = mlm_batch(cfg, args.batch_size, args.seq_len)
        bare = interleaved([train_step(model, ours_loss, ids, labels, "none")], 2 * args.steps)[0]
    print(f"{args.config}, {args.batch_size}x{args.seq_len}: bare step {bare * 1000:.1f} ms, train.py loop "
          f"{loop * 1000:.1f} ms per step: the loop adds {100 * (loop / bare - 1):.1f}%")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("bpe", help="tokenizer training and encoding")
    p.add_argument("--vocab-size", type=int, default=8000)
    p = sub.add_parser("model", help="training step speed and MFU")
    p.add_argument("--runs", nargs="+", default=["tiny:8:128", "small:8:128", "base:4:128", "tiny:4:512",
                                                 "small:4:512", "base:2:512"],
                   help="CONFIG:BATCH:SEQ_LEN triples")
    p.add_argument("--amp", nargs="+", default=["none", "bf16"], choices=["none", "bf16"])
    p.add_argument("--steps", type=int, default=5, help="timed steps of each model, interleaved (best is reported)")
    p.add_argument("--compare-hf", action="store_true", help="also time transformers' RobertaForMaskedLM")
    p = sub.add_parser("data", help="corpus preparation and masking speed, peak memory")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--copies", type=int, default=8, help="the large corpus: this many copies of the mix")
    p = sub.add_parser("train", help="train.py's loop overhead over the bare step")
    p.add_argument("--config", default="tiny")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--vocab-size", type=int, default=8192)
    args = parser.parse_args()
    {"bpe": bench_bpe, "model": bench_model, "data": bench_data, "train": bench_train}[args.what](args)


if __name__ == "__main__":
    main()
