"""Finetuning a pretrained RoBERTa on GLUE, SQuAD 1.1/2.0 and RACE (Section 5; Table 10).

    python finetune.py --task rte --data glue/RTE --checkpoint roberta-base/ --out runs/rte
    python finetune.py --task squad2 --data squad/ --checkpoint out/ --out runs/squad2
    python finetune.py --task race --data RACE/ --checkpoint out/ --out runs/race
    python finetune.py --task mrpc ... --sweep                 # Table 10's grid, median of 5 seeds

Every task is a pair as in pretraining, `<s> A </s></s> B </s>`, under a head from roberta.py (FAMILIES): GLUE
(Section 5.1) a classifier on <s> (STS-B: a regressor); SQuAD (Section 5.2) start and end scores per token of a
context window (2.0: and an answerable classifier on <s>); RACE (Section 5.3) one score per option. AdamW with
Table 10's hyperparameters; after every epoch the task's official dev metric (evaluate.py) picks the best model,
kept with its dev predictions and metrics.json.
"""
import argparse
import contextlib
import io
import math
import os
import statistics
import sys
from dataclasses import asdict
from typing import NamedTuple

import numpy as np
import torch

import data
import evaluate
import roberta
from evaluate import GLUE, SQUAD, forward, glue_features, glue_predict  # batched outputs; GLUE's inputs, predictions
from machinery.basics import cli, files  # machinery: --out, --max-seq-len checks; atomic writes
from machinery.formats import checkpoints, prepared, task_files  # machinery: run folders, tokenizers, task files

# Table 10 (Adam betas (0.9, 0.98), eps 1e-6 throughout: roberta.adamw); GLUE sweeps lr and batch size (SWEEP).
TABLE_10 = {
    "glue": dict(lr=1e-5, batch_size=32, weight_decay=0.1, epochs=10, warmup_ratio=0.06),
    "squad": dict(lr=1.5e-5, batch_size=48, weight_decay=0.01, epochs=2, warmup_ratio=0.06),
    "race": dict(lr=1e-5, batch_size=16, weight_decay=0.1, epochs=4, warmup_ratio=0.06),
}
SWEEP = {"lr": [1e-5, 2e-5, 3e-5], "batch_size": [16, 32]}  # Section 5.1: --sweep, the median of 5 seeds per point

def family(task):
    """The task's row of TABLE_10 and FAMILIES: glue, squad or race."""
    return "glue" if task in GLUE else "squad" if task in SQUAD else "race"


def num_labels(task):
    """A GLUE classifier's outputs: its labels, or 1 (STS-B regresses a score); None for the other heads."""
    return (len(GLUE[task].labels or ()) or 1) if task in GLUE else None


def primary_metric(task):
    """The dev metric that picks the best epoch: a GLUE task's first official one, SQuAD's F1, RACE's accuracy."""
    return GLUE[task].metrics[0] if task in GLUE else "f1" if task in SQUAD else "accuracy"


# ---------------------------------------------------------------------------------------- GLUE (Section 5.1)
def glue_batch(task, tok, inputs):
    """The classifier's inputs and targets: label indices, or the scores to regress (STS-B)."""
    dtype = torch.long if GLUE[task].labels else torch.float
    return {"input_ids": data.pad([ids for ids, _ in inputs], tok.pad_id),
            "labels": torch.tensor([y for _, y in inputs], dtype=dtype)}


# ---------------------------------------------------------------------------------------- SQuAD (Section 5.2)
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
    """Windows over each context, one every `stride` tokens: <s> question </s></s> window </s>, with the example, the
    window and where the context begins; training targets: the answer's first and last token, else -100."""
    features, encoded = [], {}
    for ei, e in enumerate(examples):
        q = tok.encode(e["question"].strip())[:max_query]
        if e["context"] not in encoded:  # a context has several questions
            encoded[e["context"]] = tok.encode_with_offsets(e["context"])
        ctx, offsets = encoded[e["context"]]
        room = max_len - len(q) - 4
        if room < 16:
            raise ValueError(f"--max-seq-len {max_len} leaves no room for the context beside a question")
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


def squad_batch(task, tok, features):
    """The span head's inputs and targets: the answer's first and last token, and (SQuAD 2.0) whether it is there."""
    batch = {"input_ids": data.pad([f["ids"] for f in features], tok.pad_id),
             "start_positions": torch.tensor([f["start"] for f in features]),
             "end_positions": torch.tensor([f["end"] for f in features])}
    if SQUAD[task].no_answer:
        batch["answerable"] = torch.tensor([f["answerable"] for f in features])
    return batch


def best_spans(examples, features, starts, ends, tok, n_best=20, max_answer_tokens=30):
    """{question id: (answer text, score)}: the highest-scoring span (start + end logit) over all its windows,
    of each window's n_best starts and ends, end >= start, at most max_answer_tokens long."""
    offsets, best = {}, {}
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


def squad_predict(task, model, tok, examples, features, batch_size, device):
    """(answers, no-answer probabilities), official metrics: the best span per question; SQuAD 2.0 (Section 3.3):
    "" where the answerability head says unanswerable (p < 0.5); the script's best thresholds apart (tuned on dev)."""
    outs = forward(model, features, lambda chunk: data.pad([f["ids"] for f in chunk], tok.pad_id), batch_size, device)
    starts, ends, answerable = [s for o in outs for s in o[0].tolist()], [e for o in outs for e in o[1].tolist()], {}
    for f, score in zip(features, [a for o in outs for a in o[2].tolist()]):
        answerable[f["example"]] = max(answerable.get(f["example"], -math.inf), score)
    spans = best_spans(examples, features, starts, ends, tok)
    pred = {e["id"]: spans.get(e["id"], ("", 0.0))[0] for e in examples}
    if not SQUAD[task].no_answer:
        return (pred, None), evaluate.squad_metrics(examples, pred)
    na = {e["id"]: 1.0 / (1.0 + math.exp(min(answerable.get(i, 0.0), 50.0))) for i, e in enumerate(examples)}
    pred = {q: ("" if na[q] >= 0.5 else a) for q, a in pred.items()}
    return (pred, na), evaluate.squad_metrics(examples, pred, na, tuned_apart=True)


# ---------------------------------------------------------------------------------------- RACE (Section 5.3)
def race_features(task, tok, questions, max_len, max_qa=128):
    """(the 4 options' input ids, the answer's index) per question: passage, then question + option cut to 128 tokens
    (Section 5.3); a cloze question's blank ("_") is filled with the option, as fairseq's preprocessing does."""
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


def pad_choices(groups, pad_id):
    """[n questions][k options] of ids -> a LongTensor [n, k, longest] (data.pad over all options)."""
    flat = data.pad([s for g in groups for s in g], pad_id)
    return flat.view(len(groups), len(groups[0]), -1)


def race_batch(task, tok, inputs):
    """The 4 options of every question [questions, 4, tokens], and the answers' indices."""
    return {"input_ids": pad_choices([g for g, _ in inputs], tok.pad_id),
            "labels": torch.tensor([y for _, y in inputs])}


def race_predict(task, model, tok, questions, inputs, batch_size, device):
    """The best-scoring option per question, and its accuracy (all, middle and high school)."""
    scores = torch.cat(forward(model, inputs, lambda chunk: pad_choices([g for g, _ in chunk], tok.pad_id),
                               batch_size, device))
    pred = {q["qid"]: "ABCD"[k] for q, k in zip(questions, scores.argmax(-1).tolist())}
    return pred, evaluate.race_metrics(questions, pred)


# ---------------------------------------------------------------------------------------- every task
class Family(NamedTuple):
    head: type        # Section 5's head on the encoder (roberta.py); it computes the task's loss
    batch: object     # (task, tok, inputs) -> the head's keyword arguments, targets included
    predict: object   # (task, model, tok, items, inputs, batch size, device) -> (dev predictions, official metrics)


FAMILIES = {
    "glue": Family(roberta.RobertaForSequenceClassification, glue_batch, glue_predict),  # <s> -> the labels (STS-B: 1)
    "squad": Family(roberta.RobertaForQuestionAnswering, squad_batch, squad_predict),  # tokens -> start, end (+ <s>)
    "race": Family(roberta.RobertaForMultipleChoice, race_batch, race_predict),        # each option's <s> -> a score
}


def features(task, tok, items, args, train=False):
    """The model's inputs: one per example (GLUE), per question (RACE) or per window of a context (SQuAD)."""
    if task in SQUAD:
        return squad_features(tok, items, args.max_seq_len, args.doc_stride, train=train, v2=SQUAD[task].no_answer)
    return (glue_features if task in GLUE else race_features)(task, tok, items, args.max_seq_len)


SHAPE = ("vocab_size", "hidden_size", "num_layers", "num_heads", "ffn_size", "max_positions")


def make_model(args):
    """(model, tokenizer): a fresh task head on --checkpoint's encoder, or --init-from's (Section 5.1: RTE, STS-B and
    MRPC start from MNLI's). --random-init re-initialises every weight: the control pretraining must beat."""
    head = FAMILIES[family(args.task)].head
    model, tok = evaluate.load_checkpoint(args.checkpoint, head, num_labels=num_labels(args.task))
    if args.init_from:
        source, source_tok = evaluate.load_checkpoint(args.init_from, roberta.RobertaForSequenceClassification, verbose=False)
        if [getattr(source.cfg, k) for k in SHAPE] != [getattr(model.cfg, k) for k in SHAPE] or \
                prepared.tokenizer_hash(source_tok) != prepared.tokenizer_hash(tok):
            raise ValueError(f"--init-from {args.init_from}: not the same model size and tokenizer as --checkpoint "
                             f"{args.checkpoint}")
        model.roberta.load_state_dict(source.roberta.state_dict())
    if getattr(args, "random_init", False):  # the control: what finetuning alone reaches, without pretraining
        torch.manual_seed(args.seed)  # the model a fresh construction gives for the seed (the same head, too)
        model.load_state_dict(type(model)(model.cfg, *[n for n in [num_labels(args.task)] if n]).state_dict())
    return model, tok


# ---------------------------------------------------------------------------------------- training
FINISHED = ("metrics.json",)  # written last: a run's results (a checkpoint.pt alone: a run stopped midway)


def setup(args):
    """The run's data, model and inputs, checked before anything is written (Table 10's hyperparameters
    where not given): (model, tokenizer, training inputs, dev sets, their inputs)."""
    for k, v in TABLE_10[family(args.task)].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    torch.manual_seed(args.seed)
    spec = GLUE.get(args.task) or SQUAD.get(args.task)  # the files' names, columns, labels (None for RACE)
    train_items, dev_sets = task_files.read_task(family(args.task), spec, args.data)  # machinery: read, checked
    train_items = train_items[:args.max_train_examples]
    dev_sets = {name: items[:args.max_eval_examples] for name, items in dev_sets.items()}
    model, tok = make_model(args)
    args.max_seq_len = cli.max_seq_len(args.max_seq_len, model.cfg.max_positions)  # machinery: fits the model
    inputs = features(args.task, tok, train_items, args, train=True)
    if not inputs:
        raise ValueError(f"{args.data}: no training inputs (no training window holds its answer)")
    dev_inputs = {name: features(args.task, tok, items, args) for name, items in dev_sets.items()}  # encoded once
    return model, tok, inputs, dev_sets, dev_inputs


def train_epoch(args, model, opt, tok, inputs, epoch, step):
    """One pass over the training inputs, in an order fixed by (seed, epoch), the learning rate warmed up
    linearly over Table 10's share of all updates, then decayed linearly to 0; returns the update count."""
    from tqdm import tqdm
    steps_per_epoch = max(1, math.ceil(len(inputs) / args.batch_size))
    warmup = int(args.warmup_ratio * steps_per_epoch * args.epochs)
    device = next(model.parameters()).device
    model.train()
    order = np.random.default_rng(args.seed * 1000 + epoch).permutation(len(inputs))
    bar = tqdm(np.array_split(order, steps_per_epoch), desc=f"{args.task} epoch {epoch + 1}/{args.epochs}",
               dynamic_ncols=True, disable=not args.progress)
    for idx in bar:
        for group in opt.param_groups:
            group["lr"] = roberta.linear_lr(step, args.lr, warmup, steps_per_epoch * args.epochs)
        batch = FAMILIES[family(args.task)].batch(args.task, tok, [inputs[i] for i in idx])
        loss = model(**{k: v.to(device) for k, v in batch.items()})
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        if not math.isfinite(loss.item()):
            raise ValueError(f"the loss is {loss.item()} at update {step}: try a lower --lr (it is {args.lr})")
        bar.set_postfix(loss=f"{loss.item():.4f}")
    return step


def finetune(args):
    """One finetuning run: train, evaluate on dev after every epoch, keep the best epoch's model and its dev
    predictions; returns the summary written to metrics.json."""
    cli.check_out(args.out, args.overwrite, FINISHED, "a finetuning run's results")  # machinery: no results overwritten
    with contextlib.redirect_stderr(io.StringIO()) as notes:  # the loader's notes (a new head) are shown
        model, tok, inputs, dev_sets, dev_inputs = setup(args)  # once the run starts: a refusal is one line
    print(notes.getvalue(), end="", file=sys.stderr)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    opt = roberta.adamw(model.to(device), args.lr, args.weight_decay)
    task_files.clear_out(args.out, args.overwrite)  # machinery: an earlier run's outputs go (--overwrite)
    best, history, step = None, [], 0
    for epoch in range(args.epochs):
        step = train_epoch(args, model, opt, tok, inputs, epoch, step)
        predict = FAMILIES[family(args.task)].predict
        results = {name: predict(args.task, model, tok, items, dev_inputs[name], args.eval_batch_size, device)
                   for name, items in dev_sets.items()}
        metrics = {name: m for name, (_, m) in results.items()}
        history.append({"epoch": epoch + 1, "step": step, **metrics})
        files.append(os.path.join(args.out, "log.jsonl"), files.json_text(history[-1]) + "\n")  # machinery: full disk
        score = metrics[next(iter(metrics))][primary_metric(args.task)]
        if best is None or score > best[0]:
            best = (score, epoch + 1, metrics)
            save_best(args, model, tok, results)
    hyper = ("lr", "batch_size", "weight_decay", "epochs", "warmup_ratio", "seed", "max_seq_len")
    summary = {"task": args.task, "primary_metric": primary_metric(args.task), "best_epoch": best[1], "dev": best[2],
               "hyperparameters": {k: getattr(args, k) for k in hyper},
               "random_init": bool(getattr(args, "random_init", False)), "history": history}
    files.write_atomic(os.path.join(args.out, "metrics.json"), files.json_text(summary, indent=2))  # machinery: atomic
    return summary


def save_best(args, model, tok, results):
    """checkpoint.pt (loadable by roberta.load_pretrained), the tokenizer files and the dev predictions."""
    checkpoints.save(os.path.join(args.out, "checkpoint.pt"),  # machinery: atomic, checksummed
                     {"model": model.state_dict(), "config": asdict(model.cfg), "class": type(model).__name__,
                      "num_labels": num_labels(args.task), "task": args.task,
                      "id2label": GLUE[args.task].labels if args.task in GLUE else None,  # output i: label i
                      "tokenizer_sha256": prepared.tokenizer_hash(tok)})  # machinery: checked on load
    tok.save(args.out)
    for name, (pred, _) in results.items():
        task_files.write_predictions(family(args.task), args.out, name, pred)  # machinery: the official formats


def sweep_runs(args, grid=SWEEP):
    """The sweep's runs: (lr, batch size, seed, the run's own folder in --out) for each point of the grid."""
    return [(lr, bs, seed, os.path.join(args.out, f"lr{lr}_bs{bs}_seed{seed}"))
            for lr in grid["lr"] for bs in grid["batch_size"] for seed in range(args.sweep_seeds)]


def sweep(args):
    """Section 5.1: "a limited hyperparameter sweep for each task, with batch sizes in {16, 32} and learning rates in
    {1e-5, 2e-5, 3e-5} ... the median development set results ... over five random initializations". Each point of
    SWEEP runs --sweep-seeds seeds; the best median's setting is returned and written to sweep.json."""
    scores = {}
    for lr, bs, seed, out in sweep_runs(args):
        summary = finetune(argparse.Namespace(**{**vars(args), "lr": lr, "batch_size": bs, "seed": seed, "out": out}))
        first_dev = summary["dev"][next(iter(summary["dev"]))]
        scores.setdefault((lr, bs), []).append(first_dev[summary["primary_metric"]])
    results = [{"lr": lr, "batch_size": bs, "scores": s, "median": statistics.median(s)}
               for (lr, bs), s in scores.items()]  # Section 5.1: the median over seeds of each setting
    for r in results:
        print(f"lr {r['lr']} batch {r['batch_size']}: median {r['median']:.2f} over seeds {r['scores']}")
    best = max(results, key=lambda r: r["median"])
    best_json = files.json_text({"settings": results, "best": best}, indent=2)
    files.write_atomic(os.path.join(args.out, "sweep.json"), best_json)  # machinery: atomic
    return best


if __name__ == "__main__":  # machinery: the command line (Table 10's options, checked), --sweep, one-line errors
    from machinery.commands import finetune_cli
    finetune_cli.main()
