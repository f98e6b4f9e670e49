"""Generate tests/fixtures/export_tiny/: a tiny trained model, and what transformers makes of its export.

How it was made (once, by hand; transformers is not needed to run the tests):

    python -m venv --system-site-packages ../refenv
    ../refenv/bin/pip install transformers==5.23.0
    ../refenv/bin/python tests/make_export_fixture.py          # reads ../shared/data (tiny shakespeare)

A byte-level BPE of 400 tokens is trained (bpe.Tokenizer.train) on the start of tiny shakespeare, and a
tiny RoBERTa (2 layers, hidden 32, 64 positions; seed 0) gets random weights: what is tested is that
transformers and we read the same ids and rank the same tokens, not the guesses' quality (a model this
small trained on CPU for minutes only learns the unigram distribution, the same for every prompt, which
would hide a wrong position or a dropped token). The folder keeps what `train.py` would write:
checkpoint.pt (weights only), vocab.json and merges.txt. The script then runs `python roberta.py export`
on it and asks transformers, as a user of the exported folder would: AutoTokenizer's input ids and
pipeline("fill-mask", top_k=5)'s token ids and scores for a few prompts with " <mask>" after a space.
Those are written to expected.json, once checked here against our own evaluate.fill_mask, so that
tests/test_roberta.py can compare without transformers.
"""
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict

import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
import bpe  # noqa: E402
import evaluate  # noqa: E402
import roberta  # noqa: E402

OUT = os.path.join(ROOT, "tests", "fixtures", "export_tiny")
CORPUS = os.path.join(ROOT, "..", "shared", "data", "corpora", "tinyshakespeare", "input.txt")
PROMPTS = ["To be, or not to be: that is the <mask>.", "The king is <mask>.", "What is your <mask>, my lord?",
           "I will <mask> thee."]
TOP_K = 5


def make_model(vocab_size, seq_len=64):
    """A tiny RoBERTa with random weights, large enough (std 0.3, LayerNorms around 1) that its top-k
    depends on every input token and position, and that its probabilities are far from ties."""
    torch.manual_seed(0)
    cfg = roberta.RobertaConfig(vocab_size=vocab_size, hidden_size=32, num_layers=2, num_heads=4, ffn_size=64,
                                max_positions=seq_len)
    model = roberta.RobertaForMaskedLM(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(1.0 + 0.2 * torch.randn(p.shape) if "norm.weight" in name else 0.3 * torch.randn(p.shape))
    return model.eval()


def ask_transformers(folder):
    """What transformers does with an exported folder: input ids, and the fill-mask pipeline's top-k."""
    from transformers import AutoTokenizer, pipeline
    hf_tok = AutoTokenizer.from_pretrained(folder)
    fill = pipeline("fill-mask", model=folder, tokenizer=folder, top_k=TOP_K, device="cpu")
    out = []
    for text in PROMPTS:
        answers = fill(text)
        out.append({"text": text, "input_ids": hf_tok(text)["input_ids"],
                    "top_ids": [a["token"] for a in answers], "top_scores": [a["score"] for a in answers]})
    return out, {"tokenizer_class": type(hf_tok).__name__, "model_max_length": hf_tok.model_max_length}


def main():
    import transformers
    with open(CORPUS, encoding="utf-8") as f:
        text = f.read()[:60000]
    tok = bpe.Tokenizer.train(text.splitlines(), 400)
    model = make_model(len(tok))
    os.makedirs(OUT, exist_ok=True)
    tok.save(OUT)
    torch.save({"model": model.state_dict(), "config": asdict(model.cfg), "class": "RobertaForMaskedLM"},
               os.path.join(OUT, "checkpoint.pt"))
    with tempfile.TemporaryDirectory() as d:
        exported = os.path.join(d, "hf")
        subprocess.run([sys.executable, os.path.join(ROOT, "roberta.py"), "export", "--checkpoint", OUT,
                        "--out", exported], check=True)
        prompts, loaded = ask_transformers(exported)
    for p in prompts:  # ours must agree before the fixture is written; near-ties would make the test flaky
        print(p["text"], [(tok.decode([i]), round(s, 4)) for i, s in zip(p["top_ids"], p["top_scores"])])
        assert evaluate.mask_inputs(tok, p["text"]) == p["input_ids"], p
        assert evaluate.mask_probabilities(model, tok, p["text"]).topk(TOP_K).indices.tolist() == p["top_ids"]
        assert min(a - b for a, b in zip(p["top_scores"], p["top_scores"][1:])) > 1e-5
    with open(os.path.join(OUT, "expected.json"), "w", encoding="utf-8") as f:
        json.dump({"transformers": transformers.__version__, "loaded_as": loaded, "prompts": prompts}, f, indent=1)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
