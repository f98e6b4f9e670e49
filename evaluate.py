"""Evaluation: the downstream datasets and their official metrics (Section 5), perplexity, fill-mask.

    python evaluate.py perplexity --checkpoint DIR --data DIR
    python evaluate.py fill-mask --checkpoint DIR "The capital of France is <mask>."
    python evaluate.py glue --task rte --data dev.tsv --predictions preds.tsv
    python evaluate.py squad --data dev-v2.0.json --predictions preds.json [--na-prob-file na.json]
    python evaluate.py race --data DIR --predictions preds.json

Every metric is a percentage, as in the paper's tables. The SQuAD numbers follow the official v2.0
evaluation script (which also scores v1.1 files); MCC, F1, Pearson and Spearman are their textbook
definitions. This module also reads the datasets (GLUE TSVs, SQuAD JSON, RACE folders); finetune.py
uses it for that.
"""
import argparse
import collections
import csv
import glob
import json
import math
import os
import re
import string
import sys

import numpy as np


class DataError(ValueError):
    """Bad input data: the message names the file (and line) and what is wrong."""


# ---------------------------------------------------------------------------------------- GLUE
# task -> (folder name, dev file names, text columns, label column, labels; None = regression)
# Columns are header names; CoLA's files have no header, so its columns are numbers.
GLUE = {
    "cola": ("CoLA", ["dev.tsv"], [3], 1, ["0", "1"]),
    "sst2": ("SST-2", ["dev.tsv"], ["sentence"], "label", ["0", "1"]),
    "mrpc": ("MRPC", ["dev.tsv"], ["#1 String", "#2 String"], "Quality", ["0", "1"]),
    "stsb": ("STS-B", ["dev.tsv"], ["sentence1", "sentence2"], "score", None),
    "qqp": ("QQP", ["dev.tsv"], ["question1", "question2"], "is_duplicate", ["0", "1"]),
    "mnli": ("MNLI", ["dev_matched.tsv", "dev_mismatched.tsv"], ["sentence1", "sentence2"], "gold_label",
             ["contradiction", "entailment", "neutral"]),
    "qnli": ("QNLI", ["dev.tsv"], ["question", "sentence"], "label", ["entailment", "not_entailment"]),
    "rte": ("RTE", ["dev.tsv"], ["sentence1", "sentence2"], "label", ["entailment", "not_entailment"]),
    "wnli": ("WNLI", ["dev.tsv"], ["sentence1", "sentence2"], "label", ["0", "1"]),
}
GLUE_METRICS = {"cola": ["mcc"], "stsb": ["pearson", "spearman"], "mrpc": ["accuracy", "f1"],
                "qqp": ["accuracy", "f1"]}
TASKS = list(GLUE) + ["squad1", "squad2", "race"]


def check_task(task):
    if task not in TASKS:
        raise DataError(f"unknown task {task!r}: choose one of {', '.join(TASKS)}")


def read_glue(task, path, labelled=True):
    """A GLUE TSV as a list of (texts, label) with label None when the file has no labels (test sets)."""
    _, _, text_cols, label_col, labels = GLUE[task]
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if task != "cola":
        header, rows, first_line = rows[0], rows[1:], 2
        try:
            text_idx = [header.index(c) for c in text_cols]
            label_idx = header.index(label_col) if labelled else None
        except ValueError:
            raise DataError(f"{path}: header {header[:6]} lacks the {task} columns {text_cols + [label_col]}") \
                from None
    else:
        text_idx, label_idx, first_line = text_cols, label_col if labelled else None, 1
    out = []
    for n, row in enumerate(rows, first_line):
        if not row:
            continue
        need = max(text_idx + ([label_idx] if label_idx is not None else []))
        if len(row) <= need:
            raise DataError(f"{path}:{n}: expected at least {need + 1} tab-separated columns, got {len(row)}")
        label = None
        if label_idx is not None:
            label = row[label_idx].strip()
            if labels is None:
                try:
                    label = float(label)
                except ValueError:
                    raise DataError(f"{path}:{n}: score {label!r} is not a number") from None
            elif label not in labels:
                raise DataError(f"{path}:{n}: label {label!r} is not one of {labels}")
        out.append(([row[i] for i in text_idx], label))
    if not out:
        raise DataError(f"{path}: no examples")
    return out


def accuracy(pred, gold):
    return 100.0 * float(np.mean(np.asarray(pred) == np.asarray(gold)))


def f1_binary(pred, gold, positive="1"):
    pred, gold = np.asarray(pred) == positive, np.asarray(gold) == positive
    tp = float(np.sum(pred & gold))
    precision = tp / max(np.sum(pred), 1)
    recall = tp / max(np.sum(gold), 1)
    return 100.0 * float(2 * precision * recall / (precision + recall) if precision + recall else 0.0)


def mcc(pred, gold, positive="1"):
    """Matthews correlation coefficient (CoLA)."""
    p, g = np.asarray(pred) == positive, np.asarray(gold) == positive
    tp, tn = float(np.sum(p & g)), float(np.sum(~p & ~g))
    fp, fn = float(np.sum(p & ~g)), float(np.sum(~p & g))
    denom = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 100.0 * ((tp * tn - fp * fn) / denom if denom else 0.0)


def pearson(x, y):
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    x, y = x - x.mean(), y - y.mean()
    denom = math.sqrt(float(np.sum(x * x) * np.sum(y * y)))
    return 100.0 * (float(np.sum(x * y)) / denom if denom else 0.0)


def ranks(x):
    """Ranks starting at 1, ties sharing their average rank (as Spearman's rho needs)."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    r = np.empty(len(x))
    r[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=r)
    return sums[inverse] / counts[inverse]


def spearman(x, y):
    return pearson(ranks(x), ranks(y))


def glue_metrics(task, pred, gold):
    if task == "stsb":
        pred, gold = [float(p) for p in pred], [float(g) for g in gold]
        return {"pearson": pearson(pred, gold), "spearman": spearman(pred, gold)}
    out = {} if task == "cola" else {"accuracy": accuracy(pred, gold)}
    if task == "cola":
        out["mcc"] = mcc(pred, gold)
    if task in ("mrpc", "qqp"):
        out["f1"] = f1_binary(pred, gold)
    return out


def read_glue_predictions(path, n):
    """GLUE submission TSV: header index<TAB>prediction, one row per example in file order."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    with open(path, encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    if not rows or rows[0] != ["index", "prediction"]:
        raise DataError(f"{path}: expected the header 'index<TAB>prediction'")
    pred = {}
    for n_line, row in enumerate(rows[1:], 2):
        if len(row) != 2 or not row[0].isdigit():
            raise DataError(f"{path}:{n_line}: expected 'index<TAB>prediction', got {row}")
        pred[int(row[0])] = row[1]
    if sorted(pred) != list(range(n)):
        raise DataError(f"{path}: predictions for indices 0..{n - 1} expected, got {len(pred)} rows")
    return [pred[i] for i in range(n)]


def write_glue_predictions(path, predictions):
    with open(path, "w", encoding="utf-8") as f:
        f.write("index\tprediction\n")
        for i, p in enumerate(predictions):
            f.write(f"{i}\t{p}\n")


# ---------------------------------------------------------------------------------------- SQuAD
def read_squad(path):
    """SQuAD JSON -> list of dicts: id, question, context, answers [{text, answer_start}], is_impossible."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    try:
        with open(path, encoding="utf-8") as f:
            articles = json.load(f)["data"]
        out = []
        for article in articles:
            for para in article["paragraphs"]:
                for qa in para["qas"]:
                    out.append({"id": qa["id"], "question": qa["question"], "context": para["context"],
                                "answers": [{"text": a["text"], "answer_start": a["answer_start"]}
                                            for a in qa["answers"]],
                                "is_impossible": bool(qa.get("is_impossible", False))})
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not JSON ({e})") from None
    except (KeyError, TypeError) as e:
        raise DataError(f"{path}: not SQuAD's shape (data / paragraphs / qas / answers; missing {e})") from None
    return out


def normalize_answer(s):
    """The official script's normalisation: lower case, no punctuation, no articles, single spaces."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def squad_exact(gold, pred):
    return int(normalize_answer(gold) == normalize_answer(pred))


def squad_f1(gold, pred):
    gold_toks, pred_toks = normalize_answer(gold).split(), normalize_answer(pred).split()
    if not gold_toks or not pred_toks:  # no-answer: F1 is 1 if both are empty, else 0
        return float(gold_toks == pred_toks)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_toks), same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(examples, predictions, na_probs=None, na_prob_thresh=1.0):
    """The official SQuAD v2.0 evaluation (v1.1 files too): exact, f1, total, HasAns_*/NoAns_*, and
    with no-answer probabilities the best thresholds (best_exact, best_f1 and their thresholds)."""
    has_ans = {e["id"]: bool(e["answers"]) for e in examples}
    exact, f1 = {}, {}
    for e in examples:
        if e["id"] not in predictions:
            continue  # the official script skips a missing prediction (and says so)
        golds = [a["text"] for a in e["answers"] if normalize_answer(a["text"])] or [""]
        pred = predictions[e["id"]]
        exact[e["id"]] = max(squad_exact(g, pred) for g in golds)
        f1[e["id"]] = max(squad_f1(g, pred) for g in golds)
    na_probs = na_probs or {}
    exact_t = {q: (float(not has_ans[q]) if na_probs.get(q, 0.0) > na_prob_thresh else s) for q, s in exact.items()}
    f1_t = {q: (float(not has_ans[q]) if na_probs.get(q, 0.0) > na_prob_thresh else s) for q, s in f1.items()}

    def summary(qids, prefix=""):
        n = len(qids)
        return {f"{prefix}exact": 100.0 * sum(exact_t[q] for q in qids) / n,
                f"{prefix}f1": 100.0 * sum(f1_t[q] for q in qids) / n, f"{prefix}total": n}
    out = summary(list(exact))
    has = [q for q in exact if has_ans[q]]
    no = [q for q in exact if not has_ans[q]]
    if has:
        out.update(summary(has, "HasAns_"))
    if no:
        out.update(summary(no, "NoAns_"))
    if na_probs:
        for name, scores in (("exact", exact), ("f1", f1)):
            best, thresh = best_threshold(predictions, scores, na_probs, has_ans)
            out[f"best_{name}"], out[f"best_{name}_thresh"] = best, thresh
    return out


def best_threshold(predictions, scores, na_probs, has_ans):
    """The official find_best_thresh: sweep the no-answer threshold over the predicted probabilities."""
    cur = best = sum(1 for q in has_ans if not has_ans[q])
    best_thresh = 0.0
    for q in sorted(na_probs, key=lambda q: na_probs[q]):  # stable: ties keep the file's order
        if q not in scores:
            continue
        cur += scores[q] if has_ans[q] else (-1 if predictions[q] else 0)
        if cur > best:
            best, best_thresh = cur, na_probs[q]
    return 100.0 * best / len(scores), best_thresh


# ---------------------------------------------------------------------------------------- RACE
RACE_KEYS = ("article", "questions", "options", "answers", "id")


def read_race(folder):
    """A RACE split folder (middle/ and high/, one JSON file per passage) -> list of questions:
    {qid: '<passage id>-<question index>', level, article, question, options [4], label 0-3}."""
    paths = sorted(glob.glob(os.path.join(folder, "middle", "*")) + glob.glob(os.path.join(folder, "high", "*")))
    if not paths:
        raise DataError(f"{folder}: no RACE files (expected middle/ and high/ with one JSON file per passage)")
    out = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{path}: not JSON ({e})") from None
        missing = [k for k in RACE_KEYS if k not in doc]
        if missing:
            raise DataError(f"{path}: missing key(s) {', '.join(missing)}")
        level = os.path.basename(os.path.dirname(path))
        for i, (q, opts, ans) in enumerate(zip(doc["questions"], doc["options"], doc["answers"])):
            if len(opts) != 4 or ans not in "ABCD" or len(ans) != 1:
                raise DataError(f"{path}: question {i} needs 4 options and an answer in A-D")
            out.append({"qid": f"{doc['id']}-{i}", "level": level, "article": doc["article"], "question": q,
                        "options": opts, "label": "ABCD".index(ans)})
    return out


def race_metrics(questions, predictions):
    def acc(qs):
        return 100.0 * sum(predictions.get(q["qid"]) == "ABCD"[q["label"]] for q in qs) / max(len(qs), 1)
    return {"accuracy": acc(questions), "middle": acc([q for q in questions if q["level"] == "middle"]),
            "high": acc([q for q in questions if q["level"] == "high"])}


def read_json(path, what):
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    try:
        with open(path, encoding="utf-8") as f:
            out = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not JSON ({e})") from None
    if not isinstance(out, dict):
        raise DataError(f"{path}: expected a JSON object of {what}")
    return out


# ---------------------------------------------------------------------------------------- pretraining checks
def load_checkpoint_and_tokenizer(path, cls=None, **kwargs):
    """A checkpoint folder's model and tokenizer (both must be there; their vocabularies must agree)."""
    import bpe
    import roberta
    tok = bpe.Tokenizer.load(path)
    model = roberta.load_pretrained(path, cls=cls or roberta.RobertaForMaskedLM, **kwargs)
    if model.cfg.vocab_size != len(tok):
        raise DataError(f"{path}: the tokenizer has {len(tok)} tokens but the model's vocabulary is "
                        f"{model.cfg.vocab_size}")
    return model, tok


def perplexity(checkpoint, data_dir, split="valid", seq_len=512, batch_size=8):
    import data
    model, tok = load_checkpoint_and_tokenizer(checkpoint)
    tokens, ends, meta = data.load_split(data_dir, split)
    if meta["vocab_size"] != len(tok) or meta["tokenizer_sha256"] != data.tokenizer_hash(tok):
        raise DataError(f"{data_dir} was prepared with another tokenizer than {checkpoint}'s")
    if tokens.size == 0:
        raise DataError(f"{data_dir}: the {split} split is empty")
    total, count = data.heldout_loss(model, tokens, ends, tok, min(seq_len, model.cfg.max_positions), batch_size)
    return {"loss": total / count, "ppl": math.exp(total / count), "targets": count, "split": split}


# ---------------------------------------------------------------------------------------- command line
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("perplexity", help="masked-LM perplexity of a checkpoint on prepared data")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--split", default="valid", choices=["train", "valid"])
    s.add_argument("--seq-len", type=int, default=512)
    s = sub.add_parser("fill-mask", help="the most likely tokens for <mask>")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--top-k", type=int, default=5)
    s.add_argument("text")
    s = sub.add_parser("squad", help="official SQuAD v2.0 metrics (v1.1 files too)")
    s.add_argument("--data", required=True)
    s.add_argument("--predictions", required=True)
    s.add_argument("--na-prob-file")
    s.add_argument("--na-prob-thresh", type=float, default=1.0)
    s = sub.add_parser("glue", help="GLUE metrics of a predictions TSV")
    s.add_argument("--task", required=True)
    s.add_argument("--data", required=True, help="the task's dev.tsv")
    s.add_argument("--predictions", required=True)
    s = sub.add_parser("race", help="RACE accuracy (all, middle, high)")
    s.add_argument("--data", required=True, help="a RACE split folder (dev/ or test/)")
    s.add_argument("--predictions", required=True)
    args = p.parse_args(argv)
    try:
        if args.command == "perplexity":
            out = perplexity(args.checkpoint, args.data, args.split, args.seq_len)
        elif args.command == "fill-mask":
            import roberta
            model, tok = load_checkpoint_and_tokenizer(args.checkpoint)
            for token, prob in roberta.fill_mask(model, tok, args.text, args.top_k):
                print(f"{prob:.4f}\t{token!r}")
            return
        elif args.command == "squad":
            na = read_json(args.na_prob_file, "no-answer probabilities") if args.na_prob_file else None
            out = squad_metrics(read_squad(args.data), read_json(args.predictions, "answers"), na, args.na_prob_thresh)
        elif args.command == "glue":
            check_task(args.task)
            if args.task not in GLUE:
                raise DataError(f"{args.task} is not a GLUE task")
            gold = [label for _, label in read_glue(args.task, args.data)]
            pred = read_glue_predictions(args.predictions, len(gold))
            out = glue_metrics(args.task, pred, gold)
        else:
            out = race_metrics(read_race(args.data), read_json(args.predictions, "answers"))
        print(json.dumps(out, indent=2))
    except (OSError, ValueError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
