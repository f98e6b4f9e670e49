"""train.py's command line: the option table (one line per option, its check and its help), parsing, the
TrainConfig it makes, and main (`python train.py` hands over here). Defaults come from train.TrainConfig and
train.RECIPES, nowhere else.
"""
import argparse
import math
import os
import re
import sys
from dataclasses import asdict

import data
import train
from machinery.basics import baselines, cli
from machinery.commands import demo
from machinery.scale import prepared


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


def mask_rate(text):
    """The masking rate: in (0, 1), as data.Masking accepts it (NaN fails the comparison too)."""
    try:
        value = float(text)
    except ValueError:
        fail(f"expected a number, got {text!r}")
    if not 0 < value < 1:
        fail(f"must be in (0, 1), got {text}")
    return value


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
        ("mask_rate", mask_rate, "share of tokens that become targets, in (0, 1) (Section 4.1)"),
        ("mask_split", mask_split, "of the targets: shown as <mask>, random, unchanged (three shares >= 0, summing "
                                      "to 1)"),
        ("dropout", cli.number(float, 0, 0.99), "dropout, also on attention weights, in [0, 0.99]"),
        ("max_positions", cli.number(int, 8, 65536), "the model's position table (RoBERTa: 512); for a new model only"),
        ("seed", cli.number(int, 0, 2 ** 31 - 1), "seed of the initialisation, data order, masks and dropout"),
        ("log_interval", cli.number(int, 1), "log every N updates"),
        ("eval_interval", cli.number(int, 1), "evaluate held-out loss every N updates"),
        ("eval_sequences", cli.number(int, 1), "held-out sequences per evaluation"),
        ("save_interval", cli.number(int, 1), "save checkpoint.pt every N updates"),
        ("device", lambda name: name if re.fullmatch(r"cpu|cuda(:\d+)?", name) else fail(
            f"expected cpu, cuda or cuda:N, got {name!r}"), "cpu, cuda or cuda:N"),
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
                "masking": "dynamic", "device": "cuda when available", "data": "none: the built-in demo",
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
                           dynamic=given.pop("masking", "dynamic") == "dynamic")
    cfg = train.TrainConfig(**{**recipes[args.config or "tiny"], **given, "masking": masking})
    cli.warn_short_warmup(cfg)
    return cfg


def main(argv=None):
    """`python train.py`: with --data, pretrain as the options say; without, the built-in demo (demo.py)."""
    args = parse(sys.argv[1:] if argv is None else argv)

    def pretrain():
        if args.data:
            cfg = config_from_args(args)
            return run_summary(*train.train(cfg), cfg)  # held-out perplexity beside the unigram's
        cfg = demo.setup(args)  # no --data: the demo's corpus, tokenizer and data, made once
        model, tok = train.train(cfg)
        demo.report(model, tok, cfg)
    cli.run(pretrain)


def run_summary(model, tok, cfg):
    """What every `train.py --data` run ends with (the first process): held-out perplexity on the run's own
    evaluation masks (log.jsonl's last valid_ppl) beside the unigram baseline's on the same masks."""
    if int(os.environ.get("RANK", 0)) != 0:
        return
    valid, ends, _ = prepared.load_split(cfg.data, "valid")
    if valid.size == 0:
        print(f"{cfg.out}: no held-out data in {cfg.data}, so no held-out perplexity to compare")
        return
    batches = data.heldout_batches(valid, ends, tok, cfg.seq_len, masking=cfg.masking,
                                   max_sequences=cfg.eval_sequences)
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
