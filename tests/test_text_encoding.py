"""Section 4.4's other arm: the character-level BPE (machinery/commands/char_bpe.py), <unk> as a prediction target, and
the text-encoding experiment's bits per byte with the <unk> cost counted (machinery/lab/text_figures.py)."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import bpe
import data
import roberta
from conftest import ROOT
from machinery.commands import char_bpe
from machinery.lab import text_figures

TEXT = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog", "", "the mat and the log"] * 20


@pytest.fixture(scope="module")
def char_tok():
    return char_bpe.train(TEXT, 30)


def test_character_units_and_unknowns(char_tok):
    """The alphabet is the training text's characters; anything else is one <unk> per character."""
    assert set(char_tok.char_ids) == set("".join(TEXT))
    ids = char_tok.encode("the cat ate 東京!")
    assert ids.count(char_tok.unk_id) == 3  # '東', '京' and '!' are not in the training text
    assert char_tok.decode(ids) == "the cat ate <unk><unk><unk>"
    assert text_figures.unknown_bytes(char_tok, ["ate 東京!"]) == [3, 3, 1]
    assert text_figures.unknown_bytes(bpe.Tokenizer.train(TEXT, 300), ["ate 東京!"]) == []  # bytes: no <unk>


def test_merges_are_learned_on_characters_and_never_hold_unk(char_tok):
    assert len(char_tok) == 30 and char_tok.mask_id == 29 and char_tok.special_ids == {0, 1, 2, 3, 29}
    assert all(char_tok.unk_id not in pair for pair in char_tok.merges)
    the = char_tok.encode(" the")
    assert len(the) == 1 and char_tok.vocab[the[0]] == b" the"  # the commonest word became one token


def test_encoding_matches_the_merge_everywhere_rule(char_tok):
    """bpe.Tokenizer's leftmost-first loop on characters gives minbpe's tokens (merge the lowest-ranked pair
    everywhere it occurs, until none has a merge), <unk> included."""
    for piece in (" the", " cat", " dogmat", "matlog", " the東cat", "x" * 150):
        ids = [char_tok.char_ids.get(ch, char_tok.unk_id) for ch in piece]
        while len(ids) > 1:
            pair = min(zip(ids, ids[1:]), key=lambda p: char_tok.ranks.get(p, float("inf")))
            if pair not in char_tok.ranks:
                break
            ids = bpe.merge_word(ids, pair, char_tok.merges[pair])[0]
        assert char_tok.encode_piece(piece) == ids


def test_saved_and_loaded_through_bpe_and_the_command_line(char_tok, tmp_path):
    char_tok.save(tmp_path / "tok")
    loaded = bpe.Tokenizer.load(tmp_path / "tok")  # the one loader: the folder says which kind
    assert loaded.characters
    assert loaded.vocab == char_tok.vocab and loaded.merges == char_tok.merges
    assert loaded.encode("the cat 東") == char_tok.encode("the cat 東")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXT))
    r = subprocess.run([sys.executable, os.path.join(ROOT, "bpe.py"), "train", "--input", str(corpus), "--vocab-size",
                        "300", "--out", str(tmp_path / "cli"), "--characters", "--min-frequency", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "char_bpe.json" in r.stdout
    assert bpe.Tokenizer.load(tmp_path / "cli").characters


def test_unk_can_be_masked_and_the_other_specials_cannot(char_tok):
    """<unk> stands for text, so it can be a target; <s>, </s>, <pad>, <mask> never are."""
    tokens = torch.tensor([[0, 3, 3, 3, 3, 3, 3, 2, 1, 1]])
    _, labels = data.mask_tokens(tokens, char_tok, mask_prob=0.999, generator=torch.Generator().manual_seed(0))
    assert (labels[0, 1:7] == 3).all() and (labels[0, [0, 7, 8, 9]] == -100).all()


def test_bits_per_byte_counts_the_unk_cost(char_tok):
    """bits/byte = (the model's loss on the masked targets, in bits, + 8 bits per byte of each unknown
    character among them) / the bytes the targets spell; recomputed here from the same batches."""
    torch.manual_seed(0)
    model = roberta.RobertaForMaskedLM(roberta.RobertaConfig(vocab_size=len(char_tok), hidden_size=16, num_layers=1,
                                                             num_heads=2, ffn_size=32, max_positions=40))
    lines = ["the cat 東京 sat", "a dog ☃ on the mat", ""] * 6
    out = text_figures.text_figures(model, char_tok, lines, seq_len=32, device="cpu", versions=2)
    tokens, lengths = data.encode_lines(lines, char_tok)
    unk_len = np.mean(text_figures.unknown_bytes(char_tok, lines))
    nats = spelled = unk_targets = 0.0
    for seed in (1234, 1235):
        batches = data.heldout_batches(tokens, np.cumsum(lengths), char_tok, 32, batch_size=32, seed=seed)
        nats += data.evaluate_mlm(model, batches)["loss_sum"]
        for _, labels in batches:
            for t in labels[labels != -100].tolist():
                spelled += unk_len if t == char_tok.unk_id else len(char_tok.vocab[t])
                unk_targets += t == char_tok.unk_id
    assert unk_targets > 0
    assert out["bits_per_byte"] == pytest.approx((nats / math.log(2) + 8 * unk_len * unk_targets) / spelled)
    assert out["unk_share_of_tokens"] == pytest.approx(100 * 3 * 6 / sum(len(char_tok.encode(x)) for x in lines))
    assert 0 < out["unk_cost_share"] < 100
    assert out["coverage"] == pytest.approx(100 * (1 - 3 * 6 / sum(len(x) for x in lines)))  # 3 unknown per pair


def test_heldout_texts_are_non_english_and_code():
    non_english = "\n".join(text_figures.text_lines("non_english"))
    code = "\n".join(text_figures.text_lines("code"))
    assert sum(ord(ch) > 127 for ch in non_english) > 500 and "def " in code and "#include" in code
