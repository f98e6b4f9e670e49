"""experiments.py: every experiment end to end in --quick mode, finished runs skipped, an interrupted run
resumed, --overwrite, a failed run marked with its command, bad input, and every command of EXERCISES.md
(so that the exercises cannot rot)."""
import collections
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
from machinery.formats import checkpoints
from machinery.commands import corpora
from machinery.lab import command, datasets, reports, runner, stats

QUICK = ["--quick", "--seeds", "1", "--jobs", "4"]
NAMES = [e.name for e in experiments.EXPERIMENTS if e.claims]  # what `all` runs (batch-size-grid by name only)


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    """Every experiment once in quick mode, one seed per arm."""
    out = str(tmp_path_factory.mktemp("experiments"))
    command.main(["all", *QUICK, "--out", out])
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
    assert {run["arm"] for run in r["runs"]} == {a.name for a in exp.arms if not a.finetune}  # CONTROL: with SST-2
    assert all(run["status"] == "finished" for run in r["runs"])
    for run in r["runs"]:
        assert run["command"].startswith("python ") and "train.py --data " in run["command"]
        assert f"--seed {run['seed']}" in run["command"]
        assert os.path.isfile(os.path.join(run["folder"], "checkpoint.pt"))
        if same_masks(run):  # the same held-out masks for every run scored on FULL-SENTENCES byte-level blocks
            assert run["heldout"]["targets"] == r["heldout_targets"] > 500
        assert 0 < run["heldout"]["loss_se"] < 0.1 and 0 <= run["heldout"]["accuracy"] <= 100
    text = report(out, name)
    assert re.search(r"^\*\*Verdict: .+\.\*\*$", text, re.M)
    assert all(run["command"] in text for run in r["runs"]) and r["preparation"][1] in text
    for label, arm, values in (exp.paper.rows if exp.paper else []):
        assert f"| {label} | {' | '.join(values)} |" in text  # the paper's row, beside ours
    assert len(r["verdicts"]) == len(exp.claims)


def same_masks(run):
    """A run scored on the shared held-out masks: blocks of the scale's sequence length (batch-size's are 64
    tokens) and byte-level BPE."""
    seq_len = experiments.SCALES["quick"].train["seq_len"]
    return f"--seq-len {seq_len} " in run["command"] and "/char" not in run["command"]


@pytest.mark.slow
def test_every_experiment_is_evaluated_on_the_same_heldout_masks(out):
    """Same sequence length, same held-out documents, same 15% masks: one target count for all, the formats'
    arms too (each scored on the same FULL-SENTENCES blocks, whatever it trained on); the text-encoding arms
    with their own tokenizers (bits per byte)."""
    runs = [run for name in NAMES for run in results(out, name)["runs"]]
    assert len({run["heldout"]["targets"] for run in runs if same_masks(run)}) == 1
    formats = [run for run in results(out, "formats")["runs"]]
    assert len(formats) >= 4 and all(same_masks(run) and run["heldout"]["format"] == "full-sentences" for run in formats)
    text = {run["arm"]: run["heldout"]["texts"] for run in results(out, "text-encoding")["runs"]}
    assert text["byte-level"]["non_english"]["unk_share_of_tokens"] == 0
    assert text["byte-level"]["non_english"]["coverage"] == 100
    assert text["char-level"]["non_english"]["unk_share_of_tokens"] > 10  # CJK, Cyrillic ... are not in its alphabet
    assert text["char-level"]["non_english"]["coverage"] < 90
    assert text["char-level"]["non_english"]["unk_cost_share"] > 0  # <unk> targets were scored, and paid for


@pytest.mark.slow
def test_verdicts_come_from_a_t_test(out):
    """Two arms of three seeds each, the same seeds: the paired t-test of the per-seed differences, its 95%
    interval and p, and the verdict at 5% (no SST-2 here: one metric)."""
    exp = next(e for e in experiments.EXPERIMENTS if e.name == "masking")
    losses = {"static": [6.76, 6.79, 6.73], "dynamic": [6.71, 6.73, 6.68]}
    heldout = {"loss_se": 0.04, "ppl": 0, "accuracy": 9, "accuracy_se": 0.5, "bits_per_byte": 2}
    records = [{"arm": arm, "seed": i, "status": "finished", "heldout": {**heldout, "loss": x}}
               for arm, xs in losses.items() for i, x in enumerate(xs)]
    arms = [reports.arm_summary(records, arm) for arm in exp.arms]
    (v,) = reports.judge(exp, arms)
    (t,) = v["tests"]
    diffs = [a - b for a, b in zip(losses["static"], losses["dynamic"])]  # worse - better, seed by seed
    se = statistics.stdev(diffs) / 3 ** 0.5
    assert t["test"] == "paired t-test" and t["df"] == 2
    assert t["difference"] == pytest.approx(statistics.fmean(diffs)) and t["se"] == pytest.approx(se)
    assert t["p"] == pytest.approx(stats.t_two_sided_p(statistics.fmean(diffs) / se, 2))
    assert t["low"] == pytest.approx(t["difference"] - 4.302653 * se, abs=1e-5)  # t(0.975, 2 df) = 4.3027
    # masking is scored downstream and these records have no SST-2: the verdict rests on the MLM proxy
    assert (v["verdict"] == "reproduced (MLM proxy)") == (t["p"] < 0.05 and t["difference"] > 0)
    one_seed = results(out, "formats")["verdicts"]
    assert all(v["verdict"].startswith("no verdict: one seed") for v in one_seed)


def arm_of(values, seeds=None, key="loss"):
    return {key: reports.stat(list(zip(seeds or range(len(values)), values)))}


@pytest.mark.parametrize("better, worse, expected, test", [
    ([4.00, 4.02, 3.99], [4.10, 4.11, 4.09], "reproduced", "paired t-test"),
    ([4.10, 4.11, 4.09], [4.00, 4.02, 3.99], "not reproduced at this scale", "paired t-test"),
    ([4.0, 4.2, 3.8], [4.1, 4.0, 4.2], "not significant", "paired t-test"),
    ([4.00, 4.01, 3.99], [4.10, 4.11, 4.09], "no verdict: zero spread", "paired t-test"),  # +0.1 in every seed
])
def test_verdict_rule(better, worse, expected, test):
    v = reports.verdict(arm_of(better), arm_of(worse))
    assert v["verdict"] == expected and v["test"] == test
    if v["p"] is not None:  # the interval excludes 0 exactly when significant
        assert (v["low"] > 0 or v["high"] < 0) == (v["p"] < 0.05)


def test_welch_when_the_seeds_differ_and_higher_is_better():
    """Arms with other seeds are not paired: Welch's test, its fractional degrees of freedom; for SST-2
    accuracy higher is better, so a higher `better` arm is the claim's direction."""
    v = reports.verdict(arm_of([80.0, 81.0, 82.0, 80.5], key="sst2"), arm_of([70.0, 75.0, 72.0], [5, 6, 7],
                                  key="sst2"), "sst2")
    assert v["test"] == "Welch's t-test" and v["difference"] == pytest.approx(80.875 - 72.333333)
    v1, v2 = statistics.variance([80, 81, 82, 80.5]) / 4, statistics.variance([70, 75, 72]) / 3
    assert v["df"] == pytest.approx((v1 + v2) ** 2 / (v1 ** 2 / 3 + v2 ** 2 / 2))
    assert v["verdict"] == "reproduced"


def test_a_claims_two_metrics_are_one_holm_family_and_sst2_needs_the_control():
    """The smaller p is held to 5% / 2, the larger to 5% (Holm); without a random-init control SST-2 does
    not count: the verdict rests on the MLM figure and says so."""
    exp = Experiment("two", "?", arms=[Arm("a"), Arm("b")], claims=[Claim("a", "b", "a beats b")])
    arms = [{"arm": "a", **arm_of([4.0, 4.02, 3.98]), **arm_of([80.0, 80.0, 81.0], key="sst2")},
            {"arm": "b", **arm_of([4.1, 4.13, 4.08]), **arm_of([80.5, 79.5, 80.0], key="sst2")}]
    (v,) = reports.judge(exp, arms)
    assert [t["metric"] for t in v["tests"]] == ["loss", "sst2"] and [t["alpha"] for t in v["tests"]] == [0.025, 0.05]
    assert v["verdict"] == "reproduced (MLM proxy)" and v["tests"][1]["verdict"] == "not significant"
    assert [t["counted"] for t in v["tests"]] == [True, False] and v["downstream"].startswith("unchecked")
    assert reports.combined([{"verdict": "reproduced"}, {"verdict": "not reproduced at this scale"}]) \
        .startswith("mixed")


@pytest.mark.parametrize("t, df, p", [(2.7764451, 4, 0.05), (12.7062047, 1, 0.05), (1.959964, 1e9, 0.05),
                                      (0.0, 3, 1.0), (2.570582, 5, 0.05)])
def test_student_t_distribution(t, df, p):
    """Textbook two-sided 5% points of Student's t (and the normal's 1.96 for large df)."""
    assert stats.t_two_sided_p(t, df) == pytest.approx(p, abs=1e-6)
    if p < 1:
        assert stats.t_quantile(df) == pytest.approx(t, abs=1e-5)


def test_student_t_against_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 2.7, 4, 9.3, 30):
        for t in (0.1, 1, 2, 5, 20):
            assert stats.t_two_sided_p(t, df) == pytest.approx(2 * scipy_stats.t.sf(t, df), rel=1e-9, abs=1e-14)
    a, b = [6.70, 6.73, 6.69, 6.71], [6.76, 6.74, 6.79, 6.75]
    assert stats.compare(a, b)["p"] == pytest.approx(scipy_stats.ttest_ind(b, a, equal_var=False).pvalue)
    assert stats.compare(a, b, paired_runs=True)["p"] == pytest.approx(scipy_stats.ttest_rel(b, a).pvalue)


def test_downstream_data_absent_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    """Without SST-2 an experiment scored downstream runs its MLM part and says how to get the data."""
    monkeypatch.setattr(corpora, "DEFAULT_CACHE", str(tmp_path))
    masking = next(e for e in experiments.EXPERIMENTS if e.name == "masking")
    args, gpu = command.parser().parse_args(["masking"]), experiments.SCALES["gpu"]
    assert command.downstream_folder(masking, args, gpu) is None
    assert "python data.py download glue-sst-2" in capsys.readouterr().out
    (tmp_path / "glue-sst-2" / "SST-2").mkdir(parents=True)
    (tmp_path / "glue-sst-2" / "SST-2" / "train.tsv").write_text("sentence\tlabel\n")
    assert command.downstream_folder(masking, args, gpu) == str(tmp_path / "glue-sst-2")
    classroom = experiments.SCALES["classroom"]  # off by default there, whatever the cache holds; --glue keeps it
    assert command.downstream_folder(masking, args, classroom) is None
    why = command.downstream_off(masking, classroom, None)
    assert "50.92% in every seed" in why and "0 of 16 verdicts" in why and "--glue DIR adds it" in why
    assert command.downstream_off(masking, classroom, "glue") == "" == command.downstream_off(masking, gpu, None)
    args.mlm_only = True
    assert command.downstream_folder(masking, args, gpu) is None


@pytest.mark.slow
def test_data_slice_and_equal_sequences(out):
    """Less data is a slice of the training documents with the full data's held-out split; the batch
    sizes of Table 3 see the same number of sequences."""
    r = results(out, "data-and-steps")
    full, less = r["data"]["full"], r["data"]["slice"]
    every = experiments.SCALES["quick"].slice_every
    assert less["documents"] == -(-full["documents"] // every) and less["tokens"] < full["tokens"]
    seen = {run["arm"]: run["sequences_seen"] for run in results(out, "batch-size")["runs"]}
    assert len(set(seen.values())) == 1
    steps = {run["arm"]: json.load(open(os.path.join(run["folder"], "train_config.json")))["train"]["max_steps"]
             for run in r["runs"]}
    assert steps["more-data-2x-steps"] == 2 * steps["more-data"] == 2 * steps["less-data"]


@pytest.mark.slow
def test_finished_runs_are_skipped(out, capsys):
    stamp = {run["folder"]: os.path.getmtime(os.path.join(run["folder"], "checkpoint.pt"))
             for run in results(out, "masking")["runs"]}
    command.main(["masking", "--quick", "--seeds", "1", "--out", out])
    printed = capsys.readouterr().out
    assert printed.count("finished before, skipped") == 2 and ": training" not in printed
    assert all(os.path.getmtime(os.path.join(f, "checkpoint.pt")) == t for f, t in stamp.items())


@pytest.mark.slow
def test_report_only_trains_nothing_and_recomputes_the_verdicts(out, capsys):
    before = results(out, "mask-rate")
    stamp = {run["folder"]: os.path.getmtime(os.path.join(run["folder"], "checkpoint.pt")) for run in before["runs"]}
    command.main(["mask-rate", "--quick", "--seeds", "1", "--out", out, "--report-only"])
    assert "0 run(s) trained" in capsys.readouterr().out
    after = results(out, "mask-rate")
    assert after["verdicts"] == before["verdicts"] and after["wall_seconds"] == before["wall_seconds"]
    assert all(os.path.getmtime(os.path.join(f, "checkpoint.pt")) == t for f, t in stamp.items())
    command.main(["summary", "--out", out])  # every claim of every experiment, one row each
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.startswith("| `") and " beats " in line]
    assert len(rows) == sum(len(results(out, name)["verdicts"]) for name in NAMES)
    assert any(line.startswith("| `mask-rate` | rate-40 | ") and " nats | " in line for line in lines)  # its arms
    assert any(line.startswith("| `mask-rate` | rate-40 beats rate-15 |") for line in rows)


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
        command.main(["probe", *QUICK, "--out", o])
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
    folder, cmd = runs["ok"]["folder"], runs["ok"]["command"]
    path = os.path.join(folder, "checkpoint.pt")
    ckpt = torch.load(path, weights_only=True)
    ckpt["state"]["step"] = 8
    ckpt["checksum"] = checkpoints.checksum(ckpt)  # as train.py saves one
    torch.save(ckpt, path)
    interrupted = {"command": cmd, "status": "running", "code": runner.code_hash()}
    runner.write_run(runner.Run(PROBE.arms[0], 0, folder, {}, "", ""), interrupted)
    capsys.readouterr()
    command.main(["probe", "--arms", "ok", *QUICK, "--out", o])
    printed = capsys.readouterr().out
    assert "resuming" in printed and cmd + " --resume" in printed
    with open(os.path.join(folder, "log.jsonl")) as f:
        steps = [json.loads(line)["step"] for line in f]
    assert 8 in steps and steps[-1] == 16
    assert [r["status"] for r in results(o, "probe")["runs"]] == ["finished", "failed"]
    # other settings: another run in a folder of its own (a run's folder is keyed by its settings), the first
    # kept as it was; a folder that holds another run is refused before any work; --overwrite trains again
    stamp = os.path.getmtime(os.path.join(folder, "checkpoint.pt"))
    command.main(["probe", "--arms", "ok", *QUICK, "--out", o, "--train-args", "--dropout 0"])
    other = results(o, "probe")["runs"][0]
    assert "--dropout 0 " in other["command"] and other["folder"] != folder
    assert os.path.getmtime(os.path.join(folder, "checkpoint.pt")) == stamp
    record = json.load(open(os.path.join(other["folder"], "run.json")))
    runner.write_run(runner.Run(PROBE.arms[0], 0, other["folder"], {}, "", ""), {**record, "command": "python x"})
    with pytest.raises(SystemExit) as e:
        command.main(["probe", "--arms", "ok", *QUICK, "--out", o, "--train-args", "--dropout 0"])
    assert "holds a run with other settings" in str(e.value.code) and "--overwrite" in str(e.value.code)
    again = os.path.getmtime(os.path.join(other["folder"], "checkpoint.pt"))
    command.main(["probe", "--arms", "ok", *QUICK, "--out", o, "--train-args", "--dropout 0", "--overwrite"])
    assert os.path.getmtime(os.path.join(other["folder"], "checkpoint.pt")) != again


@pytest.mark.slow
def test_glue_finetunes_finished_runs(out, tmp_path):
    """--glue given after the runs finished: their checkpoints are finetuned, not retrained."""
    glue = tmp_path / "glue"  # SST-2 only (RTE is used where present)
    glue.mkdir()
    os.symlink(shared_path("glue", "SST-2"), glue / "SST-2")
    glue = str(glue)
    command.main(["masking", "--arms", "dynamic", *QUICK, "--out", out, "--glue", glue])
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
        command.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_bad_choices_stop_before_any_work(out, tmp_path):
    with pytest.raises(SystemExit) as e:
        command.main(["masking", *QUICK, "--out", str(tmp_path), "--arms", "stati"])
    assert str(e.value.code).startswith("error: --arms: 'stati' is not an arm of masking")
    assert not os.listdir(tmp_path)


def test_command_line_errors_have_no_traceback(tmp_path, monkeypatch, capsys):
    glue = tmp_path / "glue" / "SST-2"
    glue.mkdir(parents=True)
    (glue / "train.tsv").write_text("sentence\tlabel\n")  # dev.tsv missing
    monkeypatch.chdir(tmp_path)  # in this process (a real one: test_modules_import_in_any_order_...)
    with pytest.raises(SystemExit) as e:
        command.main(["masking", "--glue", str(tmp_path / "glue")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "SST-2/dev.tsv" in err and os.listdir(tmp_path) == ["glue"]


def test_bad_input_is_a_value_error():
    """The one exception type for bad input: commands print a ValueError (or OSError) as one line."""
    exp = next(e for e in experiments.EXPERIMENTS if e.name == "masking")
    with pytest.raises(ValueError, match="'stati' is not an arm of masking"):
        runner.chosen_arms(exp, "static,stati")
    assert not hasattr(experiments, "Refused")


@pytest.mark.slow
def test_modules_import_in_any_order_and_the_script_is_one_module(capsys):
    """experiments.py and its machinery import each other module style: any of them can be imported first; run
    as a script, the machinery sees the script's own declarations (each arm's Times applied: list's times)."""
    firsts = ("experiments", "machinery.lab.runner", "machinery.lab.datasets", "machinery.lab.reports")
    ours = ("experiments", "machinery", "bpe", "data", "roberta", "train", "finetune", "evaluate")
    each_first = ("import importlib, sys\n"  # one process: torch imported once, this project's modules afresh each time
                  "for first in sys.argv[1:]:\n"
                  f"    for name in [m for m in sys.modules if m.split('.')[0] in {ours}]:\n"
                  "        del sys.modules[name]\n"
                  "    print(first, flush=True)\n"
                  "    importlib.import_module(first)\n")
    imports = subprocess.Popen([sys.executable, "-c", each_first, *firsts], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT)
    script = subprocess.Popen([sys.executable, "experiments.py", "list"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    printed, err = imports.communicate(timeout=120)
    assert imports.returncode == 0 and not err, (printed.split()[-1:], err)
    assert printed.split() == list(firsts)
    out = script.communicate(timeout=120)[0]
    command.main(["list"])
    assert script.returncode == 0 and out == capsys.readouterr().out


def test_list_names_every_experiment_with_its_time(capsys):
    command.main(["list"])
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

    def run(line):
        argv = shlex.split(line)
        assert argv[:2] == ["python", "experiments.py"], line
        argv = argv[2:]
        if "--out" in argv:  # a variant of its own, beside the baseline, on the same prepared data
            i = argv.index("--out") + 1
            argv[i] = sharing_data(out, tmp_path / argv[i])
        else:
            argv += ["--out", out]
        command.main(argv + ["--quick", "--seeds", "1", "--jobs", "2"])
        return results(argv[argv.index("--out") + 1], argv[0])

    with ThreadPoolExecutor(4) as pool:  # four at a time: most are one run each, mostly start-up
        for cmd, r in zip(commands, pool.map(run, commands)):
            assert r["runs"] and all(run["status"] == "finished" for run in r["runs"]), cmd
    # a variant's report: its command and question, only its arm, --train-args in the row, the baseline to
    # compare with, the baselines on the same masks
    text = report(str(tmp_path / "experiments" / "split-100-0-0"), "mask-rate")
    assert "**A variant of the `mask-rate` experiment**" in text and "`experiments/mask-rate/report.md`" in text
    assert "| rate-15 | --mask-rate 0.15 --mask-split 1,0,0 |" in text and "| rate-30 |" not in text
    assert "Arms not run here: rate-30, rate-40" in text and "no verdict: an arm has no finished run" not in text
    assert re.search(r"\*\*Baselines on the same masks\*\*.*held-out loss \d\.\d{3} .*accuracy \d+\.\d%", text)
    # exercise 8's encode command, quick mode: the folder it names holds the character-level tokenizer
    assert os.path.isfile(tmp_path / "experiments" / "common-chars" / "_data" / "builtin-quick" / "char307" /
                          "char_bpe.json")


def test_exercise_snippets_paste_as_written():
    """Every Python snippet of part A parses once dedented (a row of a dict inside braces); exercise 4's line,
    pasted where it says, compiles."""
    import ast
    import textwrap
    for ex in exercises():
        for block in re.findall(r"```python\n(.*?)```", ex, re.S):
            try:
                ast.parse(textwrap.dedent(block))
            except SyntaxError:
                ast.parse("{" + textwrap.dedent(block) + "}")
    four = next(ex for ex in exercises() if ex.startswith("4."))
    line = re.findall(r"```python\n(.*?)```", four, re.S)[0]
    with open(os.path.join(ROOT, "roberta.py")) as f:
        src = f.read().splitlines(True)
    i = next(k for k, text in enumerate(src) if text.strip().startswith("nsp = None if nsp_labels is None else \\"))
    compile("".join(src[:i + 2] + [line] + src[i + 2:]), "roberta.py", "exec")


# ---------------------------------------------------------------- progress, threads, code versions
class SlowStream:
    """stdout that yields between writes, so that unlocked prints from threads would interleave."""
    def __init__(self):
        self.parts = []

    def write(self, text):
        import time
        for half in (text[:len(text) // 2], text[len(text) // 2:]):
            self.parts.append(half)
            time.sleep(0.001)

    def flush(self):
        pass


def test_progress_lines_are_whole_lines_side_by_side(tmp_path, monkeypatch):
    run = runner.Run(Arm("rate-15"), 0, str(tmp_path), {"max_steps": 800, "batch_size": 16, "seq_len": 128}, "", "")
    assert runner.progress_line("[x] 1/2 rate-15 seed 0", run, 5) == "[x] 1/2 rate-15 seed 0: starting (5 s)"
    (tmp_path / "log.jsonl").write_text(json.dumps({"step": 100, "loss": 7.5}) + "\n" +
                                        json.dumps({"step": 200, "loss": 6.91234, "tokens_per_s": 2048.0}) + "\n")
    line = runner.progress_line("[x] 1/2 rate-15 seed 0", run, 95)
    # 600 steps x 16 x 128 tokens at 2,048 tokens/s: 600 s left
    assert line == "[x] 1/2 rate-15 seed 0: step 200/800 (25%), loss 6.912, 2,048 tokens/s, ETA 10 min 00 s (1 min 35 s so far)"
    stream = SlowStream()
    monkeypatch.setattr(sys, "stdout", stream)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda k: runner.say(f"[x] {k % 4}/4 arm seed 0: step {k}"), range(40)))
    lines = "".join(stream.parts).splitlines()
    assert len(lines) == 40 and all(re.fullmatch(r"\[x\] \d/4 arm seed 0: step \d+", x) for x in lines), lines


def test_execute_reports_progress_while_the_command_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "PROGRESS_SECONDS", 0.2)
    calls = []
    code, last = runner.execute(["python", "-c", "import time, sys; time.sleep(1); sys.exit('error: boom')"],
                                         str(tmp_path / "out.log"), progress=lambda: calls.append(1))
    assert code == 1 and last == "error: boom" and len(calls) >= 2


def test_threads_share_the_allowed_cpus(monkeypatch):
    from machinery.basics import speed
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(speed, "cpus_allowed", lambda: 8)
    assert [speed.threads_for(j) for j in (1, 2, 3, 16)] == [8, 4, 2, 1]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert speed.threads_for(2) == 1


def test_code_hash_covers_the_code_not_the_declarations(tmp_path):
    import shutil
    for name in runner.CORE + ["experiments.py"]:
        shutil.copy(os.path.join(ROOT, name), tmp_path / name)
    shutil.copytree(os.path.join(ROOT, "machinery"), tmp_path / "machinery",
                    ignore=shutil.ignore_patterns("__pycache__"))
    before = runner.code_hash(str(tmp_path))
    assert before == runner.code_hash()
    text = (tmp_path / "experiments.py").read_text()
    (tmp_path / "experiments.py").write_text(text.replace('Arm("rate-40", {"mask_rate": 0.40})',
                                                          'Arm("rate-40", {"mask_rate": 0.40}), Arm("rate-60", {})'))
    assert runner.code_hash(str(tmp_path)) == before  # an added arm reruns nothing
    with open(tmp_path / "machinery" / "commands" / "bench_tools.py", "a") as f:
        f.write("# an edit\n")
    assert runner.code_hash(str(tmp_path)) == before  # no run imports the benchmarks
    with open(tmp_path / "machinery" / "basics" / "lock.py", "a") as f:
        f.write("# an edit\n")
    assert runner.code_hash(str(tmp_path)) != before


def test_a_finished_run_of_other_code_is_stale(tmp_path):
    run = runner.Run(Arm("a"), 0, str(tmp_path), {"max_steps": 4}, "d", "d")
    runner.write_run(run, {"command": runner.shown(run.argv), "status": "finished", "code": "abc"})
    assert runner.run_status(run, run.argv, False, "abc") == "finished"
    assert runner.run_status(run, run.argv, False, "def") == "stale"
    runner.write_run(run, {"command": runner.shown(run.argv), "status": "finished"})  # no code recorded
    assert runner.run_status(run, run.argv, False, "abc") == "stale"


def test_preparation_code_is_the_code_the_preparation_runs(tmp_path):
    """The preparation's hash reads bpe.py, data.py and the modules they import: an edit there changes it, an
    edit to training only does not."""
    import shutil
    for name in runner.CORE + ["experiments.py"]:
        shutil.copy(os.path.join(ROOT, name), tmp_path / name)
    shutil.copytree(os.path.join(ROOT, "machinery"), tmp_path / "machinery", ignore=shutil.ignore_patterns("__pycache__"))
    before = datasets.preparation_code(str(tmp_path))
    assert before == datasets.preparation_code()
    for name, changes in (("train.py", False), ("data.py", True), ("machinery/basics/files.py", True)):
        with open(tmp_path / name, "a") as f:
            f.write("# an edit\n")
        assert (datasets.preparation_code(str(tmp_path)) != before) == changes, name
        before = datasets.preparation_code(str(tmp_path))


def test_a_prepared_file_of_other_code_is_made_again(tmp_path, capsys):
    made, log, typed = tmp_path / "made.txt", str(tmp_path / "log"), []
    argv = ["python", "-c", f"import sys; open({str(made)!r}, 'a').write(' '.join(sys.argv[1:]) + '|')"]
    for code in ("c1", "c1", "c2"):
        datasets.prepare_step("step", argv, str(made), datasets.Stamps(str(tmp_path), code), log, typed)
    assert made.read_text() == "|--overwrite|"  # made, skipped (the same code), made again (an edit)
    assert "step: made by other code (preparation code c1, now c2): made again" in capsys.readouterr().out
    assert datasets.Stamps(str(tmp_path), "c2").fresh(str(made)) and typed == [runner.shown(argv)] * 3


@pytest.mark.slow
def test_an_edit_to_the_preparation_prepares_again(tmp_path, monkeypatch, capsys):
    """Issue 32: after an edit to data.py's preparation, every prepared file is made again, and the report's
    figures name the code of the data."""
    docs = list(corpora.reference_topics())[:20]
    (tmp_path / "corpus.txt").write_text("\n".join(line for doc in docs for line in doc + [""]))
    args = command.parser().parse_args(["masking", "--quick", "--vocab-size", "300", "--out", str(tmp_path / "o"),
                                        "--corpus", str(tmp_path / "corpus.txt")])
    scale = experiments.SCALES["quick"]
    first, code = datasets.prepare(scale, args, {"slice"}), datasets.preparation_code()
    assert set(first.codes.values()) == {code}
    monkeypatch.setattr(datasets, "preparation_code", lambda root=None: "0123456789ab")  # as if data.py changed
    capsys.readouterr()
    again = datasets.prepare(scale, args, {"slice"})
    printed = capsys.readouterr().out
    for what in ("training text", "tokenizer", "data", "less data"):
        assert f"  {what}: made by other code (preparation code {code}, now 0123456789ab): made again" in printed
    assert again.codes == {"full": "0123456789ab", "slice": "0123456789ab"} and printed.count("--overwrite") == 3
    stamps = json.load(open(os.path.join(os.path.dirname(again.tokenizer), "code.json")))
    assert set(stamps.values()) == {"0123456789ab"} and len(stamps) == 5  # train.txt, merges, full, slice text, slice
    capsys.readouterr()
    datasets.prepare(scale, args, {"slice"})
    assert "made" not in capsys.readouterr().out  # the same code again: nothing to do


@pytest.mark.slow
def test_changed_code_reruns_and_the_report_says_so(out, tmp_path, capsys):
    o = sharing_data(out, tmp_path / "o")
    command.main(["masking", *QUICK, "--out", o])
    first = results(o, "masking")
    assert first["codes"] == [runner.code_hash()] and "Mixed code" not in report(o, "masking")
    assert f"--out {o}" in first["invocation"] and first["variant"]
    for arm in ("static", "dynamic"):  # as if both ran with older code
        path = os.path.join(next(r["folder"] for r in first["runs"] if r["arm"] == arm), "run.json")
        record = json.load(open(path))
        runner.write_run(runner.Run(Arm(arm), 0, os.path.dirname(path), {}, "", ""),
                                  {**record, "code": "0123456789ab"})
    capsys.readouterr()
    command.main(["masking", "--arms", "static", *QUICK, "--out", o])
    printed = capsys.readouterr().out
    assert "static seed 0: training again: it ran with other code (code 0123456789ab" in printed
    text = report(o, "masking")
    assert "**Mixed code.**" in text and "0123456789ab: dynamic seed 0" in text


def test_mfu_above_one_against_a_measured_peak_is_unknown_never_capped(monkeypatch):
    """A peak measured under load (too low): measured again once, the larger kept; MFU still above 1 is
    reported unknown (None), not capped at 1."""
    import roberta as model_module
    from machinery.basics import speed
    peaks = iter([1e6, 5e6])  # the first measurement under load, then a better one
    monkeypatch.setattr(speed, "matmul_peak", lambda *a, **k: next(peaks))
    cfg = model_module.RobertaConfig(vocab_size=512, hidden_size=64, num_layers=2, num_heads=2, ffn_size=128)
    meter = speed.Meter(cfg, 32, 0.15, "cpu", torch.float32, 1)
    assert meter.label == "measured peak"
    meter.count(10 ** 6)
    tps, mfu = meter.read()
    assert mfu is None and meter.peak == 5e6 and meter.remeasured


def test_the_meter_leaves_out_paused_time():
    import time
    import roberta as model_module
    from machinery.basics import speed
    cfg = model_module.RobertaConfig(vocab_size=512, hidden_size=64, num_layers=2, num_heads=2, ffn_size=128)
    meter = speed.Meter(cfg, 32, 0.15, "cpu", torch.float32, 1)
    meter.read()
    meter.count(1000)
    with meter.paused():  # an evaluation or a save
        time.sleep(0.3)
    assert meter.read()[0] > 1000 / 0.2


def test_the_downstream_control_runs_only_with_a_downstream_score():
    """experiments.CONTROL (finetune.py --random-init) is planned where SST-2 is finetuned, and not otherwise."""
    exp = next(e for e in experiments.EXPERIMENTS if e.name == "masking")
    assert experiments.CONTROL in exp.arms and experiments.CONTROL.finetune == "--random-init"
    prepared = datasets.Prepared(folders=collections.defaultdict(lambda: "data"), tokenizer="tok", corpus="",
                                 commands=[])
    args = command.parser().parse_args(["masking", "--seeds", "1"])
    args.finetune_on = None
    assert "random-init" not in {r.arm.name for r in runner.plan(exp, experiments.SCALES["classroom"], args, prepared)}
    args.finetune_on = "glue"
    runs = runner.plan(exp, experiments.SCALES["classroom"], args, prepared)
    assert [r.arm.name for r in runs] == ["static", "dynamic", "random-init"]


# ---------------------------------------------------------------- the paper's controls (issue: experiments that can tell)
@pytest.mark.slow
def test_tokenizers_learn_from_the_training_documents_only(out):
    """The tokenizer (and a character-level one) is trained on the training documents alone, written as data.py
    splits them: the held-out documents are new to it, as to the model."""
    r = results(out, "text-encoding")
    trains = [c for c in r["preparation"] if " train " in c and "bpe.py" in c]
    assert trains and all("train.txt" in c for c in trains) and not any("corpus.txt" in c for c in trains)
    folder = os.path.join(out, "_data", "builtin-quick")
    scale = experiments.SCALES["quick"]
    docs = list(datasets.data.split_documents(datasets.data.read_documents([os.path.join(folder, "corpus.txt")]),
                                              scale.valid_fraction))
    held = [line for split, lines in docs if split == "valid" for line in lines if line.strip()]
    kept = [line for split, lines in docs if split == "train" for line in lines]
    with open(os.path.join(folder, "train.txt"), encoding="utf-8") as f:
        text = f.read()
    assert text == "\n".join(kept)
    assert held and sum(line not in set(kept) for line in held) > len(held) // 2  # held-out text is absent


@pytest.mark.slow
def test_formats_get_equal_tokens_per_update(out):
    """Section 4.2: every format's run reads as many real tokens (padding not counted) as FULL-SENTENCES' run,
    within 1%, in every seed: DOC-SENTENCES and SENTENCE-PAIR take as many sequences as fit FULL-SENTENCES'
    tokens per update, SEGMENT-PAIR a batch scaled by its mean length, and each its updates (whole examples per
    update leave a remainder); the real tokens as train.py counts them (tokens_seen), the </s> a pair drops
    not counted."""
    exp = next(e for e in experiments.EXPERIMENTS if e.name == "formats")
    scale = experiments.SCALES["quick"]
    base = {**runner.base_options(exp, scale), "batch_size": 8, "seq_len": 64, "max_steps": 400}  # the classroom's
    args = command.parser().parse_args(["formats", *QUICK, "--out", out, "--mlm-only"])  # batch: finer steps
    args.code, args.finetune_on = "x", None
    prep = datasets.prepare(scale, args, {"full"})
    fitted = runner.update_tokens(exp, base, prep)
    assert set(fitted) == {"doc-sentences", "sentence-pair", "segment-pair"}
    tok = datasets.bpe.Tokenizer.load(prep.tokenizer)
    tokens, ends, _ = datasets.prepared.load_split(prep.folders["full"], "train")
    for seed in (0, 1, 4):
        target = runner.run_tokens(tokens, ends, tok.eos_id, "full-sentences", base, seed)
        for fmt, options in fitted.items():
            seen = runner.run_tokens(tokens, ends, tok.eos_id, fmt, {**base, **options}, seed)
            assert seen == pytest.approx(target, rel=0.01), (fmt, seed, seen, target, fitted)
    r = results(out, "formats")  # train.py's own count agrees with the simulation (the quick runs' options)
    for run in r["runs"]:
        o = run_options(run["command"])
        fmt = o.get("format", "full-sentences")
        options = {"seq_len": int(o["seq_len"]), "batch_size": int(o["batch_size"]), "max_steps": int(o["max_steps"]),
                   "tokens_per_batch": int(o.get("tokens_per_batch", 0))}
        assert run["tokens_seen"] == runner.run_tokens(tokens, ends, tok.eos_id, fmt, options, run["seed"]), run["arm"]
    assert "tokens seen" in report(out, "formats")


def run_options(command_line):
    """A train.py command's options: {"seq_len": "64", ...}."""
    words = shlex.split(command_line)
    return {w[2:].replace("-", "_"): words[i + 1] for i, w in enumerate(words) if w.startswith("--")
            and i + 1 < len(words) and not words[i + 1].startswith("--")}


def test_the_lr_grid_is_chosen_on_the_tuning_split_never_the_reported_heldout():
    """batch-size-grid trains and scores on the tuning split (training documents held aside), one seed per point;
    batch-size trains on the same documents and is scored on the reported held-out documents."""
    folders = {"full": "F", "slice": "S", "tune": "T"}
    prep = datasets.Prepared("tok", folders, [], "corpus.txt")
    by_name = {e.name: e for e in experiments.EXPERIMENTS}
    args = command.parser().parse_args(["batch-size", "--out", "o"])
    args.finetune_on = None
    grid = runner.plan(by_name["batch-size-grid"], experiments.SCALES["classroom"], args, prep)
    assert {(r.data, r.heldout) for r in grid} == {("T", "T")}
    assert collections.Counter((r.options["batch_size"], r.options["lr"]) for r in grid) == {
        (8 * experiments.BATCHES[name], lr): experiments.GRID_SEEDS for name, lrs in experiments.GRID_LR.items()
        for lr in lrs}
    final = runner.plan(by_name["batch-size"], experiments.SCALES["classroom"], args, prep)
    assert {(r.data, r.heldout) for r in final} == {("T", "F")}
    assert len({r.options["batch_size"] * r.options["max_steps"] for r in final if not r.arm.finetune}) == 1
    assert {r.arm.name: r.options["lr"] for r in final if not r.arm.finetune} == experiments.TUNED_LR


# ---------------------------------------------------------------- designs that can tell (issue 35)
def test_every_claim_has_five_seeds_at_the_classroom_scale():
    """Power: every experiment with claims runs at least 5 seeds per arm at the classroom scale, and its lr grid
    at least 2 per point."""
    scale = experiments.SCALES["classroom"]
    assert all((e.seeds or scale.seeds) >= 5 for e in experiments.EXPERIMENTS if e.claims)
    assert experiments.GRID_SEEDS >= 2 and not scale.downstream and experiments.SCALES["gpu"].downstream


def test_arms_of_one_seed_are_paired():
    """Run k of every arm has --seed k (train.py: its initialisation, data order and masks), so that the arms of
    one seed start alike and read the same examples in the same order where their data is the same."""
    exp = next(e for e in experiments.EXPERIMENTS if e.name == "masking")
    prep = datasets.Prepared("tok", collections.defaultdict(lambda: "data"), [], "corpus.txt")
    args = command.parser().parse_args(["masking", "--out", "o"])
    args.finetune_on = None
    runs = runner.plan(exp, experiments.SCALES["classroom"], args, prep)
    by_seed = collections.defaultdict(list)
    for r in runs:
        by_seed[r.seed].append(r)
    assert sorted(by_seed) == list(range(5)) and all(len(rs) == 2 for rs in by_seed.values())
    assert all(f"--seed {k}" in runner.shown(r.argv) and r.data == "data" for k, rs in by_seed.items() for r in rs)


def test_static_masks_are_each_seen_about_four_times():
    """Section 4.1 as BERT ran it (40 epochs over 10 masks: each seen 4 times): masking's epochs over its static
    arm's masks, by the declarations; and the plan trains exactly those epochs of the data."""
    exp = next(e for e in experiments.EXPERIMENTS if e.name == "masking")
    static = next(a for a in exp.arms if a.options.get("masking") == "static")
    assert exp.epochs / static.options["static_masks"] == pytest.approx(4, rel=0.1)
    assert exp.epochs > static.options["static_masks"]  # static and dynamic differ from the second pass on


def test_a_static_mask_repeats_every_static_masks_epochs():
    """data.Masking.static_masks: epoch e of static masking sees mask e % static_masks, the same in each pass."""
    tok = datasets.bpe.Tokenizer.train(["static masks are seen again and again"] * 3, 300, min_frequency=1)
    ids = torch.randint(5, len(tok), (4, 32), generator=torch.Generator().manual_seed(0))
    masking = datasets.data.Masking(dynamic=False, static_masks=3)
    masks = [datasets.data.mask_batch(ids, [0, 1, 2, 3], tok, 0, e, masking)[1] for e in range(6)]
    assert all(torch.equal(masks[e], masks[e + 3]) for e in range(3))
    assert not torch.equal(masks[0], masks[1])


def test_the_batch_sizes_learn_and_each_lr_is_bracketed():
    """batch-size: the largest batch gets at least 800 updates (the fewest a classroom model learned with), every
    arm sees the same sequences, its tuned lr lies strictly inside its grid, and warmup is the same share of each
    arm's updates (not tuned: a fixed share keeps the schedules alike)."""
    exp = next(e for e in experiments.EXPERIMENTS if e.name == "batch-size")
    prep = datasets.Prepared("tok", {"full": "F", "slice": "S", "tune": "T"}, [], "corpus.txt")
    args = command.parser().parse_args(["batch-size", "--out", "o"])
    args.finetune_on = None
    runs = [r for r in runner.plan(exp, experiments.SCALES["classroom"], args, prep) if r.seed == 0]
    assert min(r.options["max_steps"] for r in runs) >= 800
    assert len({r.options["batch_size"] * r.options["max_steps"] for r in runs}) == 1
    assert {r.options["warmup_steps"] / r.options["max_steps"] for r in runs} == {0.1}
    for name, lr in experiments.TUNED_LR.items():
        assert min(experiments.GRID_LR[name]) < lr < max(experiments.GRID_LR[name]), name


def test_a_run_declared_by_two_experiments_is_one_run(monkeypatch):
    """formats' full-sentences, text-encoding's byte-level, mask-rate's rate-15 and data-and-steps' more-data are
    the same train.py command in the same folder (OUT/_runs/<key>/seed<k>): it trains once; any other option,
    seed or data is another folder."""
    monkeypatch.setattr(runner, "update_tokens", lambda *a: {})  # no data here: the other formats' fit aside

    class Folders(dict):  # each data key its own folder
        def __missing__(self, key):
            return key
    prep = datasets.Prepared("tok", Folders(), [], "corpus.txt")
    by_name = {e.name: e for e in experiments.EXPERIMENTS}
    folders = {}
    for name, arm in (("formats", "full-sentences"), ("text-encoding", "byte-level"), ("mask-rate", "rate-15"),
                      ("data-and-steps", "more-data")):
        args = command.parser().parse_args([name, "--out", "o"])
        args.finetune_on = None
        runs = runner.plan(by_name[name], experiments.SCALES["classroom"], args, prep)
        folders[name] = {r.seed: (r.folder, runner.shown(r.argv)) for r in runs if r.arm.name == arm}
        others = {r.folder for r in runs if r.arm.name != arm}
        assert len(others) == 5 * (len({r.arm.name for r in runs}) - 1)
        assert not others & {f for f, _ in folders[name].values()}
    assert len({repr(f) for f in folders.values()}) == 1, folders
    assert folders["formats"][0][0].startswith(os.path.join("o", "_runs")) and folders["formats"][0] != \
        folders["formats"][1]


@pytest.mark.slow
def test_a_shared_run_trains_once(out, capsys):
    """In `all` (the quick fixture) rate-15 is formats' full-sentences: mask-rate found it finished and skipped it,
    and its record there carries mask-rate's arm name."""
    fmt, rate = results(out, "formats"), results(out, "mask-rate")
    shared = {r["folder"] for r in fmt["runs"] if r["arm"] == "full-sentences"}
    mine = [r for r in rate["runs"] if r["folder"] in shared]
    assert mine and {r["arm"] for r in mine} == {"rate-15"}
    assert {r["command"] for r in mine} == {r["command"] for r in fmt["runs"] if r["arm"] == "full-sentences"}
