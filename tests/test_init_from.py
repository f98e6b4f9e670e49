"""train.py --init-from: continued pretraining (Gururangan et al., 2020) from a run folder, a Hugging Face folder
or a finetuned model; the tokenizer check, the lineage, --resume; the classroom recipe end to end."""
import hashlib
import json
import os

import pytest
import torch

import bpe
import roberta
import train
from conftest import MICRO_TEXT, ROOT, shared_path
from machinery.basics import files, lock
from machinery.commands import corpora, finetune_cli, roberta_cli, train_cli
from machinery.datafolder import preparation
from test_train import TINY, losses, run_together, train_here

HF_TINY = os.path.join(ROOT, "tests", "fixtures", "hf_tiny", "mlm")  # a Hugging Face MLM folder without tokenizer files


@pytest.fixture(scope="module")
def texts(tmp_path_factory, one_torch_thread):
    """The built-in reference documentation cut in two texts: a 500-token BPE and a 30-update source run on the
    first (`src`); the second prepared with the source's tokenizer (`other`), and with another tokenizer (`foreign`)."""
    d = tmp_path_factory.mktemp("init_from")
    docs = list(corpora.reference_topics())
    for name, part in (("a.txt", docs[:len(docs) // 2]), ("b.txt", docs[len(docs) // 2:])):
        files.write_atomic(str(d / name), "".join("\n".join(doc) + "\n\n" for doc in part))
    bpe.Tokenizer.train(files.read_lines(str(d / "a.txt")), 500).save(d / "tok")
    bpe.Tokenizer.train(docs[-1], 300).save(d / "tok2")
    for text, tok, name in (("a.txt", "tok", "data"), ("b.txt", "tok", "other"), ("b.txt", "tok2", "foreign")):
        preparation.prepare([str(d / text)], str(d / tok), str(d / name), valid_fraction=0.05, workers=1, verbose=False)
    train_cli.main([str(a) for a in ("--data", d / "data", "--out", d / "src", "--max-steps", 30, *TINY)])
    for folder in ("data", "src"):
        lock.release(str(d / folder))  # as train_here does: a process holds them until it ends
    return d


def start(capsys, texts, out, *options, steps=2):
    """A short run on the other text: (its losses by step, what it said)."""
    code, err = train_here(capsys, "--data", texts / "other", "--out", out, "--max-steps", steps, *TINY, *options)
    assert code == 0, err
    return losses(out), err


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


@pytest.mark.slow
def test_a_continued_run_starts_where_its_source_ended_with_its_lineage(texts, tmp_path, capsys):
    source_last = losses(texts / "src")[30]
    random, _ = start(capsys, texts, tmp_path / "random")
    continued, said = start(capsys, texts, tmp_path / "cont", "--init-from", texts / "src")
    assert "loaded its encoder and LM head" in said and "fresh optimizer" in said
    assert abs(continued[1] - source_last) < 0.6 and continued[1] < random[1] - 0.5, (continued, source_last, random)
    lineage = {"path": str(texts / "src"), "class": "RobertaForMaskedLM",
               "weights_sha256": sha(texts / "src" / "checkpoint.pt")}
    settings = json.loads((tmp_path / "cont" / "train_config.json").read_text())
    assert settings["init_from"] == lineage and settings["train"]["init_from"] == str(texts / "src")
    assert torch.load(tmp_path / "cont" / "checkpoint.pt", weights_only=True)["state"]["init_from"] == lineage
    # the same weights as a Hugging Face folder (roberta.py export) start the same run
    roberta_cli.main(["export", "--checkpoint", str(texts / "src"), "--out", str(tmp_path / "hf")])
    from_hf, _ = start(capsys, texts, tmp_path / "from_hf", "--init-from", tmp_path / "hf")
    assert from_hf == continued


@pytest.mark.slow
def test_resume_continues_a_continued_run_exactly_and_refuses_another_start(texts, tmp_path, capsys, monkeypatch):
    whole, _ = start(capsys, texts, tmp_path / "whole", "--init-from", texts / "src", "--save-interval", 2, steps=4)
    step = train.train_step
    calls = []

    def stop_at_the_third(*args):
        calls.append(1)
        if len(calls) == 3:
            raise ValueError("interrupted")
        return step(*args)
    monkeypatch.setattr(train, "train_step", stop_at_the_third)
    code, _ = train_here(capsys, "--data", texts / "other", "--out", tmp_path / "cut", "--max-steps", 4, *TINY,
                         "--init-from", texts / "src", "--save-interval", 2)
    assert code and losses(tmp_path / "cut").keys() == {1, 2}
    monkeypatch.setattr(train, "train_step", step)
    code, err = train_here(capsys, "--data", texts / "other", "--out", tmp_path / "cut", "--max-steps", 4, *TINY,
                           "--resume", "--init-from", tmp_path / "whole")
    assert code and "continued from" in err and "not from --init-from" in err and len(err.strip().splitlines()) == 1
    resumed, _ = start(capsys, texts, tmp_path / "cut", "--resume", steps=4)  # without --init-from: its own start
    assert resumed == whole
    assert json.loads((tmp_path / "cut" / "train_config.json").read_text())["init_from"]["path"] == str(texts / "src")
    code, err = train_here(capsys, "--data", texts / "other", "--out", tmp_path / "whole", "--max-steps", 5, *TINY,
                           "--resume", "--init-from", texts / "src")  # the same start: it goes on
    assert code == 0, err


@pytest.fixture(scope="module")
def micro_data(micro_roberta, tmp_path_factory):
    """MICRO_TEXT prepared with micro_roberta's tokenizer (`own`) and with another one (`foreign`)."""
    d = tmp_path_factory.mktemp("micro_data")
    files.write_atomic(str(d / "text.txt"), "\n\n".join(MICRO_TEXT) + "\n")
    bpe.Tokenizer.train(MICRO_TEXT, 280, min_frequency=1).save(d / "tok2")
    for tok, name in ((micro_roberta, "own"), (d / "tok2", "foreign")):
        preparation.prepare([str(d / "text.txt")], str(tok), str(d / name), valid_fraction=0.1, workers=1,
                            verbose=False)
    return d


@pytest.mark.parametrize("source, data, options, message", [
    ("micro", "foreign", [], "python data.py --tokenizer"),  # data in another tokenizer: both named
    (HF_TINY, "own", [], "no tokenizer files"),               # a Hugging Face folder without its tokenizer
    ("nowhere", "own", [], "no such checkpoint folder"),
    ("micro", "own", ["--seq-len", "128"], "longer than the 64 positions"),
], ids=["another-tokenizer", "no-tokenizer", "no-folder", "too-long"])
def test_a_start_that_cannot_continue_on_the_data_is_one_line_and_writes_nothing(micro_roberta, micro_data, tmp_path,
                                                                                  capsys, source, data, options,
                                                                                  message):
    source = micro_roberta if source == "micro" else micro_data / source
    code, err = train_here(capsys, "--data", micro_data / data, "--out", tmp_path / "out", "--max-steps", 3, *TINY,
                           *options, "--init-from", source)
    assert code and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()
    if data == "foreign":
        tokenizer = lambda d: json.loads((micro_data / d / "meta.json").read_text())["tokenizer_sha256"][:12]  # noqa
        assert tokenizer("foreign") in err and tokenizer("own") in err


def test_a_hugging_face_folder_continues_with_its_sizes_its_head_and_its_lineage(micro_roberta, micro_data, tmp_path,
                                                                                  capsys):
    """A quick run from a Hugging Face folder (micro_roberta): its sizes (not --config small's, said in one line),
    its weights and LM head exactly, the lineage recorded."""
    code, err = train_here(capsys, "--data", micro_data / "own", "--out", tmp_path / "run", "--max-steps", 3, *TINY,
                           "--config", "small", "--init-from", micro_roberta)
    assert code == 0, err
    assert "loaded its encoder and LM head" in err and "not --config small's (hidden 256" in err
    settings = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert settings["model"]["hidden_size"] == 128 and settings["model"]["max_positions"] == 64
    assert settings["init_from"]["weights_sha256"] == sha(micro_roberta / "model.safetensors")
    code, err = train_here(capsys, "--data", micro_data / "own", "--out", tmp_path / "run", "--max-steps", 3, *TINY,
                           "--init-from", micro_roberta)  # into a run's folder: only with --resume or --overwrite
    assert code and "already holds a checkpoint" in err
    cfg = train.TrainConfig(data=str(micro_data / "own"), init_from=str(micro_roberta), seq_len=32)
    given = train.init_from(cfg, settings_hash(micro_data / "own")).state
    source = roberta.load_pretrained(str(micro_roberta), verbose=False).state_dict()
    assert given.keys() == source.keys() and all(torch.equal(given[k], source[k]) for k in given)


def settings_hash(data_dir):
    """The tokenizer fingerprint data.py recorded in a prepared folder's meta.json."""
    return json.loads((data_dir / "meta.json").read_text())["tokenizer_sha256"]


@pytest.mark.slow
def test_the_classroom_recipe_export_continue_finetune(texts, tmp_path, capsys):
    """README's classroom recipe at test size: a run exported as a Hugging Face folder, continued on another text,
    finetuned on SST-2; a finetuned model continued in turn gives its encoder only."""
    sst2 = shared_path("glue", "SST-2")
    roberta_cli.main(["export", "--checkpoint", str(texts / "src"), "--out", str(tmp_path / "hf")])
    start(capsys, texts, tmp_path / "cont", "--init-from", tmp_path / "hf", steps=3)
    roberta_cli.main(["export", "--checkpoint", str(tmp_path / "cont"), "--out", str(tmp_path / "cont-hf")])
    assert roberta.load_pretrained(str(tmp_path / "cont-hf"), verbose=False).cfg.hidden_size == 128
    finetune_cli.main(["--task", "sst2", "--data", sst2, "--checkpoint", str(tmp_path / "cont"), "--out",
                       str(tmp_path / "sst2"), "--epochs", "1", "--max-train-examples", "32", "--max-eval-examples",
                       "32", "--no-progress"])
    assert (tmp_path / "sst2" / "metrics.json").exists()
    _, said = start(capsys, texts, tmp_path / "again", "--init-from", tmp_path / "sst2", steps=1)
    assert "finetuned RobertaForSequenceClassification" in said and "loaded its encoder only; new: lm_head" in said
    cfg = train.TrainConfig(data=str(texts / "other"), init_from=str(tmp_path / "sst2"), seq_len=32)
    finetuned = torch.load(tmp_path / "sst2" / "checkpoint.pt", weights_only=True)["model"]
    given = train.init_from(cfg, settings_hash(texts / "other")).state
    assert set(given) == {k for k in finetuned if k.startswith("roberta.")}
    assert all(torch.equal(given[k], finetuned[k]) for k in given)


@pytest.mark.slow
def test_two_processes_equal_one_and_the_other_formats_and_bf16_start_from_the_source(texts, tmp_path):
    """2 gloo processes x 2 micro-batches against 1 process, both continued from the source; bf16 and the
    token-budget formats continue from it too."""
    src = ["--init-from", texts / "src", "--data", texts / "other", "--max-steps", 3, *TINY]
    run_together([*src, "--out", tmp_path / "one"],
                 ["torchrun", 2, *src, "--out", tmp_path / "two", "--micro-batch-size", 2])
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert one.keys() == two.keys() == {1, 2, 3} and all(abs(one[s] - two[s]) < 1e-3 for s in one), (one, two)
    run_together([*src, "--out", tmp_path / "bf16", "--amp", "bf16"], [*src, "--out", tmp_path / "doc",
                                                                       "--format", "doc-sentences"])
    assert abs(losses(tmp_path / "bf16")[1] - one[1]) < 0.05
    assert losses(tmp_path / "doc")[1] < 6.0  # a random start is above ln(500) = 6.2


@pytest.mark.slow
def test_bench_continue_puts_the_first_losses_beside_the_source_and_a_random_start(texts, capsys):
    import bench
    bench.main(["continue", "--init-from", str(texts / "src"), "--data", str(texts / "other"), "--steps", "2",
                "--batch-size", "8", "--seq-len", "32", "--device", "cpu"])
    out = capsys.readouterr().out
    assert f"its last logged loss: {losses(texts / 'src')[30]:.3f} at its step 30" in out
    rows = {line.split(" | ")[0][2:]: [float(v) for v in line.strip(" |").split(" | ")[1:]]
            for line in out.splitlines() if line.startswith("| continued") or line.startswith("| random")}
    continued, random = rows["continued from the source"], rows["random weights, same sizes"]
    assert len(continued) == len(random) == 2 and continued[0] < random[0] - 0.5
