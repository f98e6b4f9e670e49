"""Evaluation: the downstream datasets and their official metrics (Section 5), perplexity, fill-mask.

    python evaluate.py perplexity --checkpoint DIR --data DIR
    python evaluate.py fill-mask --checkpoint DIR "The capital of France is <mask>."
    python evaluate.py glue --task rte --data dev.tsv --predictions preds.tsv
    python evaluate.py squad --data dev-v2.0.json --predictions preds.json [--na-prob-file na.json]
    python evaluate.py race --data DIR --predictions preds.json

Every metric is a percentage, as in the paper's tables. The SQuAD numbers follow the official v2.0
evaluation script (which also scores v1.1 files); MCC, F1, Pearson and Spearman are their textbook
definitions. This module also reads the datasets (GLUE TSVs, SQuAD JSON, RACE folders); finetune.py
uses it for that. Models and tokenizers are loaded by machinery/checkpoints.py.
"""
import argparse
import collections
import csv
import glob
import io
import json
import math
import os
import re
import string
import sys
from typing import NamedTuple

import numpy as np

import bpe
from machinery import cli, files


class DataError(ValueError):
    """Bad input data: the message names the file (and line) and what is wrong."""


def check_file(path):
    """A file to read: there, and not a folder (the error names it)."""
    if os.path.isdir(path):
        raise DataError(f"{path}: a folder, not a file")
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")


def read_text(path):
    """A UTF-8 file's text (a leading byte-order mark dropped); a file that is not UTF-8 is named."""
    check_file(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            return f.read()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def read_json(path, what):
    """A JSON object from `path` (`what` it holds names it in errors)."""
    try:
        out = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not JSON ({e})") from None
    if not isinstance(out, dict):
        raise DataError(f"{path}: expected a JSON object of {what}, got a {type(out).__name__}")
    return out


# ---------------------------------------------------------------------------------------- GLUE
class GlueTask(NamedTuple):
    """A GLUE task as GLUE distributes it. Columns are header names; CoLA's files have no header, so its
    columns are numbers."""
    folder: str           # the task's folder in GLUE's download
    dev_files: tuple      # the dev sets (MNLI: matched and mismatched)
    text_columns: tuple   # one sentence, or a pair
    label_column: object
    labels: tuple         # as the files write them; None: a score to regress (STS-B)
    metrics: tuple        # the official metrics; the first selects the best epoch when finetuning


NLI = ("contradiction", "entailment", "neutral")
GLUE = {
    "cola": GlueTask("CoLA", ("dev.tsv",), (3,), 1, ("0", "1"), ("mcc",)),
    "sst2": GlueTask("SST-2", ("dev.tsv",), ("sentence",), "label", ("0", "1"), ("accuracy",)),
    "mrpc": GlueTask("MRPC", ("dev.tsv",), ("#1 String", "#2 String"), "Quality", ("0", "1"), ("accuracy", "f1")),
    "stsb": GlueTask("STS-B", ("dev.tsv",), ("sentence1", "sentence2"), "score", None, ("pearson", "spearman")),
    "qqp": GlueTask("QQP", ("dev.tsv",), ("question1", "question2"), "is_duplicate", ("0", "1"), ("accuracy", "f1")),
    "mnli": GlueTask("MNLI", ("dev_matched.tsv", "dev_mismatched.tsv"), ("sentence1", "sentence2"), "gold_label",
                     NLI, ("accuracy",)),
    "qnli": GlueTask("QNLI", ("dev.tsv",), ("question", "sentence"), "label", ("entailment", "not_entailment"),
                     ("accuracy",)),
    "rte": GlueTask("RTE", ("dev.tsv",), ("sentence1", "sentence2"), "label", ("entailment", "not_entailment"),
                    ("accuracy",)),
    "wnli": GlueTask("WNLI", ("dev.tsv",), ("sentence1", "sentence2"), "label", ("0", "1"), ("accuracy",)),
}
class SquadTask(NamedTuple):
    version: str          # in the file names: train-v1.1.json, dev-v1.1.json
    no_answer: bool       # questions without an answer in the context (SQuAD 2.0)


SQUAD = {"squad1": SquadTask("v1.1", False), "squad2": SquadTask("v2.0", True)}
TASKS = list(GLUE) + list(SQUAD) + ["race"]


def check_task(task, among=TASKS, kind="task"):
    """`task` if it is one of `among` (which are `kind` tasks), else a DataError that lists them."""
    if task not in among:
        what = f"{task!r} is not a {kind}" if task in TASKS else f"unknown task {task!r}"
        raise DataError(f"{what}: choose one of {', '.join(among)}")
    return task


def parse_label(task, text, where):
    """A label as the task's files write it: one of its labels, or a finite number (STS-B)."""
    labels = GLUE[task].labels
    if labels is None:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise DataError(f"{where}: score {text!r} is not a number")
        return value
    if text not in labels:
        raise DataError(f"{where}: label {text!r} is not one of {', '.join(labels)}")
    return text


def tsv_rows(path):
    """The rows of a TSV file, as GLUE writes them (no quoting)."""
    try:
        return list(csv.reader(io.StringIO(read_text(path), newline=""), delimiter="\t", quoting=csv.QUOTE_NONE))
    except csv.Error as e:
        raise DataError(f"{path}: not a TSV file ({e})") from None


def glue_columns(task, path, header, labelled):
    """(text column indices, label column index or None) of a GLUE file, found by header names."""
    t = GLUE[task]
    if not isinstance(t.label_column, str):  # no header (CoLA)
        return list(t.text_columns), t.label_column if labelled else None
    try:
        return [header.index(c) for c in t.text_columns], header.index(t.label_column) if labelled else None
    except ValueError:
        raise DataError(f"{path}: header {header[:6]} lacks the {task} columns "
                        f"{list(t.text_columns) + [t.label_column]}") from None


def read_glue(task, path, labelled=True):
    """A GLUE TSV as a list of (texts, label) with label None when the file has no labels (test sets)."""
    rows = tsv_rows(path)
    has_header = isinstance(GLUE[task].label_column, str)
    if has_header and not rows:
        raise DataError(f"{path}: empty (no header)")
    text_idx, label_idx = glue_columns(task, path, rows[0] if has_header else None, labelled)
    need = max(text_idx + ([label_idx] if label_idx is not None else []))
    out = []
    for n, row in enumerate(rows[1:] if has_header else rows, 2 if has_header else 1):
        if not row:
            continue
        if len(row) <= need:
            raise DataError(f"{path}:{n}: expected at least {need + 1} tab-separated columns, got {len(row)}")
        label = None if label_idx is None else parse_label(task, row[label_idx].strip(), f"{path}:{n}")
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


METRICS = {"accuracy": accuracy, "f1": f1_binary, "mcc": mcc, "pearson": pearson, "spearman": spearman}


def glue_metrics(task, pred, gold):
    """The task's official metrics (GlueTask.metrics) of predicted against gold labels."""
    if GLUE[task].labels is None:
        pred, gold = [float(p) for p in pred], [float(g) for g in gold]
    return {name: METRICS[name](pred, gold) for name in GLUE[task].metrics}


def read_glue_predictions(path, task, n):
    """GLUE submission TSV: header index<TAB>prediction, one row per example in file order; every
    prediction one of the task's labels (STS-B: a number)."""
    rows = [line.rstrip("\n").split("\t") for line in io.StringIO(read_text(path), newline=None)]
    if not rows or rows[0] != ["index", "prediction"]:
        raise DataError(f"{path}: expected the header 'index<TAB>prediction'")
    pred = {}
    for n_line, row in enumerate(rows[1:], 2):
        if not "".join(row).strip():
            continue
        if len(row) != 2 or not row[0].isdigit():
            raise DataError(f"{path}:{n_line}: expected 'index<TAB>prediction', got {row}")
        if int(row[0]) in pred:
            raise DataError(f"{path}:{n_line}: index {row[0]} a second time")
        parse_label(task, row[1].strip(), f"{path}:{n_line}")
        pred[int(row[0])] = row[1].strip()
    if sorted(pred) != list(range(n)):
        raise DataError(f"{path}: predictions for indices 0..{n - 1} (the {n} dev examples) expected, got "
                        f"{len(pred)} rows" + (f" up to index {max(pred)}" if pred else ""))
    return [pred[i] for i in range(n)]


def write_glue_predictions(path, predictions):
    files.write_atomic(path, "index\tprediction\n" + "".join(f"{i}\t{p}\n" for i, p in enumerate(predictions)))


# ---------------------------------------------------------------------------------------- SQuAD
def squad_questions(path, article):
    """The questions of one SQuAD article, each with its paragraph's context."""
    out = []
    for para in article["paragraphs"]:
        for qa in para["qas"]:
            answers = [{"text": a["text"], "answer_start": a["answer_start"]} for a in qa["answers"]]
            if not all(isinstance(x, str) for x in [qa["id"], para["context"], qa["question"]] +
                       [a["text"] for a in answers]) or \
                    not all(type(a["answer_start"]) is int and a["answer_start"] >= 0 for a in answers):
                raise DataError(f"{path}: question {qa['id']!r}: its id, context, question and answers must be "
                                f"strings, each answer_start a character offset")
            out.append({"id": qa["id"], "question": qa["question"], "context": para["context"],
                        "answers": answers, "is_impossible": bool(qa.get("is_impossible", False))})
    return out


def read_squad(path):
    """SQuAD JSON -> list of dicts: id, question, context, answers [{text, answer_start}], is_impossible."""
    articles = read_json(path, "SQuAD articles").get("data")
    try:
        out = [q for article in articles for q in squad_questions(path, article)]
    except KeyError as e:
        raise DataError(f"{path}: not SQuAD's shape (data / paragraphs / qas / answers; missing {e})") from None
    except TypeError as e:
        raise DataError(f"{path}: not SQuAD's shape (data / paragraphs / qas / answers; {e})") from None
    if not out:
        raise DataError(f"{path}: no questions")
    return out


def shown(value, width=40):
    """A JSON value as an error shows it: cut to `width` characters."""
    text = json.dumps(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def check_squad_predictions(examples, predictions, path):
    """Predictions the official script can score: answers are strings, and some are for these questions.
    Missing questions are not scored (the official script's numbers), with a warning that counts them."""
    bad = next((q for q, a in predictions.items() if not isinstance(a, str)), None)
    if bad is not None:
        raise DataError(f"{path}: the answer for {bad!r} is {shown(predictions[bad])}, not a string "
                        f"(\"\" for no answer)")
    missing = [e["id"] for e in examples if e["id"] not in predictions]
    if len(missing) == len(examples):
        raise DataError(f"{path}: none of its {len(predictions)} question ids is in the data "
                        f"(e.g. {next(iter(predictions), 'none')!r} vs {examples[0]['id']!r})")
    if missing:
        print(f"warning: {path}: no prediction for {len(missing)} of the {len(examples)} questions (e.g. "
              f"{missing[0]!r}): the official v2.0 script's scores, over the {len(examples) - len(missing)} "
              f"predicted only", file=sys.stderr)


def check_na_probs(na_probs, path):
    bad = next((q for q, p in na_probs.items() if isinstance(p, bool) or not isinstance(p, (int, float))
                or not 0 <= p <= 1), None)
    if bad is not None:
        raise DataError(f"{path}: the no-answer probability of {bad!r} is {shown(na_probs[bad])}, "
                        f"not a number in [0, 1]")
    return na_probs


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
def race_passage(path, level):
    """One RACE passage file -> its questions (see read_race)."""
    doc = read_json(path, "a RACE passage")
    missing = [k for k in ("article", "questions", "options", "answers", "id") if k not in doc]
    if missing:
        raise DataError(f"{path}: missing key(s) {', '.join(missing)}")
    qs, opts, answers = doc["questions"], doc["options"], doc["answers"]
    if not isinstance(doc["article"], str):
        raise DataError(f"{path}: the article is not a text")
    if not (isinstance(qs, list) and isinstance(opts, list) and isinstance(answers, list)) \
            or not len(qs) == len(opts) == len(answers):
        raise DataError(f"{path}: questions, options and answers must be lists of the same length")
    out = []
    for i, (q, o, ans) in enumerate(zip(qs, opts, answers)):
        if not isinstance(q, str) or not isinstance(o, list) or len(o) != 4 or \
                not all(isinstance(x, str) for x in o) or ans not in ("A", "B", "C", "D"):
            raise DataError(f"{path}: question {i} needs a text, 4 options and an answer in A-D")
        out.append({"qid": f"{doc['id']}-{i}", "level": level, "article": doc["article"], "question": q,
                    "options": o, "label": "ABCD".index(ans)})
    return out


def read_race(folder):
    """A RACE split folder (middle/ and high/, one JSON file per passage) -> list of questions:
    {qid: '<passage id>-<question index>', level, article, question, options [4], label 0-3}."""
    paths = sorted(glob.glob(os.path.join(folder, "middle", "*")) + glob.glob(os.path.join(folder, "high", "*")))
    if not paths:
        raise DataError(f"{folder}: no RACE files (expected middle/ and high/ with one JSON file per passage)")
    return [q for path in paths for q in race_passage(path, os.path.basename(os.path.dirname(path)))]


def check_race_predictions(questions, predictions, path):
    """Answers are letters A-D and some are for these questions; a missing one counts as wrong (warned)."""
    bad = next((q for q, a in predictions.items() if a not in ("A", "B", "C", "D")), None)
    if bad is not None:
        raise DataError(f"{path}: the answer for {bad!r} is {shown(predictions[bad])}, not one of A, B, C, D")
    missing = [q["qid"] for q in questions if q["qid"] not in predictions]
    if len(missing) == len(questions):
        raise DataError(f"{path}: none of its {len(predictions)} question ids is in the data "
                        f"(e.g. {next(iter(predictions), 'none')!r} vs {questions[0]['qid']!r})")
    if missing:
        print(f"warning: {path}: no prediction for {len(missing)} of the {len(questions)} questions (e.g. "
              f"{missing[0]!r}); they count as wrong", file=sys.stderr)


def race_metrics(questions, predictions):
    def acc(qs):
        return 100.0 * sum(predictions.get(q["qid"]) == "ABCD"[q["label"]] for q in qs) / max(len(qs), 1)
    return {"accuracy": acc(questions), "middle": acc([q for q in questions if q["level"] == "middle"]),
            "high": acc([q for q in questions if q["level"] == "high"])}


# ---------------------------------------------------------------------------------------- pretraining checks
MIN_SEQ_LEN = 8  # as train.py's --seq-len: data.py's blocks need room for a few tokens besides <s> and </s>


def perplexity(path, data_dir, split="valid", seq_len=None, batch_size=8):
    """Masked-LM loss and perplexity of a pretrained checkpoint on a prepared split, with the masks of
    train.py's held-out evaluation, at the length it trained at (seq_len None) or `seq_len`."""
    from machinery import checkpoints
    import data
    model, tok = checkpoints.load(path, need_trained_head=True, verbose=False)
    trained = checkpoints.train_settings(path)
    positions = model.cfg.max_positions
    seq_len = seq_len or min(trained.get("seq_len") or positions, positions)
    if not MIN_SEQ_LEN <= seq_len <= positions:
        raise DataError(f"--seq-len {seq_len}: must be in [{MIN_SEQ_LEN}, {positions}] (the model's positions)")
    masking = data.Masking(**trained["masking"]) if isinstance(trained.get("masking"), dict) else data.Masking()
    tokens, ends, meta = data.load_split(data_dir, split)
    data.check_tokenizer(meta, tok, data_dir, path)
    if tokens.size == 0:
        raise DataError(f"{data_dir}: the {split} split is empty")
    total, count = data.heldout_loss(model, tokens, ends, tok, seq_len, batch_size, masking=masking)
    if count == 0:
        raise DataError(f"{data_dir}: the {split} split gave no masked tokens to predict at --seq-len {seq_len}")
    return {"loss": total / count, "ppl": math.exp(total / count), "targets": count, "split": split,
            "seq_len": seq_len}


# ---------------------------------------------------------------------------------------- command line
def perplexity_command(args):
    print(json.dumps(perplexity(args.checkpoint, args.data, args.split, args.seq_len, args.batch_size), indent=2))


def fill_mask_command(args):
    from machinery import checkpoints
    import roberta
    model, tok = checkpoints.load(args.checkpoint, need_trained_head=True, verbose=False)
    if args.top_k > model.cfg.vocab_size:
        raise DataError(f"--top-k {args.top_k}: larger than the vocabulary ({model.cfg.vocab_size} tokens)")
    for token, prob in roberta.fill_mask(model, tok, args.text, args.top_k):
        print(f"{prob:.4f}\t{token!r}")


def squad_command(args):
    examples = read_squad(args.data)
    predictions = read_json(args.predictions, "answers")
    na = check_na_probs(read_json(args.na_prob_file, "no-answer probabilities"), args.na_prob_file) \
        if args.na_prob_file else None
    check_squad_predictions(examples, predictions, args.predictions)
    print(json.dumps(squad_metrics(examples, predictions, na, args.na_prob_thresh), indent=2))


def glue_command(args):
    gold = [label for _, label in read_glue(args.task, args.data)]
    pred = read_glue_predictions(args.predictions, args.task, len(gold))
    print(json.dumps(glue_metrics(args.task, pred, gold), indent=2))


def race_command(args):
    questions = read_race(args.data)
    predictions = read_json(args.predictions, "answers")
    check_race_predictions(questions, predictions, args.predictions)
    print(json.dumps(race_metrics(questions, predictions), indent=2))


def task_arg(among=TASKS, kind="task"):
    """An argparse type: a task name among `among`."""
    def parse(text):
        try:
            return check_task(text, among, kind)
        except DataError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return parse


def parser():
    p = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("perplexity", help="masked-LM perplexity of a checkpoint on prepared data")
    s.set_defaults(run=perplexity_command)
    s.add_argument("--checkpoint", type=cli.path_arg, required=True, help="a train.py output folder (required)")
    s.add_argument("--data", type=cli.path_arg, required=True, help="a folder written by data.py (required)")
    s.add_argument("--split", default="valid", choices=["train", "valid"],
                   help="the split of --data to evaluate (default: %(default)s)")
    s.add_argument("--seq-len", type=cli.number(int, MIN_SEQ_LEN),
                   help=f"tokens per sequence, at least {MIN_SEQ_LEN} and at most the model's positions (default: the "
                        f"length the checkpoint trained at; a Hugging Face model's positions)")
    s.add_argument("--batch-size", type=cli.number(int, 1), default=8,
                   help="sequences per forward (default: %(default)s)")
    s = sub.add_parser("fill-mask", help="the most likely tokens for <mask>")
    s.set_defaults(run=fill_mask_command)
    s.add_argument("--checkpoint", type=cli.path_arg, required=True,
                   help="a train.py output or a Hugging Face RoBERTa folder with its LM head (required)")
    s.add_argument("--top-k", type=cli.number(int, 1), default=5,
                   help="how many tokens to list, at most the vocabulary (default: %(default)s)")
    s.add_argument("text", help="a text with exactly one <mask>")
    s = sub.add_parser("squad", help="official SQuAD v2.0 metrics (v1.1 files too)")
    s.set_defaults(run=squad_command)
    s.add_argument("--data", type=cli.path_arg, required=True, help="dev-v1.1.json or dev-v2.0.json (required)")
    s.add_argument("--predictions", type=cli.path_arg, required=True,
                   help="JSON {question id: answer text}, \"\" for no answer (required)")
    s.add_argument("--na-prob-file", type=cli.path_arg,
                   help="JSON {question id: no-answer probability}: adds the best thresholds (default: none)")
    s.add_argument("--na-prob-thresh", type=cli.number(float, 0, 1), default=1.0,
                   help="answer \"\" where the no-answer probability is above this, in [0, 1] (default: %(default)s)")
    s = sub.add_parser("glue", help="GLUE metrics of a predictions TSV")
    s.set_defaults(run=glue_command)
    s.add_argument("--task", type=task_arg(list(GLUE), "GLUE task"), required=True,
                   help=f"{', '.join(GLUE)} (required)")
    s.add_argument("--data", type=cli.path_arg, required=True, help="the task's dev.tsv (required)")
    s.add_argument("--predictions", type=cli.path_arg, required=True,
                   help="the GLUE submission TSV: index<TAB>prediction, one row per dev example (required)")
    s = sub.add_parser("race", help="RACE accuracy (all, middle, high)")
    s.set_defaults(run=race_command)
    s.add_argument("--data", type=cli.path_arg, required=True, help="a RACE split folder, dev/ or test/ (required)")
    s.add_argument("--predictions", type=cli.path_arg, required=True,
                   help="JSON {\"<passage id>-<question index>\": \"A\"-\"D\"} (required)")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except (OSError, ValueError) as err:
        sys.exit(f"error: {cli.describe(err)}")
    except KeyboardInterrupt:
        sys.exit("error: interrupted")


if __name__ == "__main__":
    main()
