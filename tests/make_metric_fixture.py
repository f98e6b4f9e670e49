"""Generate tests/fixtures/metrics_reference.json: reference metric values from other implementations.

How it was made (once, by hand; none of these is needed to run the tests):

    ../refenv/bin/pip install scikit-learn==1.9.1 scipy==1.17.1
    # the official SQuAD v2.0 evaluation script, saved as ../official/evaluate-v2.0.py
    ../refenv/bin/python tests/make_metric_fixture.py ../shared/data ../official/evaluate-v2.0.py

Predictions are made deterministically (seeded) from the dev files of ../shared/data by the functions
below, which the tests call again; the fixture keeps only the reference outputs:
  - SQuAD: the official v2.0 script run on the files (with and without no-answer probabilities);
  - GLUE: scikit-learn's accuracy_score, f1_score, matthews_corrcoef; scipy's pearsonr, spearmanr.
"""
import json
import os
import random
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import evaluate  # noqa: E402
from machinery.formats import task_files  # noqa: E402

SQUAD_CASES = [  # (file under shared/data, with no-answer probabilities, threshold)
    ("squad/dev-v1.1.json", False, 1.0),
    ("squad/dev-v2.0.first5articles.json", True, 1.0),
    ("squad/dev-v2.0.first5articles.json", True, 0.5),
    ("squad/cs224n_split/dev-v2.0.json", True, 0.3),
]
GLUE_TASKS = ["cola", "sst2", "mrpc", "stsb", "qnli", "rte", "wnli"]


def squad_predictions(examples, seed):
    """A mix of right, partly right, wrong and empty answers, and no-answer probabilities."""
    rng = random.Random(seed)
    preds, na = {}, {}
    for e in examples:
        gold = e["answers"][rng.randrange(len(e["answers"]))]["text"] if e["answers"] else ""
        words = e["context"].split()
        start = rng.randrange(len(words))
        kind = rng.randrange(6)
        if kind == 0:
            preds[e["id"]] = gold
        elif kind == 1:
            preds[e["id"]] = "The " + gold.upper() + "!"
        elif kind == 2:
            preds[e["id"]] = " ".join(gold.split()[:max(1, len(gold.split()) // 2)])
        elif kind == 3:
            preds[e["id"]] = gold + " " + words[start]
        elif kind == 4:
            preds[e["id"]] = " ".join(words[start:start + rng.randint(1, 5)])
        else:
            preds[e["id"]] = ""
        na[e["id"]] = round(rng.random(), 3)  # rounded: ties in the threshold sweep
    return preds, na


def glue_predictions(task, gold, seed):
    rng = random.Random(seed)
    labels = evaluate.GLUE[task][4]
    if labels is None:  # STS-B: noisy scores, rounded so that ranks tie
        return [str(round(min(5.0, max(0.0, g + rng.gauss(0, 1.2))), 1)) for g in gold]
    return [g if rng.random() < 0.7 else rng.choice(labels) for g in gold]


def main(shared, official):
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
    out = {"squad": [], "glue": {}}
    for i, (name, with_na, thresh) in enumerate(SQUAD_CASES):
        path = os.path.join(shared, name)
        preds, na = squad_predictions(task_files.read_squad(path), seed=i)
        with tempfile.TemporaryDirectory() as d:
            with open(f"{d}/p.json", "w") as f:
                json.dump(preds, f)
            with open(f"{d}/na.json", "w") as f:
                json.dump(na, f)
            cmd = [sys.executable, official, path, f"{d}/p.json", "-o", f"{d}/out.json", "-t", str(thresh)]
            subprocess.run(cmd + (["-n", f"{d}/na.json"] if with_na else []), check=True)
            with open(f"{d}/out.json") as f:
                out["squad"].append({"file": name, "seed": i, "with_na": with_na, "thresh": thresh,
                                     "official": json.load(f)})
    for i, task in enumerate(GLUE_TASKS):
        folder = evaluate.GLUE[task][0]
        gold = [label for _, label in task_files.read_glue(evaluate.GLUE[task], os.path.join(shared, "glue", folder, "dev.tsv"))]
        pred = glue_predictions(task, gold, seed=100 + i)
        if task == "stsb":
            p, g = [float(x) for x in pred], [float(x) for x in gold]
            ref = {"pearson": 100 * pearsonr(p, g)[0], "spearman": 100 * spearmanr(p, g)[0]}
        else:
            ref = {"accuracy": 100 * accuracy_score(gold, pred)}
            if task == "cola":
                ref = {"mcc": 100 * matthews_corrcoef(gold, pred)}
            if task == "mrpc":
                ref["f1"] = 100 * f1_score(gold, pred, pos_label="1")
        out["glue"][task] = {"seed": 100 + i, "reference": ref}
    path = os.path.join(os.path.dirname(__file__), "fixtures", "metrics_reference.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
