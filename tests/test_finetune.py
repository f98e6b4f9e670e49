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
import evaluate
import finetune
import roberta
import train
from conftest import ROOT, shared_path
from machinery.basics import files
from machinery.commands import corpora, evaluate_cli, finetune_cli, roberta_cli
from machinery.formats import checkpoints, task_files
from machinery.datafolder import preparation


# One thread, in this process and in the commands it runs: tiny models gain nothing from a second one,
# and on a loaded machine two threads that wait for each other made a one-minute run take ten.
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module", autouse=True)
def one_thread(one_torch_thread):
    pass


def run(script, *args, check=True):
    r = subprocess.run([sys.executable, os.path.join(ROOT, script), *map(str, args)], capture_output=True, text=True,
                       env=ONE_THREAD)
    if check:
        assert r.returncode == 0, r.stderr[-3000:]
    return r


def finetune_here(*args):
    """`python finetune.py ARGS` in this process, which must succeed (a process costs seconds of imports; the SST-2
    recipe runs as typed)."""
    try:
        finetune_cli.main([str(a) for a in args])
    except SystemExit as e:
        assert e.code in (0, None), e.code


@pytest.fixture(scope="module")
def tiny_roberta(tmp_path_factory):
    """A randomly initialised tiny model with RoBERTa's vocabulary, saved in the Hugging Face layout."""
    d = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    roberta.save_pretrained(roberta.RobertaForMaskedLM(roberta.RobertaConfig.preset("tiny")), d)
    bpe.Tokenizer.load(shared_path("roberta")).save(d)
    return d


TEXT = ["A man plays the guitar.", "Someone plays music.", "The quick brown fox jumps over the lazy dog.",
        "Is it raining in Paris today?", "What is the capital of France?"] * 20


# ---------------------------------------------------------------- SQuAD offsets
@pytest.mark.slow
def test_gold_spans_give_back_the_gold_text(roberta_tok):
    """Hand the span search the gold answers' tokens: the predicted text is the gold text, taken from the
    original context by character offsets, for every SQuAD 1.1 dev question. Exactly, except where the
    annotated answer starts or ends inside a BPE token ("(99.3 FM)" of "(99.3 FM),"; "8" of "18"): then the
    prediction is the whole token and contains the gold text."""
    examples = task_files.read_squad(shared_path("squad", "dev-v1.1.json"))
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
@pytest.mark.slow
def test_sst2_one_epoch_beats_majority(tiny_roberta, tmp_path):
    out = tmp_path / "sst2"
    run("finetune.py", "--task", "sst2", "--data", shared_path("glue", "SST-2"), "--checkpoint", tiny_roberta,
        "--out", out, "--epochs", 1, "--max-train-examples", 4000, "--lr", "1e-3", "--batch-size", 32,
        "--max-seq-len", 32, "--no-progress")
    metrics = json.loads((out / "metrics.json").read_text())
    gold = [lab for _, lab in task_files.read_glue(evaluate.GLUE["sst2"], shared_path("glue", "SST-2", "dev.tsv"))]
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


@pytest.mark.slow
def test_sweep_reports_the_median_per_setting(micro_roberta, tmp_path):
    out = tmp_path / "sweep"
    finetune_here("--task", "rte", "--data", shared_path("glue", "RTE"), "--checkpoint", micro_roberta,
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


@pytest.mark.slow
def test_mnli_matched_and_mismatched_and_qqp(micro_roberta, tmp_path):
    """GLUE's MNLI and QQP layouts (the shared data has neither): columns found by their header names."""
    mnli = tmp_path / "MNLI"
    mnli.mkdir()
    labels = ["entailment", "neutral", "contradiction"]
    for name, n in (("train.tsv", 24), ("dev_matched.tsv", 9), ("dev_mismatched.tsv", 6)):
        rows = [f"{i}\t{i}\t{i}e\tfiction\t(x)\t(y)\t(X)\t(Y)\tA man plays {i}.\tSomeone plays.\t-\t{labels[i % 3]}\n"
                for i in range(n)]
        (mnli / name).write_text(MNLI_HEADER + "".join(rows))
    out = tmp_path / "mnli_out"
    finetune_here("--task", "mnli", "--data", mnli, "--checkpoint", micro_roberta, "--out", out, "--epochs", 1,
        "--max-seq-len", 32, "--batch-size", 8, "--no-progress")
    dev = json.loads((out / "metrics.json").read_text())["dev"]
    assert set(dev) == {"dev_matched", "dev_mismatched"} and "accuracy" in dev["dev_mismatched"]
    for name, n in (("dev_matched", 9), ("dev_mismatched", 6)):
        lines = (out / f"{name}_predictions.tsv").read_text().splitlines()
        assert lines[0] == "index\tprediction" and len(lines) == n + 1 and lines[1].split("\t")[1] in labels
    qqp = tmp_path / "qqp.tsv"
    qqp.write_text("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n7\t1\t2\tHow?\tWhy?\t0\n8\t3\t4\tA?\tA?\t1\n")
    assert task_files.read_glue(evaluate.GLUE["qqp"], qqp) == [(["How?", "Why?"], "0"), (["A?", "A?"], "1")]
    assert set(evaluate.glue_metrics("qqp", ["0", "1"], ["0", "1"])) == {"accuracy", "f1"}


@pytest.mark.slow
def test_squad2_and_race_runs(tiny_roberta, tmp_path):
    squad = tmp_path / "squad"
    squad.mkdir()
    for name in ("train-v2.0.json", "dev-v2.0.json"):
        shutil.copy(shared_path("squad", "dev-v2.0.first5articles.json"), squad / name)
    out = tmp_path / "squad2"
    finetune_here("--task", "squad2", "--data", squad, "--checkpoint", tiny_roberta, "--out", out,
        "--epochs", 1, "--max-train-examples", 40, "--max-eval-examples", 30, "--max-seq-len", 128,
        "--batch-size", 8, "--no-progress")
    preds = json.loads((out / "predictions.json").read_text())
    na = json.loads((out / "na_prob.json").read_text())
    assert len(preds) == len(na) == 30 and all(0 <= p <= 1 for p in na.values())
    metrics = json.loads((out / "metrics.json").read_text())["dev"]["dev"]
    assert {"exact", "f1", "HasAns_exact", "NoAns_exact"} <= set(metrics) and "best_f1" not in metrics
    assert {"best_f1", "best_f1_thresh"} <= set(metrics["tuned_on_this_dev_set"])  # tuned on dev: apart
    race = tmp_path / "race"
    race.mkdir()
    for split in ("train", "dev"):  # dev doubles as train: the shared data has no RACE train split
        os.symlink(shared_path("race", "dev"), race / split, target_is_directory=True)
    out = tmp_path / "race_out"
    finetune_here("--task", "race", "--data", race, "--checkpoint", tiny_roberta, "--out", out,
        "--epochs", 1, "--max-train-examples", 16, "--max-eval-examples", 12, "--max-seq-len", 96,
        "--batch-size", 4, "--no-progress")
    preds = json.loads((out / "predictions.json").read_text())
    assert len(preds) == 12 and set(preds.values()) <= set("ABCD")
    assert "middle" in json.loads((out / "metrics.json").read_text())["dev"]["dev"]


def cli(args, capsys):
    """finetune_cli.main in this process, as `python finetune.py ...` runs it: (exit status, stderr with the
    exit message). Any exception other than SystemExit would be a traceback: it fails the test."""
    with pytest.raises(SystemExit) as e:
        finetune_cli.main([str(a) for a in args])
    err = capsys.readouterr().err
    code = e.value.code
    return (1 if isinstance(code, str) else code), err + (f"{code}\n" if isinstance(code, str) else "")


def tree(folder):
    """Every file under `folder` with its size and modification time (to see that nothing changed)."""
    return {os.path.join(d, f): (os.path.getsize(os.path.join(d, f)), os.stat(os.path.join(d, f)).st_mtime_ns)
            for d, _, files in os.walk(folder) for f in files}


RTE = "index\tsentence1\tsentence2\tlabel\n" + "".join(f"{i}\t{TEXT[i]}\t{TEXT[i + 1]}\t{lab}\n" for i, lab in
                                                      enumerate(["entailment", "not_entailment"] * 4))


@pytest.fixture(scope="module")
def bad(micro_roberta, tmp_path_factory):
    """Folders that are wrong in one way each, beside good ones, and a finished run."""
    d = tmp_path_factory.mktemp("bad")
    (d / "weights").mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(micro_roberta / name, d / "weights")
    (d / "good").mkdir()
    for name in ("train.tsv", "dev.tsv"):
        (d / "good" / name).write_text(RTE)
    shutil.copytree(d / "good", d / "rte")
    shutil.copytree(d / "good", d / "sts")
    for name in ("train.tsv", "dev.tsv"):
        (d / "sts" / name).write_text(RTE.replace("label", "score").replace("not_entailment", "1.5")
                                      .replace("entailment", "4"))
    (d / "rte" / "train.tsv").write_text(RTE + "9\ta\tb\tmaybe\n")
    (d / "squad").mkdir()
    squad = {"data": [{"paragraphs": [{"context": " ".join(TEXT[:8]), "qas": [
        {"id": "q1", "question": "Who plays? " * 12, "answers": [{"text": "A man", "answer_start": 0}]}]}]}]}
    for name in ("train-v1.1.json", "dev-v1.1.json"):
        (d / "squad" / name).write_text(json.dumps(squad))
    (d / "a_file").write_text("not a folder")
    finetune_cli.main(["--task", "rte", "--data", str(d / "good"), "--checkpoint", str(micro_roberta), "--out",
                   str(d / "done"), "--epochs", "1", "--max-seq-len", "32", "--no-progress"])
    torch.manual_seed(0)
    other = bpe.Tokenizer.train(["other words entirely"] * 5, 290, min_frequency=1)
    roberta.save_pretrained(roberta.RobertaForMaskedLM(roberta.RobertaConfig.preset("tiny", vocab_size=len(other))),
                            d / "other")
    other.save(d / "other")
    return d


RTE_RUN = ["--task", "rte", "--data", "{d}/good", "--checkpoint", "{m}", "--out", "{d}/out"]
FINETUNE_CASES = [  # (arguments, with {d} the fixture's folder and {m} the micro model; what the one line must say)
    (["--task", "imdb", "--data", "{d}/good", "--checkpoint", "{m}", "--out", "{d}/out"], "unknown task 'imdb'"),
    (["--task", "rte", "--data", "{d}/good", "--checkpoint", "{d}/weights", "--out", "{d}/out"], "no tokenizer files"),
    (["--task", "rte", "--data", "{d}/good", "--checkpoint", "{d}/nowhere", "--out", "{d}/out"],
     "nowhere: no such checkpoint folder"),
    (["--task", "rte", "--data", "{d}/rte", "--checkpoint", "{m}", "--out", "{d}/out"],
     "train.tsv:10: label 'maybe' is not one of"),
    (["--task", "cola", "--data", "{d}/rte", "--checkpoint", "{m}", "--out", "{d}/out"],
     "train.tsv:1: label 'sentence1' is not one of"),  # an RTE file read as CoLA (no header)
    (["--task", "squad1", "--data", "{d}/rte", "--checkpoint", "{m}", "--out", "{d}/out"],
     "train-v1.1.json: no such file"),
    (["--task", "race", "--data", "{d}/nowhere", "--checkpoint", "{m}", "--out", "{d}/out"], "no such data folder"),
    (["--task", "squad1", "--data", "{d}/squad", "--checkpoint", "{m}", "--out", "{d}/out", "--max-seq-len", "40"],
     "--max-seq-len 40 leaves no room for the context beside a question"),
    (RTE_RUN + ["--lr", "0"], "argument --lr: must be in (0, 1], got 0"),
    (RTE_RUN + ["--lr", "nan"], "argument --lr: must be in (0, 1]"),
    (RTE_RUN + ["--lr", "fast"], "argument --lr: expected a number, got 'fast'"),
    (RTE_RUN + ["--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
    (RTE_RUN + ["--epochs", "0"], "argument --epochs: must be at least 1, got 0"),
    (RTE_RUN + ["--epochs", "1.5"], "argument --epochs: expected a whole number"),
    (RTE_RUN + ["--warmup-ratio", "1"], "argument --warmup-ratio: must be in [0, 1), got 1"),
    (RTE_RUN + ["--warmup-ratio", "-0.1"], "argument --warmup-ratio: must be in [0, 1), got -0.1"),
    (RTE_RUN + ["--weight-decay", "-1"], "argument --weight-decay: must be in [0, 1]"),
    (RTE_RUN + ["--seed", "-1"], "argument --seed: must be in [0, 4294967295], got -1"),
    (RTE_RUN + ["--max-seq-len", "4"], "argument --max-seq-len: must be at least 8, got 4"),
    (RTE_RUN + ["--max-seq-len", "65"], "--max-seq-len 65: must be in [8, 64] (the model's positions)"),
    (RTE_RUN + ["--doc-stride", "0"], "argument --doc-stride: must be at least 1, got 0"),
    (RTE_RUN + ["--eval-batch-size", "0"], "argument --eval-batch-size: must be at least 1, got 0"),
    (RTE_RUN + ["--sweep", "--sweep-seeds", "0"], "argument --sweep-seeds: must be at least 1, got 0"),
    (RTE_RUN + ["--max-train-examples", "0"], "argument --max-train-examples: must be at least 1, got 0"),
    (RTE_RUN + ["--max-eval-examples", "-1"], "argument --max-eval-examples: must be at least 1, got -1"),
    (RTE_RUN + ["--init-from", "{d}/nowhere"], "nowhere: no such checkpoint folder"),
    (RTE_RUN + ["--init-from", "{d}/other"], "--init-from {d}/other: not the same model size and tokenizer"),
    (["--task", "rte", "--data", "", "--checkpoint", "{m}", "--out", "{d}/out"], "argument --data: expected a path"),
    (["--task", "rte", "--data", "{d}/good", "--checkpoint", "{m}", "--out", "{d}/a_file/x"], "a_file is a file"),
    (["--task", "rte", "--data", "{d}/good", "--checkpoint", "{m}", "--out", "{m}"], "is the --checkpoint folder"),
    (["--task", "rte", "--data", "{d}/good", "--checkpoint", "{m}", "--out", "{d}/done"],
     "done already holds a finetuning run's results (metrics.json); pass --overwrite to replace it"),
    (["--task", "stsb", "--data", "{d}/sts", "--checkpoint", "{d}/done", "--out", "{d}/out"],
     "has shape [2, 128] in the checkpoint but [1, 128] in the model"),  # RTE's classifier as STS-B's regressor
]


@pytest.mark.parametrize("args,message", FINETUNE_CASES, ids=[" ".join(a[-2:])[-40:] for a, _ in FINETUNE_CASES])
def test_finetune_refuses_bad_input(bad, micro_roberta, capsys, args, message):
    before = tree(bad), tree(micro_roberta)
    code, err = cli([a.replace("{d}", str(bad)).replace("{m}", str(micro_roberta)) for a in args], capsys)
    assert code != 0 and message.replace("{d}", str(bad)) in err and err.count("\n") == 1, err
    assert not os.path.exists(bad / "out") and (tree(bad), tree(micro_roberta)) == before


def test_overwrite_replaces_a_run_and_a_sweep_refuses_a_finished_one(bad, micro_roberta, capsys, tmp_path):
    """A second run into the same --out replaces the first only with --overwrite, and then its log and
    predictions are the new run's alone. A sweep refuses, before any run, when one of its run folders
    holds results; nothing of it is written."""
    shutil.copytree(bad / "done", tmp_path / "run")
    base = ["--task", "rte", "--data", bad / "good", "--checkpoint", micro_roberta, "--max-seq-len", 32,
            "--no-progress"]
    finetune_cli.main([str(a) for a in base + ["--out", tmp_path / "run", "--epochs", 2, "--overwrite"]])
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [1, 2]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["hyperparameters"]["epochs"] == 2
    first = sorted(finetune.sweep_runs(argparse.Namespace(out=str(tmp_path / "sweep"), sweep_seeds=2),
                                           finetune.SWEEP))[0][-1]
    shutil.copytree(bad / "done", first)
    before = tree(tmp_path / "sweep")
    capsys.readouterr()
    code, err = cli(base + ["--out", tmp_path / "sweep", "--sweep", "--sweep-seeds", 2], capsys)
    assert code != 0 and f"{first} already holds a finished run of the sweep (metrics.json)" in err
    assert err.count("\n") == 1 and tree(tmp_path / "sweep") == before and len(os.listdir(tmp_path / "sweep")) == 1


def test_a_run_stopped_midway_is_named_as_such(bad, micro_roberta, capsys, tmp_path):
    """A run killed after its first epoch left its log and best checkpoint, no metrics.json: a rerun is refused
    naming what is there, and --overwrite runs it again."""
    shutil.copytree(bad / "done", tmp_path / "run")
    os.remove(tmp_path / "run" / "metrics.json")
    argv = ["--task", "rte", "--data", bad / "good", "--checkpoint", micro_roberta, "--max-seq-len", 32,
            "--epochs", 1, "--no-progress", "--out", tmp_path / "run"]
    code, err = cli(argv, capsys)
    assert code != 0 and err.count("\n") == 1 and (
        f"--out {tmp_path / 'run'} holds a finetuning run stopped after epoch 1 (its log.jsonl and the best "
        f"checkpoint.pt so far; no metrics.json): pass --overwrite to run it again from the start") in err, err
    finetune_cli.main([str(a) for a in argv + ["--overwrite"]])
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["best_epoch"] == 1


def test_a_finetuned_classifier_keeps_its_labels_through_export_and_evaluation(bad, capsys, tmp_path):
    """finetune.py's checkpoint records its id2label (output i: the task's label i); the export writes those
    names into config.json (not LABEL_i); `evaluate.py glue --checkpoint` scores the run folder and the export
    as the run scored itself, without training."""
    dev = json.loads((bad / "done" / "metrics.json").read_text())["dev"]["dev"]
    assert checkpoints.id2label(bad / "done") == ["entailment", "not_entailment"]
    roberta_cli.export(str(bad / "done"), str(tmp_path / "hf"))
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["id2label"] == {"0": "entailment", "1": "not_entailment"}
    assert config["label2id"] == {"entailment": 0, "not_entailment": 1}
    for folder in (bad / "done", tmp_path / "hf"):
        capsys.readouterr()
        evaluate_cli.main(["glue", "--task", "rte", "--data", str(bad / "good"), "--checkpoint", str(folder),
                           "--max-seq-len", "32"])
        assert json.loads(capsys.readouterr().out) == pytest.approx(dev)


def test_squad2_answers_only_where_the_head_says_answerable(micro_roberta, monkeypatch):
    """Section 3.3: a span where the answerability head's probability is above 0.5, "" elsewhere; the official
    scores of those answers are the result, the best thresholds (tuned on the same questions) set apart."""
    tok = bpe.Tokenizer.load(micro_roberta)
    context = "A man plays the guitar. Someone plays music."
    examples = [{"id": f"q{i}", "question": "Who plays?", "context": context, "is_impossible": not answers,
                 "answers": [{"text": "A man", "answer_start": 0}] if answers else []}
                for i, answers in enumerate([True, False, True, True])]
    features = finetune.squad_features(tok, examples, 64, v2=True)
    answerable = torch.tensor([2.0, -1.0, -0.5, 0.0])  # logits: p = 0.88, 0.27, 0.38, 0.5 (not above 0.5)

    def outputs(model, inputs, batch_ids, batch_size, device):
        ids = batch_ids(inputs)
        starts, ends = torch.full(ids.shape, -5.0), torch.full(ids.shape, -5.0)
        for row, f in enumerate(inputs):
            man = f["ctx_at"] + len(tok.encode("A")) + len(tok.encode(" man")) - 1  # "A man": its last token
            starts[row, f["ctx_at"]], ends[row, man] = 5.0, 5.0
        return [(starts, ends, answerable[[f["example"] for f in inputs]])]
    monkeypatch.setattr(finetune, "forward", outputs)
    (pred, na), metrics = finetune.squad_predict("squad2", None, tok, examples, features, 8, "cpu")
    assert pred == {"q0": "A man", "q1": "", "q2": "", "q3": ""}
    assert na == pytest.approx({f"q{i}": float(torch.sigmoid(-a)) for i, a in enumerate(answerable)})
    assert metrics == evaluate.squad_metrics(examples, pred, na, tuned_apart=True)
    assert metrics["exact"] == 50.0 and "best_f1" not in metrics
    # the official script's sweep over these answers: a threshold withholds more, never restores q2's span
    assert metrics["tuned_on_this_dev_set"] == {"best_exact": 50.0, "best_f1": 50.0,
                                                "best_exact_thresh": na["q0"], "best_f1_thresh": na["q0"]}


# ---------------------------------------------------------------- perplexity and fill-mask of a pretraining run
@pytest.mark.slow
def test_perplexity_and_fill_mask(tmp_path, capsys):
    full = corpora.builtin_corpus(str(tmp_path / "full.txt"))
    corpus = tmp_path / "corpus.txt"  # its first 4,000 lines (~300 documents): enough, and seconds faster
    corpus.write_text("".join(open(full, encoding="utf-8").readlines()[:4000]), encoding="utf-8")
    corpus = str(corpus)
    bpe.Tokenizer.train(files.read_lines(corpus), 400).save(tmp_path / "tok")
    preparation.prepare([corpus], str(tmp_path / "tok"), str(tmp_path / "data"), valid_fraction=0.05, workers=1, verbose=False)
    cfg = train.TrainConfig(data=str(tmp_path / "data"), out=str(tmp_path / "run"), seq_len=32, batch_size=8,
                            max_steps=3, eval_interval=100, log_interval=1)
    train.train(cfg)
    r = run("evaluate.py", "perplexity", "--checkpoint", tmp_path / "run", "--data", tmp_path / "data", "--seq-len", 32)
    out = json.loads(r.stdout)
    assert out["ppl"] == pytest.approx(np.exp(out["loss"])) and 1 < out["ppl"] < 1000 and out["targets"] > 0
    here = evaluate_cli.perplexity(str(tmp_path / "run"), str(tmp_path / "data"))  # by default: trained at 32
    assert here == {k: out[k] for k in here}, (here, out)
    assert out["unigram_ppl"] > 1 and 0 <= out["most_frequent_accuracy"] <= 1 and out["loss_se"] > 0
    evaluate_cli.main(["fill-mask", "--checkpoint", str(tmp_path / "run"), "--top-k", "3", "A <mask> statement."])
    lines = capsys.readouterr().out.strip().splitlines()  # in this process: the perplexity above ran as typed
    assert len(lines) == 3 and all(0 < float(line.split("\t")[0]) < 1 for line in lines)
    bpe.Tokenizer.train(["other text entirely"] * 5, 300, min_frequency=1).save(tmp_path / "tok2")
    preparation.prepare([corpus], str(tmp_path / "tok2"), str(tmp_path / "data2"), workers=1, verbose=False)
    with pytest.raises(SystemExit) as refused:
        evaluate_cli.main(["perplexity", "--checkpoint", str(tmp_path / "run"), "--data", str(tmp_path / "data2")])
    assert refused.value.code not in (0, None) and "another tokenizer" in str(refused.value.code)
