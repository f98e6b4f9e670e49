import json
import os
import subprocess
import sys

import numpy as np
import pytest

import evaluate
from conftest import ROOT, shared_path
from make_metric_fixture import glue_predictions, squad_predictions

FIXTURE = os.path.join(ROOT, "tests", "fixtures", "metrics_reference.json")


def run_cli(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "evaluate.py"), *map(str, args)],
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def reference():
    with open(FIXTURE) as f:
        return json.load(f)


# ---------------------------------------------------------------- hand-made cases
def test_squad_hand_cases():
    assert evaluate.normalize_answer("The  Quick, brown fox!") == "quick brown fox"
    assert evaluate.squad_exact("the Eiffel Tower", "Eiffel tower.") == 1
    assert evaluate.squad_f1("w x y z", "x y q") == pytest.approx(2 * (2 / 3) * (2 / 4) / (2 / 3 + 2 / 4))
    assert evaluate.squad_f1("a b c d", "b c e") == pytest.approx(2 / 3)  # "a" is an article: dropped
    assert evaluate.squad_f1("", "") == 1.0 and evaluate.squad_f1("", "x") == 0.0
    examples = [{"id": "q1", "answers": [{"text": "Paris"}, {"text": "the city of Paris"}]},
                {"id": "q2", "answers": []},
                {"id": "q3", "answers": [{"text": "1990s"}]}]
    preds = {"q1": "city of Paris", "q2": "", "q3": "1990"}
    out = evaluate.squad_metrics(examples, preds)
    assert out["exact"] == pytest.approx(100 * 2 / 3)  # q1 matches the 2nd gold, q2 is right to abstain
    assert out["HasAns_total"] == 2 and out["NoAns_total"] == 1 and out["NoAns_exact"] == 100.0
    # a no-answer probability above the threshold turns a prediction into ""
    out = evaluate.squad_metrics(examples, preds, {"q1": 0.9, "q2": 0.8, "q3": 0.1}, na_prob_thresh=0.5)
    assert out["HasAns_exact"] == 0.0 and out["best_exact"] == pytest.approx(100 * 2 / 3)


def test_glue_hand_cases():
    gold, pred = ["1", "1", "0", "0", "1"], ["1", "0", "0", "1", "1"]
    assert evaluate.accuracy(pred, gold) == 60.0
    assert evaluate.f1_binary(pred, gold) == pytest.approx(100 * 2 / 3)  # tp 2, fp 1, fn 1
    assert evaluate.mcc(pred, gold) == pytest.approx(100 * (2 * 1 - 1 * 1) / np.sqrt(3 * 3 * 2 * 2))
    assert evaluate.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(100.0)
    assert evaluate.ranks([10, 20, 20, 30]).tolist() == [1.0, 2.5, 2.5, 4.0]
    assert evaluate.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(80.0)


# ---------------------------------------------------------------- against the official script and scikit-learn/scipy
def test_squad_metrics_equal_official_script(reference):
    for case in reference["squad"]:
        examples = evaluate.read_squad(shared_path(case["file"]))
        preds, na = squad_predictions(examples, case["seed"])
        ours = evaluate.squad_metrics(examples, preds, na if case["with_na"] else None, case["thresh"])
        assert set(ours) == set(case["official"])
        for key, value in case["official"].items():
            assert abs(ours[key] - value) < 1e-6, (case["file"], key, ours[key], value)


def test_glue_metrics_equal_reference_implementations(reference):
    for task, case in reference["glue"].items():
        gold = [lab for _, lab in evaluate.read_glue(task, shared_path("glue", evaluate.GLUE[task][0], "dev.tsv"))]
        ours = evaluate.glue_metrics(task, glue_predictions(task, gold, case["seed"]), gold)
        for key, value in case["reference"].items():
            assert abs(ours[key] - value) < 1e-6, (task, key, ours[key], value)


# ---------------------------------------------------------------- readers and the command line
def test_readers_on_shared_data():
    assert len(evaluate.read_glue("cola", shared_path("glue", "CoLA", "dev.tsv"))) == 1043
    assert len(evaluate.read_glue("mrpc", shared_path("glue", "MRPC", "dev.tsv"))) == 408  # header has a BOM
    sts = evaluate.read_glue("stsb", shared_path("glue", "STS-B", "dev.tsv"))
    assert len(sts) == 1500 and isinstance(sts[0][1], float) and len(sts[0][0]) == 2
    race = evaluate.read_race(shared_path("race", "dev"))
    assert len(race) == 4887 and sum(q["level"] == "middle" for q in race) == 1436
    assert len(evaluate.read_squad(shared_path("squad", "dev-v1.1.json"))) == 10570


def test_cli_metrics(tmp_path):
    dev = shared_path("glue", "RTE", "dev.tsv")
    gold = [lab for _, lab in evaluate.read_glue("rte", dev)]
    evaluate.write_glue_predictions(tmp_path / "p.tsv", gold)
    r = run_cli("glue", "--task", "rte", "--data", dev, "--predictions", tmp_path / "p.tsv")
    assert r.returncode == 0 and json.loads(r.stdout) == {"accuracy": 100.0}
    squad = shared_path("squad", "dev-v2.0.first5articles.json")
    preds = {e["id"]: (e["answers"][0]["text"] if e["answers"] else "") for e in evaluate.read_squad(squad)}
    (tmp_path / "s.json").write_text(json.dumps(preds))
    r = run_cli("squad", "--data", squad, "--predictions", tmp_path / "s.json")
    out = json.loads(r.stdout)
    assert out["exact"] == 100.0 and out["NoAns_total"] == 702 and out["HasAns_total"] == 705
    race = shared_path("race", "dev")
    (tmp_path / "r.json").write_text(json.dumps({q["qid"]: "ABCD"[q["label"]] for q in evaluate.read_race(race)}))
    r = run_cli("race", "--data", race, "--predictions", tmp_path / "r.json")
    assert json.loads(r.stdout) == {"accuracy": 100.0, "middle": 100.0, "high": 100.0}


def test_cli_bad_inputs(tmp_path):
    (tmp_path / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tonly two\n")
    (tmp_path / "p.tsv").write_text("index\tprediction\n0\tentailment\n")
    (tmp_path / "bad.json").write_text('{"data": [{"title": "x"}]}')
    (tmp_path / "race" / "high").mkdir(parents=True)
    (tmp_path / "race" / "high" / "1.txt").write_text('{"article": "a", "questions": []}')
    cases = [
        (["glue", "--task", "rte", "--data", tmp_path / "dev.tsv", "--predictions", tmp_path / "p.tsv"],
         "dev.tsv:3: expected at least 4 tab-separated columns"),
        (["glue", "--task", "imdb", "--data", tmp_path / "dev.tsv", "--predictions", tmp_path / "p.tsv"],
         "unknown task 'imdb'"),
        (["squad", "--data", tmp_path / "bad.json", "--predictions", tmp_path / "p.tsv"], "not SQuAD's shape"),
        (["race", "--data", tmp_path / "race", "--predictions", tmp_path / "bad.json"], "missing key(s) options"),
        (["fill-mask", "--checkpoint", tmp_path, "hello <mask>"], "no tokenizer files"),
    ]
    for args, message in cases:
        r = run_cli(*args)
        assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
