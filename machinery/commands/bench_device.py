"""`python bench.py compile`: train.py's step eager vs torch.compile'd (graphs, breaks, recompiles); `python bench.py
gpu`: the GPU table (train.py vs the bare compiled step vs transformers, MFU, bf16 vs fp16, the batch thread)."""
import importlib.util
import itertools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

import torch

import bpe
import data
import roberta
import train
from machinery.basics import batches, files, speed
from machinery.formats import prepared
from machinery.commands.bench_tools import (timed, interleaved, mlm_batch, synchronize, train_step, train_py, hf_twin,
                                            builtin_data, machine)


def step_trainer(model, micro, seq_len, amp, compiled, backend="inductor", exact=False):
    """(train.py's Trainer of `model`: eager, compiled as train.py does or, exact, as it did before, its warm-up s)."""
    device = next(model.parameters()).device
    cfg = train.TrainConfig(seq_len=seq_len, batch_size=micro, micro_batch_size=micro, compile=compiled,
                            device=str(device), amp=amp)
    tr = train.Trainer(cfg, model, model, roberta.adamw(model, lr=1e-4, weight_decay=0.01), None,  # amp: none, bf16
                       torch.bfloat16 if amp == "bf16" else None, device, 0, 1, None)
    t = time.perf_counter()
    if compiled and exact:
        tr = tr._replace(model=torch.compile(model, backend=backend))
    elif compiled:
        tr = speed.compile_trainer(tr, micro, backend=backend)
        if tr.static is None:
            raise RuntimeError("torch.compile failed (see the warning above)")
    synchronize(device)
    return tr, time.perf_counter() - t


def as_update(mbs, pad_id):  # a train.Batch of CPU (ids, labels) micro-batches, as train.py makes them
    counts = [sum(int(y.ne(-100).sum()) for _, y in mbs), sum(int(i.ne(pad_id).sum()) for i, _ in mbs)]
    micro = [(i, y, None, bool(i.eq(pad_id).any()), 1.0) for i, y in mbs]
    return train.Batch(micro, counts, sum(len(i) for i, _ in mbs))


def compile_updates(cfg, batch, seq_len):
    """4 updates of one micro-batch (the last half padded); one of each other kind (accumulation, partial, ...)."""
    timing = [[mlm_batch(cfg, batch, seq_len, seed=i)] for i in range(4)]
    timing[-1][0][0][:3, seq_len // 2:], timing[-1][0][1][:3, seq_len // 2:] = cfg.pad_id, -100
    varied = [[mlm_batch(cfg, rows, seq_len - 8 * (i % 2), seed=100 + 10 * i + j) for j, rows in enumerate(sizes)]
              for i, sizes in enumerate([[batch, batch], [batch, max(1, batch - 3)], [1], [batch, max(1, batch // 2)]])]
    ids, labels = varied[2][0]  # the single sequence
    ids[0, 5:], labels[0, 5:] = cfg.pad_id, -100
    varied[3][1][1][:] = -100  # the last update's second micro-batch
    return [as_update(mbs, cfg.pad_id) for mbs in timing], [as_update(mbs, cfg.pad_id) for mbs in varied]


def run_updates(tr, updates):  # a closure: train.py's train_step over `updates`, the device waited for at both ends
    def run():
        synchronize(tr.device)
        for batch in updates:
            train.train_step(tr, batch, batch.counts[0])
        synchronize(tr.device)
    return run


def bench_compile(args):
    """train_step eager and compiled, interleaved; graphs per forward (1: no break) and after the warm-up."""
    torch._dynamo.reset()
    print(f"torch {torch.__version__}, {machine(args.device)}, backend {args.backend}, fp32; {args.steps} interleaved "
          f"rounds of 4 updates (one padded), the best; then one of each other kind, untimed. Load average "
          f"{os.getloadavg()[0]:.1f} on {speed.cpus_allowed()} CPUs.\n\n| config | batch | step | warm-up s | ms per "
          "update | tokens/s | vs eager | graphs per forward | graphs at warm-up | graphs compiled after warm-up |\n"
          + "|---" * 10 + "|")
    for name in args.configs:
        cfg = roberta.RobertaConfig.preset(name, dropout=0.1)
        timing, varied = compile_updates(cfg, args.batch_size, args.seq_len)
        arms = []
        for kind, compiled, exact in [("eager", False, False)] + [("compiled as before (exact targets)", True, True)] \
                * args.before + [("compiled, one shape", True, False)]:
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
            print(f"| {name} | {args.batch_size}x{args.seq_len} | {kind} | {warm_s:.1f} | {s / len(timing) * 1000:.1f} "
                  f"| {sum(b.counts[1] for b in timing) / s:,.0f} | {seconds[0] / s:.2f}x | {graphs} |", flush=True)
        torch._dynamo.reset()


# ------------------------------------------------------------------------------------------ GPU
def spread(values):  # of a row's windows (tokens/s), or of its ms per update
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def row(name, measure):
    """measure(), or {"error": one line} where it fails (out of memory, say): the other rows still run."""
    try:
        return measure()
    except Exception as e:  # noqa: BLE001 (the table says which row failed and why)
        error = f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
        print(f"{name}: failed ({error})", file=sys.stderr, flush=True)
        return {"error": error}
    finally:
        torch.cuda.empty_cache()  # (nothing where CUDA was not used)


def train_py_run(data_dir, out, args, amp):
    """`python train.py`: its meter's tokens/s of each window after the first, MFU, breaks and recompiles logged."""
    t = time.perf_counter()
    r = train_py(f"train.py --amp {amp}", data_dir, out, args, "--config", args.config, "--micro-batch-size",
                 args.batch_size, "--max-steps", (args.windows + 1) * args.steps, "--log-interval", args.steps, "--amp",
                 amp, "--compile" if args.compile else "--no-compile", timeout=args.run_timeout,
                 env={**os.environ, "TORCH_LOGS": "graph_breaks,recompiles"})
    logged = [json.loads(line) for line in files.read_text(os.path.join(out, "log.jsonl")).splitlines()][1:]
    shutil.rmtree(out)
    return {"tokens_per_s": spread([x["tokens_per_s"] for x in logged]), "mfu": logged[-1]["mfu"],
            "wall_s": round(time.perf_counter() - t, 1), "graph_breaks": r.stderr.count("Graph break in user code"),
            "recompiles": r.stderr.count("Recompiling function")}


def train_py_updates(data_dir, args, n):
    """([the first n updates train.py makes of data_dir], the mean seconds one took to prepare, the tokenizer)."""
    cfg = train.TrainConfig(config=args.config, data=data_dir, seq_len=args.seq_len, batch_size=args.batch_size)
    tok = bpe.Tokenizer.load(data_dir)
    tokens, line_ends, _ = prepared.open_prepared(data_dir, tok)
    ex = data.examples(tokens, line_ends, cfg.format, cfg.seq_len, tok.eos_id, cfg.seed)
    ts = train.TrainSet(tokens, ex, data.example_lengths(ex, cfg.format, cfg.seq_len), tok)
    made = train.updates(ts, cfg, args.batch_size, 0, 1, 0, 0, train.global_batches(cfg, ts.lengths, 0))
    t = time.perf_counter()
    out = [next(made)[3] for _ in range(n)]
    return out, (time.perf_counter() - t) / n, tok


def windows(tr, updates, args, prefetch=0, delay=0.0, wait_each=False):
    """Seconds of --windows windows of --steps train_step after one untimed, fed by Prefetch; wait_each: synchronous."""
    ahead = batches.Prefetch(itertools.cycle([(0, 0, 0, b) for b in updates]), prefetch, pin=tr.device.type == "cuda",
                             delay=delay)

    def window():  # ends waiting for the device, so the next starts with an idle one
        for _ in range(args.steps):
            batch = ahead.next()[3]
            train.train_step(tr, batch, batch.counts[0])
            if wait_each:
                synchronize(tr.device)
        synchronize(tr.device)
    try:
        return [timed(window, repeat=1)[0] for _ in range(args.windows + 1)][1:]
    finally:
        ahead.close()


def bare_step(updates, tok, args, device):
    """train_step alone, compiled as train.py does, bf16, on its updates: tokens/s, MFU, graphs, the Trainer."""
    cfg = roberta.RobertaConfig.preset(args.config, vocab_size=len(tok), pad_id=tok.pad_id)
    torch.manual_seed(0)
    model = roberta.RobertaForMaskedLM(cfg).to(device).train()
    counter = speed.GraphCounter() if args.compile else None
    tr, warm_s = step_trainer(model, args.batch_size, args.seq_len, "bf16", args.compile, counter)
    warm_graphs = len(counter.ids) if counter else 0
    tokens = sum(b.counts[1] for b in updates)  # a window's: --steps updates, the ones given
    tps = spread([tokens / s for s in windows(tr, updates, args)])
    flops = 3 * speed.flops_per_token(cfg, args.seq_len, sum(b.counts[0] for b in updates) / tokens)
    peak, label = speed.peak_flops(device, torch.bfloat16)
    return {"tokens_per_s": tps, "mfu": tps["median"] * flops / peak, "peak": peak, "peak_label": label, "trainer": tr,
            "warm_up_s": round(warm_s, 1), "graphs_at_warm_up": warm_graphs, "graph_breaks": counter.frames() - 1
            if counter else 0, "recompiles_after_warm_up": len(counter.ids) - warm_graphs if counter else 0}


def thread_rows(tr, updates, args, delay):
    """ms per update of the bare step, `delay` s added to each preparation: synchronous, in the loop, the thread."""
    kinds = {"synchronous loop": dict(wait_each=True), "in the loop (--prefetch 0)": {}, "thread (--prefetch 2)":
             dict(prefetch=2)}
    ms = lambda how: spread([s / args.steps * 1000 for s in windows(tr, updates, args, delay=delay, **how)])  # noqa
    return {name: row(name, lambda: ms(how)) for name, how in kinds.items()}


def transformers_eager(tr, update, pad_id, args):
    """transformers' twin of tr's model, eager, bf16, on a micro-batch of train.py's: tokens/s (None: not installed)."""
    if importlib.util.find_spec("transformers") is None:
        return None
    ids, labels = (t.to(tr.device) for t in update.micro_batches[0][:2])
    hf_loss = lambda m, i, y: m(input_ids=i, attention_mask=i.ne(pad_id), labels=y).loss  # noqa: E731
    step = train_step(hf_twin(tr.body), ids, labels, "bf16", hf_loss)
    seconds = [timed(lambda: [step() for _ in range(args.steps)], repeat=1)[0] for _ in range(args.windows)]
    return {"tokens_per_s": spread([int(ids.ne(pad_id).sum()) * args.steps / s for s in seconds])}


def gpu_results(args, device):
    """Every figure of the GPU table, in one dict (the .json beside the .md), each row measured on its own."""
    started, rows, delay = time.perf_counter(), {}, None
    amps = ("bf16", "fp16") if device.type == "cuda" else ("bf16",)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = builtin_data(tmp, args.vocab_size)
        updates, prepare_s, tok = train_py_updates(data_dir, args, args.steps)
        bare = row("bare step", lambda: bare_step(updates, tok, args, device))
        tr = bare.pop("trainer", None)
        if tr is not None:
            step_s = sum(b.counts[1] for b in updates) / bare["tokens_per_s"]["median"] / args.steps
            n = (args.windows + 1) * args.steps  # thread rows: 3 x 1.5 n steps, transformers ~3 n; train.py: 30 s more
            rest = 7.5 * n * step_s + len(amps) * (30 + bare["warm_up_s"] + n * step_s)
            print(f"bench.py gpu: the bare step took {time.perf_counter() - started:.0f} s; the rest should take about "
                  f"{rest:.0f} s", file=sys.stderr, flush=True)
            delay = round(step_s / 2, 4)  # half a step: the thread can hide all of it
            rows["thread"] = thread_rows(tr, updates, args, delay)
            rows["transformers"] = row("transformers", lambda: transformers_eager(tr, updates[0], tok.pad_id, args))
            del tr
        for amp in amps:
            name = f"train.py {amp}"
            rows[name] = row(name, lambda: train_py_run(data_dir, os.path.join(tmp, amp), args, amp))
    sizes = {k: getattr(args, k) for k in ("config", "seq_len", "batch_size", "steps", "windows", "vocab_size")}
    return {"device": machine(device), "torch": torch.__version__, **sizes, "compiled": args.compile, "bare_bf16": bare,
            "rows": rows, "delay_s": delay, "prepare_s": prepare_s, "seconds": round(time.perf_counter() - started, 1)}


def gpu_markdown(r):  # gpu_results' dict as markdown
    bare, rows = r["bare_bf16"], r["rows"]
    ok = lambda x: x is not None and "error" not in x  # noqa: E731

    def line(what, amp, x, graphs=lambda x: "- | -"):  # | tokens/s | vs the bare step | MFU | breaks | recompiles |
        if not ok(x):
            return f"| {what} | {amp} | {'not installed' if x is None else x['error']} | - | - | - | - |"
        t, mfu = x["tokens_per_s"], x.get("mfu")
        ratio = f"{t['median'] / bare['tokens_per_s']['median']:.2f}" if ok(bare) else "-"
        mfu = "-" if "mfu" not in x else "unknown" if mfu is None else f"{mfu:.1%}"
        tps = f"{t['min']:,.0f} / {t['median']:,.0f} / {t['max']:,.0f}"
        return f"| {what} | {amp} | {tps} | {ratio} | {mfu} | {graphs(x)} |"
    lines = ["# GPU benchmark: `python bench.py gpu`", "",
             f"{r['device']}, torch {r['torch']}; `{r['config']}`, {r['batch_size']} x {r['seq_len']} tokens per "
             f"update, vocabulary {r['vocab_size']:,} (the built-in corpus); {'compiled' if r['compiled'] else 'eager'}"
             f". Every row: {r['windows']} timed windows of {r['steps']} updates after an untimed one (train.py's: its "
             f"meter's), batches pinned; tokens/s min / median / max. " + (f"MFU over {bare['peak'] / 1e12:,.4g} "
             f"TFLOP/s ({bare['peak_label']}). " if ok(bare) else "") + f"{r['seconds']:.0f} s in all.", "",
             "| what | precision | tokens/s (min / median / max) | vs the bare step | MFU | graph breaks | recompiles "
             "|\n" + "|---" * 7 + "|",
             line("bare step (train_step alone, train.py's updates)", "bf16", bare, lambda x: f"{x['graph_breaks']} | "
                  f"{x['recompiles_after_warm_up']} after the warm-up ({x['graphs_at_warm_up']} graphs in it)")]
    lines += [line("train.py", amp, rows[f"train.py {amp}"], lambda x: f"{x['graph_breaks']} | {x['recompiles']} in "
                   "the run") for amp in ("bf16", "fp16") if f"train.py {amp}" in rows]
    if "transformers" in rows:
        lines.append(line("transformers RobertaForMaskedLM, eager", "bf16", rows["transformers"]))
    if rows.get("thread"):
        lines += ["", f"The batch thread, on the bare step: preparing an update takes {r['prepare_s'] * 1000:.1f} ms "
                  f"on the CPU; with {r['delay_s'] * 1000:.1f} ms of sleep added to each preparation (half a step):",
                  "", "| preparation | ms per update (min / median / max) |", "|---|---|"]
        lines += [f"| {name} | " + (x["error"] if "error" in x else f"{x['min']:.1f} / {x['median']:.1f} / "
                                    f"{x['max']:.1f}") + " |" for name, x in rows["thread"].items()]
    if ok(bare):
        lines += ["", f"Warm-up of the bare step (compiling both graphs): {bare['warm_up_s']:.0f} s; train.py runs, "
                  "whole: " + ", ".join(f"{k[9:]} {v['wall_s']:.0f} s" for k, v in rows.items()
                                        if k.startswith("train.py") and ok(v)) + "."]
    return "\n".join(lines) + "\n"


def bench_gpu(args):
    """The GPU table in one command, planned to take at most 5 minutes on an H100: refused without CUDA."""
    if not torch.cuda.is_available():
        raise ValueError("bench.py gpu: no CUDA device on this machine (the CPU figures: bench.py model, "
                         "bench.py compile)")
    if not torch.cuda.is_bf16_supported():
        raise ValueError(f"bench.py gpu: {torch.cuda.get_device_name()} has no bfloat16 (the table is bf16's)")
    if os.path.exists(args.out) and not args.overwrite:
        raise FileExistsError(f"--out {args.out} exists; pass --overwrite to replace it")
    args.device, args.compile = "cuda", True
    print(f"bench.py gpu: the bare step, 3 batch-thread rows, transformers, train.py bf16 and fp16, each {args.windows}"
          f" windows of {args.steps} updates after one untimed; at most 5 minutes on an H100", file=sys.stderr)
    write_gpu_table(gpu_results(args, torch.device("cuda")), args.out)


def write_gpu_table(r, out):  # the markdown and the .json beside it
    text = gpu_markdown(r)
    files.write_atomic(os.path.splitext(out)[0] + ".json", files.json_text(r, indent=1) + "\n")
    files.write_atomic(out, text)
    print(text + f"\nwritten: {out} and {os.path.splitext(out)[0]}.json")
