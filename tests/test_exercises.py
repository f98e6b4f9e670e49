"""Checks for the write-it-yourself exercises of EXERCISES.md (part B): delete a core function's body, write
it again, then run its check. Each check runs in seconds and says what differs (a shape, a statistic, an id),
not only that something does.

    python -m pytest -q tests/test_exercises.py -k attention     # roberta.SelfAttention.forward
    python -m pytest -q tests/test_exercises.py -k mask_tokens   # data.mask_tokens
    python -m pytest -q tests/test_exercises.py -k merge_word    # bpe.merge_word
    python -m pytest -q tests/test_exercises.py -k linear_lr     # roberta.linear_lr

The references below are written separately from the core, as plainly as possible, so that a check never
compares your code with itself.
"""
import importlib
import math
import os
import random
import re
from collections import Counter

import torch

import bpe
import data
import roberta
from conftest import ROOT


def where_differs(got, want, atol):
    """'at [i, j, ...]: got x, expected y' for the first entry that differs by more than atol, NaN included
    (NaN is never more than atol away, so it is looked for on its own); with NaN, how many entries are."""
    got, want = got.double(), want.double()
    nan = got.isnan() != want.isnan()
    bad = (nan | ((got - want).abs() > atol)).nonzero()
    index = tuple(bad[0].tolist())
    count = f" ({int(nan.sum())} entries are NaN where a number is expected)" if nan.any() else ""
    return f"at {list(index)}: got {got[index].item():.6f}, expected {want[index].item():.6f}{count}"


# ---------------------------------------------------------------------------------------- attention
def reference_attention(module, x, mask, scaled=True):
    """Multi-head scaled dot-product attention written out: softmax(q k^T / sqrt(d)) v, per head."""
    B, T, H = x.shape
    n, d = module.num_heads, H // module.num_heads
    q, k, v = module.qkv(x).split(H, dim=-1)
    heads = []
    for h in range(n):
        qh, kh, vh = (t[..., h * d:(h + 1) * d] for t in (q, k, v))
        scores = qh @ kh.transpose(1, 2) / (math.sqrt(d) if scaled else 1)  # [B, T, T]
        if mask is not None:
            scores = scores.masked_fill(~mask[:, 0], float("-inf"))  # mask: [B, 1, 1, T], True = attend
        heads.append(scores.softmax(-1) @ vh)
    return module.proj(torch.cat(heads, dim=-1))


def test_exercise_attention():
    torch.manual_seed(0)
    cfg = roberta.RobertaConfig(vocab_size=50, hidden_size=12, num_heads=3, ffn_size=24, num_layers=1,
                                attention_dropout=0.0)
    module = roberta.SelfAttention(cfg).eval()
    x = torch.randn(2, 5, 12)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])[:, None, None, :]
    with torch.no_grad():
        for m, what in ((None, "without a mask"), (mask, "with padding masked")):
            got = module(x, m)
            assert isinstance(got, torch.Tensor) and got.shape == x.shape, \
                f"SelfAttention.forward {what} returned shape {getattr(got, 'shape', type(got))}; expected " \
                f"[B, T, H] = {list(x.shape)}"
            want = reference_attention(module, x, m)
            if torch.allclose(got, want, atol=1e-5):
                continue
            hint = ""
            if torch.allclose(got, reference_attention(module, x, m, scaled=False), atol=1e-5):
                hint = " (it equals attention without the 1/sqrt(d) scale)"
            elif m is not None and torch.allclose(got, reference_attention(module, x, None), atol=1e-5):
                hint = " (it equals attention without the mask: are padded keys left out?)"
            elif m is not None and torch.allclose(got, reference_attention(module, x, ~m), atol=1e-5, equal_nan=True):
                hint = (" (it equals attention with the mask inverted: True in `mask` means a key to attend to, False "
                        "a padded key to leave out; a query that may see no key gets softmax of all -inf, NaN)")
            elif got.isnan().any():
                hint = " (NaN: a softmax over keys that are all -inf; which keys does your mask leave out?)"
            assert False, f"SelfAttention.forward {what} differs from softmax(q k^T / sqrt(d)) v {where_differs(got, want, 1e-5)}{hint}"
    # and the whole encoder, with your attention, still equals transformers' logits (tests/fixtures)
    expected = torch.load(os.path.join(ROOT, "tests", "fixtures", "hf_tiny", "expected.pt"), weights_only=True)
    model = roberta.load_pretrained(os.path.join(ROOT, "tests", "fixtures", "hf_tiny", "mlm"), verbose=False).eval()
    with torch.no_grad():
        logits = model(expected["input_ids"])
    assert torch.allclose(logits, expected["mlm"], atol=1e-4), \
        f"the model's logits differ from transformers' {where_differs(logits, expected['mlm'], 1e-4)}"


# ---------------------------------------------------------------------------------------- mask_tokens
class Tok:
    """The ids a masking rule needs: 5 special tokens (0-3 and <mask> last) in a vocabulary of 40. <unk> (3)
    is special, yet it stands for text: it can be a target (data.special_token_mask)."""
    bos_id, pad_id, eos_id, unk_id, mask_id = 0, 1, 2, 3, 39
    special_ids = {0, 1, 2, 3, 39}

    def __len__(self):
        return 40


def test_exercise_mask_tokens():
    tok, g = Tok(), torch.Generator().manual_seed(0)
    tokens = torch.randint(4, 39, (64, 128), generator=g)
    tokens[torch.rand(tokens.shape, generator=g) < 0.1] = tok.unk_id  # unknown characters, ~10% of the text
    tokens[:, 0], tokens[:, -1], tokens[:4, -20:] = tok.bos_id, tok.eos_id, tok.pad_id  # specials in place
    out = data.mask_tokens(tokens.clone(), tok, mask_prob=0.15, generator=g)
    assert isinstance(out, tuple) and len(out) == 2, "mask_tokens must return (inputs, labels)"
    inputs, labels = out
    assert inputs.shape == tokens.shape and labels.shape == tokens.shape, \
        f"inputs {list(inputs.shape)} and labels {list(labels.shape)} must both be shaped like tokens {list(tokens.shape)}"
    special = torch.isin(tokens, torch.tensor(sorted(tok.special_ids - {tok.unk_id})))  # never targets
    selected = labels != -100
    assert not (selected & special).any(), "a special token (<s>, </s>, <pad>) was selected as a target"
    unk = tokens == tok.unk_id
    unk_rate = (selected & unk).sum().item() / unk.sum().item()
    assert abs(unk_rate - 0.15) < 0.05, f"{unk_rate:.1%} of the <unk> tokens were selected; expected 15% (+-5%): " \
                                        f"<unk> stands for text, so it can be a target like any ordinary token"
    assert torch.equal(labels[selected], tokens[selected]), "labels must hold the original token where selected"
    assert torch.equal(inputs[~selected], tokens[~selected]), "a token that is not a target must stay unchanged"
    rate = selected.sum().item() / (~special).sum().item()
    assert abs(rate - 0.15) < 0.01, f"{rate:.1%} of the ordinary tokens were selected; expected 15% (+-1%)"
    n = selected.sum().item()
    shown_mask = (inputs[selected] == tok.mask_id).sum().item() / n
    unchanged = (inputs[selected] == tokens[selected]).sum().item() / n
    assert abs(shown_mask - 0.8) < 0.03, f"of the targets, {shown_mask:.1%} show <mask>; expected 80% (+-3%)"
    assert abs(unchanged - 0.1) < 0.03, f"of the targets, {unchanged:.1%} are unchanged; expected ~10% (+-3%)"
    randoms = inputs[selected & (inputs != tok.mask_id) & (inputs != tokens)]  # replaced, so not an unchanged <unk>
    assert not torch.isin(randoms, torch.tensor([0, 1, 2, 3])).any(), "a random replacement was a special token"
    other = 1 - shown_mask - unchanged
    assert abs(other - 0.1) < 0.03, f"of the targets, {other:.1%} show a random token; expected ~10% (+-3%)"
    # with given draws the rule is exact: the same draws select, split and replace as the reference does
    u = torch.rand((3,) + tuple(tokens.shape), generator=g)
    inputs, labels = data.mask_tokens(tokens.clone(), tok, mask_prob=0.15, draws=u)
    pick = (u[0] < 0.15) & ~special
    want = torch.where(pick, tokens, -100)
    assert torch.equal(labels, want), f"with draws given, target {where_differs(labels, want, 0)} (select where " \
                                      f"draws[0] < mask_prob)"
    assert torch.equal(inputs[pick & (u[1] < 0.8)], torch.full_like(inputs[pick & (u[1] < 0.8)], tok.mask_id)), \
        "with draws given, a target whose draws[1] < 0.8 must show <mask>"


# ---------------------------------------------------------------------------------------- merge_word
def pair_counts(word):
    return Counter(zip(word, word[1:]))


def test_exercise_merge_word():
    rng = random.Random(0)
    cases = [([1, 2, 1, 2], (1, 2)), ([1, 1, 1], (1, 1)), ([5, 1, 2, 2, 1, 2, 6], (1, 2)), ([3], (1, 2))]
    cases += [([rng.choice([1, 2, 3]) for _ in range(rng.randint(0, 12))], (rng.choice([1, 2, 3]), rng.choice([1, 2, 3])))
              for _ in range(300)]
    for word, pair in cases:
        want = []
        i = 0
        while i < len(word):  # left to right, never overlapping: [1, 1, 1] with (1, 1) -> [9, 1]
            if word[i:i + 2] == list(pair):
                want.append(9)
                i += 2
            else:
                want.append(word[i])
                i += 1
        got, changes = bpe.merge_word(list(word), pair, 9)
        assert list(got) == want, f"merge_word({word}, {pair}, 9) gave {list(got)}; expected {want}"
        counts = pair_counts(word)
        for p, sign in changes:
            counts[p] += sign
        counts[pair] = 0  # the trainer drops the merged pair's count itself
        got_counts = {p: c for p, c in counts.items() if c}
        want_counts = {p: c for p, c in pair_counts(want).items() if p != pair}
        assert got_counts == want_counts, (
            f"merge_word({word}, {pair}, 9): the changes {changes} turn the old word's pair counts into "
            f"{got_counts}, but the new word {want} has {want_counts}")


# ---------------------------------------------------------------------------------------- linear_lr
def test_exercise_linear_lr():
    peak, warmup, total = 1e-3, 10, 100
    want = [peak * (s + 1) / warmup if s < warmup else peak * (total - s) / (total - warmup) for s in range(total + 5)]
    for step, w in enumerate(want):
        got = roberta.linear_lr(step, peak, warmup, total)
        assert math.isclose(got, max(w, 0.0), rel_tol=1e-9, abs_tol=1e-15), (
            f"linear_lr(step={step}, peak={peak}, warmup_steps={warmup}, total_steps={total}) = {got}; expected "
            f"{max(w, 0.0)} ({'warmup: peak * (step + 1) / warmup_steps' if step < warmup else 'decay: linear to 0 at total_steps, never below'})")
    assert roberta.linear_lr(0, peak, 0, total) == peak, "with no warmup the first step takes the peak rate"


# ---------------------------------------------------------------------------------------- EXERCISES.md, part B
def test_every_write_it_yourself_exercise_has_its_parts_and_a_check_here():
    with open(os.path.join(ROOT, "EXERCISES.md")) as f:
        part_b = f.read().split("# Part B")[1]
    found = re.split(r"^## ", part_b, flags=re.M)[1:]
    assert len(found) >= 4
    tests = {name for name in globals() if name.startswith("test_exercise_")}
    for ex in found:
        for part in ("**Write.**", "**Check.**", "**Train with it.**"):
            assert part in ex, (ex[:40], part)
        module, name = re.search(r"`(bpe|data|roberta)\.([\w.]+)`", ex.splitlines()[0]).groups()
        obj = importlib.import_module(module)
        for attr in name.split("."):
            obj = getattr(obj, attr)  # the function the exercise names exists
        key = re.search(r"tests/test_exercises.py -k (\w+)", ex).group(1)
        assert f"test_exercise_{key}" in tests, key
