"""RoBERTa pretraining: masked language modelling with the paper's recipe, from a laptop CPU to many GPUs.

    python train.py                                  # the built-in demo: corpus, tokenizer, model, run
    python train.py --config tiny --data DIR --out DIR
    torchrun --standalone --nproc_per_node 8 train.py --config base --data DIR --out DIR --amp bf16

What the paper changes from BERT, and where: dynamic masking (Section 4.1): get_batch, data.mask_batch;
FULL-SENTENCES without next-sentence prediction (Section 4.2): --format, data.FORMATS; large batches (Section
4.3): --batch-size sequences per update by gradient accumulation over --micro-batch-size per process (default:
as many as memory holds), all-reducing only the last: train_step; Adam beta2 0.98, eps 1e-6, linear warmup and
decay (Section 3.1): roberta.adamw, lr_at. The logged loss is the mean over every masked token of the update, on
every process: the same for any process count (footnote 8; exactly so with --dropout 0). In nats (fairseq: bits).
"""
import contextlib
import math
import os
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist

import bpe
import data
import roberta
from evaluate import load_checkpoint  # a run folder or a Hugging Face folder with its tokenizer, read and checked
from machinery.basics import batches, memory, speed  # machinery: batch thread; micro-batch size; MFU, compiling
from machinery.formats import prepared, run_folder  # machinery: the run folder: checkpoint.pt, resume checks, the log


@dataclass
class TrainConfig:
    """Every setting of a run. The defaults are the `tiny` recipe; RECIPES changes some per --config."""
    config: str = "tiny"
    data: str = ""
    out: str = "out"
    seq_len: int = 128
    batch_size: int = 16           # sequences per optimizer update, across all processes
    micro_batch_size: int = 0      # sequences per forward/backward per process (0: as many as fit)
    lr: float = 1e-3
    warmup_steps: int = 100
    max_steps: int = 1000
    weight_decay: float = 0.01
    clip_grad: float = 0.0         # the paper does not clip
    amp: str = "none"              # none (fp32; TF32 matmuls on CUDA) | bf16 | fp16 (GPU only)
    format: str = "full-sentences"
    tokens_per_batch: int = 0      # doc-sentences, sentence-pair: tokens per update (0: batch-size x seq-len)
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
    deterministic: bool = False    # torch's deterministic algorithms (exact on CPU without; docs/scale.md)
    prefetch: int = 2              # updates prepared ahead by a background thread (0: in the loop)
    prepare_delay: float = 0.0     # seconds added to each update's preparation (to benchmark the overlap)
    resume: bool = False
    overwrite: bool = False
    init_from: str = ""            # continue pretraining from these weights: a Hugging Face or run folder


# Pretraining recipes: base and large are Table 9's (8K sequences of 512 tokens, 500K updates); tiny and small: CPUs.
RECIPES = {
    "tiny": dict(),
    "small": dict(batch_size=64, lr=5e-4, warmup_steps=500, max_steps=10_000),
    "base": dict(seq_len=512, batch_size=8192, lr=6e-4, warmup_steps=24_000, max_steps=500_000),
    "large": dict(seq_len=512, batch_size=8192, lr=4e-4, warmup_steps=30_000, max_steps=500_000),
}


def lr_at(step, cfg):
    return roberta.linear_lr(step, cfg.lr, cfg.warmup_steps, cfg.max_steps)


# ---------------------------------------------------------------------------------------- setup
def setup_distributed(device_name):
    """(rank, world, device, cpu_group) from torchrun's RANK/WORLD_SIZE (else one process); cpu_group: a gloo
    group for the small CPU-side all-reduces (no device sync on a GPU)."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank, local = int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
    device = speed.pick_device(device_name, local)  # machinery: cuda:LOCAL_RANK when available, checked and set
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


# ---------------------------------------------------------------------------------------- the data of an update
class TrainSet(NamedTuple):
    """The training split: the token stream, its examples (data.examples) with their lengths, the tokenizer."""
    tokens: np.ndarray
    examples: np.ndarray
    lengths: np.ndarray
    tok: bpe.Tokenizer


class Batch(NamedTuple):
    """This process's share of one update's global batch, on the CPU."""
    micro_batches: list   # (inputs, labels, next-sentence labels or None, padded, weight)
    counts: list          # [masked targets, real tokens] of this process
    n_sequences: int      # of the whole global batch


def global_batches(cfg, lengths, epoch, position=0, offset=0):
    """An epoch's global batches in an order fixed by (seed, epoch), found as needed: --batch-size sequences,
    or for the token-budget formats as many as fit batch-size x seq-len tokens (Section 4.2)."""
    budget = (cfg.tokens_per_batch or cfg.batch_size * cfg.seq_len) if data.FORMATS[cfg.format].by_tokens else None
    found = data.epoch_batches(lengths, cfg.batch_size, cfg.seed, epoch, budget, position, offset)
    if position == 0 and found.get(0) is None:
        raise ValueError(f"{cfg.data}: too little data for one batch of {cfg.batch_size} sequences of {cfg.seq_len}")
    return found


def get_batch(ts, global_batch, epoch, cfg, micro, rank, world):
    """This process's share of a global batch in micro-batches of `micro` sequences (Section 4.3), each collated
    in the --format (Section 4.2) and masked anew for this epoch (Section 4.1; static: one of 10 fixed masks)."""
    mine, weight = data.shard(global_batch, rank, world), 1.0
    if len(mine) == 0:  # fewer examples than processes: run one sequence with weight 0, so that this
        mine, weight = global_batch[:1], 0.0  # process still joins the gradient all-reduce
    micro_batches, counts = [], [0, 0]
    for i in range(0, len(mine), micro):
        idx = mine[i:i + micro]
        ids, nsp = data.collate(ts.tokens, ts.examples[idx], cfg.seq_len, ts.tok, cfg.format)
        inputs, labels = data.mask_batch(ids, idx, ts.tok, cfg.seed, epoch, cfg.masking)
        if weight == 0:
            labels = torch.full_like(labels, -100)
        counts[0] += int((labels != -100).sum())
        counts[1] += int((ids != ts.tok.pad_id).sum()) if weight else 0
        micro_batches.append((inputs, labels, nsp, bool((ids == ts.tok.pad_id).any()), weight))
    return Batch(micro_batches, counts, len(global_batch))


def updates(ts, cfg, micro, rank, world, epoch, position, found):
    """The run's updates from batch `position` of `epoch` (its batches `found`) on: (epoch, position and offset
    after the update, Batch). Nothing depends on timing: a resumed run and any process count see the same."""
    while True:
        while (global_batch := found.get(position)) is not None:
            position += 1
            yield epoch, position, found.start(position), get_batch(ts, global_batch, epoch, cfg, micro, rank, world)
        epoch, position = epoch + 1, 0
        found = global_batches(cfg, ts.lengths, epoch)


def heldout_set(cfg, tok, micro, rank, world):
    """The fixed held-out batches of this process, built once (None when the valid split is empty)."""
    tokens, line_ends, _ = prepared.load_split(cfg.data, "valid")  # machinery: read and checked
    if tokens.size == 0:
        return None
    return data.heldout_batches(tokens, line_ends, tok, cfg.seq_len, micro, cfg.masking, rank, world,
                                cfg.eval_sequences)


# ---------------------------------------------------------------------------------------- the starting weights
class Start(NamedTuple):
    """Where a continued run (--init-from) starts."""
    sizes: object            # PATH's RobertaConfig
    state: dict              # what it gives: its encoder, and its LM head where PATH has one
    lineage: dict            # path, class, weights_sha256: recorded in train_config.json and checkpoint.pt


def init_from(cfg, tok_hash):
    """--init-from PATH: continue masked-LM training from a Hugging Face or run folder's weights, as domain-adaptive
    pretraining does (Gururangan et al., 2020); a finetuned model gives its encoder only. Nothing is written here."""
    model, tok = load_checkpoint(cfg.init_from, verbose=False)
    lineage = run_folder.lineage(cfg.init_from)  # machinery: PATH, its class, its weights' fingerprint
    run_folder.check_start(cfg, prepared.tokenizer_hash(tok), tok_hash, model.cfg.max_positions)  # machinery: one line
    whole = lineage["class"] == "RobertaForMaskedLM"
    return Start(model.cfg, {k: v for k, v in model.state_dict().items() if whole or k.startswith("roberta.")}, lineage)


def model_config(cfg, tok, start, ckpt):
    """(cfg, the model's RobertaConfig): --config's sizes; a continued run's are PATH's (on resume the checkpoint's),
    its positions and path then recorded in cfg. --dropout and --format's NSP head are this run's."""
    lineage = start.lineage if start else ckpt and ckpt["state"].get("init_from")
    if lineage:
        sizes = roberta.RobertaConfig.from_dict(ckpt["config"]) if ckpt else start.sizes
        cfg = replace(cfg, init_from=lineage["path"], max_positions=sizes.max_positions)
    else:
        sizes = roberta.RobertaConfig.preset(cfg.config, vocab_size=len(tok), pad_id=tok.pad_id,
                                             max_positions=cfg.max_positions)
    return cfg, replace(sizes, dropout=cfg.dropout, attention_dropout=cfg.dropout,
                        next_sentence_head=data.FORMATS[cfg.format].pairs)


# ---------------------------------------------------------------------------------------- one update
class Trainer(NamedTuple):
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
    static: object = None    # compiled: the one shape of every micro-batch (machinery: speed.StaticShape)


def make_trainer(cfg, model_cfg, tok, rank, world, device, cpu_group, ckpt, micro, start, n_examples):
    """The model (from --init-from's weights when given), optimizer and loss scaler, restored from `ckpt` when
    resuming (its data position checked against the epoch's `n_examples`); (Trainer, training state)."""
    torch.manual_seed(cfg.seed)
    body = roberta.RobertaForMaskedLM(model_cfg).to(device)
    state = {"step": 0, "epoch": 0, "position": 0, "offset": 0, "skipped": 0, "init_from": start and start.lineage}
    if start and not ckpt:  # a head PATH lacks keeps its fresh initialisation, and is said to be new
        new = body.load_state_dict(start.state, strict=False).missing_keys
        if rank == 0:  # machinery: what loaded, what is new, the --config sizes PATH's override
            run_folder.say_start(cfg, start.lineage, new, vars(model_cfg), roberta.PRESETS[cfg.config])
    opt = roberta.adamw(body, cfg.lr, cfg.weight_decay)  # fresh: --init-from takes weights only
    scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
    if ckpt:
        state = {**state, **run_folder.restore(ckpt, body, opt, scaler, cfg, rank, device, n_examples)}
    if rank == 0:  # machinery: train_config.json (with the lineage), the tokenizer
        run_folder.init_out(cfg, tok, body.cfg, world, state["step"], state.get("init_from"))
    model = body
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(body, device_ids=[device] if device.type == "cuda" else None)
    amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.amp]
    tr = Trainer(cfg, model, body, opt, scaler, amp_dtype, device, rank, world, cpu_group)
    return speed.compile_trainer(tr, micro), state  # torch.compile (machinery: one shape, a warm-up, ranks agree)


def train_step(tr, batch, n_targets):
    """One optimizer update by gradient accumulation over `batch` (Section 4.3). Returns the loss sums [MLM, NSP]
    over every process and whether they are finite, both on the device (no host sync)."""
    sums = torch.zeros(2, dtype=torch.float64, device=tr.device)
    for i, (inputs, labels, nsp, padded, weight) in enumerate(batch.micro_batches):
        # to the device, the LM head's target slots counted on the CPU (no host sync; compiled: one shape)
        inputs, labels, nsp, padded, slots = speed.to_device(tr.static, inputs, labels, nsp, padded, tr.device)
        # DDP all-reduces the gradients in backward: only in the last micro-batch's (no_sync on the others)
        last = i == len(batch.micro_batches) - 1
        sync = tr.model.no_sync() if tr.world > 1 and not last else contextlib.nullcontext()
        with sync, torch.autocast(tr.device.type, dtype=tr.amp_dtype or torch.float32,
                                  enabled=tr.amp_dtype is not None):  # forward in mixed precision (--amp)
            out = tr.model(inputs, labels=labels, reduction="sum", nsp_labels=nsp, padded=padded, target_slots=slots)
            mlm, nsp_loss = out if isinstance(out, tuple) else (out, None)
            # the normalisation: divided by the targets of the WHOLE update (all micro-batches, all processes),
            # so any split gives the same gradient; times `world` because DDP averages gradients over processes
            loss = mlm / max(n_targets, 1) * tr.world
            if nsp_loss is not None:
                loss = loss + nsp_loss * weight / batch.n_sequences * tr.world
            (tr.scaler.scale(loss) if tr.scaler else loss).backward()  # fp16: scaled, or small gradients underflow
        sums[0] += mlm.detach()
        if nsp_loss is not None:
            sums[1] += nsp_loss.detach() * weight
    if tr.world > 1:
        dist.all_reduce(sums)
    finite = torch.isfinite(sums).all()
    # clipping (off by default: the paper does not clip), on unscaled gradients
    if tr.scaler:
        tr.scaler.unscale_(tr.opt)
    if tr.cfg.clip_grad > 0:
        torch.nn.utils.clip_grad_norm_(tr.body.parameters(), tr.cfg.clip_grad)
    optimizer_step(tr, finite)
    return sums, finite


def optimizer_step(tr, finite):
    """The optimizer step, skipped when the loss is not finite: by GradScaler for fp16; else by fused AdamW's found_inf
    on the device (GradScaler's own tensor, read in step(): no host sync); unfused, by reading `finite` on the host."""
    if tr.scaler:
        tr.scaler.step(tr.opt)
        tr.scaler.update()
    elif tr.opt.defaults.get("fused"):
        tr.opt.found_inf = (~finite).float()  # 1: the fused kernel leaves the weights and moments as they are
        tr.opt.step()
    elif finite:
        tr.opt.step()
    tr.opt.zero_grad(set_to_none=True)


# ---------------------------------------------------------------------------------------- log, evaluate, save
class Monitor:
    """After each update: non-finite losses counted (on the device), the log (one host sync), evaluation, saving."""

    def __init__(self, tr, state, heldout, tok_hash):
        from tqdm import tqdm
        self.tr, self.state, self.heldout, self.tok_hash = tr, state, heldout, tok_hash
        self.bad = torch.zeros((), device=tr.device)  # non-finite losses in a row
        self.skipped = torch.full((), float(state["skipped"]), device=tr.device)
        self.meter = speed.Meter(tr.body.cfg, tr.cfg.seq_len, tr.cfg.masking.rate, tr.device,  # machinery: MFU
                                 tr.amp_dtype or torch.float32, tr.world)
        self.bar = tqdm(total=tr.cfg.max_steps, initial=state["step"], disable=tr.rank != 0, dynamic_ncols=True)

    def after_update(self, step, finite, sums, counts):
        cfg, tr = self.tr.cfg, self.tr
        self.bad, self.skipped = (self.bad + 1) * ~finite, self.skipped + ~finite
        self.meter.count(counts[1])
        self.state["tokens_seen"] = self.state.get("tokens_seen", 0) + int(counts[1])  # real tokens, no padding
        last = step == cfg.max_steps
        record = {}
        if step % cfg.log_interval == 0 or last:
            self.state["skipped"] = int(self.skipped.item())
            # the update's mean over every masked target, on every process (footnote 8); NSP's: over sequences
            (mlm_sum, nsp_sum), (n_targets, _, n_sequences) = sums.tolist(), counts  # the logged step's host sync
            loss, nsp_loss = mlm_sum / n_targets + nsp_sum / n_sequences, nsp_sum / n_sequences
            record = run_folder.log_record(tr, step, loss, nsp_loss, self.meter, self.state, lr_at(step - 1, cfg))
            self.bar.set_postfix(loss=record["loss"], tok_s=f"{record['tokens_per_s']:.0f}")
        if self.heldout is not None and (step % cfg.eval_interval == 0 or last):
            with self.meter.paused():  # evaluation and saving are not training: left out of tokens/s and MFU
                record = {"step": step, **record, **evaluate(tr, self.heldout)}
        if record and tr.rank == 0:
            run_folder.log(os.path.join(cfg.out, "log.jsonl"), record)  # machinery: one JSON line, flushed
        self.bar.update(1)
        if record and (int(self.bad.item()) >= cfg.max_bad_steps or last and self.bad.item()):  # or ends on a skip
            raise ValueError(f"{int(self.bad.item())} non-finite losses in a row at step {step}: stopping; the last "
                             f"good checkpoint in {cfg.out} is intact (try a lower --lr, or --amp bf16)")
        if (step % cfg.save_interval == 0 or last) and self.bad.item() == 0:  # never right after a skip
            self.state["skipped"] = int(self.skipped.item())
            with self.meter.paused():
                run_folder.save(tr, self.state, self.tok_hash)  # machinery: atomic, every process's random states

    def close(self):
        self.bar.close()


def evaluate(tr, heldout):
    """Held-out masked-LM loss on fixed masks, summed over processes: {valid_loss, valid_ppl} or {}."""
    out = data.evaluate_mlm(tr.body, heldout, tr.device, tr.amp_dtype)
    total, count = all_sum([out["loss_sum"], out["targets"]], tr.world, tr.cpu_group)
    if not count:
        return {}
    return {"valid_loss": round(total / count, 6), "valid_ppl": round(math.exp(min(total / count, 50)), 4)}


# ---------------------------------------------------------------------------------------- training
def train(cfg, examples=None):
    """Pretrain as `cfg` says (resuming from cfg.out with cfg.resume); returns (model, tokenizer). `examples`:
    the training split's (data.examples, their lengths) when the caller keeps them (an index), else built here."""
    rank, world, device, cpu_group = setup_distributed(cfg.device)
    speed.numerics(device, cfg.amp, cfg.deterministic, rank == 0)  # machinery: TF32 stated; --deterministic
    try:
        return _train(cfg, rank, world, device, cpu_group, examples)
    finally:
        if world > 1:
            dist.destroy_process_group()


def start(cfg, rank, world, device, cpu_group, examples):
    """All checked before anything is written: (Trainer, state, TrainSet, micro-batch size, tokenizer fingerprint)."""
    share = max(cfg.batch_size // world, 1)  # this process's sequences of an update
    # machinery: settings that would fail later, refused now; --data held for reading
    by_tokens = data.check_format(cfg.format).by_tokens
    run_folder.check_settings(cfg, world, device, cfg.micro_batch_size or share, by_tokens)
    tok = bpe.Tokenizer.load(cfg.data)
    tokens, line_ends, meta = run_folder.open_data(cfg, tok)  # machinery: the training split, checked
    tok_hash = meta["tokenizer_sha256"]
    begin = init_from(cfg, tok_hash) if cfg.init_from else None  # PATH's weights, checked before anything is written
    # machinery: a resume's checkpoint, checked against these settings, data and start; or a fresh --out
    ckpt = run_folder.read_resume(cfg, tok_hash, begin and begin.lineage) if cfg.resume else \
        run_folder.check_fresh_out(cfg, rank == 0, tok)
    cfg, model_cfg = model_config(cfg, tok, begin, ckpt)
    # micro-batches of `micro` sequences (Section 4.3): --micro-batch-size, else as many as free memory holds
    with torch.device("meta"):  # the parameter count, without allocating the parameters
        n_params = roberta.num_parameters(roberta.RobertaForMaskedLM(model_cfg))
    micro = cfg.micro_batch_size or memory.fitting_micro_batch(model_cfg, n_params, cfg.seq_len, cfg.amp != "none",
                                                               cfg.masking.rate, share, device, rank == 0,
                                                               group=cpu_group)
    if examples is None:  # Section 4.2: the examples of the --format, each with its length in tokens
        ex = data.examples(tokens, line_ends, cfg.format, cfg.seq_len, tok.eos_id, cfg.seed)
        examples = ex, data.example_lengths(ex, cfg.format, cfg.seq_len)
    ts = TrainSet(tokens, *examples, tok)
    tr, state = make_trainer(cfg, model_cfg, tok, rank, world, device, cpu_group, ckpt, micro, begin, len(ts.lengths))
    return tr, state, ts, micro, tok_hash


def _train(cfg, rank, world, device, cpu_group, examples):
    tr, state, ts, micro, tok_hash = start(cfg, rank, world, device, cpu_group, examples)
    cfg = tr.cfg  # a continued run's sizes are its start's (--init-from)
    found = global_batches(cfg, ts.lengths, state["epoch"], state["position"], state["offset"])
    ahead = batches.Prefetch(updates(ts, cfg, micro, rank, world, state["epoch"], state["position"], found),
                             cfg.prefetch, pin=device.type == "cuda", delay=cfg.prepare_delay)
    monitor = Monitor(tr, state, heldout_set(cfg, ts.tok, micro, rank, world), tok_hash)
    try:  # machinery: an out-of-memory error is one line naming the micro-batch
        with memory.named_out_of_memory(micro, cfg.seq_len):
            for step in range(state["step"] + 1, cfg.max_steps + 1):
                # the next update's data, made in the background while the last update ran
                epoch, position, offset, batch = ahead.next()
                for group in tr.opt.param_groups:
                    group["lr"] = lr_at(step - 1, cfg)  # Section 3.1: linear warmup, then linear decay
                # the targets of the whole update, every process: the loss is normalised by them
                n_targets, n_tokens = all_sum(batch.counts, world, cpu_group)
                if not n_targets:
                    raise ValueError(f"step {step}: the masking selected no targets in the whole update "
                                     f"({int(n_tokens):,} tokens at --mask-rate {cfg.masking.rate:g}): raise "
                                     f"--mask-rate or --batch-size")
                sums, finite = train_step(tr, batch, n_targets)
                state.update(step=step, epoch=epoch, position=position, offset=offset)
                # log, evaluate on the fixed held-out set, stop after too many bad steps, save
                monitor.after_update(step, finite, sums, (n_targets, n_tokens, batch.n_sequences))
    finally:
        ahead.close()
        monitor.close()
    if world > 1:  # leave together: a process that exits while another still saves can abort it
        dist.barrier(group=cpu_group)
    return tr.body, ts.tok


if __name__ == "__main__":  # machinery: the command line (options, checks, the demo), one-line errors
    from machinery.commands import train_cli
    train_cli.main()
