"""The downstream datasets' files, read and checked, and the prediction files finetune.py writes.

    train, dev = read_task("glue", evaluate.GLUE["rte"], "glue/RTE")  # (train examples, {dev set name: examples})
    rows = read_glue(evaluate.GLUE["rte"], "glue/RTE/dev.tsv")      # [(texts, label)]
    questions = read_squad("squad/dev-v2.0.json")              # [{id, question, context, answers, is_impossible}]
    questions = read_race("RACE/dev")                          # [{qid, level, article, question, options, label}]
    write_predictions("glue", "runs/rte", "dev", predictions)  # the formats evaluate.py reads

Every error is a ValueError whose message names the file (and line) and what is wrong. A leaf: a task's row of
evaluate.GLUE or evaluate.SQUAD (its files' names, columns and labels) comes in as an argument.
"""
import contextlib
import csv
import glob
import io
import json
import math
import os
import sys

from machinery.basics import files


def check_file(path):
    """A file to read: there, and not a folder (the error names it); the path."""
    if os.path.isdir(path):
        raise ValueError(f"{path}: a folder, not a file")
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    return path


def shown(value, width=40):
    """A JSON value as an error shows it: cut to `width` characters."""
    text = json.dumps(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def read_task(family, t, folder):
    """(train examples, {dev set name: examples}) of a task's folder, as each dataset is distributed. family: glue,
    squad or race; t: the task's row of evaluate.GLUE or evaluate.SQUAD (None for RACE); the folder checked by
    finetune_cli."""
    if family == "glue":
        return read_glue(t, os.path.join(folder, "train.tsv")), read_glue_dev(t, folder)
    if family == "squad":
        train, dev = (os.path.join(folder, f"{split}-{t.version}.json") for split in ("train", "dev"))
        return (squad_training(check_squad(read_squad(train), train, t.no_answer), train),
                {"dev": check_squad(read_squad(dev), dev, t.no_answer)})
    return read_race(os.path.join(folder, "train")), {"dev": read_race(os.path.join(folder, "dev"))}


def write_predictions(family, out, name, pred):
    """A dev set's predictions in the formats evaluate.py reads: GLUE's submission TSV (<name>_predictions.tsv);
    SQuAD's official predictions.json (and na_prob.json for 2.0); RACE's predictions.json."""
    if family == "glue":
        write_glue_predictions(os.path.join(out, f"{name}_predictions.tsv"), pred)
        return
    answers, na = pred if family == "squad" else (pred, None)
    files.write_atomic(os.path.join(out, "predictions.json"), files.json_text(answers))
    if na is not None:
        files.write_atomic(os.path.join(out, "na_prob.json"), files.json_text(na))


OUTPUTS = ("metrics.json", "checkpoint.pt", "log.jsonl", "predictions.json", "na_prob.json")  # + *_predictions.tsv


def check_empty(folder, overwrite):
    """A finetuning run's --out is empty (but for its lock and temporary files), unless --overwrite: a file
    there may be the user's own (a run's outputs would replace their predictions.json or log.jsonl), or a run
    stopped midway (named as such)."""
    if overwrite or not os.path.isdir(folder):
        return
    others = sorted(n for n in os.listdir(folder) if n != ".lock" and not files.TEMP.search(n))
    done = None
    if others and os.path.isfile(os.path.join(folder, "checkpoint.pt")):  # the epochs its log.jsonl records, if any
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            log = files.read_text(os.path.join(folder, "log.jsonl"))
            done = max(json.loads(line)["epoch"] for line in log.splitlines())
    if done:
        raise FileExistsError(f"--out {folder} holds a finetuning run stopped after epoch {done} (its log.jsonl and "
                              f"the best checkpoint.pt so far; no metrics.json): pass --overwrite to run it again "
                              f"from the start, or choose another folder")
    if others:
        raise FileExistsError(f"--out {folder} is not empty ({others[0]}) and holds no finished finetuning run: "
                              f"pass --overwrite to write there anyway, or choose an empty folder")


def clear_out(folder, overwrite=False):
    """A new finetuning run's folder: made, and emptied of an earlier run's outputs (--overwrite), so that
    its log and predictions are this run's alone. A folder not empty is refused without --overwrite."""
    check_empty(folder, overwrite)
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):
        if name in OUTPUTS or name.endswith("_predictions.tsv"):
            os.remove(os.path.join(folder, name))


# ---------------------------------------------------------------------------------------- GLUE
SCORES = (0.0, 5.0)  # STS-B's gold similarity scores: 0 (unrelated) to 5 (the same meaning)


def parse_label(t, text, where, gold=False):
    """A label as the task's files write it: one of its labels, or a finite number (STS-B: a gold score in SCORES;
    a prediction may fall outside)."""
    labels = t.labels
    if labels is None:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ValueError(f"{where}: score {text!r} is not a number")
        if gold and not SCORES[0] <= value <= SCORES[1]:
            raise ValueError(f"{where}: score {text!r} is outside {t.folder}'s {SCORES[0]:g} to {SCORES[1]:g}")
        return value
    if text not in labels:
        raise ValueError(f"{where}: label {text!r} is not one of {', '.join(labels)}")
    return text


def read_glue_dev(t, folder):
    """{dev set name: examples} of a GLUE task's folder: dev (MNLI: dev_matched and dev_mismatched)."""
    return {name[:-4]: read_glue(t, os.path.join(folder, name)) for name in t.dev_files}


def read_glue(t, path, labelled=True):
    """A GLUE TSV (no quoting) as a list of (texts, label) with label None when the file has no labels (test
    sets); its columns found by the header's names (CoLA has no header: by their indices)."""
    try:
        text = files.read_text(check_file(path), dataset=True)
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE))
    except csv.Error as e:
        raise ValueError(f"{path}: not a TSV file ({e})") from None
    has_header = isinstance(t.label_column, str)
    if has_header and not rows:
        raise ValueError(f"{path}: empty (no header)")
    text_idx, label_idx = list(t.text_columns), t.label_column
    if has_header:
        try:
            text_idx, label_idx = [rows[0].index(c) for c in t.text_columns], rows[0].index(t.label_column)
        except ValueError:
            raise ValueError(f"{path}: header {rows[0][:6]} lacks the {t.folder} columns "
                             f"{list(t.text_columns) + [t.label_column]}") from None
    label_idx = label_idx if labelled else None
    need = max(text_idx + ([label_idx] if label_idx is not None else []))
    out, bad = [], []  # bad: why each wrong label is refused
    for n, row in enumerate(rows[1:] if has_header else rows, 2 if has_header else 1):
        if not row:
            continue
        if len(row) <= need:
            raise ValueError(f"{path}:{n}: expected at least {need + 1} tab-separated columns, got {len(row)}")
        try:
            label = None if label_idx is None else parse_label(t, row[label_idx].strip(), f"{path}:{n}", gold=True)
        except ValueError as e:
            bad.append(str(e))
            continue
        out.append(([row[i] for i in text_idx], label))
    if bad:
        more = f" (and {len(bad) - 1:,} more of its {len(out) + len(bad):,} rows)" if len(bad) > 1 else ""
        raise ValueError(bad[0] + more)
    if not out:
        raise ValueError(f"{path}: no examples")
    return out


def read_glue_predictions(path, t, n):
    """GLUE submission TSV: header index<TAB>prediction, one row per example in file order; every
    prediction one of the task's labels (STS-B: a number)."""
    text = files.read_text(check_file(path), dataset=True)
    rows = [line.rstrip("\n").split("\t") for line in io.StringIO(text, newline=None)]
    if not rows or rows[0] != ["index", "prediction"]:
        raise ValueError(f"{path}: expected the header 'index<TAB>prediction'")
    pred = {}
    for n_line, row in enumerate(rows[1:], 2):
        if not "".join(row).strip():
            continue
        if len(row) != 2 or not row[0].isdigit():
            raise ValueError(f"{path}:{n_line}: expected 'index<TAB>prediction', got {row}")
        if int(row[0]) in pred:
            raise ValueError(f"{path}:{n_line}: index {row[0]} a second time")
        parse_label(t, row[1].strip(), f"{path}:{n_line}")
        pred[int(row[0])] = row[1].strip()
    if sorted(pred) != list(range(n)):
        raise ValueError(f"{path}: predictions for indices 0..{n - 1} (the {n} dev examples) expected, got "
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
            texts = [qa["id"], para["context"], qa["question"]] + [a["text"] for a in answers]
            if not all(isinstance(x, str) for x in texts) or not all(type(s) is int and s >= 0 for s in
                                                                      [a["answer_start"] for a in answers]):
                raise ValueError(f"{path}: question {qa['id']!r}: its id, context, question and answers must be "
                                 f"strings, each answer_start a character offset")
            out.append({"id": qa["id"], "question": qa["question"], "context": para["context"],
                        "answers": answers, "is_impossible": bool(qa.get("is_impossible", False))})
    return out


def read_squad(path):
    """SQuAD JSON -> list of dicts: id, question, context, answers [{text, answer_start}], is_impossible."""
    articles = files.read_json(path, "SQuAD articles").get("data")
    try:
        out = [q for article in articles for q in squad_questions(path, article)]
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path}: not SQuAD's shape (data / paragraphs / qas / answers; "
                         f"{'missing ' * isinstance(e, KeyError)}{e})") from None
    if not out:
        raise ValueError(f"{path}: no questions")
    seen = set()
    twice = next((q["id"] for q in out if q["id"] in seen or seen.add(q["id"])), None)
    if twice is not None:  # predictions and scores are by id: a second question with it would be lost
        raise ValueError(f"{path}: question id {twice!r} is used twice")
    return out


def check_squad(examples, path, no_answer):
    """A SQuAD file's questions, refused (one line: how many, the first id) where they are not the task's: an empty
    context, or a question marked impossible in a SQuAD 1.1 task (no_answer False: its training would drop them)."""
    for why, wrong, hint in (("an empty context", lambda e: not e["context"].strip(), ""),
                             ("is_impossible true", lambda e: e["is_impossible"] and not no_answer,
                              ": SQuAD 1.1 has no such questions (a SQuAD 2.0 file? --task squad2)")):
        ids = [e["id"] for e in examples if wrong(e)]
        if ids:
            raise ValueError(f"{path}: {len(ids):,} of its {len(examples):,} questions have {why} "
                             f"(first: id {ids[0]}){hint}")
    return examples


def answer_problem(e):
    """Why a SQuAD question cannot train the span head (None when it can): its first answer, the one finetune.py
    trains on, must be its text found at answer_start in the context; or it is marked impossible, with none."""
    if e["is_impossible"]:
        return "answers, yet marked impossible" if e["answers"] else None
    if not e["answers"]:
        return "no answer, and not marked impossible"
    start, text = e["answers"][0]["answer_start"], e["answers"][0]["text"]
    if not text:
        return "an empty answer text"
    if start + len(text) > len(e["context"]):
        return "the answer runs past the context's end (answer_start too large)"
    if e["context"][start:start + len(text)] != text:
        return "text not at answer_start"
    return None


def squad_training(examples, path):
    """A training file's questions whose answer is where it says (answer_problem); the others are left out, counted
    in one warning line with the first one's id. (A dev file's answer_start is not read: the metric compares texts.)"""
    skipped, kept = {}, []
    for e in examples:
        why = answer_problem(e)
        if why:
            skipped.setdefault(why, []).append(e["id"])
        else:
            kept.append(e)
    if skipped:
        print(f"warning: {path}: {sum(map(len, skipped.values())):,} of {len(examples):,} questions skipped: " +
              "; ".join(f"{len(ids):,} {why} (first: id {ids[0]})" for why, ids in skipped.items()), file=sys.stderr)
    return kept


def check_predictions(ids, predictions, path, fits, expected, unscored):
    """Predictions ({question id: answer}) an official metric can score: every answer `fits` (else one line
    saying it is not `expected`), and some for these questions (none: the file is for other data). Missing
    questions are warned of, with what becomes of them (`unscored`, given the count of those predicted)."""
    bad = next((q for q, a in predictions.items() if not fits(a)), None)
    if bad is not None:
        raise ValueError(f"{path}: the answer for {bad!r} is {shown(predictions[bad])}, not {expected}")
    missing = [i for i in ids if i not in predictions]
    if ids and len(missing) == len(ids):
        raise ValueError(f"{path}: none of its {len(predictions)} question ids is in the data "
                         f"(e.g. {next(iter(predictions), 'none')!r} vs {ids[0]!r})")
    if missing:
        print(f"warning: {path}: no prediction for {len(missing)} of the {len(ids)} questions (e.g. "
              f"{missing[0]!r}){unscored(len(ids) - len(missing))}", file=sys.stderr)


def check_na_probs(na_probs, path):
    bad = next((q for q, p in na_probs.items() if type(p) not in (int, float) or not 0 <= p <= 1), None)
    if bad is not None:
        raise ValueError(f"{path}: the no-answer probability of {bad!r} is {shown(na_probs[bad])}, "
                         f"not a number in [0, 1]")
    return na_probs


# ---------------------------------------------------------------------------------------- RACE
def race_passage(path, level):
    """One RACE passage file -> its questions (see read_race)."""
    doc = files.read_json(path, "a RACE passage")
    missing = [k for k in ("article", "questions", "options", "answers", "id") if k not in doc]
    if missing:
        raise ValueError(f"{path}: missing key(s) {', '.join(missing)}")
    qs, opts, answers = doc["questions"], doc["options"], doc["answers"]
    if not isinstance(doc["article"], str):
        raise ValueError(f"{path}: the article is not a text")
    if not all(isinstance(x, list) for x in (qs, opts, answers)) or not len(qs) == len(opts) == len(answers):
        raise ValueError(f"{path}: questions, options and answers must be lists of the same length")
    out = []
    for i, (q, o, ans) in enumerate(zip(qs, opts, answers)):
        why = ("its question is not a text" if not isinstance(q, str) else
               f"its options are {shown(o)}, not 4 texts"
               if not isinstance(o, list) or len(o) != 4 or not all(isinstance(x, str) for x in o) else
               f"its answer is {shown(ans)}, not one of A, B, C, D" if ans not in ("A", "B", "C", "D") else None)
        if why:
            raise ValueError(f"{path}: question {i}: {why}")
        out.append({"qid": f"{doc['id']}-{i}", "level": level, "article": doc["article"], "question": q,
                    "options": o, "label": "ABCD".index(ans)})
    return out


def read_race(folder):
    """A RACE split folder (middle/ and high/, one JSON file per passage) -> list of questions:
    {qid: '<passage id>-<question index>', level, article, question, options [4], label 0-3}."""
    paths = sorted(glob.glob(os.path.join(folder, "middle", "*")) + glob.glob(os.path.join(folder, "high", "*")))
    if not paths:
        raise ValueError(f"{folder}: no RACE files (expected middle/ and high/ with one JSON file per passage)")
    return [q for path in paths for q in race_passage(path, os.path.basename(os.path.dirname(path)))]
