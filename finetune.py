"""Finetuning a pretrained RoBERTa on GLUE, SQuAD 1.1/2.0 and RACE (Section 5; Table 10).

    python finetune.py --task rte --data glue/RTE --checkpoint roberta-base/ --out runs/rte
    python finetune.py --task squad2 --data squad/ --checkpoint out/ --out runs/squad2
    python finetune.py --task race --data RACE/ --checkpoint out/ --out runs/race
    python finetune.py --task mrpc ... --sweep                 # Table 10's grid, median of 5 seeds

Each task is (1) its inputs, `<s> A </s></s> B </s>` as RoBERTa encodes pairs, (2) a head from roberta.py,
(3) its official metric from evaluate.py, evaluated on dev after every epoch; the best epoch's model
is kept (checkpoint.pt, loadable by roberta.load_pretrained) with its dev predictions and metrics.json.
"""
import argparse
import json
import math
import os
import statistics
import sys
from dataclasses import asdict

import numpy as np
import torch

import evaluate
import roberta
from evaluate import GLUE, DataError

# Table 10. GLUE sweeps lr {1e-5, 2e-5, 3e-5} x batch {16, 32}; Adam betas (0.9, 0.98), eps 1e-6 throughout.
TABLE_10 = {
    "glue": dict(lr=1e-5, batch_size=32, weight_decay=0.1, epochs=10, warmup_ratio=0.06),
    "squad": dict(lr=1.5e-5, batch_size=48, weight_decay=0.01, epochs=2, warmup_ratio=0.06),
    "race": dict(lr=1e-5, batch_size=16, weight_decay=0.1, epochs=4, warmup_ratio=0.06),
}
SWEEP = {"lr": [1e-5, 2e-5, 3e-5], "batch_size": [16, 32]}
PRIMARY = {"cola": "mcc", "stsb": "pearson", "squad1": "f1", "squad2": "f1", "race": "accuracy"}


def family(task):
    return "squad" if task.startswith("squad") else "race" if task == "race" else "glue"


# ---------------------------------------------------------------------------------------- inputs
def encode_pair(tok, a, b, max_len):
    """<s> a </s></s> b </s> (or <s> a </s>), trimming the longer side until it fits."""
    if b is None:
        return [tok.bos_id] + a[:max_len - 2] + [tok.eos_id]
    a, b = list(a), list(b)
    while len(a) + len(b) > max_len - 4:
        (a if len(a) >= len(b) else b).pop()
    return [tok.bos_id] + a + [tok.eos_id, tok.eos_id] + b + [tok.eos_id]


def glue_features(task, tok, rows, max_len):
    labels = GLUE[task][4]
    ids = [encode_pair(tok, tok.encode(texts[0]), tok.encode(texts[1]) if len(texts) > 1 else None, max_len)
           for texts, _ in rows]
    y = [None if lab is None else (float(lab) if labels is None else labels.index(lab)) for _, lab in rows]
    return ids, y


def race_features(tok, questions, max_len, max_qa=128):
    """Section 5.3: each option with passage and question; question+option cut to 128 tokens. A cloze
    question ("... _ ...") has its blank filled with the option, as fairseq's RACE preprocessing does."""
    out = []
    for q in questions:
        passage = tok.encode(q["article"])
        options = []
        for opt in q["options"]:
            qa = q["question"].replace("_", opt) if "_" in q["question"] else f"{q['question']} {opt}"
            qa_ids = tok.encode(qa)[:max_qa]
            options.append([tok.bos_id] + passage[:max_len - len(qa_ids) - 4] + [tok.eos_id, tok.eos_id]
                           + qa_ids + [tok.eos_id])
        out.append(options)
    return out, [q["label"] for q in questions]


def squad_features(tok, examples, max_len, stride=128, max_query=64, train=False, v2=False):
    """Sliding windows over each context: <s> question </s></s> context window </s>. Every feature keeps
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
        span = None
        if train and e["answers"] and not e["is_impossible"]:
            s = e["answers"][0]["answer_start"]
            end = s + len(e["answers"][0]["text"])
            first = next((i for i, (a, b) in enumerate(offsets) if b > s), None)
            last = max((i for i, (a, b) in enumerate(offsets) if a < end), default=None)
            span = (first, last) if first is not None and last is not None else None
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
                if inside or v2:  # SQuAD 1.1: a window without the answer teaches nothing
                    features.append(f)
            else:
                features.append(f)
            if stop == len(ctx):
                break
            start += stride
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
def pad(seqs, pad_id):
    width = max(len(s) for s in seqs)
    out = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = torch.tensor(s)
    return out


def pad_choices(groups, pad_id):
    width = max(len(s) for g in groups for s in g)
    out = torch.full((len(groups), len(groups[0]), width), pad_id, dtype=torch.long)
    for i, g in enumerate(groups):
        for j, s in enumerate(g):
            out[i, j, :len(s)] = torch.tensor(s)
    return out


# ---------------------------------------------------------------------------------------- one run
def load_task(args):
    """(train items, dev sets {name: items}) for the task; items are whatever the task's features use."""
    task, path = args.task, args.data
    if not os.path.isdir(path):
        raise DataError(f"{path}: no such data folder")
    if family(task) == "glue":
        folder_files = GLUE[task][1]
        train = evaluate.read_glue(task, os.path.join(path, "train.tsv"))
        dev = {name[:-4]: evaluate.read_glue(task, os.path.join(path, name)) for name in folder_files}
    elif family(task) == "squad":
        v = "v1.1" if task == "squad1" else "v2.0"
        train = evaluate.read_squad(os.path.join(path, f"train-{v}.json"))
        dev = {"dev": evaluate.read_squad(os.path.join(path, f"dev-{v}.json"))}
    else:
        train = evaluate.read_race(os.path.join(path, "train"))
        dev = {"dev": evaluate.read_race(os.path.join(path, "dev"))}
    if args.max_train_examples:
        train = train[:args.max_train_examples]
    if args.max_eval_examples:
        dev = {k: v[:args.max_eval_examples] for k, v in dev.items()}
    return train, dev


def make_model(args):
    fam = family(args.task)
    cls = {"glue": roberta.RobertaForSequenceClassification, "squad": roberta.RobertaForQuestionAnswering,
           "race": roberta.RobertaForMultipleChoice}[fam]
    labels = GLUE[args.task][4] if fam == "glue" else None
    num_labels = (len(labels) if labels else 1) if fam == "glue" else None
    model, ckpt_tok = evaluate.load_checkpoint_and_tokenizer(args.checkpoint, cls, num_labels=num_labels)
    if args.init_from:  # Section 5.1: RTE, STS-B and MRPC start from the MNLI model
        source, _ = evaluate.load_checkpoint_and_tokenizer(args.init_from, roberta.RobertaForSequenceClassification)
        model.roberta.load_state_dict(source.roberta.state_dict())
    return model, ckpt_tok, cls, num_labels


def eval_inputs(args, tok, items, max_len):
    """A dev set's model inputs, encoded once for all the epochs' evaluations."""
    fam = family(args.task)
    if fam == "glue":
        return glue_features(args.task, tok, items, max_len)[0]
    if fam == "race":
        return race_features(tok, items, max_len)[0]
    return squad_features(tok, items, max_len, args.doc_stride)


def predict(model, args, tok, items, inputs, device):
    """Dev predictions in the task's official format: (predictions, metrics)."""
    fam = family(args.task)
    model.eval()
    bs = args.eval_batch_size
    with torch.no_grad():
        if fam == "glue":
            ids = inputs
            out = torch.cat([model(pad(ids[i:i + bs], tok.pad_id).to(device)).float().cpu()
                             for i in range(0, len(ids), bs)])
            labels = GLUE[args.task][4]
            pred = [f"{v:.4f}" for v in out[:, 0].tolist()] if labels is None else \
                [labels[i] for i in out.argmax(-1).tolist()]
            return pred, evaluate.glue_metrics(args.task, pred, [lab for _, lab in items])
        if fam == "race":
            groups = inputs
            scores = torch.cat([model(pad_choices(groups[i:i + bs], tok.pad_id).to(device)).float().cpu()
                                for i in range(0, len(groups), bs)])
            pred = {q["qid"]: "ABCD"[k] for q, k in zip(items, scores.argmax(-1).tolist())}
            return pred, evaluate.race_metrics(items, pred)
        feats = inputs
        starts, ends, answerable = [], [], {}
        for i in range(0, len(feats), bs):
            chunk = feats[i:i + bs]
            s, e, a = model(pad([f["ids"] for f in chunk], tok.pad_id).to(device))
            starts += s.cpu().tolist()
            ends += e.cpu().tolist()
            for f, score in zip(chunk, a.cpu().tolist()):
                answerable[f["example"]] = max(answerable.get(f["example"], -math.inf), score)
        spans = best_spans(items, feats, starts, ends, tok)
        pred = {e["id"]: spans.get(e["id"], ("", 0.0))[0] for e in items}
        if args.task == "squad1":
            return (pred, None), evaluate.squad_metrics(items, pred)
        # SQuAD 2.0: no-answer probability from the answerability head, threshold chosen on dev
        na = {e["id"]: 1.0 / (1.0 + math.exp(min(answerable.get(i, 0.0), 50.0))) for i, e in enumerate(items)}
        thresh = evaluate.squad_metrics(items, pred, na)["best_f1_thresh"]
        pred = {q: ("" if na[q] > thresh else a) for q, a in pred.items()}
        metrics = evaluate.squad_metrics(items, pred, na, na_prob_thresh=thresh)
        metrics["na_prob_thresh"] = thresh
        return (pred, na), metrics


def training_inputs(args, tok, items, max_len):
    """Encode the training set once: (inputs, collate), where collate turns a list of inputs into the
    keyword arguments of the task's model."""
    fam = family(args.task)
    if fam == "glue":
        ids, y = glue_features(args.task, tok, items, max_len)
        dtype = torch.float if GLUE[args.task][4] is None else torch.long  # STS-B regresses a score
        return list(zip(ids, y)), lambda chunk: {"input_ids": pad([i for i, _ in chunk], tok.pad_id),
                                                 "labels": torch.tensor([t for _, t in chunk], dtype=dtype)}
    if fam == "race":
        groups, y = race_features(tok, items, max_len)
        return list(zip(groups, y)), lambda chunk: {"input_ids": pad_choices([g for g, _ in chunk], tok.pad_id),
                                                    "labels": torch.tensor([t for _, t in chunk])}
    v2 = args.task == "squad2"

    def collate(chunk):
        batch = {"input_ids": pad([f["ids"] for f in chunk], tok.pad_id),
                 "start_positions": torch.tensor([f["start"] for f in chunk]),
                 "end_positions": torch.tensor([f["end"] for f in chunk])}
        if v2:
            batch["answerable"] = torch.tensor([f["answerable"] for f in chunk])
        return batch
    return squad_features(tok, items, max_len, args.doc_stride, train=True, v2=v2), collate


def finetune(args):
    """One finetuning run; returns the best dev metrics."""
    from tqdm import tqdm
    evaluate.check_task(args.task)
    for k, v in TABLE_10[family(args.task)].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    train_items, dev_sets = load_task(args)  # bad data fails before the model loads
    model, tok, cls, num_labels = make_model(args)
    model.to(device)
    max_len = min(args.max_seq_len, model.cfg.max_positions)
    inputs, collate = training_inputs(args, tok, train_items, max_len)
    dev_inputs = {name: eval_inputs(args, tok, items, max_len) for name, items in dev_sets.items()}
    steps_per_epoch = max(1, math.ceil(len(inputs) / args.batch_size))
    total = steps_per_epoch * args.epochs
    warmup = int(args.warmup_ratio * total)
    opt = torch.optim.AdamW(roberta.param_groups(model, args.weight_decay), lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    os.makedirs(args.out, exist_ok=True)
    primary = PRIMARY.get(args.task, "accuracy")
    best, history, step = None, [], 0
    for epoch in range(args.epochs):
        model.train()
        order = np.random.default_rng(args.seed * 1000 + epoch).permutation(len(inputs))
        bar = tqdm(np.array_split(order, steps_per_epoch), desc=f"{args.task} epoch {epoch + 1}/{args.epochs}",
                   dynamic_ncols=True, disable=not args.progress)
        for idx in bar:
            batch = collate([inputs[i] for i in idx])
            for group in opt.param_groups:
                group["lr"] = roberta.linear_lr(step, args.lr, warmup, total)
            loss = model(**{k: v.to(device) for k, v in batch.items()})
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            bar.set_postfix(loss=f"{loss.item():.4f}")
        results = {name: predict(model, args, tok, items, dev_inputs[name], device) for name, items in dev_sets.items()}
        metrics = {name: m for name, (_, m) in results.items()}
        score = metrics[next(iter(metrics))][primary]
        history.append({"epoch": epoch + 1, "step": step, **metrics})
        with open(os.path.join(args.out, "log.jsonl"), "a") as f:
            f.write(json.dumps(history[-1]) + "\n")
        if best is None or score > best[0]:
            best = (score, epoch + 1, metrics)
            save_best(args, model, tok, cls, num_labels, results)
    summary = {"task": args.task, "primary_metric": primary, "best_epoch": best[1], "dev": best[2],
               "hyperparameters": {k: getattr(args, k) for k in ("lr", "batch_size", "weight_decay", "epochs",
                                                                  "warmup_ratio", "seed", "max_seq_len")},
               "history": history}
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


def save_best(args, model, tok, cls, num_labels, results):
    """checkpoint.pt (loadable by roberta.load_pretrained), tokenizer files and dev predictions."""
    ckpt = {"model": model.state_dict(), "config": asdict(model.cfg), "class": cls.__name__,
            "num_labels": num_labels, "task": args.task}
    tmp = os.path.join(args.out, "checkpoint.pt.tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, os.path.join(args.out, "checkpoint.pt"))
    tok.save(args.out)
    for name, (pred, _) in results.items():
        if family(args.task) == "glue":
            evaluate.write_glue_predictions(os.path.join(args.out, f"{name}_predictions.tsv"), pred)
        elif family(args.task) == "race":
            with open(os.path.join(args.out, "predictions.json"), "w") as f:
                json.dump(pred, f)
        else:
            answers, na = pred
            with open(os.path.join(args.out, "predictions.json"), "w") as f:
                json.dump(answers, f)
            if na is not None:
                with open(os.path.join(args.out, "na_prob.json"), "w") as f:
                    json.dump(na, f)


def sweep(args):
    """Section 5.1: the grid of Table 10, each setting run with several seeds; the median per setting."""
    results = []
    base_out = args.out
    for lr in SWEEP["lr"]:
        for bs in SWEEP["batch_size"]:
            scores = []
            for seed in range(args.sweep_seeds):
                run = argparse.Namespace(**{**vars(args), "lr": lr, "batch_size": bs, "seed": seed,
                                            "out": os.path.join(base_out, f"lr{lr}_bs{bs}_seed{seed}")})
                summary = finetune(run)
                scores.append(summary["dev"][next(iter(summary["dev"]))][summary["primary_metric"]])
            results.append({"lr": lr, "batch_size": bs, "scores": scores, "median": statistics.median(scores)})
            print(f"lr {lr} batch {bs}: median {results[-1]['median']:.2f} over seeds {scores}")
    best = max(results, key=lambda r: r["median"])
    with open(os.path.join(base_out, "sweep.json"), "w") as f:
        json.dump({"settings": results, "best": best}, f, indent=2)
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, help=", ".join(evaluate.TASKS))
    p.add_argument("--data", required=True, help="the task's folder (GLUE TSVs, SQuAD JSONs, RACE train/dev)")
    p.add_argument("--checkpoint", required=True, help="a train.py output or a Hugging Face RoBERTa folder")
    p.add_argument("--out", required=True)
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--warmup-ratio", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-seq-len", type=int, default=512)
    p.add_argument("--doc-stride", type=int, default=128, help="SQuAD: tokens between window starts")
    p.add_argument("--eval-batch-size", type=int, default=32)
    p.add_argument("--init-from", help="start the encoder from this finetuned (MNLI) model")
    p.add_argument("--sweep", action="store_true", help="Table 10's grid of lr x batch size, median over seeds")
    p.add_argument("--sweep-seeds", type=int, default=5)
    p.add_argument("--max-train-examples", type=int, help="use only the first N training examples")
    p.add_argument("--max-eval-examples", type=int, help="evaluate on the first N dev examples")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    args = p.parse_args(argv)
    try:
        evaluate.check_task(args.task)
        if args.sweep:
            best = sweep(args)
            print(json.dumps(best, indent=2))
        else:
            summary = finetune(args)
            print(json.dumps({"best_epoch": summary["best_epoch"], "dev": summary["dev"]}, indent=2))
    except (OSError, ValueError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
