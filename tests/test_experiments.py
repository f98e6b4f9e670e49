"""experiments.py: every experiment end to end in --quick mode, finished runs skipped, an interrupted run
resumed, --overwrite, a failed run marked with its command, bad input, and every command of EXERCISES.md
(so that the exercises cannot rot)."""
import importlib
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import experiments
from conftest import ROOT, shared_path
from experiments import Arm, Claim, Experiment

QUICK = ["--quick", "--seeds", "1", "--jobs", "2"]
NAMES = [e.name for e in experiments.EXPERIMENTS]


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """Every experiment once in quick mode, one seed per arm."""
    out = str(tmp_path_factory.mktemp("experiments"))
    experiments.main(["all", *QUICK, "--out", out])
    return out


def results(out, name):
    with open(os.path.join(out, name, "results.json")) as f:
        return json.load(f)


def report(out, name):
    with open(os.path.join(out, name, "report.md")) as f:
        return f.read()


def sharing_data(out, folder):
    """A new --out that reuses `out`'s prepared data (a symlink to its _data), so no test prepares twice."""
    os.makedirs(folder, exist_ok=True)
    if not os.path.exists(os.path.join(folder, "_data")):
        os.symlink(os.path.join(out, "_data"), os.path.join(folder, "_data"))
    return str(folder)


# ---------------------------------------------------------------- every experiment, end to end
@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_quick_mode_runs_every_experiment_end_to_end(out, name):
    r = results(out, name)
    exp = next(e for e in experiments.EXPERIMENTS if e.name == name)
    assert {run["arm"] for run in r["runs"]} == {a.name for a in exp.arms}
    assert all(run["status"] == "finished" for run in r["runs"])
    for run in r["runs"]:
        assert run["command"].startswith("python ") and "train.py --data " in run["command"]
        assert f"--seed {run['seed']}" in run["command"]
        assert os.path.isfile(os.path.join(run["folder"], "checkpoint.pt"))
        assert run["heldout"]["targets"] == r["heldout_targets"] > 500  # the same held-out masks for every run
        assert 0 < run["heldout"]["loss_se"] < 0.1 and 0 <= run["heldout"]["accuracy"] <= 100
    text = report(out, name)
    assert re.search(r"^\*\*Verdict: .+\.\*\*$", text, re.M)
    assert all(run["command"] in text for run in r["runs"]) and r["preparation"][1] in text
    for label, arm, values in (exp.paper.rows if exp.paper else []):
        assert f"| {label} | {' | '.join(values)} |" in text  # the paper's row, beside ours
    assert len(r["verdicts"]) == len(exp.claims)


@pytest.mark.slow
def test_every_experiment_is_evaluated_on_the_same_heldout_masks(out):
    """Same sequence length, same held-out documents, same 15% masks: one target count for all."""
    assert len({results(out, name)["heldout_targets"] for name in NAMES}) == 1


@pytest.mark.slow
def test_verdicts_come_from_the_seeds_spread(out):
    """Two arms of three seeds each: the verdict is the gap of the means against 2 se of their difference."""
    exp = next(e for e in experiments.EXPERIMENTS if e.name == "masking")
    losses = {"static": [6.76, 6.79, 6.73], "dynamic": [6.71, 6.73, 6.68]}
    heldout = {"loss_se": 0.04, "ppl": 0, "accuracy": 9, "accuracy_se": 0.5, "bits_per_byte": 2}
    records = [{"arm": arm, "seed": i, "status": "finished", "heldout": {**heldout, "loss": x}}
               for arm, xs in losses.items() for i, x in enumerate(xs)]
    arms = [experiments.arm_summary(records, arm) for arm in exp.arms]
    (v,) = experiments.judge(exp, arms)
    static, dynamic = (statistics.fmean(losses[a]) for a in ("static", "dynamic"))
    assert v["difference"] == pytest.approx(static - dynamic)
    assert v["se"] == pytest.approx(((statistics.variance(losses["static"]) + statistics.variance(losses["dynamic"]))
                                     / 3) ** 0.5)
    assert v["verdict"] == "reproduced"  # 0.053 > 2 x 0.023
    assert "its sign changes between columns" in v["paper_note"]  # Table 1: +0.4, -0.3, +0.4
    one_seed = results(out, "formats")["verdicts"]
    assert all(v["verdict"].startswith("no verdict: one seed") for v in one_seed)


@pytest.mark.parametrize("better, worse, expected", [
    ((4.0, 0.01, 3), (4.1, 0.01, 3), "reproduced"),
    ((4.1, 0.01, 3), (4.0, 0.01, 3), "not reproduced at this scale"),
    ((4.0, 0.10, 3), (4.1, 0.10, 3), "within noise"),          # d = 0.1 < 2 se = 0.163
])
def test_verdict_rule(better, worse, expected):
    arm = lambda mean, sd, n: {"loss": {"mean": mean, "sd": sd, "n": n}}
    assert experiments.verdict(arm(*better), arm(*worse))["verdict"] == expected


@pytest.mark.slow
def test_data_slice_and_equal_sequences(out):
    """Less data is a slice of the training documents with the full data's held-out split; the batch
    sizes of Table 3 see the same number of sequences."""
    r = results(out, "data-and-steps")
    full, less = r["data"]["full"], r["data"]["slice"]
    assert less["documents"] == -(-full["documents"] // 10) and less["tokens"] < full["tokens"]
    seen = {run["arm"]: run["sequences_seen"] for run in results(out, "batch-size")["runs"]}
    assert len(set(seen.values())) == 1
    steps = {run["arm"]: json.load(open(os.path.join(run["folder"], "train_config.json")))["train"]["max_steps"]
             for run in r["runs"]}
    assert steps["more-data-5x-steps"] == 5 * steps["more-data"] == 5 * steps["less-data"]


@pytest.mark.slow
def test_finished_runs_are_skipped(out, capsys):
    stamp = {run["folder"]: os.path.getmtime(os.path.join(run["folder"], "checkpoint.pt"))
             for run in results(out, "masking")["runs"]}
    experiments.main(["masking", "--quick", "--seeds", "1", "--out", out])
    printed = capsys.readouterr().out
    assert printed.count("finished before, skipped") == 2 and ": training" not in printed
    assert all(os.path.getmtime(os.path.join(f, "checkpoint.pt")) == t for f, t in stamp.items())


# ---------------------------------------------------------------- resume, overwrite, failure
PROBE = Experiment("probe", "Does a run that explodes stop the others?",
                   arms=[Arm("ok", {}), Arm("explodes", {"lr": 1e6})],
                   claims=[Claim("ok", "explodes", "a learning rate of a million does not train")])


@pytest.fixture
def probe(monkeypatch):
    """A student's experiment, added in a few lines."""
    monkeypatch.setattr(experiments, "EXPERIMENTS", experiments.EXPERIMENTS + [PROBE])


@pytest.mark.slow
def test_failed_interrupted_and_replaced_runs(out, tmp_path, probe, capsys):
    o = sharing_data(out, tmp_path / "o")
    # a run that fails part-way: marked failed with its command, its log kept, the other run goes on
    with pytest.raises(SystemExit) as e:
        experiments.main(["probe", *QUICK, "--out", o])
    assert "1 run(s) failed" in str(e.value.code)
    runs = {run["arm"]: run for run in results(o, "probe")["runs"]}
    assert runs["ok"]["status"] == "finished"
    bad = runs["explodes"]
    assert bad["status"] == "failed" and "non-finite" in bad["error"]
    assert bad["rerun"].startswith("python ") and "--lr 1e+06" in bad["rerun"]
    assert os.path.isfile(os.path.join(bad["folder"], "log.jsonl"))
    text = report(o, "probe")
    assert "**FAILED** explodes seed 0" in text and bad["rerun"] in text
    assert "no verdict: an arm has no finished run" in text
    # an interrupted run (its checkpoint at step 8 of 16, as a kill leaves it) is resumed
    folder, command = runs["ok"]["folder"], runs["ok"]["command"]
    path = os.path.join(folder, "checkpoint.pt")
    ckpt = torch.load(path, weights_only=True)
    ckpt["state"]["step"] = 8
    torch.save(ckpt, path)
    interrupted = {"command": command, "status": "running"}
    experiments.write_run(experiments.Run(PROBE.arms[0], 0, folder, {}, "", ""), interrupted)
    capsys.readouterr()
    experiments.main(["probe", "--arms", "ok", *QUICK, "--out", o])
    printed = capsys.readouterr().out
    assert "resuming" in printed and command + " --resume" in printed
    with open(os.path.join(folder, "log.jsonl")) as f:
        steps = [json.loads(line)["step"] for line in f]
    assert 8 in steps and steps[-1] == 16
    assert [r["status"] for r in results(o, "probe")["runs"]] == ["finished", "failed"]
    # other settings in the same folder: refused before any work, then replaced with --overwrite
    stamp = os.path.getmtime(os.path.join(folder, "checkpoint.pt"))
    with pytest.raises(SystemExit) as e:
        experiments.main(["probe", "--arms", "ok", *QUICK, "--out", o, "--train-args", "--dropout 0"])
    assert "holds a run with other settings" in str(e.value.code) and "--overwrite" in str(e.value.code)
    assert os.path.getmtime(os.path.join(folder, "checkpoint.pt")) == stamp
    experiments.main(["probe", "--arms", "ok", *QUICK, "--out", o, "--train-args", "--dropout 0", "--overwrite"])
    assert "--dropout 0 " in results(o, "probe")["runs"][0]["command"]
    assert os.path.getmtime(os.path.join(folder, "checkpoint.pt")) != stamp


@pytest.mark.slow
def test_glue_finetunes_finished_runs(out, tmp_path):
    """--glue given after the runs finished: their checkpoints are finetuned, not retrained."""
    glue = tmp_path / "glue"  # SST-2 only (RTE is used where present)
    glue.mkdir()
    os.symlink(shared_path("glue", "SST-2"), glue / "SST-2")
    glue = str(glue)
    experiments.main(["masking", "--arms", "dynamic", *QUICK, "--out", out, "--glue", glue])
    run = next(r for r in results(out, "masking")["runs"] if r["arm"] == "dynamic" and r["seed"] == 0)
    assert 0 <= run["glue"]["sst2"]["accuracy"] <= 100 and "finetune.py --task sst2" in run["glue"]["sst2"]["command"]
    assert os.path.isfile(os.path.join(run["folder"], "glue-sst2", "metrics.json"))
    assert "SST2 acc. % (ours)" in report(out, "masking")


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("argv, message", [
    (["nosuch"], "unknown experiment 'nosuch'"),
    (["masking", "--glue", "."], "no SST-2/train.tsv"),
    (["masking", "--seeds", "0"], "--seeds"),
    (["masking", "--corpus", "none.txt"], "none.txt: no such file"),
])
def test_bad_arguments_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        experiments.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_bad_choices_stop_before_any_work(out, tmp_path):
    with pytest.raises(SystemExit) as e:
        experiments.main(["masking", *QUICK, "--out", str(tmp_path), "--arms", "stati"])
    assert str(e.value.code).startswith("error: --arms: 'stati' is not an arm of masking")
    assert not os.listdir(tmp_path)


def test_command_line_errors_have_no_traceback(tmp_path):
    glue = tmp_path / "glue" / "SST-2"
    glue.mkdir(parents=True)
    (glue / "train.tsv").write_text("sentence\tlabel\n")  # dev.tsv missing
    r = subprocess.run([sys.executable, os.path.join(ROOT, "experiments.py"), "masking", "--glue",
                        str(tmp_path / "glue")], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "SST-2/dev.tsv" in r.stderr


def test_list_names_every_experiment_with_its_time(capsys):
    experiments.main(["list"])
    printed = capsys.readouterr().out
    for exp in experiments.EXPERIMENTS:
        assert re.search(rf"^{re.escape(exp.name)} .*\n.*classroom ~\d+ min", printed, re.M)


# ---------------------------------------------------------------- the exercises
def exercises():
    with open(os.path.join(ROOT, "EXERCISES.md")) as f:
        text = f.read().split("# Part A")[1].split("# Part B")[0]  # part B: tests/test_exercises.py
    return re.split(r"^## ", text, flags=re.M)[1:]


def test_every_exercise_has_its_parts_and_names_real_code():
    found = exercises()
    assert 6 <= len(found) <= 10
    for ex in found:
        for part in ("**Question.**", "**Command.**", "**Look at.**", "**Change.**"):
            assert part in ex, (ex[:40], part)
        for module, name in re.findall(r"`(bpe|data|roberta|train|experiments)\.(?!py\b)([A-Za-z_][\w.]*)`", ex):
            obj = importlib.import_module(module)
            for attr in name.split("."):
                obj = getattr(obj, attr)  # the code an exercise points at exists


@pytest.mark.slow
def test_every_exercise_command_runs_in_quick_mode(out, tmp_path):
    commands = [line for ex in exercises() for line in re.findall(r"```bash\n(.*?)```", ex, re.S)[0].splitlines()]
    assert len(commands) == len(exercises())

    def run(command):
        argv = shlex.split(command)
        assert argv[:2] == ["python", "experiments.py"], command
        argv = argv[2:]
        if "--out" in argv:  # a variant of its own, beside the baseline, on the same prepared data
            i = argv.index("--out") + 1
            argv[i] = sharing_data(out, tmp_path / argv[i])
        else:
            argv += ["--out", out]
        experiments.main(argv + ["--quick", "--seeds", "1"])
        return results(argv[argv.index("--out") + 1], argv[0])

    with ThreadPoolExecutor(2) as pool:  # two at a time: most are one run each
        for command, r in zip(commands, pool.map(run, commands)):
            assert r["runs"] and all(run["status"] == "finished" for run in r["runs"]), command
