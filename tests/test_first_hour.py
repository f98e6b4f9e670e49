"""A student's first hour, in seconds each: what the demo does with a run already in its folder, `evaluate.py
perplexity` with no options, the warmup warning, SST-2 found where `data.py download glue-sst-2` puts it, and
a missing finetuning folder that says where its data comes from. (The classroom path end to end, run for real:
tests/test_doc_commands.py.)"""
import argparse
import os
import zipfile

import pytest
import torch

import experiments
from machinery.commands import corpora, data_cli, demo, evaluate_cli, finetune_cli, train_cli
from machinery.lab import command


def demo_args(**given):
    return argparse.Namespace(**{**{k: None for k in demo.DEMO_OPTIONS}, "overwrite": False, **given})


def fake_run(folder, step, max_steps, seed=0, data_dir=demo.DATA):
    """A checkpoint.pt recording what demo.earlier_run reads: the run's settings and its step."""
    folder.mkdir(parents=True)
    torch.save({"train": {"max_steps": max_steps, "seed": seed, "data": data_dir}, "state": {"step": step}},
               folder / "checkpoint.pt")
    return str(folder)


def test_a_finished_demo_is_shown_again_and_other_options_say_so(tmp_path):
    out = fake_run(tmp_path / "demo", 3400, 3400)
    same = demo.earlier_run(out, {"max_steps": 3400, "seed": 0})
    assert same["finished"] and "its report again, without training" in same["banner"]
    other = demo.earlier_run(out, {"max_steps": 10, "seed": 0})
    assert other["settings"] == {"max_steps": 3400, "seed": 0} and other["finished"]  # shown with its own settings
    assert "not the 10 updates asked" in other["banner"] and "--overwrite" in other["banner"]
    assert "\n" not in other["banner"]


def test_an_interrupted_demo_continues_or_is_refused_with_other_options(tmp_path):
    out = fake_run(tmp_path / "demo", 1200, 3400)
    going_on = demo.earlier_run(out, {"max_steps": 3400, "seed": 0})
    assert not going_on["finished"] and "from update 1,200 of 3,400" in going_on["banner"]
    with pytest.raises(ValueError, match="stopped at update 1,200 .*not the seed 1 asked.*--overwrite"):
        demo.earlier_run(out, {"max_steps": 3400, "seed": 1})
    assert demo.earlier_run(str(tmp_path / "empty"), {"max_steps": 3400, "seed": 0}) == {}
    with pytest.raises(ValueError, match="not the demo's"):
        demo.earlier_run(fake_run(tmp_path / "mine", 5, 5, data_dir="data/"), {"max_steps": 5, "seed": 0})


def test_the_demo_takes_overwrite_and_still_refuses_what_it_would_ignore():
    demo.check_demo_options(demo_args(overwrite=True, max_steps=10))
    with pytest.raises(ValueError, match="--lr needs --data"):
        demo.check_demo_options(demo_args(lr=1e-3))


def test_warmup_as_long_as_the_run_is_warned(capsys):
    args = train_cli.parse(["--config", "small", "--data", "d", "--max-steps", "50"])
    cfg = train_cli.config_from_args(args)
    err = capsys.readouterr().err
    assert cfg.warmup_steps == 500 and err.count("\n") == 1 and "warmup (500 updates)" in err
    assert "climbs to 5e-05, short of its peak 0.0005" in err and "--warmup-steps, e.g. 5" in err
    train_cli.config_from_args(train_cli.parse(["--data", "d", "--max-steps", "200"]))
    assert capsys.readouterr().err == ""  # tiny: 100 warmup updates of 200


def test_train_help_gives_each_default_once(capsys):
    with pytest.raises(SystemExit):
        train_cli.parse(["--help"])
    text = capsys.readouterr().out
    options = " ".join(text[text.index("options:"):].split()).split(" --")[1:]
    assert len(options) > 25 and all(o.count("(default") <= 1 for o in options), \
        [o for o in options if o.count("(default") > 1]
    assert any(o.startswith("micro-batch-size") and "(default: batch-size / processes" in o for o in options)


def test_perplexity_alone_scores_the_demo_or_says_to_run_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        evaluate_cli.main(["perplexity"])
    message = str(e.value.code)  # cli.run's one line, `error: ...`, as the exit status
    assert "\n" not in message and "run `python train.py` (the demo) first" in message
    os.makedirs(demo.OUT)
    torch.save({"train": {"data": demo.DATA}}, os.path.join(demo.OUT, "checkpoint.pt"))
    with pytest.raises(ValueError, match="names no prepared data folder that is here .*cache/demo/data"):
        evaluate_cli.perplexity_folders(None, None)
    os.makedirs(demo.DATA)
    open(os.path.join(demo.DATA, "meta.json"), "w").close()
    assert evaluate_cli.perplexity_folders(None, None) == (demo.OUT, demo.DATA)
    assert evaluate_cli.perplexity_folders(None, "other/") == (demo.OUT, "other/")


def test_experiments_find_sst2_where_data_py_download_puts_it(tmp_path, monkeypatch, capsys):
    """`python data.py download glue-sst-2` (its archive unpacks to SST-2/) and experiments.py's default look
    in the same place: one dataset name everywhere."""
    archive = tmp_path / "SST-2.zip"
    with zipfile.ZipFile(archive, "w") as z:  # as GLUE's archive: one folder, SST-2/
        z.writestr("SST-2/train.tsv", "sentence\tlabel\ngood\t1\n")
        z.writestr("SST-2/dev.tsv", "sentence\tlabel\nbad\t0\n")
    name = experiments.GLUE_DOWNLOAD
    assert name in corpora.DATASETS and corpora.DATASETS[name][0][1] == "SST-2.zip"
    monkeypatch.setitem(corpora.DATASETS, name, [(archive.as_uri(), "SST-2.zip", None)])
    monkeypatch.setattr(corpora, "DEFAULT_CACHE", str(tmp_path / "cache"))
    data_cli.main(["download", name, "--cache", str(tmp_path / "cache")])
    masking = next(e for e in experiments.EXPERIMENTS if e.name == "masking")
    found = command.downstream_folder(masking, command.parser().parse_args(["masking"]), experiments.SCALES["gpu"])
    assert found == str(tmp_path / "cache" / name) and os.path.isfile(os.path.join(found, "SST-2", "dev.tsv"))
    assert f"python data.py download {name}" in experiments.__doc__


def test_a_missing_task_folder_names_the_download_that_makes_it(tmp_path):
    with pytest.raises(ValueError) as e:
        finetune_cli.check_data("sst2", str(tmp_path / "GLUE" / "SST-2"))
    assert "no such data folder (`python data.py download glue-sst-2` puts it in " in str(e.value)
    assert str(e.value).endswith(os.path.join("glue-sst-2", "SST-2") + ")")
    with pytest.raises(ValueError, match=r"download squad2` puts it in \S+squad2\)"):
        finetune_cli.check_data("squad2", str(tmp_path / "squad"))
