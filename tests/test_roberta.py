import dataclasses
import json
import os

import pytest
import torch
import torch.nn.functional as F

import evaluate
import roberta
from conftest import ROOT
from machinery.formats import checkpoints, hf
from machinery.commands import roberta_cli
from machinery.basics import speed
from roberta import (RobertaConfig, RobertaForMaskedLM, RobertaForMultipleChoice, RobertaForQuestionAnswering,
                     RobertaForSequenceClassification)

HF = os.path.join(ROOT, "tests", "fixtures", "hf_tiny")  # made by tests/make_model_fixture.py
EXPECTED = torch.load(os.path.join(HF, "expected.pt"), weights_only=True)
IDS, CHOICE = EXPECTED["input_ids"], EXPECTED["choice_ids"]


def load(name, cls):
    return roberta.load_pretrained(os.path.join(HF, name), cls=cls, verbose=False).eval()


# ---------------------------------------------------------------- against transformers' outputs
@pytest.mark.parametrize("folder", ["mlm", "mlm_bin"])
def test_masked_lm_matches_transformers(folder):
    model = load(folder, RobertaForMaskedLM)
    with torch.no_grad():
        torch.testing.assert_close(model(IDS), EXPECTED["mlm"], atol=1e-5, rtol=0)
        loss = model(IDS, labels=EXPECTED["mlm_labels"])
    torch.testing.assert_close(loss, EXPECTED["mlm_loss"], atol=1e-5, rtol=0)


def test_heads_match_transformers():
    with torch.no_grad():
        torch.testing.assert_close(load("cls", RobertaForSequenceClassification)(IDS), EXPECTED["cls"],
                                   atol=1e-5, rtol=0)
        reg = load("reg", RobertaForSequenceClassification)
        assert reg.num_labels == 1
        torch.testing.assert_close(reg(IDS), EXPECTED["reg"], atol=1e-5, rtol=0)
        start, end, _ = load("qa", RobertaForQuestionAnswering)(IDS)
        torch.testing.assert_close(start, EXPECTED["qa_start"], atol=1e-5, rtol=0)
        torch.testing.assert_close(end, EXPECTED["qa_end"], atol=1e-5, rtol=0)
        torch.testing.assert_close(load("mc", RobertaForMultipleChoice)(CHOICE), EXPECTED["mc"], atol=1e-5, rtol=0)


def test_explicit_attention_mask_equals_pad_mask():
    model = load("mlm", RobertaForMaskedLM)
    with torch.no_grad():
        torch.testing.assert_close(model(IDS, attention_mask=IDS.ne(1).long()), model(IDS))


def test_save_pretrained_writes_transformers_layout(tmp_path):
    """Same tensor names and shapes as transformers' own save_pretrained, and a lossless round trip.
    (tests/make_model_fixture.py checked that transformers loads these files to identical outputs.)"""
    assert EXPECTED["roundtrip_max_diff"] < 1e-5
    for name, cls in [("mlm", RobertaForMaskedLM), ("cls", RobertaForSequenceClassification),
                      ("qa", RobertaForQuestionAnswering), ("mc", RobertaForMultipleChoice)]:
        model = load(name, cls)
        out = tmp_path / name
        roberta.save_pretrained(model, out)
        ours = hf.load_safetensors(out / "model.safetensors")
        theirs = hf.load_safetensors(os.path.join(HF, name, "model.safetensors"))
        extra = {k for k in ours if k.startswith("answerable.")}  # SQuAD 2.0's answerability head
        assert set(ours) - extra == set(theirs)
        assert all(ours[k].shape == theirs[k].shape for k in theirs)
        with open(out / "config.json") as f:
            assert json.load(f)["architectures"] == [cls.__name__]
        again = roberta.load_pretrained(out, cls=cls, verbose=False).eval()
        x = CHOICE if name == "mc" else IDS
        with torch.no_grad():
            a, b = model(x), again(x)
        for u, v in zip(a if isinstance(a, tuple) else [a], b if isinstance(b, tuple) else [b]):
            torch.testing.assert_close(u, v, atol=0, rtol=0)


# ---------------------------------------------------------------- the released numerics
def test_positions_start_after_pad_and_padding_is_invisible():
    model = load("mlm", RobertaForMaskedLM)
    short = torch.tensor([[0, 10, 11, 12, 2]])
    padded = torch.tensor([[0, 10, 11, 12, 2, 1, 1, 1]])
    with torch.no_grad():
        torch.testing.assert_close(model(padded)[:, :5], model(short), atol=1e-6, rtol=0)
    # the position table has max_positions + pad_id + 1 rows, the pad row zero at initialisation
    cfg = RobertaConfig.preset("tiny", vocab_size=50)
    fresh = RobertaForMaskedLM(cfg)
    assert fresh.roberta.embeddings.positions.weight.shape[0] == 514
    assert fresh.roberta.embeddings.positions.weight[1].abs().sum() == 0
    assert fresh.roberta.embeddings.tokens.weight[1].abs().sum() == 0


def test_initialisation_is_berts():
    model = RobertaForMaskedLM(RobertaConfig.preset("small", vocab_size=1000))
    w = model.roberta.layers[0].ffn_in.weight
    assert abs(w.std().item() - 0.02) < 0.001 and model.roberta.layers[0].ffn_in.bias.abs().sum() == 0
    assert torch.all(model.roberta.layers[0].attn_norm.weight == 1) and torch.all(model.lm_head.bias == 0)
    assert model.roberta.layers[0].attn_norm.eps == 1e-5


def test_preset_sizes_are_table_9():
    # transformers' roberta-base / roberta-large count 768 / 1024 more: an all-zero token-type row
    # that RoBERTa never uses (we fold it into the positions on load and write zeros on save)
    with torch.device("meta"):
        base = RobertaForMaskedLM(RobertaConfig.preset("base"))
        large = RobertaForMaskedLM(RobertaConfig.preset("large"))
    assert roberta.num_parameters(base) == 124_697_433 - 768
    assert roberta.num_parameters(large) == 355_412_057 - 1024
    assert (base.cfg.num_layers, base.cfg.hidden_size, base.cfg.num_heads, base.cfg.ffn_size) == (12, 768, 12, 3072)
    assert (large.cfg.num_layers, large.cfg.hidden_size, large.cfg.num_heads, large.cfg.ffn_size) == (24, 1024, 16, 4096)


def test_lm_head_only_on_targets_gives_full_loss():
    torch.manual_seed(0)
    model = RobertaForMaskedLM(RobertaConfig.preset("tiny", vocab_size=300)).eval()
    ids = torch.randint(4, 300, (4, 32))
    labels = torch.where(torch.rand(4, 32) < 0.15, ids, torch.full_like(ids, -100))
    with torch.no_grad():
        full = F.cross_entropy(model(ids).view(-1, 300), labels.view(-1), ignore_index=-100)
        fast = model(ids, labels=labels)
        total = model(ids, labels=labels, reduction="sum")
    torch.testing.assert_close(fast, full)
    torch.testing.assert_close(total, full * labels.ne(-100).sum())


def test_heads_losses_and_shapes():
    torch.manual_seed(0)
    cfg = RobertaConfig.preset("tiny", vocab_size=100)
    ids = torch.randint(4, 100, (3, 10))
    qa = RobertaForQuestionAnswering(cfg)
    start, end, score = qa(ids)
    assert start.shape == end.shape == (3, 10) and score.shape == (3,)
    loss = qa(ids, start_positions=torch.tensor([1, 2, -100]), end_positions=torch.tensor([3, 2, -100]),
              answerable=torch.tensor([1.0, 1.0, 0.0]))
    loss.backward()
    assert torch.isfinite(loss) and qa.answerable.out_proj.weight.grad.abs().sum() > 0
    none = qa(ids, start_positions=torch.full((3,), -100), end_positions=torch.full((3,), -100))
    assert none.item() == 0.0  # no answerable question: no span loss, and no NaN
    mc = RobertaForMultipleChoice(cfg)
    assert mc(ids.view(1, 3, 10)).shape == (1, 3)
    reg = RobertaForSequenceClassification(cfg, num_labels=1)
    assert reg(ids, labels=torch.tensor([0.5, 1.0, 4.0])).ndim == 0


def test_bf16_autocast_and_backward():
    torch.manual_seed(0)
    model = RobertaForMaskedLM(RobertaConfig.preset("tiny", vocab_size=200, dropout=0.0, attention_dropout=0.0))
    ids = torch.randint(4, 200, (2, 16))
    ids[1, 12:] = 1
    labels = torch.where(torch.rand(2, 16) < 0.3, ids, torch.full_like(ids, -100))
    ref = model(ids, labels=labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(ids, labels=labels)
        logits = model(ids)
    assert logits.dtype == torch.bfloat16 and low.dtype == torch.float32
    assert abs(low.item() - ref.item()) < 0.05
    low.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.slow
def test_no_graph_breaks_under_compile():
    import torch._dynamo
    model = RobertaForMaskedLM(RobertaConfig.preset("tiny", vocab_size=100))
    ids = torch.randint(4, 100, (2, 16))
    for padded in (None, False, True):
        explanation = torch._dynamo.explain(model.roberta)(ids, padded=padded)
        assert explanation.graph_break_count == 0 and explanation.graph_count == 1
        torch._dynamo.reset()


# ---------------------------------------------------------------- attention without a mask
def record_masks(monkeypatch):
    """Make roberta's attention record the mask each layer hands it (None: attention without a mask). It wraps
    SelfAttention.forward, not PyTorch's fused kernel, so a student's written-out attention (EXERCISES.md B1)
    passes too."""
    seen, forward = [], roberta.SelfAttention.forward

    def recording(self, x, mask):
        seen.append(mask)
        return forward(self, x, mask)
    monkeypatch.setattr(roberta.SelfAttention, "forward", recording)
    return seen


def test_no_padding_gives_attention_no_mask(monkeypatch):
    model = load("mlm", RobertaForMaskedLM)
    unpadded = IDS[:, :5]  # every row of the fixture is real tokens up to position 5
    assert unpadded.ne(1).all()
    seen = record_masks(monkeypatch)
    with torch.no_grad():
        masked, free = model(unpadded, padded=True), model(unpadded, padded=False)
        assert seen[0] is not None and seen[0].shape == (3, 1, 1, 5) and all(m is None for m in seen[2:])
        torch.testing.assert_close(free, masked, atol=1e-6, rtol=0)
        seen.clear()
        torch.testing.assert_close(model(unpadded), free, atol=0, rtol=0)  # CPU: padding checked, none found
        torch.testing.assert_close(model(unpadded, labels=EXPECTED["mlm_labels"][:, :5], padded=False),
                                   model(unpadded, labels=EXPECTED["mlm_labels"][:, :5]), atol=0, rtol=0)
        assert all(m is None for m in seen)
        seen.clear()
        model(IDS)  # padded rows: the mask goes in
        assert seen[0] is not None and seen[0].shape == (3, 1, 1, 12)
        heads = load("cls", RobertaForSequenceClassification)
        torch.testing.assert_close(heads(unpadded, padded=False), heads(unpadded, padded=True), atol=1e-6, rtol=0)


def test_padding_check_never_reads_an_accelerator_tensor(monkeypatch):
    """Off the CPU, padded=None builds the mask instead of reading the ids back to the host (a sync per
    forward on a GPU). Meta tensors stand in for the accelerator: reading one raises."""
    with torch.device("meta"):
        model = RobertaForMaskedLM(RobertaConfig.preset("tiny", vocab_size=100))
    seen = record_masks(monkeypatch)
    ids = torch.full((2, 8), 5, device="meta")
    assert model(ids).shape == (2, 8, 100)
    assert seen[0] is not None and seen[0].shape == (2, 1, 1, 8)
    model(ids, padded=False)
    assert seen[-1] is None


# ---------------------------------------------------------------- training helpers
@pytest.mark.parametrize("name, dtype, tflops, label", [
    ("NVIDIA H100 80GB HBM3", torch.bfloat16, 989.5, "H100/H200 SXM dense bf16"),
    ("NVIDIA H100 PCIe", torch.bfloat16, 756.5, "H100 PCIe dense bf16"),
    ("NVIDIA H100 NVL", torch.float16, 835.5, "H100/H200 NVL dense fp16"),
    ("NVIDIA H200", torch.bfloat16, 989.5, "H100/H200 SXM dense bf16"),
    ("NVIDIA A100-SXM4-80GB", torch.bfloat16, 312, "A100 dense bf16"),
    ("NVIDIA A100-PCIE-40GB", torch.float32, 19.5, "A100 dense fp32"),
    ("NVIDIA L4", torch.bfloat16, 121, "L4 dense bf16"),
    ("NVIDIA L40S", torch.bfloat16, 362, "L40S dense bf16"),
    ("NVIDIA GeForce RTX 4090", torch.float16, 165.2, "GeForce RTX 4090 dense fp16"),
    ("NVIDIA A10", torch.bfloat16, 125, "A10 dense bf16"),
    ("Tesla V100-SXM2-16GB", torch.float16, 125, "V100 SXM2 dense fp16"),
    ("Tesla T4", torch.float16, 65, "T4 dense fp16"),
])
def test_peak_flops_is_the_datasheets_dense_figure(monkeypatch, name, dtype, tflops, label):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    flops, got = speed.peak_flops("cuda", dtype)
    assert flops == pytest.approx(tflops * 1e12) and got.startswith(label)


def test_peak_flops_tf32_and_fallback_to_measurement(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100-SXM4-40GB")
    monkeypatch.setattr(torch, "get_float32_matmul_precision", lambda: "high")  # float32 runs on tensor cores
    assert speed.peak_flops("cuda:0", torch.float32)[0] == pytest.approx(156e12)
    assert speed.spec_peak("Tesla T4", torch.float32)[0] == pytest.approx(8.1e12)  # no TF32 on Turing
    # no datasheet figure: an unknown GPU, AWS's A10G, bf16 on a V100; and the CPU is always measured
    for name, dtype in [("NVIDIA GeForce GTX 1080", torch.float16), ("NVIDIA A10G", torch.bfloat16),
                        ("Tesla V100-PCIE-16GB", torch.bfloat16)]:
        assert speed.spec_peak(name, dtype) is None
    sizes = []
    monkeypatch.setattr(speed, "matmul_peak", lambda device, dtype, n=1024, repeat=8: sizes.append(n) or 1.5e11)
    assert speed.peak_flops("cpu", torch.bfloat16) == (1.5e11, "measured peak")
    # an unlisted GPU, and a MIG slice of a listed one (a share of its compute): measured, by a saturating product
    for name in ("Some Future GPU", "NVIDIA H100 80GB HBM3 MIG 1g.10gb"):
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
        assert speed.peak_flops("cuda", torch.bfloat16) == (1.5e11, "measured peak")
    assert sizes == [1024, 8192, 8192]


def test_adamw_has_the_papers_settings_and_trains_as_before(monkeypatch):
    torch.manual_seed(0)
    cfg = RobertaConfig.preset("tiny", vocab_size=100, dropout=0.0, attention_dropout=0.0)
    ours, before = RobertaForMaskedLM(cfg), RobertaForMaskedLM(cfg)
    before.load_state_dict(ours.state_dict())
    opt = roberta.adamw(ours, 1e-3, 0.01)
    assert (roberta.ADAM_BETAS, roberta.ADAM_EPS) == ((0.9, 0.98), 1e-6)  # Section 3.1, Tables 9 and 10
    assert opt.defaults["betas"] == (0.9, 0.98) and opt.defaults["eps"] == 1e-6 and opt.defaults["fused"]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]
    # what train.py built by hand until now, on the CPU: the same numbers, bit for bit
    ref = torch.optim.AdamW(roberta.param_groups(before, 0.01), lr=1e-3, betas=(0.9, 0.98), eps=1e-6, fused=True)
    ids = torch.randint(4, 100, (2, 12))
    for model, o in [(ours, opt), (before, ref)]:
        for _ in range(3):
            o.zero_grad()
            model(ids, labels=ids).backward()
            o.step()
    for a, b in zip(ours.parameters(), before.parameters()):
        assert torch.equal(a, b)
    # where PyTorch has no fused kernel for the parameters' device, the default implementation
    adamw = torch.optim.AdamW

    def no_fused(*args, fused=None, **kwargs):
        if fused:
            raise RuntimeError("`fused=True` requires all the params to be floating point Tensors of supported devices")
        return adamw(*args, fused=fused, **kwargs)
    monkeypatch.setattr(torch.optim, "AdamW", no_fused)
    assert not roberta.adamw(ours, 1e-3, 0.01).defaults["fused"]
    assert roberta.adamw(ours, 1e-3, 0.01, fused=False).defaults["eps"] == 1e-6


def test_pre_ln_exercise_lines_run():
    """The two lines Layer.forward's docstring offers for pre-LN, and RobertaModel's final LayerNorm, make a
    working pre-LN model: the exercise EXERCISES.md points at stays true to the code."""
    doc = roberta.Layer.forward.__doc__
    lines = [line.strip() for line in doc.splitlines() if line.strip().startswith(("x = x +", "return x +"))]
    assert len(lines) == 2
    namespace = {"F": F}
    exec("def pre_ln(self, x, mask):\n" + "".join(f"    {line}\n" for line in lines), namespace)
    torch.manual_seed(0)
    cfg = RobertaConfig.preset("tiny", vocab_size=100, dropout=0.0, attention_dropout=0.0, init_std=0.2)
    model = RobertaForMaskedLM(cfg)
    ids = torch.randint(4, 100, (2, 10))
    post = model(ids)
    norm = torch.nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)  # the final LayerNorm
    x = model.roberta.embeddings(ids)
    for layer in model.roberta.layers:
        x = namespace["pre_ln"](layer, x, None)
    pre = model.lm_head(norm(x), model.roberta.embeddings.tokens.weight)
    assert pre.shape == post.shape and not torch.allclose(pre, post, atol=1e-3)
    pre.sum().backward()
    assert model.roberta.layers[0].attn_norm.weight.grad.abs().sum() > 0
    source = open(roberta.__file__).read()
    assert "# pre-LN: self.final_norm = nn.LayerNorm(cfg.hidden_size" in source
    assert "return x  # pre-LN: return self.final_norm(x)" in source


class ToyTok:
    """Enough of bpe.Tokenizer for fill_mask: one id per printable ASCII character."""
    bos_id, pad_id, eos_id, unk_id, mask_id = 0, 1, 2, 3, 99

    def encode(self, text):
        return [ord(c) - 28 for c in text]

    def decode(self, ids):
        return "".join(chr(i + 28) for i in ids)


def test_fill_mask_top_k_range():
    model = RobertaForMaskedLM(RobertaConfig.preset("tiny", vocab_size=100))
    assert len(evaluate.fill_mask(model, ToyTok(), "ab <mask>.", 100)) == 100
    assert evaluate.mask_inputs(ToyTok(), "ab <mask>.") == [0, 69, 70, 99, 18, 2]  # no space before <mask>
    for k in (0, -3, 101, 2.5, True):
        with pytest.raises(ValueError, match="top-k must be an integer from 1 to the vocabulary size, 100: got "):
            evaluate.fill_mask(model, ToyTok(), "ab <mask>.", k)
    with pytest.raises(ValueError, match="exactly one <mask>"):
        evaluate.fill_mask(model, ToyTok(), "ab <mask> <mask>.", 5)


# ---------------------------------------------------------------- export to transformers
EXPORT = os.path.join(ROOT, "tests", "fixtures", "export_tiny")  # made by tests/make_export_fixture.py


def test_export_tokenizes_and_fills_masks_as_transformers_does(tmp_path):
    """transformers' AutoTokenizer and pipeline("fill-mask") on our export (recorded in expected.json) read
    the same ids as fill_mask and rank the same top-k: <mask> takes the space on its left, as roberta-base's."""
    import bpe
    roberta_cli.main(["export", "--checkpoint", EXPORT, "--out", str(tmp_path / "hf")])
    out = tmp_path / "hf"
    with open(out / "tokenizer_config.json") as f:
        config = json.load(f)
    with open(out / "special_tokens_map.json") as f:
        special = json.load(f)
    mask = {"content": "<mask>", "single_word": False, "lstrip": True, "rstrip": False, "normalized": False}
    tokens = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
              "pad_token": "<pad>", "cls_token": "<s>"}
    assert config == {"tokenizer_class": "RobertaTokenizer", "model_max_length": 64, "add_prefix_space": False,
                      "errors": "replace", **tokens, "mask_token": {"__type": "AddedToken", **mask}}
    assert special == {**tokens, "mask_token": mask}
    for name in ("vocab.json", "merges.txt"):
        assert (out / name).read_bytes() == open(os.path.join(EXPORT, name), "rb").read()
    with open(os.path.join(EXPORT, "expected.json")) as f:
        expected = json.load(f)
    assert expected["loaded_as"] == {"tokenizer_class": "RobertaTokenizer", "model_max_length": 64}
    model, tok = roberta.load_pretrained(out, verbose=False), bpe.Tokenizer.load(out)
    for case in expected["prompts"]:
        assert " <mask>" in case["text"]
        assert evaluate.mask_inputs(tok, case["text"]) == case["input_ids"]
        top = evaluate.mask_probabilities(model, tok, case["text"]).topk(5)
        assert top.indices.tolist() == case["top_ids"]
        torch.testing.assert_close(top.values, torch.tensor(case["top_scores"]), atol=1e-6, rtol=0)
        texts = [t for t, _ in evaluate.fill_mask(model, tok, case["text"], 5)]
        assert texts == [tok.decode([i]) for i in case["top_ids"]]


def run_export(capsys, *args):
    """roberta.py export's exit status and its output, one line expected."""
    with pytest.raises(SystemExit) as exit_:
        roberta_cli.main(["export", *map(str, args)])
    captured = capsys.readouterr()
    message = str(exit_.value.code) if isinstance(exit_.value.code, str) else captured.err
    assert exit_.value.code not in (0, None) and len(message.strip().splitlines()) == 1, message
    return message


def test_export_refuses_bad_input_in_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    assert "no such checkpoint folder" in run_export(capsys, "--checkpoint", tmp_path / "nope", "--out", out)
    assert not out.exists()
    (tmp_path / "file").write_text("keep me")
    assert "is a file, not a folder" in run_export(capsys, "--checkpoint", EXPORT, "--out", tmp_path / "file")
    assert (tmp_path / "file").read_text() == "keep me"
    assert "is the checkpoint folder itself" in run_export(capsys, "--checkpoint", EXPORT, "--out", EXPORT)
    (tmp_path / "torn").mkdir()
    (tmp_path / "torn" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert "not a readable checkpoint" in run_export(capsys, "--checkpoint", tmp_path / "torn", "--out", out)
    assert not out.exists()
    (tmp_path / "other").mkdir()  # a tokenizer that does not fit the model: nothing is written
    for name in ("checkpoint.pt", "merges.txt"):
        (tmp_path / "other" / name).write_bytes(open(os.path.join(EXPORT, name), "rb").read())
    (tmp_path / "other" / "vocab.json").write_text(json.dumps({"<s>": 0, "<pad>": 1}))
    assert "which is not in vocab.json" in run_export(capsys, "--checkpoint", tmp_path / "other", "--out", out)
    assert not out.exists()
    # a finished export is kept unless --overwrite
    roberta_cli.main(["export", "--checkpoint", EXPORT, "--out", str(out)])
    before = (out / "model.safetensors").read_bytes()
    msg = run_export(capsys, "--checkpoint", EXPORT, "--out", out)
    assert "already holds an exported model (config.json); pass --overwrite" in msg
    roberta_cli.main(["export", "--checkpoint", EXPORT, "--out", str(out), "--overwrite"])
    assert (out / "model.safetensors").read_bytes() == before
    assert "the following arguments are required: --checkpoint" in run_export(capsys, "--out", out)


@pytest.mark.slow
def test_export_command_line(tmp_path, capsys):
    """As a user types it: one line on stderr, no traceback; --help explains every option."""
    import subprocess
    import sys
    bad = subprocess.run([sys.executable, os.path.join(ROOT, "roberta.py"), "export", "--checkpoint",
                          str(tmp_path / "nope"), "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [f"error: {tmp_path / 'nope'}: no such checkpoint folder"]
    with pytest.raises(SystemExit) as exit_:
        roberta_cli.main(["export", "--help"])
    helped = capsys.readouterr().out
    assert exit_.value.code == 0
    for option, words in [("--checkpoint", "checkpoint.pt"), ("--out", "folder to write"), ("--overwrite", "replace")]:
        assert option in helped and words in helped


# ---------------------------------------------------------------- bad input
def test_bad_inputs(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown config 'huge'"):
        RobertaConfig.preset("huge")
    model = RobertaForMaskedLM(RobertaConfig.preset("tiny", vocab_size=100, max_positions=16))
    with pytest.raises(ValueError, match="sequence of 17 tokens is longer than the model's 16 positions"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(FileNotFoundError):
        roberta.load_pretrained(tmp_path / "missing")
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="not a RoBERTa config"):
        roberta.load_pretrained(tmp_path / "bert")
    small = RobertaForMaskedLM(RobertaConfig.preset("tiny", vocab_size=100))
    state = {k: v for k, v in load("mlm", RobertaForMaskedLM).state_dict().items()}
    with pytest.raises(ValueError, match=r"roberta.embeddings.tokens.weight has shape \[100, 32\] in the "
                                         r"checkpoint but \[100, 128\] in the model"):
        checkpoints.load_state(small, checkpoints.Weights({}, state, "RobertaForMaskedLM", None, "ours", "checkpoint"))
    (tmp_path / "torn").mkdir()
    (tmp_path / "torn" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        roberta.load_pretrained(tmp_path / "torn")


def test_classifier_checkpoint_as_masked_lm_refused_when_asked(tmp_path):
    """A finetuned classifier has no trained LM head: fill-mask and perplexity must not run a random one."""
    with pytest.raises(ValueError) as err:
        roberta.load_pretrained(os.path.join(HF, "cls"), RobertaForMaskedLM, verbose=False, new_head_ok=False)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(os.path.join(HF, "cls") + ": ")
    assert "holds a RobertaForSequenceClassification" in msg and "LM head is untrained" in msg
    # the same for finetune.py's own checkpoint.pt
    cls = load("cls", RobertaForSequenceClassification)
    (tmp_path / "rte").mkdir()
    torch.save({"model": cls.state_dict(), "config": dataclasses.asdict(cls.cfg),
                "class": "RobertaForSequenceClassification", "num_labels": 3}, tmp_path / "rte" / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"rte: the checkpoint holds a RobertaForSequenceClassification; its LM "
                                         r"head is untrained"):
        roberta.load_pretrained(tmp_path / "rte", RobertaForMaskedLM, new_head_ok=False)
    with pytest.raises(ValueError, match="holds a RobertaForMaskedLM; its classification head is untrained"):
        roberta.load_pretrained(os.path.join(HF, "mlm"), RobertaForSequenceClassification, new_head_ok=False)
    # a checkpoint that has the head loads; by default a missing head is still initialised
    again = roberta.load_pretrained(tmp_path / "rte", RobertaForSequenceClassification, verbose=False,
                                    new_head_ok=False)
    assert again.num_labels == 3 and torch.equal(again.classifier.out_proj.weight, cls.classifier.out_proj.weight)
    roberta.load_pretrained(os.path.join(HF, "mlm"), RobertaForMaskedLM, verbose=False, new_head_ok=False)
    assert roberta.load_pretrained(tmp_path / "rte", RobertaForMaskedLM, verbose=False).lm_head.bias.abs().sum() == 0


def test_mlm_checkpoint_into_classifier_says_new_head(capsys):
    model = roberta.load_pretrained(os.path.join(HF, "mlm"), cls=RobertaForSequenceClassification, num_labels=3)
    err = capsys.readouterr().err
    assert "newly initialised classifier" in err and "unused from the checkpoint: lm_head" in err
    assert model.classifier.out_proj.weight.shape == (3, 32)
    torch.testing.assert_close(model.roberta.embeddings.tokens.weight,
                               load("mlm", RobertaForMaskedLM).roberta.embeddings.tokens.weight)
