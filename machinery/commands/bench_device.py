"""`python bench.py compile` and `python bench.py gpu`: train.py's step eager against torch.compile'd (graphs,
breaks, recompiles), and the GPU table (train.py against the bare compiled step and transformers, MFU, bf16
against fp16, the batch thread's overlap), written to docs/gpu-benchmark.md."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import torch

import bpe
import data
import roberta
import train
from machinery.basics import files, speed
from machinery.scale import prepared
from machinery.commands.bench_tools import timed, interleaved, mlm_batch, synchronize, train_step, hf_twin, builtin_data

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository


# ------------------------------------------------------------------------------------------ torch.compile
def step_trainer(model, micro, seq_len, amp, compiled, backend="inductor", exact=False):
    """train.py's Trainer for `model` on its device (one process, no DDP): eager; compiled as train.py compiles
    it (speed.compile_trainer: one shape, warmed up); or, exact=True, compiled as train.py did before (the LM
    head on the exact targets: graph breaks, compiled at the first steps). (Trainer, seconds of its warm-up)."""
    device = next(model.parameters()).device
    cfg = train.TrainConfig(seq_len=seq_len, batch_size=micro, micro_batch_size=micro, compile=compiled,
                            device=str(device), amp=amp)
    scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None
    dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    tr = train.Trainer(cfg, model, model, roberta.adamw(model, lr=1e-4, weight_decay=0.01), scaler, dtype, device,
                       0, 1, None)
    t = time.perf_counter()
    if compiled and exact:
        tr = tr._replace(model=torch.compile(model, backend=backend))
    elif compiled:
        tr = speed.compile_trainer(tr, micro, backend=backend)
        if tr.static is None:
            raise RuntimeError("torch.compile failed (see the warning above)")
    synchronize(device)
    return tr, time.perf_counter() - t


def as_update(micro_batches, pad_id=1):
    """(train.Batch, its targets) of (ids, labels) micro-batches on the CPU, as train.py's batch thread makes them."""
    mbs = [(ids, labels, None, bool(ids.eq(pad_id).any()), 1.0) for ids, labels in micro_batches]
    n_targets = sum(int(labels.ne(-100).sum()) for _, labels in micro_batches)
    real = sum(int(ids.ne(pad_id).sum()) for ids, _ in micro_batches)
    return train.Batch(mbs, [n_targets, real], sum(len(ids) for ids, _ in micro_batches)), n_targets


def timing_updates(cfg, batch, seq_len, n=4):
    """n updates of one micro-batch each, 15% targets drawn anew (their count varies, as masking's does); the
    last with 3 rows padded from the middle on (as train.py's: mostly whole, now and then padded)."""
    out = []
    for i in range(n):
        ids, labels = mlm_batch(cfg, batch, seq_len, seed=i)
        if i == n - 1:
            ids[:3, seq_len // 2:], labels[:3, seq_len // 2:] = cfg.pad_id, -100
        out.append(as_update([(ids, labels)], cfg.pad_id))
    return out


def varied_updates(cfg, batch, seq_len):
    """One update of each kind train.py also makes: two micro-batches (accumulation), a partial last
    micro-batch, a single sequence, rows shorter than --seq-len, a padded row, a micro-batch without targets."""
    out = []
    for i, sizes in enumerate([[batch, batch], [batch, max(1, batch - 3)], [1], [batch, max(1, batch // 2)]]):
        mbs = []
        for j, rows in enumerate(sizes):
            ids, labels = mlm_batch(cfg, rows, seq_len - 8 * (i % 2), seed=100 + 10 * i + j)
            if i == 3 and j == 1:
                labels[:] = -100
            if i == 2:
                ids[0, 5:], labels[0, 5:] = cfg.pad_id, -100
            mbs.append((ids, labels))
        out.append(as_update(mbs, cfg.pad_id))
    return out


def run_updates(tr, updates):
    """A closure running train.py's train_step over `updates`, waiting for the device at both ends."""
    def run():
        synchronize(tr.device)
        for batch, n_targets in updates:
            train.train_step(tr, batch, n_targets)
        synchronize(tr.device)
    return run


COMPILE_KINDS = [("eager", False, False), ("compiled as before (exact targets)", True, True),
                 ("compiled, one shape", True, False)]


def compile_config(args, name):
    """Print the rows of one config: each kind's warm-up, time per update (the kinds interleaved), and its
    graphs: per forward (1 = no graph break), compiled at the warm-up, compiled after it over every kind of
    update (recompiles)."""
    cfg = roberta.RobertaConfig.preset(name, dropout=0.1)
    timing = timing_updates(cfg, args.batch_size, args.seq_len)
    varied = varied_updates(cfg, args.batch_size, args.seq_len)
    tokens = sum(b.counts[1] for b, _ in timing) / len(timing)
    arms = []
    for kind, compiled, exact in [k for k in COMPILE_KINDS if args.before or "before" not in k[0]]:
        torch.manual_seed(0)
        counter = speed.GraphCounter(args.backend) if compiled else None
        model = roberta.RobertaForMaskedLM(cfg).to(args.device).train()
        tr, warm_s = step_trainer(model, args.batch_size, args.seq_len, "none", compiled, counter, exact)
        if exact:  # it compiles at its first steps: its warm-up is a pass over the timing updates
            warm_s += timed(run_updates(tr, timing), repeat=1)[0]
        arms.append((kind, tr, counter, warm_s, len(counter.ids) if counter else 0, counter.runs if counter else 0))
    seconds = interleaved([run_updates(tr, timing) for _, tr, *_ in arms], args.steps)
    for (kind, tr, counter, warm_s, warm_graphs, runs), s in zip(arms, seconds):
        per_forward = (counter.runs - runs) / (args.steps * len(timing)) if counter else None
        run_updates(tr, varied)()  # untimed: every other kind of update, after the warm-up
        graphs = f"{per_forward:.3g} | {warm_graphs} | {len(counter.ids) - warm_graphs}" if counter else "- | - | -"
        print(f"| {name} | {args.batch_size}x{args.seq_len} | {kind} | {warm_s:.1f} | {s / len(timing) * 1000:.1f} | "
              f"{tokens * len(timing) / s:,.0f} | {seconds[0] / s:.2f}x | {graphs} |", flush=True)


def bench_compile(args):
    """train.py's train_step eager and torch.compile'd (--backend), on the same updates, and what dynamo made of
    it: graphs per forward, graphs compiled at the warm-up and after it."""
    torch._dynamo.reset()
    where = torch.cuda.get_device_name(args.device) if args.device != "cpu" else \
        f"{torch.get_num_threads()} CPU threads"
    print(f"torch {torch.__version__}, {where}, backend {args.backend}, fp32; {args.steps} interleaved rounds of 4 "
          f"updates (one padded), the best; then one update of each other kind (accumulation, partial, short, "
          f"no targets), untimed. Load average {os.getloadavg()[0]:.1f} on {speed.cpus_allowed()} CPUs.\n")
    print("| config | batch | step | warm-up s | ms per update | tokens/s | vs eager | graphs per forward | "
          "graphs at warm-up | graphs compiled after warm-up |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.configs:
        compile_config(args, name)
        torch._dynamo.reset()


# ------------------------------------------------------------------------------------------ GPU
GPU_OUT = os.path.join("docs", "gpu-benchmark.md")


def train_py_run(data_dir, out, args, amp, extra=(), env=None):
    """`python train.py` (--compile) for --steps updates: the tokens/s and MFU its Meter logs for the second half
    (the first half pays for first calls: allocations, kernel choices), and the graph breaks and recompiles
    dynamo logged (TORCH_LOGS) over the whole run, its compile warm-up included. -> dict."""
    log_interval = args.steps // 2  # the last window: the second half
    cmd = ["train.py", "--config", args.config, "--data", data_dir, "--out", out, "--seq-len", str(args.seq_len),
           "--batch-size", str(args.batch_size), "--max-steps", str(args.steps), "--log-interval", str(log_interval),
           "--eval-interval", str(10 ** 9), "--save-interval", str(10 ** 9), "--eval-sequences", "8",
           "--device", args.device, "--amp", amp, "--compile", *extra]
    t = time.perf_counter()
    r = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, cwd=ROOT, timeout=args.run_timeout,
                       env={**os.environ, "TORCH_LOGS": "graph_breaks,recompiles", **(env or {})})
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["no message"])[-1]
        raise RuntimeError(f"train.py --amp {amp} {' '.join(extra)} failed (exit code {r.returncode}): {last}")
    last = json.loads(files.read_text(os.path.join(out, "log.jsonl")).splitlines()[-1])
    shutil.rmtree(out)
    return {"tokens_per_s": last["tokens_per_s"], "mfu": last["mfu"], "wall_s": round(time.perf_counter() - t, 1),
            "graph_breaks": r.stderr.count("Graph break in user code"),
            "recompiles": r.stderr.count("Recompiling function")}


def train_py_updates(data_dir, args, n):
    """The first n updates train.py makes of `data_dir` (FULL-SENTENCES, --batch-size sequences of --seq-len in
    one micro-batch, dynamic masking), on the CPU: [(Batch, targets)], the mean seconds one took to prepare,
    the tokenizer."""
    cfg = train.TrainConfig(config=args.config, data=data_dir, seq_len=args.seq_len, batch_size=args.batch_size)
    tok = bpe.Tokenizer.load(data_dir)
    tokens, line_ends, _ = prepared.open_prepared(data_dir, tok)
    ex = data.examples(tokens, line_ends, cfg.format, cfg.seq_len, tok.eos_id, cfg.seed)
    ts = train.TrainSet(tokens, ex, data.example_lengths(ex, cfg.format, cfg.seq_len), tok)
    made = train.updates(ts, cfg, args.batch_size, 0, 1, 0, 0, train.global_batches(cfg, ts.lengths, 0))
    t = time.perf_counter()
    out = [next(made)[3] for _ in range(n)]
    return [(b, b.counts[0]) for b in out], (time.perf_counter() - t) / n, tok


def bare_step(updates, tok, args, device):
    """train.py's train_step alone, compiled as train.py compiles it, on train.py's first updates, bf16: its
    seconds per update, tokens/s, MFU, graphs; and the model, for transformers' twin."""
    cfg = roberta.RobertaConfig.preset(args.config, vocab_size=len(tok), pad_id=tok.pad_id)
    torch.manual_seed(0)
    model = roberta.RobertaForMaskedLM(cfg).to(device).train()
    counter = speed.GraphCounter()
    tr, warm_s = step_trainer(model, args.batch_size, args.seq_len, "bf16", True, counter)
    warm_graphs, calls = len(counter.ids), counter.runs
    s = timed(run_updates(tr, updates), repeat=3)[0] / len(updates)
    tokens = sum(b.counts[1] for b, _ in updates) / len(updates)
    targets = sum(n for _, n in updates) / sum(b.counts[1] for b, _ in updates)
    flops = 3 * speed.flops_per_token(cfg, args.seq_len, targets)
    peak, label = speed.peak_flops(device, torch.bfloat16)
    padded = sum(mb[3] for b, _ in updates for mb in b.micro_batches) / sum(len(b.micro_batches) for b, _ in updates)
    return {"seconds_per_update": s, "tokens_per_s": tokens / s, "mfu": tokens / s * flops / peak, "peak": peak,
            "peak_label": label, "warm_up_s": round(warm_s, 1),
            "graphs_per_forward": (counter.runs - calls) / (3 * len(updates)),  # 3 passes of one micro-batch each
            "graphs_at_warm_up": warm_graphs, "recompiles_after_warm_up": len(counter.ids) - warm_graphs,
            "graph_breaks": counter.frames() - 1, "padded_share": padded}, model


def transformers_eager(model, micro_batch, pad_id, device):
    """transformers' RobertaForMaskedLM, eager, bf16, with our model's weights, on one of train.py's micro-batches
    (its padding masked): tokens/s, or None when transformers is not installed."""
    try:
        import transformers  # noqa: F401
    except ImportError:
        return None
    ids, labels = (t.to(device) for t in micro_batch)
    twin = hf_twin(model)
    step = train_step(twin, lambda m, i, y: m(input_ids=i, attention_mask=i.ne(pad_id), labels=y).loss, ids, labels,
                      "bf16")
    s = timed(step, repeat=5)[0]
    del twin, step
    return {"tokens_per_s": int(ids.ne(pad_id).sum()) / s, "seconds_per_step": s}


def gpu_results(args, device):
    """Every figure of the GPU table, in one dict (the .json beside the .md)."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = builtin_data(tmp, args.vocab_size)
        updates, prepare_s, tok = train_py_updates(data_dir, args, args.steps)
        bare, model = bare_step(updates[:8], tok, args, device)
        hf = transformers_eager(model, updates[0][0].micro_batches[0][:2], tok.pad_id, device)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
        runs = {"bf16": train_py_run(data_dir, os.path.join(tmp, "bf16"), args, "bf16")}
        if device.type == "cuda":
            runs["fp16"] = train_py_run(data_dir, os.path.join(tmp, "fp16"), args, "fp16")
        delay = round(bare["seconds_per_update"] / 2, 4)  # half a step: the thread can hide all of it
        for name, extra in (("delay, thread", ()), ("delay, in the loop", ("--prefetch", "0"))):
            runs[name] = train_py_run(data_dir, os.path.join(tmp, "o"), args, "bf16",
                                      (*extra, "--prepare-delay", str(delay)))
    window = args.steps - args.steps // 2  # train.py's last logged window: its tokens, real ones, as its Meter's
    window_tokens = sum(b.counts[1] for b, _ in updates[args.steps // 2:])
    for run in runs.values():
        run["ms_per_update"] = window_tokens / run["tokens_per_s"] / window * 1000
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    return {"device": name, "torch": torch.__version__, "config": args.config, "seq_len": args.seq_len,
            "batch_size": args.batch_size, "steps": args.steps, "vocab_size": args.vocab_size, "bare_bf16": bare,
            "transformers_eager_bf16": hf, "train_py": runs, "delay_s": delay, "prepare_s": prepare_s,
            "seconds": round(time.perf_counter() - started, 1)}


def gpu_markdown(r):
    """The GPU table as markdown, from gpu_results' dict."""
    bare, runs, delay = r["bare_bf16"], r["train_py"], r["delay_s"] * 1000
    lines = ["# GPU benchmark: `python bench.py gpu`", "",
             f"{r['device']}, torch {r['torch']}; `{r['config']}`, {r['batch_size']} x {r['seq_len']} tokens per "
             f"update (one micro-batch), vocabulary {r['vocab_size']:,} (the built-in corpus, FULL-SENTENCES); "
             f"train.py --compile, {r['steps']} updates per run, timed over the second half by its own meter. MFU over "
             f"{bare['peak'] / 1e12:,.1f} TFLOP/s ({bare['peak_label']}). "
             f"{r['seconds']:.0f} s for the whole command.", "",
             "| what | precision | tokens/s | ms per update | MFU | vs the bare step | graph breaks | recompiles |",
             "|---|---|---|---|---|---|---|---|",
             f"| bare compiled step (train_step alone, train.py's first updates) | bf16 | "
             f"{bare['tokens_per_s']:,.0f} | "
             f"{bare['seconds_per_update'] * 1000:.1f} | {bare['mfu']:.1%} | 1.00 | {bare['graph_breaks']} | "
             f"{bare['recompiles_after_warm_up']} after the warm-up ({bare['graphs_at_warm_up']} graphs in it) |"]
    for amp in ("bf16", "fp16"):
        if amp in runs:
            x = runs[amp]
            lines.append(f"| train.py | {amp} | {x['tokens_per_s']:,.0f} | {x['ms_per_update']:.1f} | {x['mfu']:.1%} | "
                         f"{x['tokens_per_s'] / bare['tokens_per_s']:.2f} | {x['graph_breaks']} | {x['recompiles']} in "
                         f"the whole run (1: the padded graph, at the warm-up) |")
    hf = r["transformers_eager_bf16"]
    lines.append(f"| transformers RobertaForMaskedLM, eager, one micro-batch | bf16 | {hf['tokens_per_s']:,.0f} | "
                 f"{hf['seconds_per_step'] * 1000:.1f} | - | {hf['tokens_per_s'] / bare['tokens_per_s']:.2f} | - | - |"
                 if hf else "| transformers RobertaForMaskedLM, eager | bf16 | not installed | - | - | - | - | - |")
    base, thread, inline = (runs[k]["ms_per_update"] for k in ("bf16", "delay, thread", "delay, in the loop"))
    lines += ["", f"The batch thread: preparing an update (collate, mask) takes {r['prepare_s'] * 1000:.1f} ms on the "
              f"CPU; {bare['padded_share']:.0%} of the micro-batches are padded (the built-in corpus's blocks end at "
              f"line ends). With {delay:.1f} ms of sleep added to each preparation (half the bare step), "
              f"train.py bf16:",
              "", "| preparation | ms per update | of the added time, hidden |", "|---|---|---|",
              f"| as it is, thread | {base:.1f} | |",
              f"| +{delay:.1f} ms, in the loop (--prefetch 0) | {inline:.1f} | {1 - (inline - base) / delay:.0%} |",
              f"| +{delay:.1f} ms, thread | {thread:.1f} | {1 - (thread - base) / delay:.0%} |", "",
              f"Warm-up (compiling both graphs, cold or from inductor's cache as found) of the bare step: "
              f"{bare['warm_up_s']:.0f} s; train.py runs, whole: " +
              ", ".join(f"{k} {v['wall_s']:.0f} s" for k, v in runs.items()) + "."]
    return "\n".join(lines) + "\n"


def bench_gpu(args):
    """The GPU table in one command (about 5 minutes on an H100/H200): refused without CUDA."""
    if not torch.cuda.is_available():
        raise ValueError("bench.py gpu: no CUDA device on this machine (the CPU figures: bench.py model, "
                         "bench.py compile)")
    if not torch.cuda.is_bf16_supported():
        raise ValueError(f"bench.py gpu: {torch.cuda.get_device_name()} has no bfloat16 (the table is bf16's)")
    out = args.out
    if os.path.exists(out) and not args.overwrite:
        raise FileExistsError(f"--out {out} exists; pass --overwrite to replace it")
    args.device = "cuda"
    r = gpu_results(args, torch.device("cuda"))
    text = gpu_markdown(r)
    files.write_atomic(os.path.splitext(out)[0] + ".json", json.dumps(r, indent=1) + "\n")
    files.write_atomic(out, text)
    print(text + f"\nwritten: {out} and {os.path.splitext(out)[0]}.json")
