import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import asdict

import numpy as np
import pytest
import torch

import bpe
from machinery.formats import checkpoints, task_files
from machinery.commands import evaluate_cli
import data
import evaluate
import roberta
from conftest import ROOT, shared_path
from machinery.datafolder import preparation
from make_metric_fixture import glue_predictions, squad_predictions

FIXTURE = os.path.join(ROOT, "tests", "fixtures", "metrics_reference.json")


def run_cli(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "evaluate.py"), *map(str, args)],
                          capture_output=True, text=True)


def run_here(capsys, *args):
    """`python evaluate.py ARGS` in this process (no second of imports per call; test_cli_processes_fail_in_one_line
    runs real processes): its returncode, stdout and stderr."""
    from types import SimpleNamespace
    try:
        evaluate_cli.main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = 1 if isinstance(e.code, str) else e.code
    out = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)


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
    # a threshold tuned on these questions is set apart from their scores, under a name that says so
    apart = evaluate.squad_metrics(examples, preds, {"q1": 0.9, "q2": 0.8, "q3": 0.1}, 0.5, tuned_apart=True)
    tuned = {k: out.pop(k) for k in ("best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh")}
    assert apart == {**out, "tuned_on_this_dev_set": tuned}


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
        examples = task_files.read_squad(shared_path(case["file"]))
        preds, na = squad_predictions(examples, case["seed"])
        ours = evaluate.squad_metrics(examples, preds, na if case["with_na"] else None, case["thresh"])
        assert set(ours) == set(case["official"])
        for key, value in case["official"].items():
            assert abs(ours[key] - value) < 1e-6, (case["file"], key, ours[key], value)


def test_glue_metrics_equal_reference_implementations(reference):
    for task, case in reference["glue"].items():
        gold = [lab for _, lab in task_files.read_glue(evaluate.GLUE[task], shared_path("glue", evaluate.GLUE[task][0], "dev.tsv"))]
        ours = evaluate.glue_metrics(task, glue_predictions(task, gold, case["seed"]), gold)
        for key, value in case["reference"].items():
            assert abs(ours[key] - value) < 1e-6, (task, key, ours[key], value)


# ---------------------------------------------------------------- readers and the command line
def test_readers_on_shared_data():
    assert len(task_files.read_glue(evaluate.GLUE["cola"], shared_path("glue", "CoLA", "dev.tsv"))) == 1043
    assert len(task_files.read_glue(evaluate.GLUE["mrpc"], shared_path("glue", "MRPC", "dev.tsv"))) == 408  # header has a BOM
    sts = task_files.read_glue(evaluate.GLUE["stsb"], shared_path("glue", "STS-B", "dev.tsv"))
    assert len(sts) == 1500 and isinstance(sts[0][1], float) and len(sts[0][0]) == 2
    race = task_files.read_race(shared_path("race", "dev"))
    assert len(race) == 4887 and sum(q["level"] == "middle" for q in race) == 1436
    assert len(task_files.read_squad(shared_path("squad", "dev-v1.1.json"))) == 10570


def test_cli_metrics(tmp_path, capsys):
    dev = shared_path("glue", "RTE", "dev.tsv")
    gold = [lab for _, lab in task_files.read_glue(evaluate.GLUE["rte"], dev)]
    task_files.write_glue_predictions(tmp_path / "p.tsv", gold)
    r = run_here(capsys, "glue", "--task", "rte", "--data", dev, "--predictions", tmp_path / "p.tsv")
    assert r.returncode == 0 and json.loads(r.stdout) == {"accuracy": 100.0}
    squad = shared_path("squad", "dev-v2.0.first5articles.json")
    preds = {e["id"]: (e["answers"][0]["text"] if e["answers"] else "") for e in task_files.read_squad(squad)}
    (tmp_path / "s.json").write_text(json.dumps(preds))
    r = run_here(capsys, "squad", "--data", squad, "--predictions", tmp_path / "s.json")
    out = json.loads(r.stdout)
    assert out["exact"] == 100.0 and out["NoAns_total"] == 702 and out["HasAns_total"] == 705
    race = shared_path("race", "dev")
    (tmp_path / "r.json").write_text(json.dumps({q["qid"]: "ABCD"[q["label"]] for q in task_files.read_race(race)}))
    r = run_here(capsys, "race", "--data", race, "--predictions", tmp_path / "r.json")
    assert json.loads(r.stdout) == {"accuracy": 100.0, "middle": 100.0, "high": 100.0}


def test_squad_missing_questions_warned_with_the_official_numbers(reference, tmp_path, capsys):
    """Answers for the answerable questions only: the official v2.0 script scores what is predicted, so
    its exact/f1/total are the full run's HasAns_* (the fixture); a warning counts the missing ones."""
    case = next(c for c in reference["squad"] if "HasAns_exact" in c["official"] and "NoAns_total" in c["official"]
                and c["thresh"] == 1.0)
    examples = task_files.read_squad(shared_path(case["file"]))
    preds, _ = squad_predictions(examples, case["seed"])
    (tmp_path / "p.json").write_text(json.dumps({e["id"]: preds[e["id"]] for e in examples if e["answers"]}))
    r = run_here(capsys, "squad", "--data", shared_path(case["file"]), "--predictions", tmp_path / "p.json")
    official = case["official"]
    out = json.loads(r.stdout)
    assert r.returncode == 0 and out["total"] == official["HasAns_total"]
    assert abs(out["exact"] - official["HasAns_exact"]) < 1e-6 and abs(out["f1"] - official["HasAns_f1"]) < 1e-6
    assert r.stderr.count("\n") == 1 and f"no prediction for {official['NoAns_total']} of the {len(examples)} " \
                                          f"questions" in r.stderr


# ---------------------------------------------------------------- a finetuned classifier's own predictions
PERMUTED = os.path.join(ROOT, "tests", "fixtures", "mnli_permuted")


def test_glue_checkpoint_reads_outputs_by_id2label_as_transformers(capsys):
    """transformers' tiny MNLI classifier, its id2label permuted (0 NEUTRAL, 1 ENTAILMENT, 2 CONTRADICTION;
    tests/make_glue_fixture.py): `evaluate.py glue --checkpoint` reads the same ids, predicts transformers'
    labels example by example, and scores them as the official rule scores transformers' predictions."""
    with open(os.path.join(PERMUTED, "expected.json")) as f:
        expected = json.load(f)["dev"]
    args = ["glue", "--task", "mnli", "--data", os.path.join(PERMUTED, "MNLI"), "--checkpoint",
            os.path.join(PERMUTED, "model")]
    evaluate_cli.main(args)
    out = capsys.readouterr()
    assert json.loads(out.out) == {name: {"accuracy": e["accuracy"]} for name, e in expected.items()}
    assert "outputs 0-2 read as neutral, entailment, contradiction" in out.err
    results = evaluate_cli.checkpoint_predictions(evaluate_cli.parser().parse_args(args))
    model, tok = evaluate.load_checkpoint(os.path.join(PERMUTED, "model"), roberta.RobertaForSequenceClassification)
    for name, e in expected.items():
        rows = task_files.read_glue(evaluate.GLUE["mnli"], os.path.join(PERMUTED, "MNLI", f"{name}.tsv"))
        inputs = evaluate.glue_features("mnli", tok, rows, 64)
        assert [ids for ids, _ in inputs] == e["input_ids"]
        assert results[name][0] == e["predictions"]
        assert results[name][1]["accuracy"] == pytest.approx(100 * np.mean([p == g for p, (_, g) in
                                                                            zip(e["predictions"], rows)]))
        # the outputs read in the task's order instead would score another accuracy (0 here)
        assert evaluate.glue_predict("mnli", model, tok, rows, inputs, 8, "cpu")[1]["accuracy"] != e["accuracy"]


def test_glue_checkpoint_labels_whatever_their_case_or_the_tasks_order(tmp_path):
    """id2label names are matched to the task's labels whatever their case; transformers' LABEL_i read in the
    task's order; names that are not the task's, and our checkpoints from before id2label, are refused in one line."""
    hf_model = os.path.join(PERMUTED, "model")
    with open(os.path.join(hf_model, "config.json")) as f:
        config = json.load(f)
    cases = [({"0": "neutral", "1": "Entailment", "2": "CONTRADICTION"}, ("neutral", "entailment", "contradiction")),
             ({"0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2"}, evaluate.GLUE["mnli"].labels)]
    for i, (id2label, labels) in enumerate(cases):
        folder = tmp_path / f"hf{i}"
        shutil.copytree(hf_model, folder)
        (folder / "config.json").write_text(json.dumps({**config, "id2label": id2label}))
        assert evaluate_cli.output_labels("mnli", str(folder), 3) == labels
    with pytest.raises(ValueError, match=r"hf0: a classifier with 3 outputs, but rte has 2 labels"):
        evaluate_cli.output_labels("rte", str(tmp_path / "hf0"), 3)
    (tmp_path / "hf0" / "config.json").write_text(json.dumps({**config, "id2label": {"0": "yes", "1": "no",
                                                                                      "2": "neutral"}}))
    with pytest.raises(ValueError, match=r"its labels \(yes, no, neutral, by id2label\) are not mnli's"):
        evaluate_cli.output_labels("mnli", str(tmp_path / "hf0"), 3)
    cfg = roberta.RobertaConfig.preset("tiny", vocab_size=300, max_positions=64)
    for name, extra, labels in (("old_mnli", {"task": "mnli"}, ("contradiction", "entailment", "neutral")),
                                ("new_mnli", {"task": "mnli", "id2label": ("neutral", "contradiction", "entailment")},
                                 ("neutral", "contradiction", "entailment"))):
        (tmp_path / name).mkdir()
        model = roberta.RobertaForSequenceClassification(cfg, len(labels))
        checkpoints.save(tmp_path / name / "checkpoint.pt", {"model": model.state_dict(), "config": asdict(cfg),
                                                             "class": type(model).__name__,
                                                             "num_labels": len(labels), **extra})
        if "id2label" not in extra:
            with pytest.raises(ValueError, match="saved by an older finetune.py"):
                checkpoints.id2label(tmp_path / name)
            continue
        assert checkpoints.id2label(tmp_path / name) == list(labels)
        assert evaluate_cli.output_labels(extra["task"], str(tmp_path / name), len(labels)) == labels


# ---------------------------------------------------------------- bad inputs: one line, non-zero exit, nothing written
def cli(main, args, capsys):
    """Run a command's main() in this process (as `python evaluate.py ...` would): (exit status, stderr
    with the exit message, stdout). Any exception other than SystemExit is a traceback: it fails the test."""
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    out = capsys.readouterr()
    code = e.value.code
    err = out.err + (f"{code}\n" if isinstance(code, str) else "")
    return (1 if isinstance(code, str) else code), err, out.out


def tree(folder):
    """Every file under `folder` with its size and modification time (to see that nothing changed)."""
    return {os.path.join(d, f): (os.path.getsize(os.path.join(d, f)), os.stat(os.path.join(d, f)).st_mtime_ns)
            for d, _, files in os.walk(folder) for f in files}


TEXT = ["The quick brown fox jumps over the lazy dog.", "A tiny corpus for a tiny model, with a few words.",
        "Every line is a sentence; a blank line ends a document.", ""] * 40


def diverged(cfg, name, value):
    """An MLM whose weight `name` is all `value`."""
    model = roberta.RobertaForMaskedLM(cfg)
    with torch.no_grad():
        dict(model.named_parameters())[name].fill_(value)
    return model


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """A small pretrained checkpoint (train.py's checkpoint.pt, trained 'at 16 tokens'), a finetuned
    classifier's folder, prepared data, and files that are wrong in one way each."""
    d = tmp_path_factory.mktemp("bad")
    tok = bpe.Tokenizer.train([t for t in TEXT if t], 300, min_frequency=1)
    torch.manual_seed(0)
    cfg = roberta.RobertaConfig.preset("tiny", vocab_size=len(tok), max_positions=64)
    for name, model, extra in (("mlm", roberta.RobertaForMaskedLM(cfg), {"train": {"seq_len": 16}}),
                               ("cls", roberta.RobertaForSequenceClassification(cfg, 2), {"num_labels": 2}),
                               ("cls_yes_no", roberta.RobertaForSequenceClassification(cfg, 2),
                                {"num_labels": 2, "task": "rte", "id2label": ("yes", "no")}),
                               ("nan", diverged(cfg, "roberta.embeddings.tokens.weight", math.nan), {}),
                               ("overflow", diverged(cfg, "lm_head.norm.weight", 1e38), {})):  # finite, NaN out
        (d / name).mkdir()
        checkpoints.save(d / name / "checkpoint.pt", {"model": model.state_dict(), "config": asdict(cfg),
                                                     "class": type(model).__name__, **extra})
        tok.save(d / name)
    (d / "weights").mkdir()
    shutil.copy(d / "mlm" / "checkpoint.pt", d / "weights")
    shutil.copytree(d / "mlm", d / "othertok")
    bpe.Tokenizer.train(["other words entirely"] * 5, 290, min_frequency=1).save(d / "othertok")
    (d / "corpus.txt").write_text("\n".join(TEXT))
    preparation.prepare([str(d / "corpus.txt")], str(d / "mlm"), str(d / "data"), valid_fraction=0.3, workers=1, verbose=False)
    preparation.prepare([str(d / "corpus.txt")], str(d / "othertok"), str(d / "data2"), valid_fraction=0.3, workers=1,
                 verbose=False)
    rte = "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tc\td\tnot_entailment\n"
    files = {"dev.tsv": rte, "short.tsv": rte + "2\tonly two\n", "sts.tsv": rte.replace("label", "score")
             .replace("not_entailment", "2.5").replace("entailment", "1"),
             "p.tsv": "index\tprediction\n0\tentailment\n1\tentailment\n",
             "p_label.tsv": "index\tprediction\n0\tentailment\n1\tmaybe\n",
             "p_sts.tsv": "index\tprediction\n0\t1.5\n1\thigh\n", "p_one.tsv": "index\tprediction\n0\tentailment\n",
             "p_dup.tsv": "index\tprediction\n0\tentailment\n0\tentailment\n", "bad.json": '{"data": [{"title": "x"}]}',
             "squad.json": json.dumps({"data": [{"paragraphs": [{"context": "Paris is in France.", "qas": [
                 {"id": "q1", "question": "Where?", "answers": [{"text": "France", "answer_start": 12}]},
                 {"id": "q2", "question": "What?", "answers": [{"text": "Paris", "answer_start": 0}]}]}]}]}),
             "s_none.json": '{"x1": "Paris"}', "s_ok.json": '{"q1": "France"}', "s_num.json": '{"q1": 1}',
             "s_list.json": '["q1"]',
             "na_bad.json": '{"q1": "high"}', "notjson.json": "{'q1': 'Paris'}", "r_e.json": '{"1-0": "E"}',
             "r_none.json": '{"x-0": "A"}'}
    for name, text in files.items():
        (d / name).write_text(text)
    (d / "latin1.tsv").write_bytes("index\tsentence1\tsentence2\tlabel\n0\tcaf\xe9\tb\tentailment\n".encode("latin-1"))
    for folder, doc in (("race", {"article": "a", "questions": []}),
                        ("race_ok", {"id": "1", "article": "a", "questions": ["q"], "options": [["w", "x", "y", "z"]],
                                     "answers": ["B"]})):
        (d / folder / "high").mkdir(parents=True)
        (d / folder / "high" / "1.txt").write_text(json.dumps(doc))
    return d


EVALUATE_CASES = [  # (arguments, with {d} for the fixture's folder; what the one line must say)
    (["glue", "--task", "imdb", "--data", "{d}/dev.tsv", "--predictions", "{d}/p.tsv"], "unknown task 'imdb'"),
    (["glue", "--task", "squad1", "--data", "{d}/dev.tsv", "--predictions", "{d}/p.tsv"],
     "'squad1' is not a GLUE task"),
    (["glue", "--task", "rte", "--data", "{d}/short.tsv", "--predictions", "{d}/p.tsv"],
     "short.tsv:4: expected at least 4 tab-separated columns"),
    (["glue", "--task", "rte", "--data", "{d}/dev.tsv", "--predictions", "{d}/p_label.tsv"],
     "p_label.tsv:3: label 'maybe' is not one of entailment, not_entailment"),
    (["glue", "--task", "stsb", "--data", "{d}/sts.tsv", "--predictions", "{d}/p_sts.tsv"],
     "p_sts.tsv:3: score 'high' is not a number"),
    (["glue", "--task", "rte", "--data", "{d}/dev.tsv", "--predictions", "{d}/p_one.tsv"],
     "predictions for indices 0..1 (the 2 dev examples) expected, got 1 rows"),
    (["glue", "--task", "rte", "--data", "{d}/dev.tsv", "--predictions", "{d}/p_dup.tsv"],
     "p_dup.tsv:3: index 0 a second"),
    (["glue", "--task", "rte", "--data", "{d}/dev.tsv", "--predictions", "{d}/nope.tsv"], "nope.tsv: no such file"),
    (["glue", "--task", "rte", "--data", "{d}", "--predictions", "{d}/p.tsv"], ": a folder, not a file"),
    (["glue", "--task", "rte", "--data", "{d}/latin1.tsv", "--predictions", "{d}/p.tsv"], "latin1.tsv: not UTF-8 text"),
    (["glue", "--task", "rte", "--data", "", "--predictions", "{d}/p.tsv"], "argument --data: expected a path"),
    (["glue", "--task", "rte", "--data", "{d}/dev.tsv"], "one of the arguments --predictions --checkpoint is required"),
    (["glue", "--task", "rte", "--data", "{d}/dev.tsv", "--predictions", "{d}/p.tsv", "--checkpoint", "{d}/cls"],
     "argument --checkpoint: not allowed with argument --predictions"),
    (["glue", "--task", "rte", "--data", "{d}/dev.tsv", "--predictions", "{d}/p.tsv", "--batch-size", "4"],
     "--max-seq-len and --batch-size say how --checkpoint predicts: not with --predictions"),
    (["glue", "--task", "rte", "--data", "{d}/dev.tsv", "--checkpoint", "{d}/mlm"],
     "its classification head is untrained"),
    (["glue", "--task", "rte", "--data", "{d}/dev.tsv", "--checkpoint", "{d}/nowhere"], "no such checkpoint folder"),
    (["glue", "--task", "rte", "--data", "{d}/nowhere", "--checkpoint", "{d}/cls"], "nowhere: no such file"),
    (["glue", "--task", "rte", "--data", "{d}/short.tsv", "--checkpoint", "{d}/cls"],
     "short.tsv:4: expected at least 4"),
    (["glue", "--task", "rte", "--data", "{d}/race", "--checkpoint", "{d}/cls"], "race/dev.tsv: no such file"),
    (["glue", "--task", "stsb", "--data", "{d}/sts.tsv", "--checkpoint", "{d}/cls"],
     "cls: a classifier with 2 outputs, but stsb has a score to regress (1 output)"),
    (["glue", "--task", "rte", "--data", "{d}/dev.tsv", "--checkpoint", "{d}/cls_yes_no"],
     "cls_yes_no: its labels (yes, no, by id2label) are not rte's (entailment, not_entailment), whatever the case"),
    (["glue", "--task", "rte", "--data", "{d}/dev.tsv", "--checkpoint", "{d}/cls", "--max-seq-len", "65"],
     "--max-seq-len 65: must be in [8, 64] (the model's positions)"),
    (["squad", "--data", "{d}/bad.json", "--predictions", "{d}/s_none.json"], "bad.json: not SQuAD's shape"),
    (["squad", "--data", "{d}/squad.json", "--predictions", "{d}/s_none.json"],
     "s_none.json: none of its 1 question ids is in the data"),
    (["squad", "--data", "{d}/squad.json", "--predictions", "{d}/s_num.json"],
     "the answer for 'q1' is 1, not a string"),
    (["squad", "--data", "{d}/squad.json", "--predictions", "{d}/s_list.json"], "expected a JSON object of answers"),
    (["squad", "--data", "{d}/squad.json", "--predictions", "{d}/notjson.json"], "notjson.json: not valid JSON"),
    (["squad", "--data", "{d}/squad.json", "--predictions", "{d}/s_none.json", "--na-prob-thresh", "2"],
     "argument --na-prob-thresh: must be in [0, 1], got 2"),
    (["squad", "--data", "{d}/squad.json", "--predictions", "{d}/s_ok.json", "--na-prob-file", "{d}/na_bad.json"],
     "na_bad.json: the no-answer probability of 'q1' is \"high\", not a number in [0, 1]"),
    (["squad", "--data", "{d}/squad.json", "--predictions", "{d}/squad.json"], "the answer for 'data' is [{\"paragra"),
    (["race", "--data", "{d}/race", "--predictions", "{d}/bad.json"], "missing key(s) options"),
    (["race", "--data", "{d}/race_ok", "--predictions", "{d}/r_e.json"], "the answer for '1-0' is \"E\", not one of A"),
    (["race", "--data", "{d}/race_ok", "--predictions", "{d}/r_none.json"], "none of its 1 question ids"),
    (["race", "--data", "{d}/mlm", "--predictions", "{d}/r_none.json"], "no RACE files"),
    (["fill-mask", "--checkpoint", "{d}/nowhere", "a <mask>"], "nowhere: no such checkpoint folder"),
    (["fill-mask", "--checkpoint", "{d}/dev.tsv", "a <mask>"], "dev.tsv: a file, not a checkpoint folder"),
    (["fill-mask", "--checkpoint", "{d}/race", "a <mask>"], "no tokenizer files"),
    (["fill-mask", "--checkpoint", "{d}/weights", "a <mask>"], "weights: no tokenizer files"),
    (["fill-mask", "--checkpoint", "{d}/othertok", "a <mask>"], "tokens but the model's vocabulary is 300"),
    (["fill-mask", "--checkpoint", "{d}/cls", "a <mask>"], "its LM head is untrained"),
    (["fill-mask", "--checkpoint", "{d}/mlm", "--top-k", "0", "a <mask>"],
     "argument --top-k: must be at least 1, got 0"),
    (["fill-mask", "--checkpoint", "{d}/mlm", "--top-k", "-3", "a <mask>"], "argument --top-k: must be at least 1"),
    (["fill-mask", "--checkpoint", "{d}/mlm", "--top-k", "x", "a <mask>"], "argument --top-k: expected a whole number"),
    (["fill-mask", "--checkpoint", "{d}/mlm", "--top-k", "301", "a <mask>"],
     "top-k must be an integer from 1 to the vocabulary size, 300: got 301"),
    (["fill-mask", "--checkpoint", "{d}/mlm", "no mask"], "exactly one <mask>"),
    (["fill-mask", "--checkpoint", "{d}/mlm", "a <mask> " + "word " * 80], "longer than the model's 64 positions"),
    (["perplexity", "--checkpoint", "{d}/mlm", "--data", "{d}/data", "--seq-len", "0"],
     "--seq-len: must be at least 8, got 0"),
    (["perplexity", "--checkpoint", "{d}/mlm", "--data", "{d}/data", "--seq-len", "3"],
     "--seq-len: must be at least 8, got 3"),
    (["perplexity", "--checkpoint", "{d}/mlm", "--data", "{d}/data", "--seq-len", "65"],
     "--seq-len 65: must be in [8, 64] (the model's positions)"),
    (["perplexity", "--checkpoint", "{d}/mlm", "--data", "{d}/data", "--batch-size", "0"], "--batch-size: must be at"),
    (["perplexity", "--checkpoint", "{d}/mlm", "--data", "{d}/data", "--split", "test"], "argument --split: invalid"),
    (["perplexity", "--checkpoint", "{d}/cls", "--data", "{d}/data"], "its LM head is untrained"),
    (["perplexity", "--checkpoint", "{d}/mlm", "--data", "{d}/race"], "meta.json missing"),
    (["perplexity", "--checkpoint", "{d}/mlm", "--data", "{d}/nowhere"], "nowhere: no such folder"),
    (["perplexity", "--checkpoint", "{d}/mlm", "--data", "{d}/data2"], "prepared with another tokenizer"),
    (["perplexity", "--checkpoint", "{d}/nan", "--data", "{d}/data"],
     "nan: its weight roberta.embeddings.tokens.weight holds NaN or infinity (a diverged or damaged model)"),
    (["fill-mask", "--checkpoint", "{d}/nan", "a <mask>"], "nan: its weight roberta.embeddings.tokens.weight holds NaN"),
    (["perplexity", "--checkpoint", "{d}/overflow", "--data", "{d}/data"],
     "/data is not finite: its outputs overflow (NaN or infinity)"),
    (["fill-mask", "--checkpoint", "{d}/overflow", "a <mask>"],
     "overflow: its probabilities for <mask> are not finite: its outputs overflow (NaN or infinity)"),
]


@pytest.mark.parametrize("args,message", EVALUATE_CASES, ids=[" ".join(a[:1] + a[-2:])[:60] for a, _ in EVALUATE_CASES])
def test_evaluate_refuses_bad_input(bad, capsys, args, message):
    before = tree(bad)
    code, err, out = cli(evaluate_cli.main, [a.replace("{d}", str(bad)) for a in args], capsys)
    assert code != 0 and message in err and err.count("\n") == 1 and out == "", err
    assert tree(bad) == before


@pytest.mark.slow
def test_cli_processes_fail_in_one_line(bad):
    """The same as a user sees it: a process, its exit status and one line on stderr, no traceback."""
    for args, message in (EVALUATE_CASES[3], EVALUATE_CASES[-1]):
        r = run_cli(*[a.replace("{d}", str(bad)) for a in args])
        assert r.returncode != 0 and message in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_perplexity_at_the_trained_length_and_race_missing_warned(bad, capsys):
    """perplexity defaults to the length the checkpoint trained at (train.py's settings in checkpoint.pt);
    --seq-len overrides it. A RACE prediction missing counts as wrong, with a warning."""
    for extra, seq_len in (([], 16), (["--seq-len", "64"], 64)):
        evaluate_cli.main(["perplexity", "--checkpoint", str(bad / "mlm"), "--data", str(bad / "data"), *extra])
        out = json.loads(capsys.readouterr().out)
        assert out["seq_len"] == seq_len and out["ppl"] == pytest.approx(np.exp(out["loss"])) and out["targets"] > 0
    (bad / "r_empty.json").write_text('{"2-0": "A"}')
    (bad / "race_ok" / "middle").mkdir()
    (bad / "race_ok" / "middle" / "2.txt").write_text(json.dumps(
        {"id": "2", "article": "b", "questions": ["q", "r"], "options": [["a", "b", "c", "d"]] * 2, "answers": "AB"}))
    try:
        code, err, _ = cli(evaluate_cli.main,
                           ["race", "--data", bad / "race_ok", "--predictions", bad / "r_empty.json"], capsys)
        assert code != 0 and "questions, options and answers must be lists" in err  # "AB" is not a list
        (bad / "race_ok" / "middle" / "2.txt").write_text(json.dumps(
            {"id": "2", "article": "b", "questions": ["q", "r"], "options": [["a", "b", "c", "d"]] * 2,
             "answers": ["A", "C"]}))
        evaluate_cli.main(["race", "--data", str(bad / "race_ok"), "--predictions", str(bad / "r_empty.json")])
        out = capsys.readouterr()
        assert json.loads(out.out) == {"accuracy": 100 / 3, "middle": 50.0, "high": 0.0}
        assert "no prediction for 2 of the 3 questions" in out.err and "count as wrong" in out.err
    finally:
        shutil.rmtree(bad / "race_ok" / "middle")
        os.remove(bad / "r_empty.json")


def test_squad_command_sets_the_tuned_thresholds_apart(bad, capsys, tmp_path):
    """`evaluate.py squad --na-prob-file`: exact and f1 are the answers' own scores; the official script's best
    thresholds, chosen on these same questions, stand apart under tuned_on_this_dev_set."""
    (tmp_path / "na.json").write_text('{"q1": 0.2, "q2": 0.7}')
    evaluate_cli.main(["squad", "--data", str(bad / "squad.json"), "--predictions", str(bad / "s_ok.json"),
                       "--na-prob-file", str(tmp_path / "na.json")])
    out = json.loads(capsys.readouterr().out)
    assert out["exact"] == 100.0 and out["total"] == 1 and not any(k.startswith("best_") for k in out)
    assert set(out["tuned_on_this_dev_set"]) == {"best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"}


def test_perplexity_of_a_loss_past_709_is_inf_not_an_overflow(bad, capsys, monkeypatch):
    """exp(710) overflows a float: a diverged model's perplexity is reported as "inf" (valid JSON), not an
    OverflowError."""
    def diverged(loss):
        return lambda *a, **k: {"loss_sum": loss * 50, "targets": 50, "loss_sq_sum": loss ** 2 * 50, "correct": 0}
    monkeypatch.setattr(data, "evaluate_mlm", diverged(800.0))
    evaluate_cli.main(["perplexity", "--checkpoint", str(bad / "mlm"), "--data", str(bad / "data")])
    out = json.loads(capsys.readouterr().out, parse_constant=lambda name: pytest.fail(f"not JSON: {name}"))
    assert out["loss"] == 800.0 and out["ppl"] == "inf"
    monkeypatch.setattr(data, "evaluate_mlm", diverged(708.0))
    assert evaluate_cli.perplexity(str(bad / "mlm"), str(bad / "data"))["ppl"] == pytest.approx(np.exp(708.0))
