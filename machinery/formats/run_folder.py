"""A pretraining run's folder and its checks: the settings refused before any heavy work, the data folder held
for reading, checkpoint.pt with the training state and every process's random states, log.jsonl (cut back on
resume). A leaf: the tokenizer and the model come in as objects. `--resume` continues to the losses an
uninterrupted run would have logged: everything that decides the next update is saved, and the settings that
decide the data and the model's shape are checked to be unchanged (RESUME_KEYS).
"""
import contextlib
import hashlib
import json
import math
import os
import sys
from dataclasses import asdict

import numpy as np
import torch
import torch.distributed as dist

from machinery.basics import files, lock
from machinery.formats import checkpoints, prepared


# ---------------------------------------------------------------------------------------- before any heavy work
def check_settings(cfg, world, device, micro, by_tokens):
    """Settings that depend on the process count or the device, before any heavy work; --data is then held for
    reading (data.py cannot rewrite it while the run lasts)."""
    if not cfg.data:
        raise ValueError("--data is required (a folder written by data.py), or run `python train.py` for the demo")
    if not by_tokens and cfg.batch_size % (micro * world):
        raise ValueError(f"--batch-size {cfg.batch_size} is not divisible by --micro-batch-size {micro} "
                         f"x {world} processes")
    if cfg.amp == "fp16" and device.type != "cuda":
        raise ValueError("--amp fp16 needs a GPU (it loses range on CPU); use --amp bf16")
    if cfg.seq_len > cfg.max_positions and not cfg.init_from:  # --init-from: PATH's positions (check_start)
        raise ValueError(f"--seq-len {cfg.seq_len} is longer than the model's {cfg.max_positions} positions "
                         f"(pass --max-positions to build a model with more)")
    if os.path.isdir(cfg.data):  # a reader: refused while data.py rewrites the folder (lock.py); OSError: a
        with contextlib.suppress(OSError):  # read-only folder, which holds no lock file and no data.py can rewrite
            lock.hold(cfg.data, "train.py", shared=True)


def open_data(cfg, tok):
    """The training split of --data (prepared.open_prepared: checked against `tok`) and its meta.json."""
    tokens, line_ends, meta = prepared.open_prepared(cfg.data, tok)
    if meta["valid"]["tokens"] == 0 and int(os.environ.get("RANK", 0)) == 0:
        print(f"warning: {cfg.data} has no held-out data (its valid split is empty): no evaluation", file=sys.stderr)
    return tokens, line_ends, meta


RESUME_KEYS = {"batch_size": "data", "seq_len": "data", "format": "data", "tokens_per_batch": "data", "masking": "data",
               "seed": "data", "max_positions": "model (its position table)"}  # what a change would not continue
QUIET_KEYS = ("data", "out", "resume", "overwrite", "device", "compile", "prefetch", "prepare_delay", "micro_batch_size",
              "log_interval", "eval_interval", "eval_sequences", "save_interval", "max_bad_steps", "init_from", "config",
              "dropout")  # where and how a run goes, or checked elsewhere: every other change is said on resume


def check_out_apart(cfg):
    """--out is not --data, nor a folder inside it: a run writes a folder of its own, which data.py may not
    replace under it (every process checks, before any lock is asked)."""
    out, data_dir = os.path.realpath(cfg.out), os.path.realpath(cfg.data)
    if out == data_dir or out.startswith(data_dir.rstrip(os.sep) + os.sep):
        raise ValueError(f"--out {cfg.out} is {'the' if out == data_dir else 'inside the'} --data folder "
                         f"{cfg.data}: a run writes a folder of its own; choose another --out")


def save(trainer, state, tok_hash):
    """--out's checkpoint.pt: the model, optimizer, loss scaler, training state and every process's random
    states (gathered to the first process, which writes). `trainer`: train.py's Trainer. Non-finite weights or
    optimizer state (an update that diverged with a finite loss) are refused: one host sync, the same everywhere."""
    t = trainer
    named = [(k, v) for k, v in t.body.state_dict().items() if v.is_floating_point()]
    named += [("the optimizer state", v) for s in t.opt.state.values() for v in s.values()
              if torch.is_tensor(v) and v.is_floating_point()]
    finite = torch.stack([torch.isfinite(v).all() for _, v in named])
    if not finite.all():
        bad = named[int((~finite).nonzero()[0])][0]
        raise ValueError(f"step {state['step']}: non-finite weights ({bad}; the updates diverged): not saved; the "
                         f"last good checkpoint in {t.cfg.out} is intact (try a lower --lr, or --amp bf16)")
    states = [rng_state(t.device)] * t.world
    if t.world > 1:
        dist.all_gather_object(states, states[0], group=t.cpu_group)
    if t.rank == 0:
        ckpt = {"model": t.body.state_dict(), "config": asdict(t.body.cfg), "class": "RobertaForMaskedLM",
                "train": asdict(t.cfg), "optimizer": t.opt.state_dict(),
                "scaler": t.scaler.state_dict() if t.scaler else None, "state": dict(state), "rng": states,
                "tokenizer_sha256": tok_hash, "data_fingerprint": prepared.data_fingerprint(t.cfg.data)}
        checkpoints.save(os.path.join(t.cfg.out, "checkpoint.pt"), ckpt)  # atomic: a kill leaves the last one whole


def rng_state(device):
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.zeros(0, dtype=torch.uint8)}


def read_resume(cfg, tok_hash, lineage=None):
    """The checkpoint to resume, checked before any heavy work and before anything in --out changes: a train.py
    checkpoint of the same tokenizer, data (its fingerprint) and RESUME_KEYS, and a --max-steps at or beyond its
    step. These catch mix-ups, not a file crafted to pass them; what a hostile file cannot do is run code."""
    path = os.path.join(cfg.out, "checkpoint.pt")
    if not os.path.isfile(path):
        raise ValueError(f"--resume: no checkpoint.pt in {cfg.out} (on several nodes --out must be a folder every "
                         f"node shares)")
    check_out_apart(cfg)
    if int(os.environ.get("RANK", 0)) == 0:
        lock.hold(cfg.out, "train.py")  # one run per folder, before anything is written there
    ckpt = checkpoints.read_checkpoint(path)
    check_pretraining(ckpt, path)
    check_state(ckpt, path)
    if ckpt.get("tokenizer_sha256") != tok_hash:
        raise ValueError(f"{path}: trained with tokenizer {str(ckpt.get('tokenizer_sha256'))[:12]}, but --data "
                         f"{cfg.data} was prepared with tokenizer {tok_hash[:12]}")
    differ = prepared.fingerprint_differences(ckpt["data_fingerprint"], prepared.data_fingerprint(cfg.data))
    if differ:
        raise ValueError(f"{path}: trained on other data than --data {cfg.data} ({'; '.join(differ)}): the run would "
                         f"not continue the same data")
    check_same_start(ckpt, path, lineage)
    for key in RESUME_KEYS:
        if key == "max_positions" and ckpt["state"].get("init_from"):  # a continued run's are its start's
            continue
        was, now = ckpt["train"].get(key), getattr(cfg, key)
        option, was, now = masking_change(was, asdict(now)) if key == "masking" else \
            ("--" + key.replace("_", "-"), was, now)
        if was != now:
            raise ValueError(f"{path}: {option} was {was}, now {now}: the run would not continue the same "
                             f"{RESUME_KEYS[key]}")
    check_steps(ckpt, path, cfg)
    return ckpt


MASKING_OPTIONS = {"rate": "--mask-rate", "split": "--mask-split", "dynamic": "--masking",
                   "static_masks": "--static-masks"}


def masking_change(was, now):
    """(option, then, now) of the first field of data.Masking that differs, every field compared (one a student
    adds too), named by the option that sets it; equal values when none does."""
    if not isinstance(was, dict):
        return "--masking", was, now
    was, now = (json.loads(json.dumps(v)) for v in (was, now))  # tuples and lists alike
    for field in [*now, *(f for f in was if f not in now)]:
        then, this = was.get(field), now.get(field)
        if then != this:
            if field == "dynamic":
                then, this = ({True: "dynamic", False: "static"}.get(v, v) for v in (then, this))
            return MASKING_OPTIONS.get(field, f"the masking's {field}"), then, this
    return "--masking", None, None


def check_same_start(ckpt, path, lineage):
    """--resume with --init-from (`lineage`: what it names now): the run continued from those very weights."""
    then = ckpt["state"].get("init_from")
    if lineage is None or isinstance(then, dict) and then.get("weights_sha256") == lineage["weights_sha256"]:
        return
    was = f"continued from {then['path']} (weights {then['weights_sha256']})" if isinstance(then, dict) else \
        "started from random weights"
    raise ValueError(f"{path}: {was}, not from --init-from {lineage['path']} (weights {lineage['weights_sha256']}): "
                     f"--resume goes on from the run's own start (leave out --init-from)")


def check_pretraining(ckpt, path):
    """A train.py checkpoint with its training state, and the record of its data that --resume checks."""
    if "optimizer" not in ckpt or not isinstance(ckpt.get("state"), dict) or not isinstance(ckpt.get("train"), dict):
        if ckpt.get("task") or ckpt.get("class", "RobertaForMaskedLM") != "RobertaForMaskedLM":
            raise ValueError(f"{path}: a finetuned model (finetune.py's, {ckpt.get('task') or ckpt.get('class')}), not "
                             f"a pretraining run: train.py --resume continues only train.py's checkpoints")
        raise ValueError(f"{path}: a model without training state (not a train.py checkpoint)")
    if not isinstance(ckpt.get("data_fingerprint"), dict) or "offset" not in ckpt["state"]:
        raise ValueError(f"{path}: saved by an older train.py (no record of its data or of its place in the epoch): "
                         f"--resume cannot continue it exactly (start a new run)")
    if not all(isinstance(k, str) for k in ckpt["data_fingerprint"]):
        raise ValueError(f"{path}: its data_fingerprint is not a record of its data (a damaged or crafted file)")


def check_steps(ckpt, path, cfg):
    """A --max-steps at or beyond the checkpoint's step: refused below it, before anything in --out changes. At it,
    the run is finished: it is read back (the demo's second run), nothing trained and nothing written."""
    step = ckpt["state"]["step"]
    if step > cfg.max_steps:
        raise ValueError(f"{path}: the run is at step {step:,}, already past --max-steps {cfg.max_steps:,}; nothing "
                         f"was changed (a --max-steps above {step:,} trains it further)")
    if step == cfg.max_steps and int(os.environ.get("RANK", 0)) == 0:
        print(f"note: {path}: the run is finished (step {step:,}, its --max-steps): read back, nothing trained or "
              f"written", file=sys.stderr)


def count(value, high=None):  # a whole number in 0..high
    return type(value) is int and 0 <= value and (high is None or value <= high)


def check_state(ckpt, path):
    """The training state and random states a resume restores, each of its type and in its range, before any heavy
    work: a damaged or crafted file is refused in one line naming the field, not a traceback where it is used."""
    state, step = ckpt["state"], ckpt["state"].get("step")
    if not count(step):
        raise ValueError(f"{path}: its training state's step is {step!r}, not a step count (a damaged or crafted file)")
    fields = {"epoch": step, "position": None, "skipped": step, "tokens_seen": None, "offset": None}  # and their most
    for field, high in fields.items():
        value = state.get(field, 0)
        if not count(value, high):
            raise ValueError(f"{path}: its training state's {field} is {value!r}, not a count in 0.."
                             f"{'' if high is None else high} (a damaged or crafted file)")
    rng = ckpt.get("rng")
    if not isinstance(rng, list) or not rng or not all(isinstance(r, dict) and random_state(r.get("cpu"))
                                                       and byte_tensor(r.get("cuda")) for r in rng):
        raise ValueError(f"{path}: its rng is not every process's random states (a list of cpu and cuda states; a "
                         f"damaged or crafted file)")


def byte_tensor(value):
    return torch.is_tensor(value) and value.dtype == torch.uint8 and value.dim() == 1


def random_state(value):
    """Whether `value` is a CPU generator's state (tried on a generator of its own)."""
    try:
        torch.Generator().set_state(value)
        return byte_tensor(value)
    except (TypeError, RuntimeError):
        return False


def check_restorable(ckpt, model, opt, scaler, path):
    """The weights, optimizer and loss-scaler states are this model's: every tensor of its shape, AdamW's settings
    numbers, its moments per parameter (torch would load a wrong shape and fail at the first update)."""
    own, weights = model.state_dict(), ckpt["model"]
    names = set(weights) ^ set(own) if isinstance(weights, dict) else {"not a dict"}  # one name too many or missing
    bad = min(names, key=str, default=None) or \
        next((k for k in own if not torch.is_tensor(weights[k]) or weights[k].shape != own[k].shape), None)
    if bad:
        raise ValueError(f"{path}: its model is not this model's weights ({bad}: a damaged or crafted file)")
    now, saved = opt.state_dict(), ckpt["optimizer"]
    shapes = {i: p.shape for ours, g in zip(now["param_groups"], opt.param_groups) for i, p in zip(ours["params"],
                                                                                                   g["params"])}
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    if not (isinstance(groups, list) and len(groups) == len(now["param_groups"]) and isinstance(saved.get("state"), dict)
            and all(isinstance(g, dict) and g.get("params") == ours["params"] and all(
                setting(g.get(k), v) for k, v in ours.items()) for g, ours in zip(groups, now["param_groups"]))):
        raise ValueError(f"{path}: its optimizer is not AdamW's state for this model (its parameter groups or "
                         f"settings; a damaged or crafted file)")
    for i, moments in saved["state"].items():
        if i not in shapes or not isinstance(moments, dict) or not all(
                torch.is_tensor(moments.get(k)) and moments[k].shape == shapes[i] for k in ("exp_avg", "exp_avg_sq")) \
                or not (torch.is_tensor(moments.get("step")) and moments["step"].numel() == 1 and moments["step"] >= 0):
            raise ValueError(f"{path}: its optimizer state of parameter {i!r} is not AdamW's (a step, and two moments "
                             f"of the parameter's shape; a damaged or crafted file)")
    wanted, had = scaler.state_dict() if scaler and ckpt.get("scaler") else {}, ckpt.get("scaler")
    if wanted and not (isinstance(had, dict) and all(setting(had.get(k), v) for k, v in wanted.items())):
        raise ValueError(f"{path}: its scaler is not a loss scaler's state (a damaged or crafted file)")


def setting(value, like):
    """Whether a saved setting `value` is of the kind of ours (`like`): a flag, a number >= 0, a pair of numbers in
    [0, 1) (AdamW's betas), or the same."""
    if like is None or isinstance(like, bool):
        return value is None or isinstance(value, bool)
    if isinstance(like, (int, float)):
        return type(value) in (int, float) and math.isfinite(value) and value >= 0
    if isinstance(like, tuple):
        return isinstance(value, (tuple, list)) and len(value) == len(like) and all(
            type(v) in (int, float) and 0 <= v < 1 for v in value)
    return type(value) is type(like)


def restore(ckpt, model, opt, scaler, cfg, rank, device, examples):
    """Load the model, optimizer, loss scaler and this process's random states (checked first, and the data position
    inside an epoch of `examples`); returns the training state."""
    path, state = os.path.join(cfg.out, "checkpoint.pt"), ckpt["state"]
    if not state["position"] <= state["offset"] <= examples:  # the next batch at most `offset` examples in
        raise ValueError(f"{path}: its training state's offset {state['offset']} (at position {state['position']}) is "
                         f"not a place in an epoch of {examples:,} examples (a damaged or crafted file)")
    if not isinstance(ckpt["config"], dict):
        raise ValueError(f"{path}: its config is not a dict of the model's settings (a damaged or crafted file)")
    if ckpt["config"] != asdict(model.cfg):
        now = asdict(model.cfg)
        diff = [f"{k} {v} then, {now.get(k)} now" for k, v in ckpt["config"].items() if v != now.get(k)]
        raise ValueError(f"{cfg.out}: its model differs from this run's --config {cfg.config} ({'; '.join(diff)}): "
                         f"give the --config, --dropout and --max-positions it was trained with")
    check_restorable(ckpt, model, opt, scaler, path)
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    if scaler and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    if rank < len(ckpt["rng"]):
        rng = ckpt["rng"][rank]
        torch.set_rng_state(rng["cpu"])
        if device.type == "cuda" and rng["cuda"].numel():
            if rng["cuda"].numel() != torch.cuda.get_rng_state(device).numel():
                raise ValueError(f"{path}: its rng's cuda state is not a GPU generator's (a damaged or crafted file)")
            torch.cuda.set_rng_state(rng["cuda"], device)
    else:  # a process the saved run did not have (resumed on more): a random state of its own, from seed, step, rank
        torch.manual_seed(int(np.random.SeedSequence([cfg.seed, ckpt["state"]["step"], rank]).generate_state(1)[0]))
    then, now = ckpt["train"], asdict(cfg)
    changed = [f"--{k.replace('_', '-')} {then.get(k)} -> {now.get(k)}" for k in [*now, *(k for k in then if k not in now)]
               if k not in RESUME_KEYS and k not in QUIET_KEYS and then.get(k) != now.get(k)]
    if changed and rank == 0 and ckpt["state"]["step"] < cfg.max_steps:  # the settings of the updates changed since
        print(f"note: {cfg.out}: resumed at step {ckpt['state']['step']:,} with {', '.join(changed)}: from here its "
              f"updates differ from the uninterrupted run's", file=sys.stderr)
    return dict(ckpt["state"])


def init_out(cfg, tok, model_cfg, world, start_step, lineage=None):
    """The output folder: the tokenizer, the settings, and on resume the log cut back to the checkpoint (the resumed
    run writes those lines again, identically). A finished run read back (at its --max-steps) writes nothing."""
    if cfg.resume and start_step >= cfg.max_steps:
        return
    os.makedirs(cfg.out, exist_ok=True)
    tok.save(cfg.out)  # the folder is all evaluate.py and finetune.py need
    keep_log_until(os.path.join(cfg.out, "log.jsonl"), start_step)
    settings = {"train": asdict(cfg), "model": asdict(model_cfg), "processes": world, "init_from": lineage}
    files.write_atomic(os.path.join(cfg.out, "train_config.json"), files.json_text(settings, indent=2))


def check_fresh_out(cfg, master, tok):
    """A new run: refuse an --out that holds a checkpoint, unless --overwrite (then start again there)."""
    check_out_apart(cfg)
    if master:
        lock.hold(cfg.out, "train.py")  # one run per folder, before anything is written there
    ckpt = os.path.join(cfg.out, "checkpoint.pt")
    if not os.path.isfile(ckpt):
        if not cfg.overwrite:
            prepared.check_not_users(cfg.out, ("log.jsonl",), "train_config.json", "a train.py run", tok)
        return
    if not cfg.overwrite:
        raise ValueError(f"{cfg.out} already holds a checkpoint: pass --resume to continue it, --overwrite to "
                         f"start again, or choose another --out")
    for name in ("checkpoint.pt", "log.jsonl") if master else ():
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(cfg.out, name))


# ---------------------------------------------------------------------------------------- --init-from
def lineage(path):
    """What a continued run (--init-from) records of its start, in train_config.json and checkpoint.pt: PATH, the
    class its weights were saved from, and the sha256 of its weights file (the one checkpoints.read_weights reads)."""
    name = next(n for n in ("checkpoint.pt", "model.safetensors", "pytorch_model.bin")
                if os.path.isfile(os.path.join(path, n)))
    with open(os.path.join(path, name), "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()[:16]
    if name == "checkpoint.pt":
        ckpt = checkpoints.recorded(path)
        kind = "finetuned " * bool(ckpt.get("task")) + str(ckpt.get("class", "RobertaForMaskedLM"))
    else:
        kind = (files.read_json(os.path.join(path, "config.json")).get("architectures") or ["RobertaModel"])[0]
    return {"path": os.path.abspath(path), "class": kind, "weights_sha256": digest}


def check_start(cfg, path_tok_hash, tok_hash, positions):
    """--init-from PATH can continue on --data: the data was prepared with PATH's tokenizer (meta.json's fingerprint)
    and --seq-len fits PATH's positions. Refused before anything is written."""
    if path_tok_hash != tok_hash:
        raise ValueError(f"--data {cfg.data} was prepared with tokenizer {tok_hash[:12]}, not --init-from "
                         f"{cfg.init_from}'s tokenizer {path_tok_hash[:12]} (its vocab.json + merges.txt): prepare "
                         f"your text with it: python data.py --tokenizer {cfg.init_from} --input FILE --out DIR")
    if cfg.seq_len > positions:
        raise ValueError(f"--seq-len {cfg.seq_len} is longer than the {positions} positions of --init-from "
                         f"{cfg.init_from}'s model")


SHAPE = {"hidden_size": "hidden", "num_layers": "layers", "num_heads": "heads", "ffn_size": "FFN"}


def say_start(cfg, lineage, new, sizes, recipe):
    """What a continued run says as it starts (first process): what PATH gave (its encoder, and its LM head where
    it has one: a finetuned model gives its encoder only), what is new, and --config's sizes where PATH's differ.
    `new`: the model's tensors PATH did not give; `sizes`, `recipe`: the model's and --config's sizes (dicts)."""
    heads = sorted({k.split(".")[0] for k in new})
    what = "loaded its encoder and LM head" if "lm_head" not in heads else "loaded its encoder only"
    print(f"note: --init-from {cfg.init_from} ({lineage['class']}, weights {lineage['weights_sha256']}): {what}"
          + (f"; new: {', '.join(heads)}" if heads else "") + "; a fresh optimizer, schedule and data order",
          file=sys.stderr)
    if any(sizes[k] != recipe[k] for k in SHAPE):
        shape = lambda d: ", ".join(f"{name} {d[k]}" for k, name in SHAPE.items())  # noqa: E731
        print(f"note: the model's sizes are --init-from's ({shape(sizes)}), not --config {cfg.config}'s "
              f"({shape(recipe)}): --config gives only the recipe", file=sys.stderr)


def log(path, record):  # strict JSON: a non-finite number written as a string ("nan", "inf")
    files.append(path, files.json_text(record) + "\n")


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


def log_record(tr, step, loss, nsp_loss, meter, state, lr):
    """The logged step's record: its losses (train.py's), lr, tokens/s, MFU, epoch, skipped updates."""
    tps, mfu = meter.read()
    record = {"step": step, "loss": round(loss, 6) if math.isfinite(loss) else str(loss), "lr": lr,
              "tokens_per_s": round(tps, 1), "mfu": mfu and round(mfu, 4),  # None: unknown
              "epoch": state["epoch"], "skipped": state["skipped"], "tokens_seen": state.get("tokens_seen", 0)}
    if not math.isfinite(loss):
        record["skipped"] = "non-finite loss"
    if nsp_loss:
        record["nsp_loss"] = round(nsp_loss, 6)
    if tr.scaler:
        record["loss_scale"] = tr.scaler.get_scale()
    return record
