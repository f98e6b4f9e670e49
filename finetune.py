"""Finetuning a pretrained RoBERTa on GLUE, SQuAD 1.1/2.0 and RACE (Section 5; Table 10).

    python finetune.py --task rte --data glue/RTE --checkpoint roberta-base/ --out runs/rte
    python finetune.py --task squad2 --data squad/ --checkpoint out/ --out runs/squad2
    python finetune.py --task race --data RACE/ --checkpoint out/ --out runs/race
    python finetune.py --task mrpc ... --sweep                 # Table 10's grid, median of 5 seeds

Each task is a row of TASKS that points at its family (FAMILIES): (1) its inputs, `<s> A </s></s> B </s>`
as RoBERTa encodes pairs, (2) a head from roberta.py, (3) its official metric from evaluate.py,
evaluated on dev after every epoch; the best epoch's model is kept (checkpoint.pt, loadable by
roberta.load_pretrained) with its dev predictions and metrics.json. A GLUE task is one row of
evaluate.GLUE; a family is one row of FAMILIES and its five functions.
"""
import argparse
import contextlib
import io
import json
import math
import os
import statistics
import sys
from dataclasses import asdict
from typing import Callable, NamedTuple

import numpy as np
import torch

import bpe
import data
import evaluate
import roberta
from evaluate import GLUE, SQUAD, DataError
from machinery import checkpoints, cli, files

# Table 10. GLUE sweeps lr {1e-5, 2e-5, 3e-5} x batch {16, 32}; Adam betas (0.9, 0.98), eps 1e-6 throughout
# (roberta.adamw).
TABLE_10 = {
    "glue": dict(lr=1e-5, batch_size=32, weight_decay=0.1, epochs=10, warmup_ratio=0.06),
    "squad": dict(lr=1.5e-5, batch_size=48, weight_decay=0.01, epochs=2, warmup_ratio=0.06),
    "race": dict(lr=1e-5, batch_size=16, weight_decay=0.1, epochs=4, warmup_ratio=0.06),
}
SWEEP = {"lr": [1e-5, 2e-5, 3e-5], "batch_size": [16, 32]}


# ---------------------------------------------------------------------------------------- inputs
def encode_pair(tok, a, b, max_len):
    """<s> a </s></s> b </s> (or <s> a </s>) in at most max_len tokens: data.truncate_pair's rule (the
    longer segment loses a token at a time, the second one on ties), as in pretraining."""
    if b is None:
        return [tok.bos_id] + a[:max_len - 2] + [tok.eos_id]
    la, lb = data.truncate_pair(len(a), len(b), max_len - 4)
    return [tok.bos_id] + a[:la] + [tok.eos_id, tok.eos_id] + b[:lb] + [tok.eos_id]


def glue_features(task, tok, rows, max_len):
    """(input ids, target) per row: the label's index, or the score to regress (STS-B)."""
    labels = GLUE[task].labels
    return [(encode_pair(tok, tok.encode(texts[0]), tok.encode(texts[1]) if len(texts) > 1 else None, max_len),
             labels.index(label) if labels else float(label)) for texts, label in rows]


def race_features(tok, questions, max_len, max_qa=128):
    """Section 5.3: each option with passage and question; question+option cut to 128 tokens. A cloze
    question ("... _ ...") has its blank filled with the option, as fairseq's RACE preprocessing does.
    Returns (the 4 options' input ids, the answer's index) per question."""
    out = []
    for q in questions:
        passage = tok.encode(q["article"])
        options = []
        for opt in q["options"]:
            qa = q["question"].replace("_", opt) if "_" in q["question"] else f"{q['question']} {opt}"
            qa_ids = tok.encode(qa)[:min(max_qa, max_len - 4)]
            options.append([tok.bos_id] + passage[:max_len - len(qa_ids) - 4] + [tok.eos_id, tok.eos_id]
                           + qa_ids + [tok.eos_id])
        out.append((options, q["label"]))
    return out


def answer_span(e, offsets):
    """The first and last context token of a training example's answer, or None (no answer)."""
    if not e["answers"] or e["is_impossible"]:
        return None
    s = e["answers"][0]["answer_start"]
    end = s + len(e["answers"][0]["text"])
    first = next((i for i, (a, b) in enumerate(offsets) if b > s), None)
    last = max((i for i, (a, b) in enumerate(offsets) if a < end), default=None)
    return (first, last) if first is not None and last is not None else None


def squad_features(tok, examples, max_len, stride=128, max_query=64, train=False, v2=False):
    """Sliding windows over each context: <s> question </s></s> context window </s>, a window starting
    every `stride` tokens (at most the window's length: no context is skipped). Every feature keeps
    its example index, where the window starts, and where the context begins in the input, so that
    token spans map back to characters of the original context (bpe.Tokenizer.encode_with_offsets).
    Training targets: the answer's first and last token, or -100 (ignored) when the window does not
    hold it; `answerable` is 1 when it does (SQuAD 2.0's classifier)."""
    features, encoded = [], {}
    for ei, e in enumerate(examples):
        q = tok.encode(e["question"].strip())[:max_query]
        if e["context"] not in encoded:  # a context has several questions
            encoded[e["context"]] = tok.encode_with_offsets(e["context"])
        ctx, offsets = encoded[e["context"]]
        room = max_len - len(q) - 4
        if room < 16:
            raise DataError(f"--max-seq-len {max_len} leaves no room for the context beside a question")
        span = answer_span(e, offsets) if train else None
        start = 0
        while True:
            stop = min(start + room, len(ctx))
            f = {"example": ei, "ids": [tok.bos_id] + q + [tok.eos_id, tok.eos_id] + ctx[start:stop] + [tok.eos_id],
                 "window": (start, stop), "ctx_at": len(q) + 3}
            if train:
                inside = span is not None and start <= span[0] and span[1] < stop
                f["start"] = span[0] - start + f["ctx_at"] if inside else -100
                f["end"] = span[1] - start + f["ctx_at"] if inside else -100
                f["answerable"] = float(inside)
            if not train or inside or v2:  # SQuAD 1.1: a window without the answer teaches nothing
                features.append(f)
            if stop == len(ctx):
                break
            start += min(stride, room)
    return features


def best_spans(examples, features, starts, ends, tok, n_best=20, max_answer_tokens=30):
    """For every example, the highest-scoring span (start logit + end logit) over all its windows:
    the n_best starts and ends of each window, end >= start, at most max_answer_tokens long.
    Returns {question id: (answer text, score)}."""
    offsets = {}
    best = {}
    for f, s_logits, e_logits in zip(features, starts, ends):
        e = examples[f["example"]]
        if e["context"] not in offsets:
            offsets[e["context"]] = tok.encode_with_offsets(e["context"])[1]
        offs = offsets[e["context"]]
        lo, hi = f["ctx_at"], f["ctx_at"] + f["window"][1] - f["window"][0]  # context positions
        s_logits, e_logits = np.asarray(s_logits[lo:hi]), np.asarray(e_logits[lo:hi])
        si, ej = np.argsort(-s_logits)[:n_best], np.argsort(-e_logits)[:n_best]
        length = ej[None, :] - si[:, None] + 1  # every (start, end) pair of the n-best at once
        scores = np.where((length >= 1) & (length <= max_answer_tokens),
                          s_logits[si][:, None] + e_logits[ej][None, :], -np.inf)
        k = int(np.argmax(scores))
        score = float(scores.flat[k])
        if score > -np.inf and (e["id"] not in best or score > best[e["id"]][1]):
            i, j = f["window"][0] + si[k // len(ej)], f["window"][0] + ej[k % len(ej)]
            best[e["id"]] = (e["context"][offs[i][0]:offs[j][1]].strip(), score)
    return best


# ---------------------------------------------------------------------------------------- batches
def pad_choices(groups, pad_id):
    """[n questions][k options] of ids -> a LongTensor [n, k, longest] (data.pad over all options)."""
    flat = data.pad([s for g in groups for s in g], pad_id)
    return flat.view(len(groups), len(groups[0]), -1)


@torch.no_grad()
def forward(model, inputs, batch_ids, batch_size, device):
    """The model's outputs on `inputs`, `batch_size` at a time (batch_ids: inputs -> padded ids), as float
    CPU tensors: one entry per batch, a tuple where the model returns several outputs."""
    model.eval()
    outs = []
    for i in range(0, len(inputs), batch_size):
        out = model(batch_ids(inputs[i:i + batch_size]).to(device))
        outs.append(tuple(o.float().cpu() for o in out) if isinstance(out, tuple) else out.float().cpu())
    return outs


# ---------------------------------------------------------------------------------------- the families
# Each family's functions, called with the task's name first:
#   read(task, folder) -> (train items, {dev set name: items})
#   features(task, tok, items, max_len, doc_stride, train) -> the model's inputs (one per item, or window)
#   collate(task, tok, inputs) -> a training batch: the model's keyword arguments
#   predict(task, model, tok, items, inputs, batch_size, device) -> (dev predictions, metrics)
#   write(task, out, dev set name, predictions) -> the prediction files, in /work/shared/INTERFACE.md's formats
def glue_read(task, folder):
    train = evaluate.read_glue(task, os.path.join(folder, "train.tsv"))
    return train, {name[:-4]: evaluate.read_glue(task, os.path.join(folder, name)) for name in GLUE[task].dev_files}


def glue_inputs(task, tok, rows, max_len, doc_stride, train):
    return glue_features(task, tok, rows, max_len)


def glue_collate(task, tok, inputs):
    dtype = torch.long if GLUE[task].labels else torch.float  # STS-B regresses a score
    return {"input_ids": data.pad([ids for ids, _ in inputs], tok.pad_id),
            "labels": torch.tensor([y for _, y in inputs], dtype=dtype)}


def glue_predict(task, model, tok, rows, inputs, batch_size, device):
    out = torch.cat(forward(model, inputs, lambda chunk: data.pad([ids for ids, _ in chunk], tok.pad_id),
                            batch_size, device))
    labels = GLUE[task].labels
    pred = [labels[i] for i in out.argmax(-1).tolist()] if labels else [f"{v:.4f}" for v in out[:, 0].tolist()]
    return pred, evaluate.glue_metrics(task, pred, [label for _, label in rows])


def glue_write(task, out, name, pred):
    evaluate.write_glue_predictions(os.path.join(out, f"{name}_predictions.tsv"), pred)


def squad_read(task, folder):
    version = SQUAD[task].version
    return (evaluate.read_squad(os.path.join(folder, f"train-{version}.json")),
            {"dev": evaluate.read_squad(os.path.join(folder, f"dev-{version}.json"))})


def squad_inputs(task, tok, examples, max_len, doc_stride, train):
    return squad_features(tok, examples, max_len, doc_stride, train=train, v2=SQUAD[task].no_answer)


def squad_collate(task, tok, features):
    batch = {"input_ids": data.pad([f["ids"] for f in features], tok.pad_id),
             "start_positions": torch.tensor([f["start"] for f in features]),
             "end_positions": torch.tensor([f["end"] for f in features])}
    if SQUAD[task].no_answer:
        batch["answerable"] = torch.tensor([f["answerable"] for f in features])
    return batch


def squad_predict(task, model, tok, examples, features, batch_size, device):
    """The best span per question; SQuAD 2.0: "" where the no-answer probability, from the answerability
    head, is above the threshold that is best on dev. Predictions: (answers, no-answer probabilities)."""
    outs = forward(model, features, lambda chunk: data.pad([f["ids"] for f in chunk], tok.pad_id), batch_size, device)
    starts, ends, answerable = [s for o in outs for s in o[0].tolist()], [e for o in outs for e in o[1].tolist()], {}
    for f, score in zip(features, [a for o in outs for a in o[2].tolist()]):
        answerable[f["example"]] = max(answerable.get(f["example"], -math.inf), score)
    spans = best_spans(examples, features, starts, ends, tok)
    pred = {e["id"]: spans.get(e["id"], ("", 0.0))[0] for e in examples}
    if not SQUAD[task].no_answer:
        return (pred, None), evaluate.squad_metrics(examples, pred)
    na = {e["id"]: 1.0 / (1.0 + math.exp(min(answerable.get(i, 0.0), 50.0))) for i, e in enumerate(examples)}
    thresh = evaluate.squad_metrics(examples, pred, na)["best_f1_thresh"]
    pred = {q: ("" if na[q] > thresh else a) for q, a in pred.items()}
    metrics = evaluate.squad_metrics(examples, pred, na, na_prob_thresh=thresh)
    metrics["na_prob_thresh"] = thresh
    return (pred, na), metrics


def squad_write(task, out, name, pred):
    answers, na = pred
    files.write_atomic(os.path.join(out, "predictions.json"), json.dumps(answers))
    if na is not None:
        files.write_atomic(os.path.join(out, "na_prob.json"), json.dumps(na))


def race_read(task, folder):
    return evaluate.read_race(os.path.join(folder, "train")), {"dev": evaluate.read_race(os.path.join(folder, "dev"))}


def race_inputs(task, tok, questions, max_len, doc_stride, train):
    return race_features(tok, questions, max_len)


def race_collate(task, tok, inputs):
    return {"input_ids": pad_choices([g for g, _ in inputs], tok.pad_id),
            "labels": torch.tensor([y for _, y in inputs])}


def race_predict(task, model, tok, questions, inputs, batch_size, device):
    scores = torch.cat(forward(model, inputs, lambda chunk: pad_choices([g for g, _ in chunk], tok.pad_id),
                               batch_size, device))
    pred = {q["qid"]: "ABCD"[k] for q, k in zip(questions, scores.argmax(-1).tolist())}
    return pred, evaluate.race_metrics(questions, pred)


def race_write(task, out, name, pred):
    files.write_atomic(os.path.join(out, "predictions.json"), json.dumps(pred))


class Family(NamedTuple):
    """What finetuning a family of tasks needs (the functions above)."""
    model: type           # the head on the encoder, from roberta.py
    defaults: dict        # Table 10's hyperparameters
    read: Callable
    features: Callable
    collate: Callable
    predict: Callable
    write: Callable


FAMILIES = {
    "glue": Family(roberta.RobertaForSequenceClassification, TABLE_10["glue"], glue_read, glue_inputs, glue_collate,
                   glue_predict, glue_write),
    "squad": Family(roberta.RobertaForQuestionAnswering, TABLE_10["squad"], squad_read, squad_inputs, squad_collate,
                    squad_predict, squad_write),
    "race": Family(roberta.RobertaForMultipleChoice, TABLE_10["race"], race_read, race_inputs, race_collate,
                   race_predict, race_write),
}


class Task(NamedTuple):
    family: Family
    primary: str          # the dev metric that picks the best epoch
    num_labels: int | None  # a classifier's outputs (1: a regression); None for the other heads


TASKS = {**{name: Task(FAMILIES["glue"], t.metrics[0], len(t.labels) if t.labels else 1) for name, t in GLUE.items()},
         **{name: Task(FAMILIES["squad"], "f1", None) for name in SQUAD},
         "race": Task(FAMILIES["race"], "accuracy", None)}


# ---------------------------------------------------------------------------------------- the output folder
FINISHED = ("metrics.json", "checkpoint.pt")  # a folder holding either holds a run's results
OUTPUTS = FINISHED + ("log.jsonl", "predictions.json", "na_prob.json")  # and the *_predictions.tsv


def check_out(folder, overwrite, finished=FINISHED, why="a finetuning run's results"):
    """Before any work: --out is a folder or can be made in a writable one, and holds no results unless
    --overwrite."""
    cli.check_out(folder, overwrite, finished, why)


def clear_out(folder):
    """A new run's folder: made, and emptied of an earlier run's outputs (--overwrite), so that its
    log and predictions are this run's alone."""
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):
        if name in OUTPUTS or name.endswith("_predictions.tsv"):
            os.remove(os.path.join(folder, name))


def save_best(args, model, tok, results):
    """checkpoint.pt (loadable by roberta.load_pretrained), tokenizer files and dev predictions."""
    task = TASKS[args.task]
    checkpoints.save(os.path.join(args.out, "checkpoint.pt"),
                    {"model": model.state_dict(), "config": asdict(model.cfg), "class": type(model).__name__,
                     "num_labels": task.num_labels, "task": args.task})
    tok.save(args.out)
    for name, (pred, _) in results.items():
        task.family.write(args.task, args.out, name, pred)


# ---------------------------------------------------------------------------------------- one run
def load_task(args):
    """(train items, dev sets {name: items}) for the task; items are whatever the task's features use."""
    if not os.path.isdir(args.data):
        raise DataError(f"{args.data}: {'a file, not a' if os.path.exists(args.data) else 'no such'} data folder")
    train, dev = TASKS[args.task].family.read(args.task, args.data)
    if args.max_train_examples:
        train = train[:args.max_train_examples]
    if args.max_eval_examples:
        dev = {k: v[:args.max_eval_examples] for k, v in dev.items()}
    return train, dev


SHAPE = ("vocab_size", "hidden_size", "num_layers", "num_heads", "ffn_size", "max_positions")


def make_model(args):
    """(model, tokenizer, model class, num_labels): the task's head on --checkpoint's encoder, or on
    --init-from's (Section 5.1: RTE, STS-B and MRPC start from the MNLI model)."""
    task = TASKS[args.task]
    model, tok = checkpoints.load(args.checkpoint, task.family.model, num_labels=task.num_labels)
    if args.init_from:
        source, source_tok = checkpoints.load(args.init_from, roberta.RobertaForSequenceClassification, verbose=False)
        if [getattr(source.cfg, k) for k in SHAPE] != [getattr(model.cfg, k) for k in SHAPE] or \
                data.tokenizer_hash(source_tok) != data.tokenizer_hash(tok):
            raise DataError(f"--init-from {args.init_from}: not the same model size and tokenizer as --checkpoint "
                            f"{args.checkpoint}")
        model.roberta.load_state_dict(source.roberta.state_dict())
    return model, tok, task.family.model, task.num_labels


def check_max_len(args, model):
    """--max-seq-len within the model's positions; by default min(512, positions)."""
    positions = model.cfg.max_positions
    if args.max_seq_len is None:
        return min(512, positions)
    if args.max_seq_len > positions:
        raise DataError(f"--max-seq-len {args.max_seq_len}: must be in [8, {positions}] (the model's positions)")
    return args.max_seq_len


class Run(NamedTuple):
    """What a training epoch needs."""
    args: argparse.Namespace
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    inputs: list
    collate: Callable     # a list of inputs -> the model's keyword arguments
    steps_per_epoch: int
    warmup: int
    device: torch.device


def train_epoch(run, epoch, step):
    """One pass over the training inputs, in an order fixed by (seed, epoch); returns the update count."""
    from tqdm import tqdm
    args = run.args
    run.model.train()
    order = np.random.default_rng(args.seed * 1000 + epoch).permutation(len(run.inputs))
    bar = tqdm(np.array_split(order, run.steps_per_epoch), desc=f"{args.task} epoch {epoch + 1}/{args.epochs}",
               dynamic_ncols=True, disable=not args.progress)
    for idx in bar:
        batch = run.collate([run.inputs[i] for i in idx])
        for group in run.opt.param_groups:  # Section 3.1's schedule: linear warmup, then linear decay
            group["lr"] = roberta.linear_lr(step, args.lr, run.warmup, run.steps_per_epoch * args.epochs)
        loss = run.model(**{k: v.to(run.device) for k, v in batch.items()})
        loss.backward()
        run.opt.step()
        run.opt.zero_grad(set_to_none=True)
        step += 1
        if not math.isfinite(loss.item()):
            raise DataError(f"the loss is {loss.item()} at update {step}: try a lower --lr (it is {args.lr})")
        bar.set_postfix(loss=f"{loss.item():.4f}")
    return step


def prepare(args):
    """Data, model and inputs of a run, checked before anything is written: (Run, dev sets, dev inputs, tok)."""
    task = TASKS[args.task]
    for k, v in task.family.defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    train_items, dev_sets = load_task(args)  # bad data fails before the model loads
    model, tok, _, _ = make_model(args)
    args.max_seq_len = check_max_len(args, model)

    def features(items, train):
        return task.family.features(args.task, tok, items, args.max_seq_len, args.doc_stride, train)
    inputs = features(train_items, True)
    if not inputs:
        raise DataError(f"{args.data}: no training inputs (no training window holds its answer)")
    dev_inputs = {name: features(items, False) for name, items in dev_sets.items()}  # encoded once
    steps_per_epoch = max(1, math.ceil(len(inputs) / args.batch_size))
    run = Run(args, model.to(device), roberta.adamw(model, args.lr, args.weight_decay), inputs,
              lambda chunk: task.family.collate(args.task, tok, chunk), steps_per_epoch,
              int(args.warmup_ratio * steps_per_epoch * args.epochs), device)
    return run, dev_sets, dev_inputs, tok


def finetune(args):
    """One finetuning run: train, evaluate on dev after every epoch, keep the best; returns the summary
    written to metrics.json."""
    check_out(args.out, args.overwrite)
    with contextlib.redirect_stderr(io.StringIO()) as notes:  # the loader's notes (a new head) are shown
        run, dev_sets, dev_inputs, tok = prepare(args)       # once the run starts: a refusal is one line
    print(notes.getvalue(), end="", file=sys.stderr)
    task = TASKS[args.task]
    clear_out(args.out)
    best, history, step = None, [], 0
    for epoch in range(args.epochs):
        step = train_epoch(run, epoch, step)
        results = {name: task.family.predict(args.task, run.model, tok, items, dev_inputs[name], args.eval_batch_size,
                                             run.device) for name, items in dev_sets.items()}
        metrics = {name: m for name, (_, m) in results.items()}
        history.append({"epoch": epoch + 1, "step": step, **metrics})
        with open(os.path.join(args.out, "log.jsonl"), "a") as f:
            f.write(json.dumps(history[-1]) + "\n")
        score = metrics[next(iter(metrics))][task.primary]
        if best is None or score > best[0]:
            best = (score, epoch + 1, metrics)
            save_best(args, run.model, tok, results)
    summary = {"task": args.task, "primary_metric": task.primary, "best_epoch": best[1], "dev": best[2],
               "hyperparameters": {k: getattr(args, k) for k in ("lr", "batch_size", "weight_decay", "epochs",
                                                                  "warmup_ratio", "seed", "max_seq_len")},
               "history": history}
    files.write_atomic(os.path.join(args.out, "metrics.json"), json.dumps(summary, indent=2))
    return summary


# ---------------------------------------------------------------------------------------- the sweep
def sweep_runs(args):
    """The runs of the sweep: (lr, batch size, seed, their own --out) for each point of the grid."""
    return [(lr, bs, seed, os.path.join(args.out, f"lr{lr}_bs{bs}_seed{seed}"))
            for lr in SWEEP["lr"] for bs in SWEEP["batch_size"] for seed in range(args.sweep_seeds)]


def sweep(args):
    """Section 5.1: the grid of Table 10, each setting run with several seeds; the median per setting.
    Refuses, before any run, an --out that holds a finished sweep or run (unless --overwrite)."""
    check_out(args.out, args.overwrite, ("sweep.json",), "a finished sweep")
    for *_, out in sweep_runs(args):
        check_out(out, args.overwrite, why="a finished run of the sweep")
    scores = {}
    for lr, bs, seed, out in sweep_runs(args):
        summary = finetune(argparse.Namespace(**{**vars(args), "lr": lr, "batch_size": bs, "seed": seed, "out": out}))
        scores.setdefault((lr, bs), []).append(summary["dev"][next(iter(summary["dev"]))][summary["primary_metric"]])
        if len(scores[(lr, bs)]) == args.sweep_seeds:
            print(f"lr {lr} batch {bs}: median {statistics.median(scores[(lr, bs)]):.2f} over seeds {scores[(lr, bs)]}")
    results = [{"lr": lr, "batch_size": bs, "scores": s, "median": statistics.median(s)}
               for (lr, bs), s in scores.items()]
    best = max(results, key=lambda r: r["median"])
    files.write_atomic(os.path.join(args.out, "sweep.json"), json.dumps({"settings": results, "best": best}, indent=2))
    return best


# ---------------------------------------------------------------------------------------- command line
def below_one(parse):
    """An argparse type: `parse`'s number, and less than 1."""
    def check(text):
        value = parse(text)
        if value >= 1:
            raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
        return value
    return check


HYPERPARAMETERS = [  # Table 10's, whose defaults depend on the task's family
    ("--lr", cli.number(float, 0, 1, low_open=True), "peak learning rate, in (0, 1]"),
    ("--batch-size", cli.number(int, 1), "examples per update, at least 1"),
    ("--epochs", cli.number(int, 1), "passes over the training set, at least 1"),
    ("--warmup-ratio", below_one(cli.number(float, 0, 1)), "share of the updates with a linear warmup, in [0, 1)"),
    ("--weight-decay", cli.number(float, 0, 1), "AdamW weight decay (not on biases and LayerNorms), in [0, 1]"),
]


def parser():
    p = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", type=evaluate.task_arg(), required=True, help=f"{', '.join(evaluate.TASKS)} (required)")
    p.add_argument("--data", type=cli.path_arg, required=True,
                   help="the task's folder: GLUE's train.tsv + dev.tsv, SQuAD's train/dev JSONs, RACE's train/ + dev/ "
                        "(required)")
    p.add_argument("--checkpoint", type=cli.path_arg, required=True,
                   help="a train.py output or a Hugging Face RoBERTa folder, with its tokenizer files (required)")
    p.add_argument("--out", type=cli.path_arg, required=True,
                   help="folder for checkpoint.pt, metrics.json, log.jsonl and the dev predictions (required)")
    p.add_argument("--overwrite", action="store_true", help="replace the results already in --out (default: refuse)")
    for name, kind, what in HYPERPARAMETERS:
        p.add_argument(name, type=kind, help=f"{what} (default: Table 10's, " + ", ".join(
            f"{family} {TABLE_10[family][name[2:].replace('-', '_')]}" for family in TABLE_10) + ")")
    p.add_argument("--seed", type=cli.number(int, 0, 2 ** 32 - 1), default=0,
                   help="seed of the head's initialisation and the data order (default: %(default)s)")
    p.add_argument("--max-seq-len", type=cli.number(int, 8),
                   help="tokens per input, at most the model's positions (default: min(512, positions))")
    p.add_argument("--doc-stride", type=cli.number(int, 1), default=128,
                   help="SQuAD: tokens between window starts, at most a window's context (default: %(default)s)")
    p.add_argument("--eval-batch-size", type=cli.number(int, 1), default=32,
                   help="inputs per forward on dev (default: %(default)s)")
    p.add_argument("--init-from", type=cli.path_arg,
                   help="start the encoder from this finetuned (MNLI) model's folder (default: --checkpoint's)")
    p.add_argument("--sweep", action="store_true",
                   help="Table 10's grid of lr x batch size, median over seeds; a run folder per point in --out "
                        "(refused before any run where one holds results, unless --overwrite)")
    p.add_argument("--sweep-seeds", type=cli.number(int, 1), default=5, help="seeds per point (default: %(default)s)")
    p.add_argument("--max-train-examples", type=cli.number(int, 1),
                   help="use only the first N training examples (default: all)")
    p.add_argument("--max-eval-examples", type=cli.number(int, 1),
                   help="evaluate on the first N dev examples (default: all)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        for option, path in (("--checkpoint", args.checkpoint), ("--init-from", args.init_from)):
            if path and os.path.realpath(path) == os.path.realpath(args.out):
                raise DataError(f"--out {args.out} is the {option} folder: the run would replace that model")
        if args.sweep:
            print(json.dumps(sweep(args), indent=2))
        else:
            summary = finetune(args)
            print(json.dumps({"best_epoch": summary["best_epoch"], "dev": summary["dev"]}, indent=2))
    except (OSError, ValueError) as err:
        sys.exit(f"error: {cli.describe(err)}")
    except KeyboardInterrupt:
        sys.exit("error: interrupted")


if __name__ == "__main__":
    main()
