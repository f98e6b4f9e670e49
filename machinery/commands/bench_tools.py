"""bench.py's measuring tools, shared with bench_device.py: timing, memory, train.py as a command, a bare step."""
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
import os
import subprocess
import sys
import time

import torch

import bpe
import roberta
from machinery.basics import cli, files
from machinery.commands import corpora
from machinery.datafolder import preparation

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository


def timed(fn, *args, repeat=5):
    """(best seconds of `repeat` runs, result): on a shared, noisy machine the minimum is what reproduces."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t)
    return best, out


def interleaved(steps, rounds):
    """Best seconds of each step function, run in turns so that machine noise hits all of them alike."""
    rows = [[timed(step, repeat=1)[0] for step in steps] for _ in range(rounds)]
    return [min(column) for column in zip(*rows)]


def memory_mb(field="VmHWM", status=None):
    """A figure of /proc/PID/status (this process's by default) in MB: VmHWM, the peak resident memory (not ru_maxrss,
    which survives exec: a process started from a big one would report its parent's peak); RssAnon, the private."""
    status = status or files.read_text("/proc/self/status")
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith(field)) / 1024


def in_fresh_process(fn, *args):
    """fn(*args) in a fresh process (fn at the top of a module), its failure one line."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return pool.submit(fn, *args).result()
        except Exception as e:  # noqa: BLE001 (the worker's error, or its death: BrokenProcessPool)
            raise RuntimeError(f"the measured process failed: {type(e).__name__}: {cli.describe(e)}".splitlines()[0])


def run_command(args, what, **run):
    """A Python script of this project run with its options: the finished process; a failure one line naming `what`."""
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, **run)
    if r.returncode != 0:
        raise RuntimeError(f"{what} failed (exit code {r.returncode}): "
                           f"{(r.stderr.strip().splitlines() or ['no message'])[-1]}")
    return r


def train_py(what, data_dir, out, args, *options, **run):
    """`python train.py` with args' sizes and device and `options`, evaluating (8 sequences) and saving at its end."""
    return run_command(["train.py", "--data", data_dir, "--out", out, "--seq-len", str(args.seq_len), "--batch-size",
                        str(args.batch_size), "--device", args.device, "--eval-interval", str(10 ** 9),
                        "--save-interval", str(10 ** 9), "--eval-sequences", "8", *map(str, options)], what, **run)


AMP_DTYPES = {"none": torch.float32, "bf16": torch.bfloat16}


def mlm_batch(cfg, batch, seq_len, device="cpu", seed=0):  # random ordinary tokens (no padding), 15% targets
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, cfg.vocab_size - 1, (batch, seq_len), generator=g)
    labels = torch.where(torch.rand(batch, seq_len, generator=g) < 0.15, ids, -100)
    return ids.to(device), labels.to(device)


def machine(device):  # a CUDA device's name, or the CPU threads torch uses
    return torch.cuda.get_device_name(device) if "cuda" in str(device) else f"{torch.get_num_threads()} CPU threads"


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step(model, ids, labels, amp, loss_fn=lambda m, i, y: m(i, labels=y, padded=False)):
    """A closure: one training step (forward, backward, AdamW), warmed up, the device waited for at both ends;
    loss_fn: ours by default (mlm_batch has no padding: attention without a mask)."""
    device = ids.device
    opt = roberta.adamw(model, lr=1e-4, weight_decay=0.01)

    def step():
        synchronize(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            loss = loss_fn(model, ids, labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        synchronize(device)
    step()  # warm-up: allocations, optimizer state, compiling
    return step


def hf_twin(model):  # transformers' RobertaForMaskedLM with our model's weights, on the same device
    import transformers
    from machinery.formats import hf
    transformers.logging.set_verbosity_error()
    config = {k: v for k, v in hf.hf_config(model).items() if k != "architectures"}
    twin = transformers.RobertaForMaskedLM(transformers.RobertaConfig(**config))
    missing, unexpected = twin.load_state_dict(hf.to_hf_state(model), strict=False)
    assert not unexpected and all("decoder" in k for k in missing), (missing, unexpected)
    return twin.to(next(model.parameters()).device).train()


def builtin_data(folder, vocab_size):  # the built-in corpus, a tokenizer of it and the prepared data, in `folder`
    corpus = corpora.builtin_corpus(os.path.join(folder, "corpus.txt"))
    bpe.Tokenizer.train(files.read_lines(corpus), vocab_size).save(os.path.join(folder, "tok"))
    preparation.prepare([corpus], os.path.join(folder, "tok"), os.path.join(folder, "data"), verbose=False)
    return os.path.join(folder, "data")
