"""RoBERTa pretraining: masked language modelling with the paper's recipe, from a laptop CPU to many GPUs.

    python train.py                                  # the built-in demo: corpus, tokenizer, model, run
    python train.py --config tiny --data DIR --out DIR
    torchrun --standalone --nproc_per_node 8 train.py --config base --data DIR --out DIR --amp bf16

What the paper changes from BERT, and where it is here:
  - dynamic masking, a new mask each time a sequence is served (Section 4.1): data.Masking, data.mask_tokens
  - FULL-SENTENCES inputs without next-sentence prediction (Section 4.2): --format, data.FORMATS
  - large batches (Section 4.3): --batch-size sequences per update, reached by gradient accumulation
    over --micro-batch-size per process, with no gradient all-reduce on the non-final micro-batches
  - Adam beta2 = 0.98, eps = 1e-6, linear warmup then linear decay (Section 3.1, Table 9): roberta.adamw, lr_at

The logged loss is the mean over every masked token of the whole update, on every process, so the same
--batch-size gives the same losses for any number of processes (footnote 8, made checkable).
Losses are natural-log cross-entropies (fairseq logs base 2: divide by ln 2); valid_ppl = exp(valid_loss).
"""
import argparse
import contextlib
import json
import math
import os
import queue
import re
import shutil
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist

import bpe
import data
import roberta
from machinery import checkpoints, cli, files


@dataclass
class TrainConfig:
    """Every setting of a run. The defaults are the `tiny` recipe; RECIPES changes some per --config."""
    config: str = "tiny"
    data: str = ""
    out: str = "out"
    seq_len: int = 128
    batch_size: int = 16           # sequences per optimizer update, across all processes
    micro_batch_size: int = 0      # sequences per forward/backward per process (0: no accumulation)
    lr: float = 1e-3
    warmup_steps: int = 100
    max_steps: int = 1000
    weight_decay: float = 0.01
    clip_grad: float = 0.0         # the paper does not clip
    amp: str = "none"              # none | bf16 | fp16 (GPU only)
    format: str = "full-sentences"
    masking: "data.Masking" = field(default_factory=lambda: data.Masking())  # rate, split, dynamic (Section 4.1)
    dropout: float = 0.1
    max_positions: int = 512       # the model's position table (RoBERTa: 512)
    seed: int = 0
    log_interval: int = 10
    eval_interval: int = 200
    eval_sequences: int = 512      # held-out sequences per evaluation (the same set for any process count)
    save_interval: int = 200
    max_bad_steps: int = 5         # consecutive non-finite losses before the run stops
    device: str = ""               # cpu, cuda, cuda:N; "" = cuda when available
    compile: bool = None           # torch.compile; None = on for CUDA
    prefetch: int = 2              # updates prepared ahead by a background thread (0: in the loop)
    prepare_delay: float = 0.0     # seconds added to each update's preparation (to benchmark the overlap)
    resume: bool = False
    overwrite: bool = False


# Pretraining recipes. base and large are Table 9 (8K sequences of 512 tokens per update, 500K updates);
# tiny (the defaults above) and small are classroom runs that finish on a CPU.
RECIPES = {
    "tiny": dict(),
    "small": dict(batch_size=64, lr=5e-4, warmup_steps=500, max_steps=10_000),
    "base": dict(seq_len=512, batch_size=8192, lr=6e-4, warmup_steps=24_000, max_steps=500_000),
    "large": dict(seq_len=512, batch_size=8192, lr=4e-4, warmup_steps=30_000, max_steps=500_000),
}


def lr_at(step, cfg):
    return roberta.linear_lr(step, cfg.lr, cfg.warmup_steps, cfg.max_steps)


class Stop(Exception):
    """A clear, one-line reason to end the run (printed without a traceback)."""


# ---------------------------------------------------------------------------------------- setup
def setup_distributed(device_name):
    """(rank, world, device, cpu_group). torchrun sets RANK/WORLD_SIZE; a plain `python train.py` is one
    process. cpu_group: a gloo group for the small CPU-side all-reduces (no device sync on a GPU)."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank, local = int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
    name = device_name or ("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise Stop(f"--device {name}: no CUDA device is available (use --device cpu)")
    device = torch.device(name)
    if device.type == "cuda":
        device = torch.device("cuda", local if device.index is None else device.index)
        if device.index >= torch.cuda.device_count():
            raise Stop(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
        torch.cuda.set_device(device)
    if world == 1:
        return rank, world, device, None
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device, dist.new_group(backend="gloo") if device.type == "cuda" else None


def all_sum(values, world, group=None, device="cpu"):
    """Sum a list of numbers over all processes (one all-reduce)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if world > 1:
        dist.all_reduce(t, group=group)
    return t.tolist()


def check_settings(cfg, world, device):
    """Settings that depend on the process count or the device, before any heavy work."""
    fmt = data.check_format(cfg.format)
    micro = cfg.micro_batch_size or max(cfg.batch_size // world, 1)
    if not fmt.by_tokens and cfg.batch_size % (micro * world):
        raise Stop(f"--batch-size {cfg.batch_size} is not divisible by --micro-batch-size {micro} "
                   f"x {world} processes")
    if cfg.amp == "fp16" and device.type != "cuda":
        raise Stop("--amp fp16 needs a GPU (it loses range on CPU); use --amp bf16")
    if cfg.seq_len > cfg.max_positions:
        raise Stop(f"--seq-len {cfg.seq_len} is longer than the model's {cfg.max_positions} positions "
                   f"(pass --max-positions to build a model with more)")
    return micro


def build_model(cfg, tok):
    model_cfg = roberta.RobertaConfig.preset(
        cfg.config, vocab_size=len(tok), pad_id=tok.pad_id, dropout=cfg.dropout, attention_dropout=cfg.dropout,
        max_positions=cfg.max_positions, next_sentence_head=data.FORMATS[cfg.format].pairs)
    torch.manual_seed(cfg.seed)
    return roberta.RobertaForMaskedLM(model_cfg)


def maybe_compile(model, cfg, device, master):
    """torch.compile (on by default on CUDA). Compiling happens at the first call, so one forward and
    backward on a short sequence try it here, with the random state put back and the gradients dropped;
    where it fails (no compiler toolchain, an unsupported platform) the run goes on eagerly, with a warning."""
    if not (cfg.compile if cfg.compile is not None else device.type == "cuda"):
        return model
    try:
        compiled, body_cfg = torch.compile(model), getattr(model, "module", model).cfg
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            ids = torch.full((1, 16), body_cfg.pad_id + 1, device=device)
            nsp = torch.zeros(1, dtype=torch.long, device=device) if body_cfg.next_sentence_head else None
            out = compiled(ids, labels=ids, reduction="sum", nsp_labels=nsp, padded=False)
            sum(out if isinstance(out, tuple) else [out]).backward()
        return compiled
    except Exception as e:
        if master:
            print(f"warning: torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}); "
                  f"training eagerly", file=sys.stderr)
        return model
    finally:
        model.zero_grad(set_to_none=True)


# ---------------------------------------------------------------------------------------- checkpoints
def save_checkpoint(path, model, opt, scaler, cfg, state, rng_states, tok_hash):
    ckpt = {"model": model.state_dict(), "config": asdict(model.cfg), "class": "RobertaForMaskedLM",
            "train": asdict(cfg), "optimizer": opt.state_dict(), "scaler": scaler.state_dict() if scaler else None,
            "state": state, "rng": rng_states, "tokenizer_sha256": tok_hash}
    checkpoints.save(path, ckpt)  # atomic: a kill leaves the previous checkpoint whole


def rng_state(device):
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.zeros(0, dtype=torch.uint8)}


RESUME_KEYS = ("batch_size", "seq_len", "format", "masking", "seed", "max_positions")


def read_resume(cfg, tok_hash):
    """The checkpoint to resume, checked against this run's settings before any heavy work."""
    path = os.path.join(cfg.out, "checkpoint.pt")
    if not os.path.isfile(path):
        raise Stop(f"--resume: no checkpoint.pt in {cfg.out} (on several nodes --out must be a folder every "
                   f"node shares)")
    ckpt = checkpoints.read_checkpoint(path)
    if ckpt.get("tokenizer_sha256") != tok_hash:
        raise Stop(f"{path}: trained with another tokenizer than {cfg.data}'s")
    if "optimizer" not in ckpt or "state" not in ckpt:
        raise Stop(f"{path}: a model without training state (not a train.py checkpoint)")
    for key in RESUME_KEYS:
        was, now = ckpt["train"].get(key), getattr(cfg, key)
        now = asdict(now) if key == "masking" else now
        if was != now:
            raise Stop(f"{path}: --{key.replace('_', '-')} was {was}, now {now}: the run would not continue "
                       f"the same data")
    return ckpt


def restore(ckpt, model, opt, scaler, cfg, rank, device):
    if ckpt["config"] != asdict(model.cfg):
        diff = [k for k in ckpt["config"] if ckpt["config"][k] != asdict(model.cfg).get(k)]
        raise Stop(f"{cfg.out}: its model differs from --config {cfg.config} ({', '.join(diff)})")
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    if scaler and ckpt["scaler"]:
        scaler.load_state_dict(ckpt["scaler"])
    rng = ckpt["rng"][rank] if rank < len(ckpt["rng"]) else ckpt["rng"][0]
    torch.set_rng_state(rng["cpu"])
    if device.type == "cuda" and rng["cuda"].numel():
        torch.cuda.set_rng_state(rng["cuda"], device)
    return dict(ckpt["state"])


def prepare_out(cfg, tok, model_cfg, world, start_step):
    """The output folder: refuse to replace a finished run by accident; the tokenizer, the settings, and
    on resume the log cut back to the checkpoint (the resumed run writes those lines again, identically)."""
    if os.path.exists(cfg.out) and not os.path.isdir(cfg.out):
        raise Stop(f"--out {cfg.out}: a file is in the way (it must be a folder)")
    os.makedirs(cfg.out, exist_ok=True)
    tok.save(cfg.out)  # the folder is all evaluate.py and finetune.py need
    keep_log_until(os.path.join(cfg.out, "log.jsonl"), start_step)
    settings = {"train": asdict(cfg), "model": asdict(model_cfg), "processes": world}
    files.write_atomic(os.path.join(cfg.out, "train_config.json"), json.dumps(settings, indent=2))


def check_fresh_out(cfg, master):
    """A new run: refuse an --out that holds a checkpoint, unless --overwrite (then start again there)."""
    ckpt = os.path.join(cfg.out, "checkpoint.pt")
    if not os.path.isfile(ckpt):
        return
    if not cfg.overwrite:
        raise Stop(f"{cfg.out} already holds a checkpoint: pass --resume to continue it, --overwrite to "
                   f"start again, or choose another --out")
    if master:
        for name in ("checkpoint.pt", "log.jsonl"):
            if os.path.exists(os.path.join(cfg.out, name)):
                os.remove(os.path.join(cfg.out, name))


def log(path, record):
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def keep_log_until(path, step):
    if not os.path.isfile(path):
        return
    with open(path) as f:
        lines = [line for line in f if line.strip() and json.loads(line).get("step", 0) <= step]
    files.write_atomic(path, "".join(lines))


# ---------------------------------------------------------------------------------------- batches
class Update(NamedTuple):
    """This process's share of one optimizer update, prepared on the CPU."""
    micro_batches: list   # (inputs, labels, next-sentence labels or None, padded, weight)
    counts: list          # [masked targets, real tokens] of this process
    n_sequences: int      # of the whole (global) update


class Batches:
    """The updates of the run in order, from (epoch, position, offset) on: each global batch of data.epoch_batches,
    this process's share cut into micro-batches, collated and masked (data.mask_batch). A background
    thread prepares the next updates while the current one runs (pinned memory on CUDA), and the order
    never depends on timing: resume and any process count see the same updates."""

    def __init__(self, tokens, ex, lengths, tok, cfg, micro, rank, world, pin, epoch, position, offset):
        self.tokens, self.ex, self.lengths, self.tok, self.cfg = tokens, ex, lengths, tok, cfg
        self.micro, self.rank, self.world, self.pin = micro, rank, world, pin
        self.budget = cfg.batch_size * cfg.seq_len if data.FORMATS[cfg.format].by_tokens else None
        batches = self.epoch(epoch, position, offset)
        if position == 0 and batches.get(0) is None:
            raise Stop(f"{cfg.data}: too little data for one batch of {cfg.batch_size} sequences of {cfg.seq_len}")
        self.updates = self._updates(epoch, position, batches)
        self.queue, self.stopping, self.thread = queue.Queue(maxsize=max(cfg.prefetch, 1)), threading.Event(), None
        if cfg.prefetch:  # prepare in the background; with --prefetch 0, in the loop when asked
            self.thread = threading.Thread(target=self._produce, daemon=True)
            self.thread.start()

    def epoch(self, epoch, position=0, offset=0):
        return data.epoch_batches(self.lengths, self.cfg.batch_size, self.cfg.seed, epoch, self.budget,
                                  position, offset)

    def _updates(self, epoch, position, batches):
        """(epoch, position and offset after this update, Update), epoch after epoch; batches are found as
        they are needed, so that no process orders a whole epoch at once."""
        while True:
            while (batch := batches.get(position)) is not None:
                position += 1
                yield epoch, position, batches.start(position), self.prepare(batch, epoch)
            epoch, position = epoch + 1, 0
            batches = self.epoch(epoch)

    def _produce(self):
        try:
            for item in self.updates:
                if self.stopping.is_set():
                    return
                self._put(item)
        except BaseException as e:  # handed to the training loop, which raises it
            self._put(e)

    def _put(self, item):
        while not self.stopping.is_set():
            try:
                return self.queue.put(item, timeout=0.1)
            except queue.Full:
                continue

    def prepare(self, global_batch, epoch):
        mine, weight = data.shard(global_batch, self.rank, self.world), 1.0
        if len(mine) == 0:  # fewer examples than processes: run one sequence with weight 0, so that this
            mine, weight = global_batch[:1], 0.0  # process still joins the gradient all-reduce
        micro_batches, counts = [], [0, 0]
        for i in range(0, len(mine), self.micro):
            idx = mine[i:i + self.micro]
            ids, nsp = data.collate(self.tokens, self.ex[idx], self.cfg.seq_len, self.tok, self.cfg.format)
            inputs, labels = data.mask_batch(ids, idx, self.tok, self.cfg.seed, epoch, self.cfg.masking)
            if weight == 0:
                labels = torch.full_like(labels, -100)
            counts[0] += int((labels != -100).sum())
            counts[1] += int((ids != self.tok.pad_id).sum()) if weight else 0
            padded = bool((ids == self.tok.pad_id).any())
            tensors = [t.pin_memory() if self.pin and t is not None else t for t in (inputs, labels, nsp)]
            micro_batches.append((*tensors, padded, weight))
        time.sleep(self.cfg.prepare_delay)  # 0 unless benchmarking the overlap (bench.py overlap)
        return Update(micro_batches, counts, len(global_batch))

    def next(self):
        """(epoch, position and offset after this update, Update)."""
        if self.thread is None:
            return next(self.updates)
        while True:
            try:
                item = self.queue.get(timeout=1.0)
                break
            except queue.Empty:
                if not self.thread.is_alive():
                    raise RuntimeError("the batch-preparing thread ended without a batch") from None
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self):
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=5)


# ---------------------------------------------------------------------------------------- one update
class Run(NamedTuple):
    """What the training steps share."""
    cfg: TrainConfig
    model: torch.nn.Module   # what forward/backward call (DDP- and compile-wrapped)
    body: torch.nn.Module    # the plain RobertaForMaskedLM: checkpoints and evaluation use it
    opt: torch.optim.Optimizer
    scaler: object           # a GradScaler for fp16, else None
    amp_dtype: object
    device: torch.device
    rank: int
    world: int
    cpu_group: object


def forward_backward(run, update, n_targets):
    """Backward of every micro-batch; returns the update's loss sums [MLM, NSP] on the device, summed over
    processes (no host sync). The loss is the sum over every target of the update divided by the
    number of targets of the whole update, so any split over processes and micro-batches gives the same."""
    sums = torch.zeros(2, dtype=torch.float64, device=run.device)
    for i, (inputs, labels, nsp, padded, weight) in enumerate(update.micro_batches):
        inputs, labels = inputs.to(run.device, non_blocking=True), labels.to(run.device, non_blocking=True)
        nsp = None if nsp is None else nsp.to(run.device, non_blocking=True)
        last = i == len(update.micro_batches) - 1
        sync = run.model.no_sync() if run.world > 1 and not last else contextlib.nullcontext()
        with sync, torch.autocast(run.device.type, dtype=run.amp_dtype or torch.float32,
                                  enabled=run.amp_dtype is not None):
            out = run.model(inputs, labels=labels, reduction="sum", nsp_labels=nsp, padded=padded)
            mlm, nsp_loss = out if isinstance(out, tuple) else (out, None)
            # DDP averages gradients over processes: scale by `world` to get the sum over all
            loss = mlm / max(n_targets, 1) * run.world
            if nsp_loss is not None:
                loss = loss + nsp_loss * weight / update.n_sequences * run.world
            (run.scaler.scale(loss) if run.scaler else loss).backward()
        sums[0] += mlm.detach()
        if nsp_loss is not None:
            sums[1] += nsp_loss.detach() * weight
    if run.world > 1:
        dist.all_reduce(sums)
    return sums


def apply_update(run, finite):
    """The optimizer step, skipped on the device when the loss was not finite: fused AdamW takes a
    `found_inf` flag, the mechanism GradScaler uses for fp16, so no host sync is needed here."""
    if run.scaler:
        run.scaler.unscale_(run.opt)
    if run.cfg.clip_grad > 0:
        torch.nn.utils.clip_grad_norm_(run.body.parameters(), run.cfg.clip_grad)
    if run.scaler:
        run.scaler.step(run.opt)  # skips on inf/NaN gradients, and adjusts the loss scale
        run.scaler.update()
    else:
        run.opt.found_inf = (~finite).float()
        run.opt.step()
    run.opt.zero_grad(set_to_none=True)


# ---------------------------------------------------------------------------------------- log, evaluate, save
def log_record(run, step, sums, counts, meter, state):
    """The logged step's numbers (the one host sync of a logged step)."""
    (mlm_sum, nsp_sum), (n_targets, _, n_sequences) = sums.tolist(), counts
    loss = mlm_sum / max(n_targets, 1) + nsp_sum / n_sequences
    elapsed, tokens = time.perf_counter() - meter["t0"], meter["tokens"]
    meter.update(t0=time.perf_counter(), tokens=0)
    tps = tokens / elapsed
    mfu = tps * meter["flops_per_token"] / (meter["peak"] * run.world)
    record = {"step": step, "loss": round(loss, 6) if math.isfinite(loss) else str(loss), "lr": lr_at(step - 1, run.cfg),
              "tokens_per_s": round(tps, 1), "mfu": round(mfu, 4), "epoch": state["epoch"], "skipped": state["skipped"]}
    if not math.isfinite(loss):
        record["skipped"] = "non-finite loss"
    if nsp_sum:
        record["nsp_loss"] = round(nsp_sum / n_sequences, 6)
    if run.scaler:
        record["loss_scale"] = run.scaler.get_scale()
    return record


def evaluate(run, heldout):
    """Held-out masked-LM loss on fixed masks, summed over processes: {valid_loss, valid_ppl} or {}."""
    out = data.evaluate_mlm(run.body, heldout, run.device, run.amp_dtype)
    total, count = all_sum([out["loss_sum"], out["targets"]], run.world, run.cpu_group)
    if not count:
        return {}
    return {"valid_loss": round(total / count, 6), "valid_ppl": round(math.exp(min(total / count, 50)), 4)}


def save(run, state, tok_hash):
    states = [None] * run.world
    if run.world > 1:
        dist.all_gather_object(states, rng_state(run.device), group=run.cpu_group)
    else:
        states = [rng_state(run.device)]
    if run.rank == 0:
        save_checkpoint(os.path.join(run.cfg.out, "checkpoint.pt"), run.body, run.opt, run.scaler, run.cfg,
                        dict(state), states, tok_hash)


# ---------------------------------------------------------------------------------------- training
def train(cfg):
    rank, world, device, cpu_group = setup_distributed(cfg.device)
    try:
        return _train(cfg, rank, world, device, cpu_group)
    finally:
        if world > 1:
            dist.destroy_process_group()


def _train(cfg, rank, world, device, cpu_group):
    micro = check_settings(cfg, world, device)
    tokens, line_ends, meta, tok = open_data(cfg)
    ckpt = read_resume(cfg, meta["tokenizer_sha256"]) if cfg.resume else check_fresh_out(cfg, rank == 0)
    run, state = make_run(cfg, tok, micro, rank, world, device, cpu_group, ckpt)
    ex, lengths = examples_index(cfg, tokens, line_ends, tok, world, cpu_group)
    batches = Batches(tokens, ex, lengths, tok, cfg, micro, rank, world, device.type == "cuda", state["epoch"],
                      state["position"], state["offset"])
    monitor = Monitor(run, state, heldout_set(cfg, tok, micro, rank, world), meta["tokenizer_sha256"])
    try:
        for step in range(state["step"] + 1, cfg.max_steps + 1):
            # the next update: its batches were prepared in the background while the last one ran
            epoch, position, offset, update = batches.next()
            for group in run.opt.param_groups:
                group["lr"] = lr_at(step - 1, cfg)
            # forward and backward of every micro-batch, the loss over the whole update's targets
            n_targets, n_tokens = all_sum(update.counts, world, cpu_group)
            sums = forward_backward(run, update, n_targets)
            # the optimizer step, skipped on the device when the loss is not finite
            finite = torch.isfinite(sums).all()
            apply_update(run, finite)
            state.update(step=step, epoch=epoch, position=position, offset=offset)
            # log, evaluate on the fixed held-out set, stop after too many bad steps, save
            monitor.after_update(step, finite, sums, (n_targets, n_tokens, update.n_sequences))
    finally:
        batches.close()
        monitor.close()
    if world > 1:  # leave together: a process that exits while another still saves can abort it
        dist.barrier(group=cpu_group)
    return run.body, tok


class Monitor:
    """What happens after an update: the counters of non-finite losses (kept on the device), the log (one
    host sync per logged step), held-out evaluation, the progress bar, and checkpoints."""

    def __init__(self, run, state, heldout, tok_hash):
        self.run, self.state, self.heldout, self.tok_hash = run, state, heldout, tok_hash
        self.bad = torch.zeros((), device=run.device)  # non-finite losses in a row
        self.skipped = torch.full((), float(state["skipped"]), device=run.device)
        self.meter = make_meter(run)
        self.bar = progress(run.rank, state["step"], run.cfg.max_steps)

    def after_update(self, step, finite, sums, counts):
        cfg, run = self.run.cfg, self.run
        self.bad, self.skipped = (self.bad + 1) * ~finite, self.skipped + ~finite
        self.meter["tokens"] += counts[1]
        last = step == cfg.max_steps
        record = {}
        if step % cfg.log_interval == 0 or last:
            self.state["skipped"] = int(self.skipped.item())
            record = log_record(run, step, sums, counts, self.meter, self.state)
            self.bar.set_postfix(loss=record["loss"], tok_s=f"{record['tokens_per_s']:.0f}")
        if self.heldout is not None and (step % cfg.eval_interval == 0 or last):
            record = {"step": step, **record, **evaluate(run, self.heldout)}
        if record and run.rank == 0:
            log(os.path.join(cfg.out, "log.jsonl"), record)
        self.bar.update(1)
        check_bad_steps(self.bad, cfg, step, record)
        if (step % cfg.save_interval == 0 or last) and self.bad.item() == 0:  # never right after a skip
            self.state["skipped"] = int(self.skipped.item())
            save(run, self.state, self.tok_hash)

    def close(self):
        self.bar.close()


def make_meter(run):
    """Tokens/s and MFU: model FLOPs per token (3x the forward, the LM head on the masked share) over the
    device's peak for the dtype (roberta.peak_flops)."""
    peak, _ = roberta.peak_flops(run.device, run.amp_dtype or torch.float32)
    flops = 3 * roberta.flops_per_token(run.body.cfg, run.cfg.seq_len, run.cfg.masking.rate)
    return {"t0": time.perf_counter(), "tokens": 0, "peak": peak, "flops_per_token": flops}


def check_bad_steps(bad, cfg, step, record):
    if record and int(bad.item()) >= cfg.max_bad_steps:
        raise Stop(f"{int(bad.item())} non-finite losses in a row at step {step}: stopping; the last good "
                   f"checkpoint in {cfg.out} is intact (try a lower --lr, or --amp bf16)")


def open_data(cfg):
    if not cfg.data:
        raise Stop("--data is required (a folder written by data.py), or run `python train.py` for the demo")
    tokens, line_ends, meta, tok = data.open_prepared(cfg.data)
    if meta["valid"]["tokens"] == 0 and int(os.environ.get("RANK", 0)) == 0:
        print(f"warning: {cfg.data} has no held-out data (its valid split is empty): no evaluation",
              file=sys.stderr)
    return tokens, line_ends, meta, tok


def examples_index(cfg, tokens, line_ends, tok, world, cpu_group):
    """The training examples and their lengths, built once and kept beside the data (data.cached_examples):
    the first process of each node builds it if needed, the others wait, then map it."""
    args = (cfg.data, tokens, line_ends, cfg.format, cfg.seq_len, tok.eos_id, cfg.seed)
    if world == 1:
        return data.cached_examples(*args)
    if int(os.environ.get("LOCAL_RANK", 0)) == 0:
        data.cached_examples(*args)
    dist.barrier(group=cpu_group)
    return data.cached_examples(*args, build=False)


def make_run(cfg, tok, micro, rank, world, device, cpu_group, ckpt):
    """The model, optimizer and loss scaler, restored from `ckpt` when resuming; (Run, training state)."""
    body = build_model(cfg, tok).to(device)
    opt = roberta.adamw(body, cfg.lr, cfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
    state = {"step": 0, "epoch": 0, "position": 0, "offset": 0, "skipped": 0}
    if ckpt:  # a checkpoint saved before offsets were has none: its epoch's batches are then found again
        state = {**state, "offset": None, **restore(ckpt, body, opt, scaler, cfg, rank, device)}
    if rank == 0:
        prepare_out(cfg, tok, body.cfg, world, state["step"])
    model = body
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(body, device_ids=[device] if device.type == "cuda" else None)
    model = maybe_compile(model, cfg, device, rank == 0)
    amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.amp]
    return Run(cfg, model, body, opt, scaler, amp_dtype, device, rank, world, cpu_group), state


def heldout_set(cfg, tok, micro, rank, world):
    """The fixed held-out batches of this process, built once (None when the valid split is empty)."""
    tokens, line_ends, _ = data.load_split(cfg.data, "valid")
    if tokens.size == 0:
        return None
    return data.heldout_batches(tokens, line_ends, tok, cfg.seq_len, micro, cfg.masking, rank, world,
                                cfg.eval_sequences)


def progress(rank, done, total):
    from tqdm import tqdm
    return tqdm(total=total, initial=done, disable=rank != 0, dynamic_ncols=True)


# ---------------------------------------------------------------------------------------- the demo
# `python train.py`: everything from text every Python install carries to a model that visibly learns in
# ~3 minutes of a 2-core CPU. Chosen by measurement (README): a 4,096 vocabulary, small batches at a high
# learning rate, no dropout, and 40% masking rather than the paper's 15% (Wettig et al. 2023 found higher
# rates better; see `python experiments.py mask-rate`), which learns more per token of a small corpus.
DEMO = dict(vocab_size=4096, valid_fraction=0.05, config="tiny", seq_len=128, batch_size=8, lr=2e-3,
            warmup_steps=500, max_steps=3400, dropout=0.0, masking=data.Masking(rate=0.4),
            eval_interval=850, save_interval=850)


def demo(args):
    cache, vocab = os.path.join("cache", "demo"), DEMO["vocab_size"]
    corpus, tok_dir, data_dir = (os.path.join(cache, name) for name in ("corpus.txt", "tokenizer", "data"))
    stamp = os.path.join(cache, "vocab_size.txt")  # a cache made with another vocabulary is made again
    if os.path.isdir(tok_dir) and (not os.path.isfile(stamp) or open(stamp).read().strip() != str(vocab)):
        for folder in (tok_dir, data_dir):
            shutil.rmtree(folder, ignore_errors=True)
    if not os.path.isfile(corpus):
        print("writing the built-in corpus: Python's reference documentation and the standard library's docstrings")
        data.builtin_corpus(corpus)
    if not os.path.isfile(os.path.join(tok_dir, "vocab.json")):
        print(f"training a byte-level BPE tokenizer (vocabulary {DEMO['vocab_size']}) on the built-in corpus")
        bpe.Tokenizer.train(files.read_lines(corpus), vocab, verbose=True).save(tok_dir)
        files.write_atomic(stamp, str(vocab))
    if not os.path.isfile(os.path.join(data_dir, "meta.json")):
        data.prepare([corpus], tok_dir, data_dir, valid_fraction=DEMO["valid_fraction"])
    settings = {k: v for k, v in DEMO.items() if k in {f.name for f in fields(TrainConfig)}}
    cfg = TrainConfig(**{**settings, "max_steps": args.max_steps or DEMO["max_steps"]}, data=data_dir,
                      out=args.out or os.path.join("out", "demo"), seed=args.seed or 0, device=args.device or "")
    cfg.resume = os.path.isfile(os.path.join(cfg.out, "checkpoint.pt"))
    print(f"pretraining a {cfg.config} RoBERTa ({cfg.max_steps} updates of {cfg.batch_size}x{cfg.seq_len} tokens, "
          f"{cfg.masking.rate:.0%} of them masked) into {cfg.out}")
    model, tok = train(cfg)
    report_demo(model, tok, cfg)


def report_demo(model, tok, cfg):
    """Held-out accuracy and perplexity beside two baselines on the same masks, and fill-mask examples."""
    valid, valid_ends, _ = data.load_split(cfg.data, "valid")
    train_tokens, _, _ = data.load_split(cfg.data, "train")
    batches = data.heldout_batches(valid, valid_ends, tok, cfg.seq_len)  # BERT's 15% masks, whatever the training
    device = next(model.parameters()).device
    out = data.evaluate_mlm(model, batches, device, detailed=True)
    base = data.unigram_baselines(train_tokens, batches, tok)
    n, loss = out["targets"], out["loss_sum"] / out["targets"]
    se = math.sqrt(max(out["loss_sq_sum"] / n - loss ** 2, 0) / n)
    acc = out["correct"] / n
    print(f"\nheld-out masked tokens: {n:,}, masked as BERT does (15%; standard errors in brackets)")
    print(f"  this model:             accuracy {acc:6.1%} [{math.sqrt(acc * (1 - acc) / n):.1%}]   "
          f"perplexity {math.exp(loss):8.1f} [{math.exp(loss) * se:.1f}]")
    print(f"  unigram distribution:   {'':24}perplexity {math.exp(base['unigram_loss']):8.1f}")
    print(f"  always {tok.decode([base['most_frequent']])!r:<16} accuracy {base['most_frequent_accuracy']:6.1%}")
    print(f"  held-out perplexity {math.exp(loss):.1f} is {math.exp(loss - base['unigram_loss']):.2f}x the unigram "
          f"baseline's; accuracy {acc:.1%} is {acc / max(base['most_frequent_accuracy'], 1e-9):.1f}x the most "
          f"frequent token's\n")
    for text, guess, truth in fill_mask_examples(model, tok, valid, valid_ends):
        mark = "right" if guess == truth else "wrong"
        print(f"  {mark}: {text}  ->  {guess!r} (true: {truth!r})")


def fill_mask_examples(model, tok, tokens, line_ends, per_kind=3, context=14, max_len=126):
    """Held-out words hidden one at a time, each with its whole line (up to `max_len` tokens) as context:
    the first `per_kind` the model gets right and wrong, as (text around <mask>, the model's guess, the
    true word), at most one of each per line. A line's words go through the model as one batch."""
    found, starts = {True: [], False: []}, np.concatenate([[0], line_ends[:-1]])
    device = next(model.parameters()).device
    model.eval()
    for s, e in zip(starts.tolist(), line_ends.tolist()):
        ids = np.asarray(tokens[s:min(e - 1, s + max_len)], dtype=np.int64)
        words = np.array([p for p, t in enumerate(ids.tolist()) if is_word(tok.decode([t]))], dtype=np.int64)
        if words.size == 0:
            continue
        batch = np.tile(np.concatenate([[tok.bos_id], ids, [tok.eos_id]]), (len(words), 1))
        batch[np.arange(len(words)), words + 1] = tok.mask_id
        with torch.no_grad():
            logits = model(torch.from_numpy(batch).to(device))[torch.arange(len(words)), torch.from_numpy(words) + 1]
        taken = set()  # one of each kind per line, so that the examples come from different lines
        for p, guess in zip(words.tolist(), logits.argmax(-1).tolist()):
            right = guess == ids[p]
            if len(found[right]) < per_kind and right not in taken:
                taken.add(right)
                text = tok.decode(ids[max(0, p - context):p].tolist()) + " <mask>" + \
                    tok.decode(ids[p + 1:p + 1 + context // 2].tolist())
                found[right].append((f"...{text.strip()}...", tok.decode([guess]).strip(), tok.decode([int(ids[p])]).strip()))
        if all(len(v) == per_kind for v in found.values()):
            break
    return found[True] + found[False]


def is_word(piece):
    """A whole word of 4 letters or more with its leading space (not 'the' or 'a', which any baseline guesses)."""
    return piece.startswith(" ") and piece[1:].isalpha() and len(piece) >= 5


# ---------------------------------------------------------------------------------------- command line
def fail(message):
    raise argparse.ArgumentTypeError(message)


def mask_split(text):
    try:
        parts = tuple(float(x) for x in text.split(","))
        data.Masking(split=parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three shares (<mask>,random,unchanged) summing to 1, "
                                         f"like 0.8,0.1,0.1; got {text!r}") from None
    return parts


# (option, argparse type or choices, help). Defaults come from TrainConfig and RECIPES, nowhere else.
OPTIONS = [
    ("config", lambda name: name if name in RECIPES else fail(f"unknown --config {name!r}: choose one of "
                                                             f"{', '.join(RECIPES)}"),
     "model size and recipe: tiny, small (classroom CPUs), base, large (Table 9)"),
    ("data", str, "a folder written by data.py (omit every option for the built-in demo)"),
    ("out", str, "checkpoint.pt, log.jsonl and the tokenizer files go here"),
    ("seq_len", cli.number(int, 8), "tokens per sequence (at most --max-positions)"),
    ("batch_size", cli.number(int, 1), "sequences per optimizer update, all processes together (Section 4.3)"),
    ("micro_batch_size", cli.number(int, 1), "sequences per forward/backward in each process (default: "
                                         "batch-size / processes, no accumulation)"),
    ("lr", cli.number(float, 0, low_open=True), "peak learning rate (Table 9)"),
    ("warmup_steps", cli.number(int, 0), "updates of linear warmup"),
    ("max_steps", cli.number(int, 1), "optimizer updates in all"),
    ("weight_decay", cli.number(float, 0), "AdamW weight decay (not on biases and LayerNorms)"),
    ("clip_grad", cli.number(float, 0), "max gradient norm (0: none, as the paper)"),
    ("amp", ["none", "bf16", "fp16"], "mixed precision (fp16 needs a GPU and uses a loss scaler)"),
    ("format", list(data.FORMATS), "input format of Section 4.2 (the pair formats add the NSP loss)"),
    ("masking", ["dynamic", "static"], "a new mask every epoch, or one of 10 fixed masks (Section 4.1)"),
    ("mask_rate", cli.number(float, 0, 1, low_open=True), "share of tokens that become targets (Section 4.1)"),
    ("mask_split", mask_split, "of the targets: shown as <mask>, random, unchanged"),
    ("dropout", cli.number(float, 0, 0.99), "dropout, also on attention weights"),
    ("max_positions", cli.number(int, 8, 65536), "the model's position table (RoBERTa: 512); for a new model only"),
    ("seed", cli.number(int, 0, 2 ** 31 - 1), "seed of the initialisation, data order, masks and dropout"),
    ("log_interval", cli.number(int, 1), "log every N updates"),
    ("eval_interval", cli.number(int, 1), "evaluate held-out loss every N updates"),
    ("eval_sequences", cli.number(int, 1), "held-out sequences per evaluation"),
    ("save_interval", cli.number(int, 1), "save checkpoint.pt every N updates"),
    ("device", lambda name: name if re.fullmatch(r"cpu|cuda(:\d+)?", name) else fail(
        f"expected cpu, cuda or cuda:N, got {name!r}"), "cpu, cuda or cuda:N (default: cuda when available)"),
    ("prefetch", cli.number(int, 0), "updates prepared ahead by a background thread (0: none, in the loop)"),
    ("prepare_delay", cli.number(float, 0), "seconds added to each update's preparation, to measure how much of "
                                        "it the background thread hides (bench.py overlap)"),
]


def parse(argv):
    p = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = {**asdict(TrainConfig()), "mask_rate": data.Masking.rate, "mask_split": "0.8,0.1,0.1",
                "masking": "dynamic", "device": "cuda when available"}
    for name, kind, help in OPTIONS:
        typed = {"choices": kind} if isinstance(kind, list) else {"type": kind}
        recipe = " (tiny's; --config changes it)" if any(name in r for r in RECIPES.values()) else ""
        p.add_argument("--" + name.replace("_", "-"), default=None, help=f"{help} (default: {defaults[name]}{recipe})",
                       **typed)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the model (default: on for CUDA, off on CPU)")
    p.add_argument("--resume", action="store_true", help="continue from --out's checkpoint.pt")
    p.add_argument("--overwrite", action="store_true", help="start again in an --out that holds a checkpoint")
    return p.parse_args(argv)


def config_from_args(args):
    """TrainConfig defaults, then the --config recipe, then the options given."""
    given = {k: v for k, v in vars(args).items() if v is not None}
    masking = data.Masking(rate=given.pop("mask_rate", data.Masking.rate),
                           split=given.pop("mask_split", data.Masking.split),
                           dynamic=given.pop("masking", "dynamic") == "dynamic")
    return TrainConfig(**{**RECIPES[args.config or "tiny"], **given, "masking": masking})


DEMO_OPTIONS = {"out", "max_steps", "seed", "device"}


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        if not args.data:
            extra = [k for k, v in vars(args).items() if v not in (None, False) and k not in DEMO_OPTIONS]
            if extra:
                raise Stop(f"--{extra[0].replace('_', '-')} needs --data: the demo (no --data) takes only "
                           f"--out, --max-steps, --seed and --device")
            return demo(args)
        train(config_from_args(args))
    except (Stop, OSError, ValueError) as err:
        sys.exit(f"error: {err}")
    except KeyboardInterrupt:
        sys.exit("interrupted")


if __name__ == "__main__":
    main()
