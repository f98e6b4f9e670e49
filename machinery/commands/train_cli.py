"""train.py's command line: the option table (one line per option, its check and its help), parsing, the
TrainConfig it makes, and main (`python train.py` hands over here). Defaults come from train.TrainConfig and
train.RECIPES, nowhere else.
"""
import argparse
import contextlib
import math
import os
import re
import signal
import sys
from dataclasses import asdict

import torch.distributed as dist

import data
import train
from machinery.basics import baselines, cli
from machinery.commands import demo
from machinery.datafolder import index
from machinery.formats import prepared


def fail(message):
    raise argparse.ArgumentTypeError(message)


def masking(field, parse, expected):
    """An option of data.Masking's `field`: parsed, then checked by data.Masking itself."""
    def check(text):
        try:
            value = parse(text)
        except ValueError:
            fail(f"expected {expected}, got {text!r}")
        try:
            data.Masking(**{field: value})
        except ValueError as e:
            fail(str(e))
        return value
    return check


def options(recipes=train.RECIPES):
    """(option, argparse type or choices, help)."""
    return [
        ("config", lambda name: name if name in recipes else fail(f"unknown --config {name!r}: choose one of "
                                                                 f"{', '.join(recipes)}"),
         "model size and recipe: tiny, small (classroom CPUs), base, large (Table 9)"),
        ("data", cli.path_arg, "a folder written by data.py"),
        ("out", cli.path_arg, "checkpoint.pt, log.jsonl and the tokenizer files go here"),
        ("seq_len", cli.number(int, 8), "tokens per sequence (at most --max-positions)"),
        ("batch_size", cli.number(int, 1), "sequences per optimizer update, all processes together (Section 4.3)"),
        ("micro_batch_size", cli.number(int, 1), "sequences per forward/backward in each process"),
        ("lr", cli.number(float, 0, 10 ** 6, low_open=True), "peak learning rate (Table 9), in (0, 1e6]"),
        ("warmup_steps", cli.number(int, 0), "updates of linear warmup"),
        ("max_steps", cli.number(int, 1), "optimizer updates in all"),
        ("weight_decay", cli.number(float, 0, 10), "AdamW weight decay (not on biases and LayerNorms), in [0, 10]"),
        ("clip_grad", cli.number(float, 0, 10 ** 6), "max gradient norm (0: none, as the paper), in [0, 1e6]"),
        ("amp", ["none", "bf16", "fp16"], "mixed precision (fp16 needs a GPU and uses a loss scaler)"),
        ("format", list(data.FORMATS), "input format of Section 4.2 (the pair formats add the NSP loss)"),
        ("tokens_per_batch", cli.number(int, 0), "doc-sentences and sentence-pair: tokens per update, as many "
                                                 "sequences as fit (Section 4.2; 0: batch-size x seq-len)"),
        ("masking", ["dynamic", "static"], "a new mask every epoch, or one of 10 fixed masks (Section 4.1)"),
        ("static_masks", cli.number(int, 1),
         "--masking static: how many fixed masks, epoch e sees mask e %% N (BERT: 10)"),
        ("mask_rate", masking("rate", float, "a number"), "share of tokens that become targets, in (0, 1) (Section 4.1)"),
        ("mask_split", masking("split", lambda t: tuple(float(x) for x in t.split(",")), "numbers like 0.8,0.1,0.1"),
         "of the targets: shown as <mask>, random, unchanged (three shares >= 0, summing to 1)"),
        ("dropout", cli.number(float, 0, 0.99), "dropout, also on attention weights, in [0, 0.99]"),
        ("max_positions", cli.number(int, 8, 65536), "the model's position table (RoBERTa: 512); for a new model only"),
        ("seed", cli.number(int, 0, 2 ** 31 - 1), "seed of the initialisation, data order, masks and dropout"),
        ("log_interval", cli.number(int, 1), "log every N updates"),
        ("eval_interval", cli.number(int, 1), "evaluate held-out loss every N updates"),
        ("eval_sequences", cli.number(int, 1), "held-out sequences per evaluation"),
        ("save_interval", cli.number(int, 1), "save checkpoint.pt every N updates"),
        ("device", lambda name: name if re.fullmatch(r"cpu|cuda(:\d+)?", name) else fail(
            f"expected cpu, cuda or cuda:N, got {name!r}"), "cpu, cuda or cuda:N"),
        ("init_from", cli.path_arg, "continue pretraining from the weights of a Hugging Face RoBERTa folder or a "
                                    "train.py/finetune.py run folder: its model sizes (not --config's), its LM head "
                                    "where it has one, a fresh optimizer, schedule and data order; --data must be "
                                    "prepared with its tokenizer"),
        ("prefetch", cli.number(int, 0), "updates prepared ahead by a background thread (0: none, in the loop)"),
        ("prepare_delay", cli.number(float, 0, 60), "seconds added to each update's preparation, in [0, 60], "
                                                "to measure how much of it the background thread hides (bench.py)"),
    ]


def parse(argv, recipes=train.RECIPES):
    d = demo.DEMO
    p = cli.ArgumentParser(description=train.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=(
        f"The defaults above are those of a run with --data. Without --data, `python train.py` runs the built-in demo "
        f"with its own settings: a {d['vocab_size']:,}-token vocabulary, --config {d['config']}, {d['max_steps']:,} "
        f"updates of {d['batch_size']} x {d['seq_len']} tokens at lr {d['lr']} ({d['warmup_steps']} warmup), "
        f"{d['masking'].rate:.0%} masking, dropout {d['dropout']}; it takes only --out, --max-steps, --seed, --device "
        f"and --overwrite. Run again, it resumes or shows its finished run in --out (default {demo.OUT})."))
    defaults = {**asdict(train.TrainConfig()), "mask_rate": data.Masking.rate, "mask_split": "0.8,0.1,0.1",
                "masking": "dynamic", "static_masks": data.Masking.static_masks, "device": "cuda when available",
                "data": "none: the built-in demo", "init_from": "none: random weights",
                "micro_batch_size": "batch-size / processes if it fits the device's free memory, else the largest "
                                    "power of two that does, said in one line"}
    for name, kind, help in options(recipes):
        typed = {"choices": kind} if isinstance(kind, list) else {"type": kind}
        recipe = " (tiny's; --config changes it)" if any(name in r for r in recipes.values()) else ""
        p.add_argument("--" + name.replace("_", "-"), default=None, help=f"{help} (default: {defaults[name]}{recipe})",
                       **typed)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the model (default: on for CUDA, off on CPU)")
    p.add_argument("--deterministic", action="store_true", default=None,
                   help="torch's deterministic algorithms, for GPU runs that repeat exactly (default: off; CPU runs are "
                        "exact without it)")
    p.add_argument("--resume", action="store_true", help="continue from --out's checkpoint.pt")
    p.add_argument("--overwrite", action="store_true", help="start again in an --out that holds a checkpoint")
    return p.parse_args(argv)


def config_from_args(args, recipes=train.RECIPES):
    """TrainConfig defaults, then the --config recipe, then the options given."""
    given = {k: v for k, v in vars(args).items() if v is not None}
    masking = data.Masking(rate=given.pop("mask_rate", data.Masking.rate),
                           split=given.pop("mask_split", data.Masking.split),
                           dynamic=given.pop("masking", "dynamic") == "dynamic",
                           static_masks=given.pop("static_masks", data.Masking.static_masks))
    cfg = train.TrainConfig(**{**recipes[args.config or "tiny"], **given, "masking": masking})
    cli.warn_short_warmup(cfg)
    return cfg


def main(argv=None):
    """`python train.py`: with --data, pretrain as the options say; without, the built-in demo (demo.py)."""
    args = parse(sys.argv[1:] if argv is None else argv)

    def pretrain():
        cfg = config_from_args(args) if args.data else demo.setup(args)  # no --data: the demo's data, made once
        with peers_kept(cfg):
            model, tok = train.train(cfg, index.run_examples(cfg))  # kept beside the data at the paper's scale
        if args.data:
            return run_summary(model, tok, cfg)  # held-out perplexity beside the unigram's
        demo.report(model, tok, cfg)
    cli.run(pretrain)


@contextlib.contextmanager
def peers_kept(cfg):
    """A process of a distributed run whose peer is lost (killed, or its machine gone: torch.distributed's error in
    the next collective; under torchrun, the SIGTERM it sends the others) stops in one line: which, and how to resume."""
    world, rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
    if world > 1:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(
            f"error: rank {rank} was stopped (SIGTERM: torchrun stops every process of a run when one ends, and its "
            f"report names which); {how_to_resume(cfg)}"))
    try:
        yield
    except RuntimeError as err:
        if world == 1 or not (isinstance(err, dist.DistError) or "by peer" in str(err)):
            raise
        who = f"rank {1 - rank}" if world == 2 else "a process"  # more: gloo names its address, not its rank
        why = re.sub(r"^\[[^]]*\] *", "", (str(err).splitlines() or [""])[0]).split(". ")[0][:100]
        raise ValueError(f"lost {who} of the {world} processes of this run ({why}): rank {rank} stops too; "
                         f"{how_to_resume(cfg)}") from None


def how_to_resume(cfg):
    if os.path.isfile(os.path.join(cfg.out, "checkpoint.pt")):
        return f"rerun the same command with --resume to continue from the last checkpoint in {cfg.out}"
    return "no checkpoint was saved yet: rerun the same command"


def run_summary(model, tok, cfg):
    """What every `train.py --data` run ends with (the first process): held-out perplexity on the run's own
    evaluation masks (log.jsonl's last valid_ppl) beside the unigram baseline's on the same masks."""
    if int(os.environ.get("RANK", 0)) != 0:
        return
    valid, ends, _ = prepared.load_split(cfg.data, "valid")
    if valid.size == 0:
        print(f"{cfg.out}: no held-out data in {cfg.data}, so no held-out perplexity to compare")
        return
    batches = data.heldout_batches(valid, ends, tok, cfg.seq_len, masking=cfg.masking, max_sequences=cfg.eval_sequences)
    out = data.evaluate_mlm(model, batches, next(model.parameters()).device)
    train_tokens = prepared.load_split(cfg.data, "train")[0]
    base = baselines.unigram_baselines(train_tokens[:baselines.UNIGRAM_TOKENS], batches, tok)
    if not out["targets"]:
        return
    loss = out["loss_sum"] / out["targets"]
    first = f" (counted on its first {baselines.UNIGRAM_TOKENS:,} tokens)" if train_tokens.size > baselines.UNIGRAM_TOKENS else ""
    print(f"{cfg.out}: held-out perplexity {math.exp(min(loss, 709)):.1f} on {out['targets']:,} masked tokens "
          f"({cfg.masking.rate:.0%} of the held-out tokens, log.jsonl's valid_ppl), beside the unigram "
          f"distribution's {math.exp(min(base['unigram_loss'], 709)):.1f} on the same masks "
          f"({math.exp(min(loss - base['unigram_loss'], 709)):.2f}x; the training tokens' frequencies{first})")
