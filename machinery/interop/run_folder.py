"""A pretraining run's plumbing: the checks before any heavy work (settings, the data folder, the examples
index built once per node), checkpoint.pt with the training state, the logged record (tokens/s, MFU),
log.jsonl cut back on resume, the random states saved per process.

train.py calls these; `--resume` continues to the losses an uninterrupted run would have logged because
everything that decides the next update (model, optimizer, loss scale, data position, random states) is
saved, and the settings that decide the data are checked to be unchanged (RESUME_KEYS).
"""
import json
import math
import os
import sys
from dataclasses import asdict

import numpy as np
import torch
import torch.distributed as dist

import bpe
import data
from machinery.basics import files, lock
from machinery.interop import checkpoints
from machinery.scale import index, prepared


# ---------------------------------------------------------------------------------------- before any heavy work
def check_settings(cfg, world, device, micro):
    """Settings that depend on the process count or the device, before any heavy work."""
    if not data.check_format(cfg.format).by_tokens and cfg.batch_size % (micro * world):
        raise ValueError(f"--batch-size {cfg.batch_size} is not divisible by --micro-batch-size {micro} "
                         f"x {world} processes")
    if cfg.amp == "fp16" and device.type != "cuda":
        raise ValueError("--amp fp16 needs a GPU (it loses range on CPU); use --amp bf16")
    if cfg.seq_len > cfg.max_positions:
        raise ValueError(f"--seq-len {cfg.seq_len} is longer than the model's {cfg.max_positions} positions "
                         f"(pass --max-positions to build a model with more)")


def open_data(cfg):
    if not cfg.data:
        raise ValueError("--data is required (a folder written by data.py), or run `python train.py` for the demo")
    if os.path.isdir(cfg.data):  # a reader: refused while data.py rewrites the folder (lock.py)
        try:
            lock.hold(cfg.data, "train.py", shared=True)
        except OSError:  # a read-only folder: no lock file can be made there, and no data.py can rewrite it
            pass
    tok = bpe.Tokenizer.load(cfg.data)
    tokens, line_ends, meta = prepared.open_prepared(cfg.data, tok)
    if meta["valid"]["tokens"] == 0 and int(os.environ.get("RANK", 0)) == 0:
        print(f"warning: {cfg.data} has no held-out data (its valid split is empty): no evaluation",
              file=sys.stderr)
    return tokens, line_ends, meta, tok


def examples_index(cfg, tokens, line_ends, tok, world, cpu_group):
    """The training examples and their lengths, built once and kept beside the data (index.cached_examples):
    the first process of each node builds it if needed, the others wait, then map it."""
    args = (cfg.data, tokens, line_ends, cfg.format, cfg.seq_len, tok.eos_id, cfg.seed)
    if world == 1:
        return index.cached_examples(*args)
    if int(os.environ.get("LOCAL_RANK", 0)) == 0:
        index.cached_examples(*args)
    dist.barrier(group=cpu_group)
    return index.cached_examples(*args, build=False)



RESUME_KEYS = ("batch_size", "seq_len", "format", "masking", "seed", "max_positions")


def hold_out(cfg):
    """--out's lock, taken by the first process before anything is written there: one run per folder."""
    if os.path.exists(cfg.out) and not os.path.isdir(cfg.out):
        raise ValueError(f"--out {cfg.out}: a file is in the way (it must be a folder)")
    lock.hold(cfg.out, "train.py")


def check_out_apart(cfg):
    """--out is not --data, nor a folder inside it: a run writes a folder of its own, which data.py may not
    replace under it (every process checks, before any lock is asked)."""
    out, data_dir = os.path.realpath(cfg.out), os.path.realpath(cfg.data)
    if out == data_dir or out.startswith(data_dir.rstrip(os.sep) + os.sep):
        raise ValueError(f"--out {cfg.out} is {'the' if out == data_dir else 'inside the'} --data folder "
                         f"{cfg.data}: a run writes a folder of its own; choose another --out")


RUN_FILES = ("log.jsonl", "train_config.json")  # what a run rewrites beside its checkpoint (and the tokenizer's)


def check_not_users(cfg, tok_hash):
    """A folder that is not a run of train.py's (no train_config.json) is not written into without --overwrite
    when it holds a file the run would replace: a log.jsonl, or another tokenizer's files, may be the user's."""
    if os.path.isfile(os.path.join(cfg.out, "train_config.json")):
        return
    held = [name for name in RUN_FILES if os.path.lexists(os.path.join(cfg.out, name))]
    if not held and any(os.path.lexists(os.path.join(cfg.out, name)) for name in TOKENIZER_FILES):
        try:
            same = prepared.tokenizer_hash(bpe.Tokenizer.load(cfg.out)) == tok_hash
        except (OSError, ValueError, KeyError, TypeError):
            same = False
        held = [] if same else [next(n for n in TOKENIZER_FILES if os.path.lexists(os.path.join(cfg.out, n)))]
    if held:
        raise ValueError(f"--out {cfg.out} holds {held[0]} but is not a train.py run (no train_config.json): pass "
                         f"--overwrite to write there anyway, or choose another --out")


TOKENIZER_FILES = ("vocab.json", "merges.txt", "char_bpe.json")


def targets(counts, step, cfg):
    """The update's [masked targets, real tokens] over every process, refused when no token was masked."""
    if not counts[0]:
        raise ValueError(f"step {step}: the masking selected no targets in the whole update ({int(counts[1]):,} "
                         f"tokens at --mask-rate {cfg.masking.rate:g}): raise --mask-rate or --batch-size")
    return counts


def check_finite(trainer, step):
    """Refuse to save non-finite weights or optimizer state (an update that diverged with a finite loss).
    One host sync; every process finds the same (the weights are the same everywhere)."""
    t = trainer
    named = [(k, v) for k, v in t.body.state_dict().items() if v.is_floating_point()]
    named += [("the optimizer state", v) for s in t.opt.state.values() for v in s.values()
              if torch.is_tensor(v) and v.is_floating_point()]
    finite = torch.stack([torch.isfinite(v).all() for _, v in named])
    if not finite.all():
        bad = named[int((~finite).nonzero()[0])][0]
        raise ValueError(f"step {step}: non-finite weights ({bad}; the updates diverged): not saved; the last good "
                         f"checkpoint in {t.cfg.out} is intact (try a lower --lr, or --amp bf16)")


def save(trainer, state, tok_hash):
    """--out's checkpoint.pt: the model, optimizer, loss scaler, training state and every process's random
    states (gathered to the first process, which writes). `trainer`: train.py's Trainer."""
    t = trainer
    check_finite(t, state["step"])
    states = [None] * t.world
    if t.world > 1:
        dist.all_gather_object(states, rng_state(t.device), group=t.cpu_group)
    else:
        states = [rng_state(t.device)]
    if t.rank == 0:
        ckpt = {"model": t.body.state_dict(), "config": asdict(t.body.cfg), "class": "RobertaForMaskedLM",
                "train": asdict(t.cfg), "optimizer": t.opt.state_dict(),
                "scaler": t.scaler.state_dict() if t.scaler else None, "state": dict(state), "rng": states,
                "tokenizer_sha256": tok_hash, "data_fingerprint": prepared.data_fingerprint(t.cfg.data)}
        checkpoints.save(os.path.join(t.cfg.out, "checkpoint.pt"), ckpt)  # atomic: a kill leaves the last one whole


def rng_state(device):
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.zeros(0, dtype=torch.uint8)}


def read_resume(cfg, tok_hash):
    """The checkpoint to resume, checked against this run's settings before any heavy work and before anything in
    --out changes: a train.py checkpoint (not finetune.py's) that records its data; the same tokenizer, data and
    RESUME_KEYS; a --max-steps beyond its step. Other settings changed since (--lr, --max-steps, ...) are said in
    one line: the run then departs from the uninterrupted one.

    These checks catch mix-ups, not a file crafted to pass them: its checksum and fingerprints can be recomputed
    by anyone. What a hostile file cannot do is run code: only weights are read (checkpoints.read_checkpoint)."""
    path = os.path.join(cfg.out, "checkpoint.pt")
    if not os.path.isfile(path):
        raise ValueError(f"--resume: no checkpoint.pt in {cfg.out} (on several nodes --out must be a folder every "
                         f"node shares)")
    check_out_apart(cfg)
    if int(os.environ.get("RANK", 0)) == 0:
        hold_out(cfg)  # one run per folder
    ckpt = checkpoints.read_checkpoint(path)
    check_pretraining(ckpt, path)
    if ckpt.get("tokenizer_sha256") != tok_hash:
        raise ValueError(f"{path}: trained with tokenizer {str(ckpt.get('tokenizer_sha256'))[:12]}, but --data "
                         f"{cfg.data} was prepared with tokenizer {tok_hash[:12]}")
    check_same_data(ckpt, path, cfg.data)
    for key in RESUME_KEYS:
        was, now = ckpt["train"].get(key), getattr(cfg, key)
        option, was, now = masking_change(was, asdict(now)) if key == "masking" else \
            ("--" + key.replace("_", "-"), was, now)
        if was != now:
            raise ValueError(f"{path}: {option} was {was}, now {now}: the run would not continue the same data")
    check_steps(ckpt, path, cfg)
    return ckpt


def masking_change(was, now):
    """(option, then, now) of the first masking setting that differs, named by the option that sets it
    (--mask-rate, --mask-split, --masking); equal values when none does."""
    if not isinstance(was, dict):
        return "--masking", was, now
    shown = {"rate": lambda v: v, "split": lambda v: list(v) if isinstance(v, (list, tuple)) else v,
             "dynamic": lambda v: {True: "dynamic", False: "static"}.get(v, v)}
    for field, option in (("rate", "--mask-rate"), ("split", "--mask-split"), ("dynamic", "--masking")):
        then, this = shown[field](was.get(field)), shown[field](now[field])
        if then != this:
            return option, then, this
    return "--masking", None, None


def check_pretraining(ckpt, path):
    """A train.py checkpoint with its training state, and the record of its data that --resume checks."""
    if "optimizer" not in ckpt or not isinstance(ckpt.get("state"), dict) or not isinstance(ckpt.get("train"), dict):
        if ckpt.get("task") or ckpt.get("class", "RobertaForMaskedLM") != "RobertaForMaskedLM":
            raise ValueError(f"{path}: a finetuned model (finetune.py's, {ckpt.get('task') or ckpt.get('class')}), not "
                             f"a pretraining run: train.py --resume continues only train.py's checkpoints")
        raise ValueError(f"{path}: a model without training state (not a train.py checkpoint)")
    if not isinstance(ckpt.get("data_fingerprint"), dict):
        raise ValueError(f"{path}: saved before checkpoints recorded their data (no data_fingerprint), so --resume "
                         f"cannot check that --data is what it trained on: it is not resumed (start a new run)")


UPDATE_KEYS = ("lr", "warmup_steps", "max_steps", "weight_decay", "clip_grad", "amp")  # the updates, not the data


def check_steps(ckpt, path, cfg):
    """A --max-steps at or beyond the checkpoint's step: refused below it, before anything in --out changes. At it,
    the run is finished: it is read back (the demo's second run), nothing trained and nothing written."""
    step = ckpt["state"].get("step")
    if type(step) is not int or step < 0:
        raise ValueError(f"{path}: its training state's step is {step!r}, not a step count (a damaged or crafted file)")
    if step > cfg.max_steps:
        raise ValueError(f"{path}: the run is at step {step:,}, already past --max-steps {cfg.max_steps:,}; nothing "
                         f"was changed (a --max-steps above {step:,} trains it further)")
    if step == cfg.max_steps and int(os.environ.get("RANK", 0)) == 0:
        print(f"note: {path}: the run is finished (step {step:,}, its --max-steps): read back, nothing trained or "
              f"written", file=sys.stderr)


def check_same_data(ckpt, path, data_dir):
    """The checkpoint's data (its fingerprint, which check_pretraining found) is --data's."""
    differ = prepared.fingerprint_differences(ckpt["data_fingerprint"], prepared.data_fingerprint(data_dir))
    if differ:
        raise ValueError(f"{path}: trained on other data than --data {data_dir} ({'; '.join(differ)}): the run would "
                         f"not continue the same data")


def restore(ckpt, model, opt, scaler, cfg, rank, device):
    """Load the model, optimizer, loss scaler and this process's random states; returns the training state."""
    if ckpt["config"] != asdict(model.cfg):
        now = asdict(model.cfg)
        diff = [f"{k} {v} then, {now.get(k)} now" for k, v in ckpt["config"].items() if v != now.get(k)]
        raise ValueError(f"{cfg.out}: its model differs from this run's --config {cfg.config} ({'; '.join(diff)}): "
                         f"give the --config, --dropout and --max-positions it was trained with")
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    if scaler and ckpt["scaler"]:
        scaler.load_state_dict(ckpt["scaler"])
    if rank < len(ckpt["rng"]):
        torch.set_rng_state(ckpt["rng"][rank]["cpu"])
        if device.type == "cuda" and ckpt["rng"][rank]["cuda"].numel():
            torch.cuda.set_rng_state(ckpt["rng"][rank]["cuda"], device)
    else:  # a process the saved run did not have (resumed on more): a random state of its own, from seed, step, rank
        torch.manual_seed(int(np.random.SeedSequence([cfg.seed, ckpt["state"]["step"], rank]).generate_state(1)[0]))
    changed = [f"--{k.replace('_', '-')} {ckpt['train'][k]} -> {getattr(cfg, k)}" for k in UPDATE_KEYS
               if k in ckpt["train"] and ckpt["train"][k] != getattr(cfg, k)]
    if changed and rank == 0 and ckpt["state"]["step"] < cfg.max_steps:  # the settings of the updates changed since
        print(f"note: {cfg.out}: resumed at step {ckpt['state']['step']:,} with {', '.join(changed)}: from here its "
              f"updates differ from the uninterrupted run's", file=sys.stderr)
    return dict(ckpt["state"])


def init_out(cfg, tok, model_cfg, world, start_step):
    """The output folder: refuse to replace a finished run by accident; the tokenizer, the settings, and
    on resume the log cut back to the checkpoint (the resumed run writes those lines again, identically). A
    finished run read back (resumed at its --max-steps) writes nothing."""
    if cfg.resume and start_step >= cfg.max_steps:
        return
    if os.path.exists(cfg.out) and not os.path.isdir(cfg.out):
        raise ValueError(f"--out {cfg.out}: a file is in the way (it must be a folder)")
    os.makedirs(cfg.out, exist_ok=True)
    tok.save(cfg.out)  # the folder is all evaluate.py and finetune.py need
    keep_log_until(os.path.join(cfg.out, "log.jsonl"), start_step)
    settings = {"train": asdict(cfg), "model": asdict(model_cfg), "processes": world}
    files.write_atomic(os.path.join(cfg.out, "train_config.json"), json.dumps(settings, indent=2))


def check_fresh_out(cfg, master):
    """A new run: refuse an --out that holds a checkpoint, unless --overwrite (then start again there)."""
    check_out_apart(cfg)
    if master:
        hold_out(cfg)  # one run per folder
    ckpt = os.path.join(cfg.out, "checkpoint.pt")
    if not os.path.isfile(ckpt):
        if not cfg.overwrite:
            check_not_users(cfg, prepared.read_meta(cfg.data).get("tokenizer_sha256"))
        return
    if not cfg.overwrite:
        raise ValueError(f"{cfg.out} already holds a checkpoint: pass --resume to continue it, --overwrite to "
                         f"start again, or choose another --out")
    if master:
        for name in ("checkpoint.pt", "log.jsonl"):
            if os.path.exists(os.path.join(cfg.out, name)):
                os.remove(os.path.join(cfg.out, name))


def log(path, record):
    """Append a record to log.jsonl: strict JSON, a non-finite number written as a string ("nan", "inf")."""
    record = {k: str(v) if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
    files.append(path, json.dumps(record, allow_nan=False) + "\n")


def keep_log_until(path, step):
    """Cut log.jsonl back to the checkpoint's step. A torn last line (a crash or a full disk mid-append) is
    dropped with a warning: the checkpoint is the authority."""
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = [line for line in f if line.strip()]
    kept = []
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if i < len(lines) - 1:
                raise ValueError(f"{path}: line {i + 1} is not JSON (a damaged log; remove that line)") from None
            print(f"warning: {path}: dropped its torn last line (the checkpoint, at step {step}, is the authority)",
                  file=sys.stderr)
            continue
        if not isinstance(record, dict) or record.get("step", 0) <= step:
            kept.append(line if line.endswith("\n") else line + "\n")
    files.write_atomic(path, "".join(kept))


def log_record(tr, step, sums, counts, meter, state, lr):
    """The logged step's numbers (the one host sync of a logged step)."""
    (mlm_sum, nsp_sum), (n_targets, _, n_sequences) = sums.tolist(), counts
    loss = mlm_sum / max(n_targets, 1) + nsp_sum / n_sequences
    tps, mfu = meter.read()
    record = {"step": step, "loss": round(loss, 6) if math.isfinite(loss) else str(loss), "lr": lr,
              "tokens_per_s": round(tps, 1), "mfu": mfu and round(mfu, 4),  # None: unknown (speed.Meter)
              "epoch": state["epoch"], "skipped": state["skipped"], "tokens_seen": state.get("tokens_seen", 0)}
    if not math.isfinite(loss):
        record["skipped"] = "non-finite loss"
    if nsp_sum:
        record["nsp_loss"] = round(nsp_sum / n_sequences, 6)
    if tr.scaler:
        record["loss_scale"] = tr.scaler.get_scale()
    return record
