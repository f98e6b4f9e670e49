import errno
import os
import shutil
from dataclasses import asdict

import pytest
import torch

import bpe
import evaluate
import roberta
from machinery.formats import checkpoints


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A train.py-like run folder: checkpoint.pt with its training settings, beside its tokenizer."""
    d = tmp_path_factory.mktemp("run")
    tok = bpe.Tokenizer.train(["a small text for a small tokenizer"] * 5, 280, min_frequency=1)
    torch.manual_seed(0)
    model = roberta.RobertaForMaskedLM(roberta.RobertaConfig.preset("tiny", vocab_size=len(tok), max_positions=32))
    checkpoints.save(d / "checkpoint.pt", {"model": model.state_dict(), "config": asdict(model.cfg),
                                          "class": "RobertaForMaskedLM", "train": {"seq_len": 16}})
    tok.save(d)
    return d, model


def test_save_is_atomic_and_load_gives_model_and_tokenizer(folder, tmp_path):
    d, model = folder
    loaded, tok = evaluate.load_checkpoint(d)
    assert len(tok) == loaded.cfg.vocab_size and loaded.cfg == model.cfg
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert checkpoints.train_settings(d) == {"seq_len": 16}
    # a save that fails midway leaves the previous file whole, and no temporary file beside it
    shutil.copy(d / "checkpoint.pt", tmp_path / "checkpoint.pt")
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(Exception):
        checkpoints.save(tmp_path / "checkpoint.pt", {"model": model.state_dict(), "bad": lambda: None})
    assert (tmp_path / "checkpoint.pt").read_bytes() == before and os.listdir(tmp_path) == ["checkpoint.pt"]


def test_load_names_what_is_missing_in_order(folder, tmp_path):
    d, model = folder
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "weights").mkdir()
    shutil.copy(d / "checkpoint.pt", tmp_path / "weights")
    (tmp_path / "tokenizer").mkdir()
    bpe.Tokenizer.load(d).save(tmp_path / "tokenizer")
    shutil.copytree(d, tmp_path / "other")
    bpe.Tokenizer.train(["other words"] * 5, 270, min_frequency=1).save(tmp_path / "other")
    roberta.save_pretrained(model, tmp_path / "hf")
    bpe.Tokenizer.load(d).save(tmp_path / "hf")
    cases = [("nowhere", FileNotFoundError, "nowhere: no such checkpoint folder"),
             ("a_file", FileNotFoundError, "a_file: a file, not a checkpoint folder"),
             ("empty", FileNotFoundError, "empty: not a checkpoint folder: no weights"),
             ("weights", FileNotFoundError, "weights: no tokenizer files"),
             ("tokenizer", FileNotFoundError, "tokenizer: neither checkpoint.pt nor config.json"),
             ("other", ValueError, f"tokens but the model's vocabulary is {model.cfg.vocab_size}")]
    for name, kind, message in cases:
        with pytest.raises(kind, match=message):
            evaluate.load_checkpoint(tmp_path / name)
    # a Hugging Face folder holds no training settings; a classifier has no LM head to fill masks with
    assert checkpoints.train_settings(tmp_path / "hf") == {}
    assert isinstance(evaluate.load_checkpoint(tmp_path / "hf", verbose=False)[0], roberta.RobertaForMaskedLM)
    with pytest.raises(ValueError, match="LM head is untrained"):
        classifier = roberta.RobertaForSequenceClassification(model.cfg, 2)
        checkpoints.save(tmp_path / "tokenizer" / "checkpoint.pt", {"model": classifier.state_dict(), "config":
                        asdict(model.cfg), "class": "RobertaForSequenceClassification", "num_labels": 2})
        evaluate.load_checkpoint(tmp_path / "tokenizer", need_trained_head=True)



# ---------------------------------------------------------------- issue 18: corruption caught, a full disk
def test_a_flipped_byte_inside_a_weight_is_caught_on_load(folder, tmp_path):
    d, model = folder
    assert "checksum" in torch.load(d / "checkpoint.pt", weights_only=True)
    shutil.copytree(d, tmp_path / "run")
    path = tmp_path / "run" / "checkpoint.pt"
    raw = bytearray(path.read_bytes())
    weight = model.state_dict()["roberta.embeddings.tokens.weight"].numpy().tobytes()  # the largest, stored raw
    at = raw.find(weight[:64])
    assert at > 0
    raw[at + len(weight) // 2] ^= 0x40  # one byte of one float, as a disk or a copy might flip it
    path.write_bytes(bytes(raw))
    assert torch.load(path, weights_only=True)  # torch reads it without complaint
    for read in (lambda: checkpoints.read_checkpoint(path), lambda: evaluate.load_checkpoint(tmp_path / "run")):
        with pytest.raises(ValueError, match=f"{path}: damaged: its contents do not match the checksum"):
            read()


def test_checkpoints_without_a_checksum_still_load(folder, tmp_path):
    d, model = folder
    shutil.copytree(d, tmp_path / "old")
    ckpt = torch.load(d / "checkpoint.pt", weights_only=True)
    del ckpt["checksum"]
    torch.save(ckpt, tmp_path / "old" / "checkpoint.pt")  # as saved before issue 18
    loaded, _ = evaluate.load_checkpoint(tmp_path / "old")
    assert torch.equal(loaded.lm_head.bias, model.lm_head.bias)
    fixtures = os.path.join(os.path.dirname(__file__), "fixtures")
    for name in os.listdir(fixtures):
        if os.path.isfile(os.path.join(fixtures, name, "checkpoint.pt")):
            checkpoints.read_checkpoint(os.path.join(fixtures, name, "checkpoint.pt"))


def test_the_checksum_covers_every_tensor_and_value():
    ckpt = {"model": {"w": torch.ones(3), "b": torch.zeros(2, dtype=torch.bfloat16)}, "config": {"n": 1},
            "optimizer": {"state": {0: {"step": torch.tensor(3.0)}}, "param_groups": [{"lr": 1e-3, "params": [0]}]}}
    base = checkpoints.checksum(ckpt)
    assert checkpoints.checksum({**ckpt, "checksum": "x"}) == base  # the checksum entry itself is left out
    changed = [{**ckpt, "model": {**ckpt["model"], "w": torch.tensor([1.0, 1.0, 1.0000001])}},
               {**ckpt, "model": {**ckpt["model"], "w": torch.ones(3, dtype=torch.float64)}},
               {**ckpt, "config": {"n": 2}},
               {**ckpt, "optimizer": {**ckpt["optimizer"], "state": {0: {"step": torch.tensor(4.0)}}}}]
    assert all(checkpoints.checksum(c) != base for c in changed)


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   RuntimeError("[enforce fail at inline_container.cc:595] . unexpected pos 64 vs 0\n"
                                                "PytorchStreamWriter failed writing file data/0: file write failed")])
def test_a_full_disk_is_one_line_naming_the_folder(folder, tmp_path, monkeypatch, error):
    from machinery.basics import cli
    d, model = folder
    path = tmp_path / "checkpoint.pt"
    shutil.copy(d / "checkpoint.pt", path)
    before = path.read_bytes()

    def full(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise error
    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError) as e:
        checkpoints.save(path, {"model": model.state_dict(), "config": asdict(model.cfg)})
    line = cli.describe(e.value)
    assert line.startswith(f"{tmp_path}: could not write checkpoint.pt (") and "\n" not in line
    assert line.endswith("; the previous checkpoint.pt is intact")
    assert "No space left on device" in line or "file write failed" in line
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["checkpoint.pt"]
    with pytest.raises(OSError, match="could not write new.pt .*; nothing was written"):
        checkpoints.save(tmp_path / "new.pt", {"model": model.state_dict(), "config": asdict(model.cfg)})
