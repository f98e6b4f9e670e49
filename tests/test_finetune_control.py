"""finetune.py --random-init: the control that finetunes the checkpoint's config and tokenizer from fresh weights,
so that a downstream score can be credited to pretraining only where the pretrained model beats it."""
import argparse

import pytest
import torch

import finetune
import roberta
from machinery.commands import finetune_cli


def model_for(checkpoint, seed, random_init):
    """make_model as setup calls it: seeded first."""
    torch.manual_seed(seed)
    args = argparse.Namespace(task="sst2", checkpoint=str(checkpoint), init_from=None, random_init=random_init,
                              seed=seed)
    return finetune.make_model(args)[0]


def test_random_init_is_a_fresh_model_for_the_seed(micro_roberta):
    """The control's encoder is not the checkpoint's; it is exactly what a fresh model gets for the seed, and
    its head is the pretrained run's head for the same seed (the two arms differ in the encoder alone)."""
    pretrained, control = model_for(micro_roberta, 3, False), model_for(micro_roberta, 3, True)
    saved = roberta.load_pretrained(micro_roberta, verbose=False)
    assert all(not torch.equal(control.roberta.state_dict()[k], v) for k, v in saved.roberta.state_dict().items()
               if v.dim() > 1)  # every weight matrix re-drawn
    torch.manual_seed(3)
    fresh = roberta.RobertaForSequenceClassification(control.cfg, 2)
    assert all(torch.equal(control.state_dict()[k], v) for k, v in fresh.state_dict().items())
    assert all(torch.equal(control.classifier.state_dict()[k], v) for k, v in pretrained.classifier.state_dict().items())
    assert all(torch.equal(pretrained.roberta.state_dict()[k], v) for k, v in saved.roberta.state_dict().items())
    assert not torch.equal(model_for(micro_roberta, 4, True).roberta.embeddings.tokens.weight,
                           control.roberta.embeddings.tokens.weight)  # another seed, another init


def test_random_init_with_init_from_is_refused(micro_roberta, tmp_path):
    args = finetune_cli.parser().parse_args(["--task", "sst2", "--data", str(tmp_path), "--checkpoint", str(micro_roberta),
                                             "--out", str(tmp_path / "o"), "--random-init", "--init-from", str(micro_roberta)])
    with pytest.raises(ValueError, match="--random-init and --init-from"):
        finetune_cli.work(args)
