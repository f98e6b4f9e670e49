"""The built-in demo, `python train.py` with no --data: from text every Python install carries to a model that
visibly learns in ~3 minutes of a 2-core CPU. train.py asks `setup` for the data (made once, under cache/demo)
and the TrainConfig, trains, then asks `report` for held-out numbers beside two baselines, and fill-mask examples.
Its settings were chosen by measurement (BENCHMARKS.md), 40% masking among them (Wettig et al. 2023; `python
experiments.py mask-rate`); the report scores BERT's 15% masks, log.jsonl's valid_ppl the training rate's.
"""
import math
import os
import shutil
from dataclasses import fields

import numpy as np
import torch

import bpe
import data
import train
from machinery.basics import baselines, cli, files, speed
from machinery.commands import corpora
from machinery.formats import checkpoints
from machinery.datafolder import preparation
from machinery.formats import prepared

DEMO = dict(vocab_size=4096, valid_fraction=0.05, config="tiny", seq_len=128, batch_size=8, lr=2e-3, warmup_steps=500,
            max_steps=3400, dropout=0.0, masking=data.Masking(rate=0.4), eval_interval=850, save_interval=850)
OUT, CACHE, DATA = corpora.DEMO_OUT, corpora.DEMO_CACHE, corpora.DEMO_DATA


def make_data(cache=CACHE):
    """The built-in corpus, a BPE tokenizer trained on it and the prepared data, each made once; the data folder."""
    vocab = DEMO["vocab_size"]
    corpus, tok_dir, data_dir = (os.path.join(cache, name) for name in ("corpus.txt", "tokenizer", "data"))
    stamp = os.path.join(cache, "vocab_size.txt")  # a cache made with another vocabulary is made again
    if os.path.isdir(tok_dir) and (not os.path.isfile(stamp) or open(stamp).read().strip() != str(vocab)):
        for folder in (tok_dir, data_dir):
            shutil.rmtree(folder, ignore_errors=True)
    if not os.path.isfile(corpus):
        print("writing the built-in corpus: Python's reference documentation and the standard library's docstrings")
        corpora.builtin_corpus(corpus)
    if not os.path.isfile(os.path.join(tok_dir, "vocab.json")):
        print(f"training a byte-level BPE tokenizer (vocabulary {vocab}) on the built-in corpus")
        bpe.Tokenizer.train(files.read_lines(corpus), vocab, verbose=True).save(tok_dir)
        files.write_atomic(stamp, str(vocab))
    if not os.path.isfile(os.path.join(data_dir, "meta.json")):
        preparation.prepare([corpus], tok_dir, data_dir, valid_fraction=DEMO["valid_fraction"])
    return data_dir


DEMO_OPTIONS = {"out", "max_steps", "seed", "device", "overwrite"}


def check_demo_options(args):
    """The demo (no --data) has its own settings: refuse an option it would ignore."""
    extra = [k for k, v in vars(args).items() if v not in (None, False) and k not in DEMO_OPTIONS]
    if extra:
        raise ValueError(f"--{extra[0].replace('_', '-')} needs --data: the demo (no --data) takes only "
                         f"--out, --max-steps, --seed, --device and --overwrite")


def setup(args):
    """The demo's TrainConfig, after making its data: a new run, its own earlier run resumed or read back, or,
    when --out holds a finished demo run with other settings, that run's report (said in one line)."""
    check_demo_options(args)
    out = args.out or OUT
    asked = {"max_steps": args.max_steps or DEMO["max_steps"], "seed": args.seed or 0}
    earlier = {} if args.overwrite else earlier_run(out, asked)
    data_dir = make_data()
    settings = {k: v for k, v in DEMO.items() if k in {f.name for f in fields(train.TrainConfig)}}
    cfg = train.TrainConfig(**{**settings, **asked, **earlier.get("settings", {})}, data=data_dir, out=out,
                       device=args.device or "", overwrite=bool(args.overwrite))
    cfg.resume = bool(earlier)
    threads = set_threads()
    if earlier.get("finished"):
        print(earlier["banner"])
        return cfg
    print(earlier.get("banner") or
          f"pretraining a {cfg.config} RoBERTa: {cfg.max_steps:,} updates of {cfg.batch_size}x{cfg.seq_len} tokens "
          f"into {cfg.out}, on {threads} CPU thread{'s' * (threads > 1)} (the CPUs other work leaves free; "
          f"OMP_NUM_THREADS=N sets it)")
    print(f"{cfg.masking.rate:.0%} of the tokens are masked in training, not the paper's 15%: more targets per "
          f"sequence teach a small model on a small corpus more per update (BENCHMARKS.md: held-out perplexity 338 "
          f"against 462); the report scores BERT's 15% masks, as every experiment does")
    cli.warn_short_warmup(cfg, demo=True)
    return cfg


def earlier_run(out, asked):
    """What --out already holds: {} (nothing: a new run), or {"settings", "banner"}: the demo run there, resumed
    with its own settings; one that finished with other settings than `asked` is shown, not trained again,
    and one stopped midway with other settings is refused (its schedule would change under it)."""
    recorded = checkpoints.recorded(out)
    if not recorded:
        return {}
    then, step = recorded.get("train", {}), recorded.get("state", {}).get("step", 0)
    if not isinstance(then, dict) or os.path.normpath(str(then.get("data"))) != os.path.normpath(DATA):
        raise ValueError(f"{out} holds a run that is not the demo's (trained on {then.get('data')}): pass "
                         f"--overwrite to replace it, or choose another --out")
    settings = {key: then.get(key) for key in asked}
    done, finished = f"{settings['max_steps']:,} updates, seed {settings['seed']}", step >= settings["max_steps"]
    if settings == asked:
        banner = f"{out} holds the finished demo run ({done}): its report again, without training " \
                 f"(--overwrite trains it anew)" if finished else \
                 f"continuing the demo run in {out} from update {step:,} of {settings['max_steps']:,}"
        return {"settings": settings, "banner": banner, "finished": finished}
    wanted = ", ".join([f"{asked['max_steps']:,} updates"] * (asked["max_steps"] != settings["max_steps"])
                       + [f"seed {asked['seed']}"] * (asked["seed"] != settings["seed"]))
    if not finished:
        raise ValueError(f"{out} holds a demo run stopped at update {step:,} ({done}), not the {wanted} asked: "
                         f"rerun with its settings to continue it, or pass --overwrite (or another --out) to train "
                         f"anew")
    return {"settings": settings, "finished": True,
            "banner": f"{out} holds a finished demo run ({done}), not the {wanted} asked: its report follows, "
                      f"without training; --overwrite (or another --out) trains anew"}


def set_threads():
    """The demo's CPU threads: the CPUs other work leaves free (speed.idle_cpus), at most torch's choice (its
    physical cores); OMP_NUM_THREADS, when set, wins. Returns the count."""
    threads = speed.threads_for(1) if "OMP_NUM_THREADS" in os.environ else \
        min(torch.get_num_threads(), speed.idle_cpus())
    torch.set_num_threads(threads)
    return threads


def report(model, tok, cfg):
    """Held-out accuracy and perplexity beside two baselines on the same masks, and fill-mask examples."""
    valid, valid_ends, _ = prepared.load_split(cfg.data, "valid")
    train_tokens, _, _ = prepared.load_split(cfg.data, "train")
    batches = data.heldout_batches(valid, valid_ends, tok, cfg.seq_len)  # BERT's 15% masks, whatever the training
    out = data.evaluate_mlm(model, batches, next(model.parameters()).device, detailed=True)
    base = baselines.unigram_baselines(train_tokens, batches, tok)
    n, loss = out["targets"], out["loss_sum"] / out["targets"]
    se = math.sqrt(max(out["loss_sq_sum"] / n - loss ** 2, 0) / n)
    acc = out["correct"] / n
    print(f"\nheld-out masked tokens: {n:,}, masked as BERT does (15%; standard errors in brackets; log.jsonl's "
          f"valid_ppl and `python evaluate.py perplexity` mask {cfg.masking.rate:.0%}, the training rate: more "
          f"targets, less context each, a higher perplexity)")
    print(f"  this model:             accuracy {acc:6.1%} [{math.sqrt(acc * (1 - acc) / n):.1%}]   "
          f"perplexity {math.exp(loss):8.1f} [{math.exp(loss) * se:.1f}]")
    print(f"  unigram distribution:   {'':24}perplexity {math.exp(base['unigram_loss']):8.1f}")
    print(f"  always {tok.decode([base['most_frequent']])!r:<16} accuracy {base['most_frequent_accuracy']:6.1%}")
    print(f"  held-out perplexity {math.exp(loss):.1f} is {math.exp(loss - base['unigram_loss']):.2f}x the unigram "
          f"baseline's; accuracy {acc:.1%} is {acc / max(base['most_frequent_accuracy'], 1e-9):.1f}x the most "
          f"frequent token's\n")
    for text, guess, truth in fill_mask_examples(model, tok, valid, valid_ends):
        print(f"  {'right' if guess == truth else 'wrong'}: {text}  ->  {guess!r} (true: {truth!r})")


def fill_mask_examples(model, tok, tokens, line_ends, per_kind=3, context=14, max_len=126):
    """Held-out words hidden one at a time, each with its whole line (up to `max_len` tokens) as context: the first
    `per_kind` the model gets right and wrong, at most one of each per line, as (text around <mask>, guess, truth)."""
    found, starts = {True: [], False: []}, np.concatenate([[0], line_ends[:-1]])
    device = next(model.parameters()).device
    model.eval()
    for s, e in zip(starts.tolist(), line_ends.tolist()):
        ids = np.asarray(tokens[s:min(e - 1, s + max_len)], dtype=np.int64)
        pieces = [tok.decode([t]) for t in ids.tolist()]  # whole words of 4 letters or more (not 'the', 'a')
        words = np.array([p for p, w in enumerate(pieces) if w[:1] == " " and w[1:].isalpha() and len(w) >= 5],
                         dtype=np.int64)
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
