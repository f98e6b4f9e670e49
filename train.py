"""RoBERTa pretraining: masked language modelling with the paper's recipe, from a laptop CPU to many GPUs.

    python train.py                                  # the built-in demo: corpus, tokenizer, model, run
    python train.py --config tiny --data DIR --out DIR
    torchrun --standalone --nproc_per_node 8 train.py --config base --data DIR --out DIR --amp bf16

What the paper changes from BERT, and where it is here:
  - dynamic masking, a new mask each time a sequence is served (Section 4.1): data.mask_batch
  - FULL-SENTENCES inputs without next-sentence prediction (Section 4.2): --format, data.examples
  - large batches (Section 4.3): --batch-size sequences per update, reached by gradient accumulation
    over --micro-batch-size per process, with no gradient all-reduce on the non-final micro-batches
  - Adam beta2 = 0.98, eps = 1e-6, linear warmup then linear decay (Section 3.1, Table 9): lr_at

The logged loss is the mean over every masked token of the whole update, on every process, so the same
--batch-size gives the same losses for any number of processes (footnote 8, made checkable).
Losses are natural-log cross-entropies (fairseq logs base 2: divide by ln 2); valid_ppl = exp(valid_loss).
"""
import argparse
import contextlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist

import bpe
import data
import roberta

# Pretraining recipes. base and large are Table 9 (8K sequences of 512 tokens per update, 500K updates);
# tiny and small are classroom runs that finish on a CPU.
RECIPES = {
    "tiny": dict(seq_len=128, batch_size=16, lr=1e-3, warmup_steps=100, max_steps=1000),
    "small": dict(seq_len=128, batch_size=64, lr=5e-4, warmup_steps=500, max_steps=10_000),
    "base": dict(seq_len=512, batch_size=8192, lr=6e-4, warmup_steps=24_000, max_steps=500_000),
    "large": dict(seq_len=512, batch_size=8192, lr=4e-4, warmup_steps=30_000, max_steps=500_000),
}


@dataclass
class TrainConfig:
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
    adam_betas: tuple = (0.9, 0.98)
    adam_eps: float = 1e-6
    clip_grad: float = 0.0         # the paper does not clip
    amp: str = "none"              # none | bf16 | fp16 (GPU only)
    format: str = "full-sentences"
    masking: str = "dynamic"
    dropout: float = 0.1
    seed: int = 0
    log_interval: int = 10
    eval_interval: int = 200
    eval_sequences: int = 512      # held-out sequences per evaluation (the same set for any process count)
    save_interval: int = 200
    max_bad_steps: int = 5         # consecutive non-finite losses before the run stops
    compile: bool = False
    resume: bool = False


def lr_at(step, cfg):
    return roberta.linear_lr(step, cfg.lr, cfg.warmup_steps, cfg.max_steps)


class Stop(Exception):
    """A clear, one-line reason to end the run (printed without a traceback)."""


# ---------------------------------------------------------------------------------------- setup
def setup_distributed():
    """(rank, world, device). torchrun sets RANK/WORLD_SIZE; a plain `python train.py` is one process."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank, local = int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def all_sum(values, device, world):
    """Sum a list of numbers over all processes (one all-reduce)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if world > 1:
        dist.all_reduce(t)
    return t.tolist()


def check_data(cfg):
    if not cfg.data:
        raise Stop("--data is required (a folder written by data.py), or run `python train.py` for the demo")
    tokens, line_ends, meta = data.load_split(cfg.data, "train")
    tok = bpe.Tokenizer.load(cfg.data)
    if meta["vocab_size"] != len(tok) or meta["tokenizer_sha256"] != data.tokenizer_hash(tok):
        raise Stop(f"{cfg.data}: its tokenizer files do not match the data in it (meta.json)")
    return tokens, line_ends, meta, tok


def build_model(cfg, tok):
    model_cfg = roberta.RobertaConfig.preset(
        cfg.config, vocab_size=len(tok), pad_id=tok.pad_id, dropout=cfg.dropout, attention_dropout=cfg.dropout,
        max_positions=max(512, cfg.seq_len), next_sentence_head=cfg.format in ("segment-pair", "sentence-pair"))
    torch.manual_seed(cfg.seed)
    return roberta.RobertaForMaskedLM(model_cfg)


# ---------------------------------------------------------------------------------------- checkpoints
def save_checkpoint(path, model, opt, scaler, cfg, state, rng_states, tok_hash):
    ckpt = {"model": model.state_dict(), "config": asdict(model.cfg), "class": "RobertaForMaskedLM",
            "train": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()},
            "optimizer": opt.state_dict(), "scaler": scaler.state_dict() if scaler else None,
            "state": state, "rng": rng_states, "tokenizer_sha256": tok_hash}
    tmp = f"{path}.tmp"
    torch.save(ckpt, tmp)
    os.replace(tmp, path)  # atomic: a kill leaves the previous checkpoint whole


def rng_state(device):
    return {"cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.zeros(0, dtype=torch.uint8)}


def load_for_resume(path, model, opt, scaler, cfg, tok_hash, rank, device):
    ckpt = roberta.read_checkpoint(path)
    if ckpt.get("tokenizer_sha256") != tok_hash:
        raise Stop(f"{path}: trained with another tokenizer than {cfg.data}'s")
    if ckpt["config"] != asdict(model.cfg):
        diff = [k for k in ckpt["config"] if ckpt["config"][k] != asdict(model.cfg).get(k)]
        raise Stop(f"{path}: its model differs from --config {cfg.config} ({', '.join(diff)})")
    if "optimizer" not in ckpt or "state" not in ckpt:
        raise Stop(f"{path}: a model without training state (not a train.py checkpoint)")
    for key in ("batch_size", "seq_len", "format", "masking", "seed"):
        if ckpt["train"][key] != getattr(cfg, key):
            raise Stop(f"{path}: --{key.replace('_', '-')} was {ckpt['train'][key]}, now {getattr(cfg, key)}: "
                       f"the run would not continue the same data")
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    if scaler and ckpt["scaler"]:
        scaler.load_state_dict(ckpt["scaler"])
    rng = ckpt["rng"][rank] if rank < len(ckpt["rng"]) else ckpt["rng"][0]
    torch.set_rng_state(rng["cpu"])
    if device.type == "cuda" and rng["cuda"].numel():
        torch.cuda.set_rng_state(rng["cuda"], device)
    return ckpt["state"]


# ---------------------------------------------------------------------------------------- training
def train(cfg):
    rank, world, device = setup_distributed()
    master = rank == 0
    try:
        return _train(cfg, rank, world, device, master)
    finally:
        if world > 1:
            dist.destroy_process_group()


def _train(cfg, rank, world, device, master):
    from tqdm import tqdm
    if cfg.amp == "fp16" and device.type != "cuda":
        raise Stop("--amp fp16 needs a GPU (it loses range on CPU); use --amp bf16")
    micro = cfg.micro_batch_size or cfg.batch_size // world
    by_tokens = cfg.format in ("doc-sentences", "sentence-pair")  # variable sequences per batch
    if not by_tokens and cfg.batch_size % (micro * world):
        raise Stop(f"--batch-size {cfg.batch_size} is not divisible by --micro-batch-size {micro} "
                   f"x {world} processes")
    if cfg.format not in data.FORMATS:
        raise Stop(f"unknown --format {cfg.format}")

    tokens, line_ends, meta, tok = check_data(cfg)
    valid_tokens, valid_ends, _ = data.load_split(cfg.data, "valid")
    ex = data.examples(tokens, line_ends, cfg.format, cfg.seq_len, tok.eos_id, seed=cfg.seed)
    lengths = data.example_lengths(ex)
    budget = cfg.batch_size * cfg.seq_len if by_tokens else None

    model = build_model(cfg, tok).to(device)
    opt = torch.optim.AdamW(roberta.param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=tuple(cfg.adam_betas),
                            eps=cfg.adam_eps, fused=True)
    scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
    amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.amp]
    ckpt_path = os.path.join(cfg.out, "checkpoint.pt")
    log_path = os.path.join(cfg.out, "log.jsonl")

    state = {"step": 0, "epoch": 0, "position": 0, "skipped": 0, "bad_in_a_row": 0}
    if cfg.resume:
        if not os.path.isfile(ckpt_path):
            raise Stop(f"--resume: no checkpoint.pt in {cfg.out}")
        state = load_for_resume(ckpt_path, model, opt, scaler, cfg, meta["tokenizer_sha256"], rank, device)
    elif os.path.isfile(ckpt_path):
        raise Stop(f"{cfg.out} already holds a checkpoint: pass --resume to continue it, or choose another --out")
    if master:
        os.makedirs(cfg.out, exist_ok=True)
        tok.save(cfg.out)  # the folder is all evaluate.py and finetune.py need
        keep_log_until(log_path, state["step"])
        with open(os.path.join(cfg.out, "train_config.json"), "w") as f:
            json.dump({"train": asdict(cfg), "model": asdict(model.cfg), "processes": world}, f, indent=2)

    body = model  # the plain module: checkpoints and evaluation use it
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    if cfg.compile:
        model = torch.compile(model)
    peak = roberta.matmul_peak(device, amp_dtype or torch.float32)
    flops_per_token = 3 * roberta.flops_per_token(body.cfg, cfg.seq_len, lm_positions_fraction=0.15)

    batches = data.epoch_batches(lengths, cfg.batch_size, cfg.seed, state["epoch"], budget)
    if not batches:
        raise Stop(f"{cfg.data}: too little data for one batch of {cfg.batch_size} sequences of {cfg.seq_len}")
    bar = tqdm(total=cfg.max_steps, initial=state["step"], disable=not master, dynamic_ncols=True)
    t0, tokens_seen = time.perf_counter(), 0
    while state["step"] < cfg.max_steps:
        if state["position"] >= len(batches):
            state["epoch"], state["position"] = state["epoch"] + 1, 0
            batches = data.epoch_batches(lengths, cfg.batch_size, cfg.seed, state["epoch"], budget)
        global_batch = batches[state["position"]]
        mine = data.shard(global_batch, rank, world)
        step = state["step"]
        lr = lr_at(step, cfg)
        for group in opt.param_groups:
            group["lr"] = lr

        # mask every micro-batch first: the loss is normalised by the targets of the whole update
        micro_batches, counts = [], [0, 0]  # counts: targets and real tokens of this process
        for i in range(0, len(mine), micro):
            idx = mine[i:i + micro]
            ids, nsp = data.collate(tokens, ex[idx], cfg.seq_len, tok)
            inputs, labels = data.mask_batch(ids, idx, tok, cfg.seed, state["epoch"], cfg.masking == "static")
            counts[0] += int((labels != -100).sum())
            counts[1] += int((ids != tok.pad_id).sum())
            micro_batches.append((inputs.to(device), labels.to(device), None if nsp is None else nsp.to(device)))
        n_targets, n_tokens = all_sum(counts, device, world)
        n_sequences = len(global_batch)

        sums = torch.zeros(2, dtype=torch.float64, device=device)  # MLM and NSP loss sums, no sync per micro-batch
        for i, (inputs, labels, nsp) in enumerate(micro_batches):
            last = i == len(micro_batches) - 1
            sync = model.no_sync() if world > 1 and not last else contextlib.nullcontext()
            with sync, torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                out = model(inputs, labels=labels, reduction="sum", nsp_labels=nsp)
                mlm, nsp_loss = out if isinstance(out, tuple) else (out, None)
                # DDP averages gradients over processes: scale by `world` to get the sum over all
                loss = mlm / max(n_targets, 1) * world
                if nsp_loss is not None:
                    loss = loss + nsp_loss / n_sequences * world
                (scaler.scale(loss) if scaler else loss).backward()
            sums[0] += mlm.detach()
            if nsp_loss is not None:
                sums[1] += nsp_loss.detach()
        if world > 1:
            dist.all_reduce(sums)
        loss_sum, nsp_sum = sums.tolist()
        loss_value = loss_sum / max(n_targets, 1) + nsp_sum / n_sequences

        if not math.isfinite(loss_value):  # skip the update; stop after too many in a row
            opt.zero_grad(set_to_none=True)
            state["skipped"] += 1
            state["bad_in_a_row"] += 1
            if master:
                log(log_path, {"step": step + 1, "skipped": "non-finite loss", "loss": str(loss_value)})
            if state["bad_in_a_row"] >= cfg.max_bad_steps:
                raise Stop(f"{state['bad_in_a_row']} non-finite losses in a row at step {step + 1}: stopping; "
                           f"the last good checkpoint in {cfg.out} is intact (try a lower --lr, or --amp bf16)")
            if scaler:
                scaler.update(scaler.get_scale() / 2)
            state["position"] += 1
            continue
        state["bad_in_a_row"] = 0
        if scaler:
            scaler.unscale_(opt)
        if cfg.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
        if scaler:
            scale = scaler.get_scale()
            scaler.step(opt)
            scaler.update()
            if scaler.get_scale() < scale:  # an overflow: GradScaler skipped this update
                state["skipped"] += 1
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)
        state["step"], state["position"] = step + 1, state["position"] + 1
        tokens_seen += n_tokens

        step = state["step"]
        record = None
        if step % cfg.log_interval == 0 or step == cfg.max_steps:
            elapsed = time.perf_counter() - t0
            tps = tokens_seen / elapsed
            record = {"step": step, "loss": round(loss_value, 6), "lr": lr, "tokens_per_s": round(tps, 1),
                      "mfu": round(tps * flops_per_token / (peak * world), 4), "epoch": state["epoch"],
                      "skipped": state["skipped"]}
            if nsp_sum:
                record["nsp_loss"] = round(nsp_sum / n_sequences, 6)
            t0, tokens_seen = time.perf_counter(), 0
        if step % cfg.eval_interval == 0 or step == cfg.max_steps:
            total, count = data.heldout_loss(body, valid_tokens, valid_ends, tok, cfg.seq_len, micro, rank=rank,
                                             world=world, device=device, max_sequences=cfg.eval_sequences,
                                             amp_dtype=amp_dtype)
            total, count = all_sum([total, count], device, world)
            if count:
                record = record or {"step": step}
                record["valid_loss"] = round(total / count, 6)
                record["valid_ppl"] = round(math.exp(min(total / count, 50)), 4)
        if record and master:
            log(log_path, record)
            bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{lr:.2e}", tok_s=f"{record.get('tokens_per_s', 0):.0f}")
        bar.update(1)
        if step % cfg.save_interval == 0 or step == cfg.max_steps:
            states = [None] * world
            if world > 1:
                dist.all_gather_object(states, rng_state(device))
            else:
                states = [rng_state(device)]
            if master:
                save_checkpoint(ckpt_path, body, opt, scaler, cfg, dict(state), states, meta["tokenizer_sha256"])
    bar.close()
    return body, tok


def log(path, record):
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def keep_log_until(path, step):
    """On resume, drop log lines past the checkpoint: the resumed run writes them again, identically."""
    if not os.path.isfile(path):
        return
    with open(path) as f:
        lines = [line for line in f if json.loads(line).get("step", 0) <= step]
    with open(path, "w") as f:
        f.writelines(lines)


# ---------------------------------------------------------------------------------------- the demo
DEMO_PROMPTS = ['The "for" statement is used to iterate over the elements of a <mask>.',
                "A function definition defines a user-defined function <mask>.",
                "Strings are immutable sequences of Unicode code <mask>."]


def demo(args):
    """`python train.py`: the built-in corpus (Python's reference docs), a tokenizer, a tiny model."""
    cache = os.path.join("cache", "demo")
    corpus = os.path.join(cache, "corpus.txt")
    if not os.path.isfile(corpus):
        data.builtin_corpus(corpus)
    if not os.path.isfile(os.path.join(cache, "tokenizer", "vocab.json")):
        print("training a byte-level BPE tokenizer (vocabulary 8192) on the built-in corpus")
        bpe.Tokenizer.train(bpe.read_lines(corpus), 8192, verbose=True).save(os.path.join(cache, "tokenizer"))
    if not os.path.isfile(os.path.join(cache, "data", "meta.json")):
        data.prepare([corpus], os.path.join(cache, "tokenizer"), os.path.join(cache, "data"), valid_fraction=0.1)
    cfg = TrainConfig(config="tiny", data=os.path.join(cache, "data"), out=args.out or os.path.join("out", "demo"),
                      eval_interval=250, save_interval=250, max_steps=args.max_steps or 1000)
    cfg.resume = os.path.isfile(os.path.join(cfg.out, "checkpoint.pt"))
    print(f"pretraining a tiny RoBERTa ({cfg.max_steps} steps of {cfg.batch_size}x{cfg.seq_len} tokens) into {cfg.out}")
    model, tok = train(cfg)
    valid_tokens, valid_ends, _ = data.load_split(cfg.data, "valid")
    total, count = data.heldout_loss(model, valid_tokens, valid_ends, tok, cfg.seq_len)
    print(f"\nheld-out perplexity: {math.exp(total / count):.2f} (loss {total / count:.3f} nats per masked token)")
    for prompt in DEMO_PROMPTS:
        guesses = ", ".join(f"{t.strip()!r} {p:.2f}" for t, p in roberta.fill_mask(model, tok, prompt, k=3))
        print(f"{prompt}  ->  {guesses}")


# ---------------------------------------------------------------------------------------- command line
def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="tiny", help="model size and default recipe: " + ", ".join(RECIPES))
    p.add_argument("--data", default="", help="a folder written by data.py (omit for the built-in demo)")
    p.add_argument("--out", default="", help="checkpoint.pt, log.jsonl and tokenizer files go here")
    p.add_argument("--seq-len", type=int)
    p.add_argument("--batch-size", type=int, help="sequences per optimizer update, all processes together")
    p.add_argument("--micro-batch-size", type=int, help="sequences per forward/backward in each process")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--warmup-steps", type=int)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--clip-grad", type=float, default=0.0, help="max gradient norm (0: none, as the paper)")
    p.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none")
    p.add_argument("--format", choices=data.FORMATS, default="full-sentences")
    p.add_argument("--masking", choices=["dynamic", "static"], default="dynamic")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-interval", type=int, default=10)
    p.add_argument("--eval-interval", type=int, default=200)
    p.add_argument("--eval-sequences", type=int, default=512, help="held-out sequences per evaluation")
    p.add_argument("--save-interval", type=int, default=200)
    p.add_argument("--compile", action="store_true", help="torch.compile the encoder")
    p.add_argument("--resume", action="store_true", help="continue from --out's checkpoint.pt")
    return p.parse_args(argv)


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        if not args.data:
            return demo(args)
        if args.config not in RECIPES:
            raise Stop(f"unknown --config {args.config!r}: choose one of {', '.join(RECIPES)}")
        recipe = RECIPES[args.config]
        overrides = {k: v for k, v in vars(args).items() if v is not None and k in TrainConfig.__dataclass_fields__}
        cfg = TrainConfig(**{**recipe, **overrides, "micro_batch_size": args.micro_batch_size or 0,
                             "out": args.out or "out"})
        train(cfg)
    except (Stop, OSError, ValueError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
