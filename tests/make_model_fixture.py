"""Generate tests/fixtures/hf_tiny/: tiny Hugging Face RoBERTa checkpoints and their outputs.

How it was made (once, by hand; transformers is not needed to run the tests):

    python -m venv --system-site-packages ../refenv
    ../refenv/bin/pip install transformers==5.23.0 safetensors
    ../refenv/bin/python tests/make_model_fixture.py

A tiny config (vocab 100, 2 layers, hidden 32, 4 heads, FFN 64, 32 positions) with random weights
(seed 0): every weight, bias, LayerNorm and the token-type row non-trivial, so that a missed bias, a
wrong epsilon or a dropped token-type row shows. transformers writes each model with its own
save_pretrained (safetensors; the MLM also as pytorch_model.bin) and records its outputs on a padded
batch in expected.pt. The script then checks the other direction: our save_pretrained output, loaded
by transformers, gives the same outputs (the figure is printed and stored as `roundtrip_max_diff`).
"""
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import roberta  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "fixtures", "hf_tiny")
CONFIG = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
              max_position_embeddings=34, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1,
              bos_token_id=0, eos_token_id=2, hidden_act="gelu", hidden_dropout_prob=0.1,
              attention_probs_dropout_prob=0.1)


def inputs():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(4, 100, (3, 12), generator=g)
    ids[:, 0], ids[0, -1] = 0, 2
    ids[1, 8:] = 1   # padded rows
    ids[2, 5:] = 1
    ids[1, 7] = ids[2, 4] = 2
    choice = torch.randint(4, 100, (2, 4, 10), generator=g)
    choice[:, :, 0] = 0
    choice[1, 2, 6:] = 1
    return ids, choice


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g) if name.endswith("weight")
                        else 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def main():
    from transformers import (RobertaConfig, RobertaForMaskedLM, RobertaForMultipleChoice,
                              RobertaForQuestionAnswering, RobertaForSequenceClassification)
    ids, choice = inputs()
    mask = ids.ne(1).long()
    expected = {"input_ids": ids, "choice_ids": choice}
    models = {
        "mlm": RobertaForMaskedLM(RobertaConfig(**CONFIG)),
        "cls": RobertaForSequenceClassification(RobertaConfig(**CONFIG, num_labels=3)),
        "reg": RobertaForSequenceClassification(RobertaConfig(**CONFIG, num_labels=1)),
        "qa": RobertaForQuestionAnswering(RobertaConfig(**CONFIG)),
        "mc": RobertaForMultipleChoice(RobertaConfig(**CONFIG)),
    }
    randomize(models["mlm"], seed=0)
    encoder = models["mlm"].roberta.state_dict()
    for seed, (name, m) in enumerate(models.items()):
        if name != "mlm":
            randomize(m, seed=seed)
            m.roberta.load_state_dict(encoder, strict=False)  # the same encoder everywhere
        m.eval()
        m.save_pretrained(os.path.join(OUT, name))
    torch.save(models["mlm"].state_dict(), os.path.join(tempfile.gettempdir(), "x.bin"))
    os.makedirs(os.path.join(OUT, "mlm_bin"), exist_ok=True)
    models["mlm"].config.to_json_file(os.path.join(OUT, "mlm_bin", "config.json"))
    torch.save({k: v for k, v in models["mlm"].state_dict().items()},
               os.path.join(OUT, "mlm_bin", "pytorch_model.bin"))

    with torch.no_grad():
        expected["mlm"] = models["mlm"](ids, attention_mask=mask).logits
        expected["cls"] = models["cls"](ids, attention_mask=mask).logits
        expected["reg"] = models["reg"](ids, attention_mask=mask).logits
        qa = models["qa"](ids, attention_mask=mask)
        expected["qa_start"], expected["qa_end"] = qa.start_logits, qa.end_logits
        expected["mc"] = models["mc"](choice, attention_mask=choice.ne(1).long()).logits
        labels = torch.full_like(ids, -100)
        labels[0, 3], labels[1, 5], labels[2, 1] = 7, 50, 99
        expected["mlm_labels"] = labels
        expected["mlm_loss"] = models["mlm"](ids, attention_mask=mask, labels=labels).loss

    # the other direction: ours -> save_pretrained -> transformers, for every head
    worst = 0.0
    for name, cls in [("mlm", roberta.RobertaForMaskedLM), ("cls", roberta.RobertaForSequenceClassification),
                      ("reg", roberta.RobertaForSequenceClassification), ("qa", roberta.RobertaForQuestionAnswering),
                      ("mc", roberta.RobertaForMultipleChoice)]:
        ours = roberta.load_pretrained(os.path.join(OUT, name), cls=cls, verbose=False).eval()
        with tempfile.TemporaryDirectory() as d:
            roberta.save_pretrained(ours, d)
            back = type(models[name]).from_pretrained(d).eval()
        x = choice if name == "mc" else ids
        with torch.no_grad():
            a, b = models[name](x, attention_mask=x.ne(1).long()), back(x, attention_mask=x.ne(1).long())
        for key in ("logits", "start_logits", "end_logits"):
            if hasattr(a, key) and getattr(a, key) is not None:
                worst = max(worst, (getattr(a, key) - getattr(b, key)).abs().max().item())
    print(f"ours -> save_pretrained -> transformers: max |diff| = {worst:.2e}")
    assert worst < 1e-5
    expected["roundtrip_max_diff"] = torch.tensor(worst)
    torch.save(expected, os.path.join(OUT, "expected.pt"))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
