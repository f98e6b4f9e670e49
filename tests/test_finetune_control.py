"""finetune.py --random-init: the control that finetunes the checkpoint's config and tokenizer from fresh weights,
so that a downstream score can be credited to pretraining only where the pretrained model beats it."""
import argparse

import pytest
import torch

import bpe
import finetune
import roberta
from machinery.commands import finetune_cli

TEXT = ["A man plays the guitar.", "Someone plays music.", "The quick brown fox jumps over the lazy dog."] * 20


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    """A tiny "pretrained" model (seed 0) with a 300-token vocabulary, in the Hugging Face layout."""
    d = tmp_path_factory.mktemp("micro")
    tok = bpe.Tokenizer.train(TEXT, 300, min_frequency=1)
    torch.manual_seed(0)
    cfg = roberta.RobertaConfig.preset("tiny", vocab_size=len(tok), max_positions=64)
    roberta.save_pretrained(roberta.RobertaForMaskedLM(cfg), d)
    tok.save(d)
    return d


def model_for(checkpoint, seed, random_init):
    """make_model as setup calls it: seeded first."""
    torch.manual_seed(seed)
    args = argparse.Namespace(task="sst2", checkpoint=str(checkpoint), init_from=None, random_init=random_init,
                              seed=seed)
    return finetune.make_model(args)[0]


def test_random_init_is_a_fresh_model_for_the_seed(micro):
    """The control's encoder is not the checkpoint's; it is exactly what a fresh model gets for the seed, and
    its head is the pretrained run's head for the same seed (the two arms differ in the encoder alone)."""
    pretrained, control = model_for(micro, 3, False), model_for(micro, 3, True)
    saved = roberta.load_pretrained(micro, verbose=False)
    assert all(not torch.equal(control.roberta.state_dict()[k], v) for k, v in saved.roberta.state_dict().items()
               if v.dim() > 1)  # every weight matrix re-drawn
    torch.manual_seed(3)
    fresh = roberta.RobertaForSequenceClassification(control.cfg, 2)
    assert all(torch.equal(control.state_dict()[k], v) for k, v in fresh.state_dict().items())
    assert all(torch.equal(control.classifier.state_dict()[k], v) for k, v in pretrained.classifier.state_dict().items())
    assert all(torch.equal(pretrained.roberta.state_dict()[k], v) for k, v in saved.roberta.state_dict().items())
    assert not torch.equal(model_for(micro, 4, True).roberta.embeddings.tokens.weight,
                           control.roberta.embeddings.tokens.weight)  # another seed, another init


def test_random_init_with_init_from_is_refused(micro, tmp_path):
    args = finetune_cli.parser().parse_args(["--task", "sst2", "--data", str(tmp_path), "--checkpoint", str(micro),
                                             "--out", str(tmp_path / "o"), "--random-init", "--init-from", str(micro)])
    with pytest.raises(ValueError, match="--random-init and --init-from"):
        finetune_cli.work(args)
