import os
import shutil
from dataclasses import asdict

import pytest
import torch

import bpe
import roberta
from machinery import checkpoints


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
    loaded, tok = checkpoints.load(d)
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
            checkpoints.load(tmp_path / name)
    # a Hugging Face folder holds no training settings; a classifier has no LM head to fill masks with
    assert checkpoints.train_settings(tmp_path / "hf") == {}
    assert isinstance(checkpoints.load(tmp_path / "hf", verbose=False)[0], roberta.RobertaForMaskedLM)
    with pytest.raises(ValueError, match="LM head is untrained"):
        classifier = roberta.RobertaForSequenceClassification(model.cfg, 2)
        checkpoints.save(tmp_path / "tokenizer" / "checkpoint.pt", {"model": classifier.state_dict(), "config":
                        asdict(model.cfg), "class": "RobertaForSequenceClassification", "num_labels": 2})
        checkpoints.load(tmp_path / "tokenizer", need_trained_head=True)
