import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import bpe
import data
import evaluate
import finetune
import roberta
import train
from conftest import ROOT, shared_path


def run(script, *args, check=True):
    r = subprocess.run([sys.executable, os.path.join(ROOT, script), *map(str, args)], capture_output=True, text=True)
    if check:
        assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def tiny_roberta(tmp_path_factory):
    """A randomly initialised tiny model with RoBERTa's vocabulary, saved in the Hugging Face layout."""
    d = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    roberta.save_pretrained(roberta.RobertaForMaskedLM(roberta.RobertaConfig.preset("tiny")), d)
    bpe.Tokenizer.load(shared_path("roberta")).save(d)
    return d


# ---------------------------------------------------------------- SQuAD offsets
def test_gold_spans_give_back_the_gold_text(roberta_tok):
    """Hand the span search the gold answers' tokens: the predicted text is the gold text, taken from the
    original context by character offsets, for every SQuAD 1.1 dev question. Exactly, except where the
    annotated answer starts or ends inside a BPE token ("(99.3 FM)" of "(99.3 FM),"; "8" of "18"): then the
    prediction is the whole token and contains the gold text."""
    examples = evaluate.read_squad(shared_path("squad", "dev-v1.1.json"))
    features = finetune.squad_features(roberta_tok, examples, 384, 128)
    starts, ends = [], []
    for f in features:
        e = examples[f["example"]]
        _, offsets = roberta_tok.encode_with_offsets(e["context"])
        s = e["answers"][0]["answer_start"]
        stop = s + len(e["answers"][0]["text"])
        first = next(i for i, (a, b) in enumerate(offsets) if b > s)
        last = max(i for i, (a, b) in enumerate(offsets) if a < stop)
        start_logits, end_logits = np.zeros(len(f["ids"])), np.zeros(len(f["ids"]))
        if f["window"][0] <= first and last < f["window"][1]:
            start_logits[first - f["window"][0] + f["ctx_at"]] = 10
            end_logits[last - f["window"][0] + f["ctx_at"]] = 10
        starts.append(start_logits)
        ends.append(end_logits)
    best = finetune.best_spans(examples, features, starts, ends, roberta_tok, max_answer_tokens=200)  # 10 are long
    pred = {q: text for q, (text, _) in best.items()}
    gold = {e["id"]: e["answers"][0]["text"] for e in examples}
    assert len(pred) == len(examples) == 10570
    assert all(gold[q] in pred[q] for q in gold)
    differ = [q for q in gold if pred[q] != gold[q]]
    assert len(differ) <= 0.012 * len(examples)
    assert evaluate.squad_metrics(examples, pred)["exact"] > 99.6


# ---------------------------------------------------------------- runs
def test_sst2_one_epoch_beats_majority(tiny_roberta, tmp_path):
    out = tmp_path / "sst2"
    run("finetune.py", "--task", "sst2", "--data", shared_path("glue", "SST-2"), "--checkpoint", tiny_roberta,
        "--out", out, "--epochs", 1, "--max-train-examples", 8000, "--lr", "1e-3", "--batch-size", 32,
        "--max-seq-len", 64, "--no-progress")
    metrics = json.loads((out / "metrics.json").read_text())
    gold = [lab for _, lab in evaluate.read_glue("sst2", shared_path("glue", "SST-2", "dev.tsv"))]
    majority = 100 * max(gold.count("0"), gold.count("1")) / len(gold)
    assert metrics["dev"]["dev"]["accuracy"] > majority + 5
    # the predictions file is the GLUE submission format, and evaluate.py scores it the same
    r = run("evaluate.py", "glue", "--task", "sst2", "--data", shared_path("glue", "SST-2", "dev.tsv"),
            "--predictions", out / "dev_predictions.tsv")
    assert json.loads(r.stdout)["accuracy"] == pytest.approx(metrics["dev"]["dev"]["accuracy"])
    model = roberta.load_pretrained(str(out), cls=roberta.RobertaForSequenceClassification, verbose=False)
    assert model.num_labels == 2
    # Section 5.1: another task starts from this finetuned encoder (MNLI -> RTE in the paper)
    args = argparse.Namespace(task="rte", checkpoint=str(tiny_roberta), init_from=str(out))
    rte, *_ = finetune.make_model(args)
    torch.testing.assert_close(rte.roberta.embeddings.tokens.weight, model.roberta.embeddings.tokens.weight)


def test_sweep_reports_the_median_per_setting(tiny_roberta, tmp_path):
    out = tmp_path / "sweep"
    run("finetune.py", "--task", "rte", "--data", shared_path("glue", "RTE"), "--checkpoint", tiny_roberta,
            "--out", out, "--epochs", 1, "--max-train-examples", 16, "--max-eval-examples", 16, "--max-seq-len", 48,
            "--sweep", "--sweep-seeds", 3, "--no-progress")
    sweep = json.loads((out / "sweep.json").read_text())
    assert [(s["lr"], s["batch_size"]) for s in sweep["settings"]] == [(lr, bs) for lr in (1e-5, 2e-5, 3e-5)
                                                                        for bs in (16, 32)]
    assert all(len(s["scores"]) == 3 and s["median"] == sorted(s["scores"])[1] for s in sweep["settings"])
    assert sweep["best"]["median"] == max(s["median"] for s in sweep["settings"])
    assert len([d for d in os.listdir(out) if d.startswith("lr")]) == 18


MNLI_HEADER = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
               "sentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label\n")


def test_mnli_matched_and_mismatched_and_qqp(tiny_roberta, tmp_path):
    """GLUE's MNLI and QQP layouts (the shared data has neither): columns found by their header names."""
    mnli = tmp_path / "MNLI"
    mnli.mkdir()
    labels = ["entailment", "neutral", "contradiction"]
    for name, n in (("train.tsv", 24), ("dev_matched.tsv", 9), ("dev_mismatched.tsv", 6)):
        rows = [f"{i}\t{i}\t{i}e\tfiction\t(x)\t(y)\t(X)\t(Y)\tA man plays {i}.\tSomeone plays.\t-\t{labels[i % 3]}\n"
                for i in range(n)]
        (mnli / name).write_text(MNLI_HEADER + "".join(rows))
    out = tmp_path / "mnli_out"
    run("finetune.py", "--task", "mnli", "--data", mnli, "--checkpoint", tiny_roberta, "--out", out, "--epochs", 1,
        "--max-seq-len", 32, "--batch-size", 8, "--no-progress")
    dev = json.loads((out / "metrics.json").read_text())["dev"]
    assert set(dev) == {"dev_matched", "dev_mismatched"} and "accuracy" in dev["dev_mismatched"]
    for name, n in (("dev_matched", 9), ("dev_mismatched", 6)):
        lines = (out / f"{name}_predictions.tsv").read_text().splitlines()
        assert lines[0] == "index\tprediction" and len(lines) == n + 1 and lines[1].split("\t")[1] in labels
    qqp = tmp_path / "qqp.tsv"
    qqp.write_text("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n7\t1\t2\tHow?\tWhy?\t0\n8\t3\t4\tA?\tA?\t1\n")
    assert evaluate.read_glue("qqp", qqp) == [(["How?", "Why?"], "0"), (["A?", "A?"], "1")]
    assert set(evaluate.glue_metrics("qqp", ["0", "1"], ["0", "1"])) == {"accuracy", "f1"}


def test_squad2_and_race_runs(tiny_roberta, tmp_path):
    squad = tmp_path / "squad"
    squad.mkdir()
    for name in ("train-v2.0.json", "dev-v2.0.json"):
        shutil.copy(shared_path("squad", "dev-v2.0.first5articles.json"), squad / name)
    out = tmp_path / "squad2"
    run("finetune.py", "--task", "squad2", "--data", squad, "--checkpoint", tiny_roberta, "--out", out,
        "--epochs", 1, "--max-train-examples", 40, "--max-eval-examples", 30, "--max-seq-len", 128,
        "--batch-size", 8, "--no-progress")
    preds = json.loads((out / "predictions.json").read_text())
    na = json.loads((out / "na_prob.json").read_text())
    assert len(preds) == len(na) == 30 and all(0 <= p <= 1 for p in na.values())
    metrics = json.loads((out / "metrics.json").read_text())["dev"]["dev"]
    assert {"exact", "f1", "HasAns_exact", "NoAns_exact", "best_f1_thresh"} <= set(metrics)
    race = tmp_path / "race"
    race.mkdir()
    for split in ("train", "dev"):  # dev doubles as train: the shared data has no RACE train split
        os.symlink(shared_path("race", "dev"), race / split, target_is_directory=True)
    out = tmp_path / "race_out"
    run("finetune.py", "--task", "race", "--data", race, "--checkpoint", tiny_roberta, "--out", out,
        "--epochs", 1, "--max-train-examples", 16, "--max-eval-examples", 12, "--max-seq-len", 96,
        "--batch-size", 4, "--no-progress")
    preds = json.loads((out / "predictions.json").read_text())
    assert len(preds) == 12 and set(preds.values()) <= set("ABCD")
    assert "middle" in json.loads((out / "metrics.json").read_text())["dev"]["dev"]


def test_bad_inputs(tiny_roberta, tmp_path):
    (tmp_path / "weights").mkdir()
    shutil.copy(tiny_roberta / "config.json", tmp_path / "weights")
    shutil.copy(tiny_roberta / "model.safetensors", tmp_path / "weights")
    (tmp_path / "rte").mkdir()
    (tmp_path / "rte" / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n")
    (tmp_path / "rte" / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n")
    (tmp_path / "good").mkdir()
    for name in ("train.tsv", "dev.tsv"):
        shutil.copy(tmp_path / "rte" / "dev.tsv", tmp_path / "good" / name)
    cases = [
        (["--task", "imdb", "--data", tmp_path, "--checkpoint", tiny_roberta], "unknown task 'imdb'"),
        (["--task", "rte", "--data", tmp_path / "good", "--checkpoint", tmp_path / "weights"], "no tokenizer files"),
        (["--task", "rte", "--data", tmp_path / "rte", "--checkpoint", tiny_roberta],
         "train.tsv:2: label 'maybe' is not one of"),
        (["--task", "cola", "--data", tmp_path / "rte", "--checkpoint", tiny_roberta],
         "train.tsv:1: label 'sentence1' is not one of"),  # an RTE file read as CoLA (no header)
        (["--task", "squad1", "--data", tmp_path / "rte", "--checkpoint", tiny_roberta], "train-v1.1.json: no such file"),
        (["--task", "race", "--data", tmp_path / "nowhere", "--checkpoint", tiny_roberta], "no such data folder"),
    ]
    for args, message in cases:
        r = run("finetune.py", *args, "--out", tmp_path / "out", check=False)
        assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]


# ---------------------------------------------------------------- perplexity and fill-mask of a pretraining run
def test_perplexity_and_fill_mask(tmp_path):
    corpus = data.builtin_corpus(str(tmp_path / "corpus.txt"))
    bpe.Tokenizer.train(bpe.read_lines(corpus), 400).save(tmp_path / "tok")
    data.prepare([corpus], str(tmp_path / "tok"), str(tmp_path / "data"), valid_fraction=0.05, workers=1, verbose=False)
    cfg = train.TrainConfig(data=str(tmp_path / "data"), out=str(tmp_path / "run"), seq_len=32, batch_size=8,
                            max_steps=3, eval_interval=100, log_interval=1)
    train.train(cfg)
    r = run("evaluate.py", "perplexity", "--checkpoint", tmp_path / "run", "--data", tmp_path / "data", "--seq-len", 32)
    out = json.loads(r.stdout)
    assert out["ppl"] == pytest.approx(np.exp(out["loss"])) and 1 < out["ppl"] < 1000 and out["targets"] > 0
    r = run("evaluate.py", "fill-mask", "--checkpoint", tmp_path / "run", "--top-k", 3, "A <mask> statement.")
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 3 and all(0 < float(line.split("\t")[0]) < 1 for line in lines)
    bpe.Tokenizer.train(["other text entirely"] * 5, 300, min_frequency=1).save(tmp_path / "tok2")
    data.prepare([corpus], str(tmp_path / "tok2"), str(tmp_path / "data2"), workers=1, verbose=False)
    r = run("evaluate.py", "perplexity", "--checkpoint", tmp_path / "run", "--data", tmp_path / "data2", check=False)
    assert r.returncode != 0 and "another tokenizer" in r.stderr
