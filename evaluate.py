"""Evaluation: the downstream tasks' official metrics (Section 5), and loading a checkpoint to score.

    python evaluate.py perplexity --checkpoint DIR --data DIR
    python evaluate.py fill-mask --checkpoint DIR "The capital of France is <mask>."
    python evaluate.py glue --task rte --data dev.tsv --predictions preds.tsv
    python evaluate.py glue --task mnli --data glue/MNLI --checkpoint roberta-large-mnli/    # no training
    python evaluate.py squad --data dev-v2.0.json --predictions preds.json [--na-prob-file na.json]
    python evaluate.py race --data DIR --predictions preds.json

Every metric is a percentage, as in the paper's tables. GLUE (Section 5.1): accuracy, F1, Matthews correlation,
Pearson and Spearman. SQuAD (Section 5.2): the official v2.0 script's exact match and F1 (v1.1 files too), with its
no-answer thresholds. RACE (Section 5.3): accuracy, also of middle and high school. Files are read and checked by
machinery/formats/task_files.py; the command line is machinery/commands/evaluate_cli.py.
"""
import collections
import math
import re
import string
from typing import NamedTuple

import numpy as np
import torch

import bpe
import data
import roberta
from machinery.formats import checkpoints  # machinery: a run folder's files checked, what its run recorded


# ---------------------------------------------------------------------------------------- GLUE (Section 5.1)
class GlueTask(NamedTuple):
    """A GLUE task as GLUE distributes it. Columns are header names (CoLA's files have none: numbers)."""
    folder: str           # the task's folder in GLUE's download
    dev_files: tuple      # the dev sets (MNLI: matched and mismatched)
    text_columns: tuple   # one sentence, or a pair
    label_column: object
    labels: tuple         # as the files write them; None: a score to regress (STS-B)
    metrics: tuple        # the official metrics; the first selects the best epoch when finetuning


NLI = ("contradiction", "neutral", "entailment")  # the released MNLI heads' order (roberta-large-mnli)
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


def accuracy(pred, gold):
    return 100.0 * float(np.mean(np.asarray(pred) == np.asarray(gold)))


def f1_binary(pred, gold, positive="1"):
    pred, gold = np.asarray(pred) == positive, np.asarray(gold) == positive
    tp = float(np.sum(pred & gold))
    precision, recall = tp / max(np.sum(pred), 1), tp / max(np.sum(gold), 1)
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


@torch.no_grad()
def forward(model, inputs, batch_ids, batch_size, device):
    """The model's outputs on `inputs`, `batch_size` at a time (batch_ids: inputs -> padded ids), float on the CPU."""
    model.eval()
    outs = []
    for i in range(0, len(inputs), batch_size):
        out = model(batch_ids(inputs[i:i + batch_size]).to(device))
        outs.append(tuple(o.float().cpu() for o in out) if isinstance(out, tuple) else out.float().cpu())
    return outs


def glue_predict(task, model, tok, rows, inputs, batch_size, device, labels=None):
    """The most likely label per example (STS-B: the score), and the task's official metrics. labels: the
    task's label for each of the classifier's outputs (None: the task's order, in which finetune.py trains)."""
    out = torch.cat(forward(model, inputs, lambda chunk: data.pad([ids for ids, _ in chunk], tok.pad_id),
                            batch_size, device))
    labels = labels or GLUE[task].labels
    pred = [labels[i] for i in out.argmax(-1).tolist()] if labels else [f"{v:.4f}" for v in out[:, 0].tolist()]
    return pred, glue_metrics(task, pred, [label for _, label in rows])


# ---------------------------------------------------------------------------------------- SQuAD (Section 5.2)
def normalize_answer(s):
    """The official script's normalisation: lower case, no punctuation, no articles, single spaces."""
    exclude = set(string.punctuation)  # once per answer, as the official script (not once per character)
    s = "".join(ch for ch in s.lower() if ch not in exclude)
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


def squad_metrics(examples, predictions, na_probs=None, na_prob_thresh=1.0, tuned_apart=False):
    """The official SQuAD v2.0 evaluation (v1.1 too): exact, f1, total, HasAns_*/NoAns_*; with no-answer probabilities
    the best thresholds (tuned_apart: under "tuned_on_this_dev_set": chosen on these questions, no result on them)."""
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
    exact_t, f1_t = ({q: float(not has_ans[q]) if na_probs.get(q, 0.0) > na_prob_thresh else s
                      for q, s in scores.items()} for scores in (exact, f1))

    def summary(qids, prefix=""):
        n = len(qids)
        return {f"{prefix}exact": 100.0 * sum(exact_t[q] for q in qids) / n,
                f"{prefix}f1": 100.0 * sum(f1_t[q] for q in qids) / n, f"{prefix}total": n}
    out = summary(list(exact))
    for prefix, answerable in (("HasAns_", True), ("NoAns_", False)):
        qids = [q for q in exact if has_ans[q] == answerable]
        if qids:  # as the official script: only where the data has such questions
            out.update(summary(qids, prefix))
    if na_probs:
        tuned = out.setdefault("tuned_on_this_dev_set", {}) if tuned_apart else out
        for name, scores in (("exact", exact), ("f1", f1)):
            best, thresh = best_threshold(predictions, scores, na_probs, has_ans)
            tuned[f"best_{name}"], tuned[f"best_{name}_thresh"] = best, thresh
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


# ---------------------------------------------------------------------------------------- RACE (Section 5.3)
def race_metrics(questions, predictions):
    """Accuracy over all questions, and over the middle- and high-school ones (a missing answer is wrong)."""
    def acc(qs):
        return 100.0 * sum(predictions.get(q["qid"]) == "ABCD"[q["label"]] for q in qs) / max(len(qs), 1)
    return {"accuracy": acc(questions), "middle": acc([q for q in questions if q["level"] == "middle"]),
            "high": acc([q for q in questions if q["level"] == "high"])}


# ---------------------------------------------------------------------------------------- fill-mask
def mask_inputs(tok, text):
    """<s> text </s> for a text with one <mask>, the space before <mask> dropped (the predicted token carries its
    own), as fairseq's fill_mask and roberta-base's tokenizer files (<mask> with lstrip) do."""
    if text.count("<mask>") != 1:
        raise ValueError(f"the text must hold exactly one <mask>: {text!r}")
    before, after = text.split("<mask>")
    return [tok.bos_id] + tok.encode(before.rstrip()) + [tok.mask_id] + tok.encode(after.rstrip()) + [tok.eos_id]


@torch.no_grad()
def mask_probabilities(model, tok, text):
    """The model's distribution over the vocabulary for the one <mask> in `text`: a [V] float tensor."""
    ids = mask_inputs(tok, text)  # longer than the model's positions: refused by roberta.Embeddings
    model.eval()
    x = torch.tensor([ids], device=next(model.parameters()).device)
    return model(x)[0, ids.index(tok.mask_id)].float().softmax(-1)


def fill_mask(model, tok, text, k=5):
    """The k most likely tokens for the <mask> in `text`, [(token text, probability)], as fairseq's
    fill_mask: "is <mask>." asks for a token that carries its own leading space (" Paris")."""
    V = model.cfg.vocab_size
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= V:
        raise ValueError(f"top-k must be an integer from 1 to the vocabulary size, {V}: got {k!r}")
    top = mask_probabilities(model, tok, text).topk(k)
    return [(tok.decode([i]), p) for i, p in zip(top.indices.tolist(), top.values.tolist())]


# ---------------------------------------------------------------------------------------- checkpoints
def load_checkpoint(path, cls=roberta.RobertaForMaskedLM, num_labels=None, need_trained_head=False, verbose=True):
    """(model, tokenizer) of a train.py, finetune.py or Hugging Face RoBERTa folder, loaded together and checked to
    agree. cls=None: the class the checkpoint holds; need_trained_head: refuse a head the checkpoint lacks."""
    checkpoints.check_folder(path)  # machinery: weights and tokenizer files there, before the slow load
    model = roberta.load_pretrained(path, cls, num_labels, verbose, new_head_ok=not need_trained_head)
    tok = bpe.Tokenizer.load(path)
    checkpoints.check_pair(path, model, tok)  # machinery: finite weights; the very tokenizer it trained with
    return model, tok


if __name__ == "__main__":  # machinery: the command line, the files' checks, one-line errors
    from machinery.commands import evaluate_cli
    evaluate_cli.main()
