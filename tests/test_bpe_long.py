"""Long pre-tokens and the two twins of bpe.py: machinery/fast/fast_bpe.py against the plain merge loop
(Tokenizer.apply_merges), PairCounts + learn_merges against learn_merges_naive; and that a long word costs
about the same per character at any length (the plain loop's cost per character grows with the length)."""
import ast
import base64
import os
import random
import string
import time

import pytest

import bpe
from conftest import ROOT
from machinery.fast import fast_bpe

CJK = "".join(chr(c) for c in range(0x4E00, 0x4E00 + 300))
ALPHABETS = {  # (name, alphabet): the long words of the equality tests are drawn from these
    "letters": string.ascii_letters, "lower": string.ascii_lowercase, "ab": "ab",
    "base64": string.ascii_letters + string.digits + "+/", "accents": "éèàüöçñßøå" + "aeiou",
    "cjk": CJK, "emoji": "😀🎉👍🏽🚀", "mixed": string.ascii_lowercase + "é東😀-=_ \u0301",
}


def byte_ids(tok, text):
    return [tok.byte_ids[b] for b in text.encode("utf-8", "surrogatepass")]


def fast(tok, ids):
    return fast_bpe.apply_merges(ids, tok.ranks, tok.merges)


def random_words(rng, lengths):
    for name, alphabet in ALPHABETS.items():
        for n in lengths:
            yield name, "".join(rng.choice(alphabet) for _ in range(n))


# ---------------------------------------------------------------- encoding: the fast path equals the plain loop
def test_fast_equals_plain_on_trained_vocabularies():
    """Small vocabularies trained on random text, random words of every length around the threshold."""
    rng = random.Random(0)
    for seed, alphabet in enumerate(["ab", "abc", "abcd ", "aé東"]):
        text = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 60))) for _ in range(200)]
        tok = bpe.Tokenizer.train(text, vocab_size=bpe.MIN_VOCAB + 40, min_frequency=1)
        assert len(tok.merges) > 10
        for n in list(range(0, 30)) + [bpe.LONG_PIECE, bpe.LONG_PIECE + 1, 500]:
            ids = byte_ids(tok, "".join(rng.choice(alphabet) for _ in range(n)))
            before = list(ids)
            assert fast(tok, ids) == tok.apply_merges(ids), (alphabet, n)
            assert ids == before  # neither changes its input


def test_fast_equals_plain_on_roberta(roberta_tok):
    """RoBERTa's 50,000 merges on long random words: letters, base64-like, repeats, unicode."""
    rng = random.Random(1)
    cases = list(random_words(rng, [150, 1200]))
    cases += [(ch, ch * n) for ch in "a-= 0\n東😀" for n in (101, 2000)]
    cases += [("ab", "ab" * 1200), ("base64 blob", base64.b64encode(rng.randbytes(1500)).decode()),
              ("surrogate", "a\ud800b" * 100)]
    for name, word in cases:
        ids = byte_ids(roberta_tok, word)
        want = roberta_tok.apply_merges(ids)
        assert fast(roberta_tok, ids) == want, name
        assert roberta_tok.encode_piece(word) == want, name
        assert roberta_tok.decode(want) == word, name


def test_encode_of_text_with_long_words_equals_the_plain_loop(roberta_tok):
    """Through encode: the pre-tokens of a text with long words, each merged by the plain loop."""
    rng = random.Random(2)
    text = " ".join(word for _, word in random_words(rng, [3, 40, 400]))
    pieces = roberta_tok.pattern.findall(text)
    assert max(len(p.encode()) for p in pieces) > bpe.LONG_PIECE  # the fast path is taken
    want = [i for p in pieces for i in roberta_tok.apply_merges(byte_ids(roberta_tok, p))]
    assert roberta_tok.encode(text) == want
    assert roberta_tok.encode_with_offsets(text)[0] == want


def test_pieces_are_cached_as_before(roberta_tok):
    """encode keeps each pre-token's ids, short or long, and looks them up next time."""
    word = "x" + "".join(random.Random(7).choice(string.ascii_lowercase) for _ in range(300))
    roberta_tok.cache.clear()
    try:
        ids = roberta_tok.encode(" world " + word)
        assert roberta_tok.cache[" world"] == tuple(roberta_tok.apply_merges(byte_ids(roberta_tok, " world")))
        assert ids[1:] == list(roberta_tok.cache[" " + word])
        roberta_tok.cache[" world"] = (7,)  # a stand-in: the next " world" is this one dict lookup
        assert roberta_tok.encode(" world") == [7]
    finally:
        roberta_tok.cache.clear()


def test_merges_not_in_rank_order_fall_back_to_the_plain_loop():
    """A merges table where a merge makes a pair ranked before it (no trained vocabulary is so): fast_bpe
    says so (None) and encode_piece gives the plain loop's ids."""
    vocab = {i: bytes([i]) for i in range(256)}
    a, b, c = b"abc"
    vocab.update({256: b"ab", 257: b"abc"})
    tok = bpe.Tokenizer(vocab, {(256, c): 257, (a, b): 256})  # rank 0 needs the token made at rank 1
    word = "abc" * 50
    assert fast(tok, list(word.encode())) is None
    assert tok.encode_piece(word) == tok.apply_merges(list(word.encode())) == [257] * 50


def test_positions_of_a_rank_are_merged_left_to_right():
    """Two merges that make the same token (possible in a hand-made table) index the pair (x, x) at the
    right position first; the left one must still merge first, as in the plain loop: [y, x], not [x, y]."""
    vocab = {i: bytes([i]) for i in range(256)}
    vocab.update({256: b"x", 257: b"y"})
    a, b, c, d = b"abcd"
    tok = bpe.Tokenizer(vocab, {(c, d): 256, (a, b): 256, (256, 256): 257})
    ids = list(b"abcdcd")  # -> x (from ab), x, x (from cd) -> y x
    assert fast(tok, ids) == tok.apply_merges(ids) == [257, 256]


def test_fast_bpe_imports_no_core_module():
    with open(os.path.join(ROOT, "machinery", "fast", "fast_bpe.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    names = {n.module if isinstance(n, ast.ImportFrom) else a.name
             for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    assert names == {"heapq"}


# ---------------------------------------------------------------- encoding: cost per character
def seconds_per_char(tok, word, repeat):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        tok.encode_piece(word)
        best = min(best, time.perf_counter() - t)
    return best / len(word)


def test_long_word_cost_per_character_does_not_grow_with_length(roberta_tok):
    """The plain loop's cost per character grows with the length (20x from 10K to 200K characters); the
    fast path's barely does (a log factor, and caches)."""
    rng = random.Random(3)
    word = "".join(rng.choice(string.ascii_letters) for _ in range(200_000))
    short = seconds_per_char(roberta_tok, word[:10_000], repeat=5)
    long = seconds_per_char(roberta_tok, word, repeat=2)
    assert long / short < 5, f"{short * 1e6:.2f} us/char at 10K, {long * 1e6:.2f} us/char at 200K"


def test_bench_long_word_rows(roberta_tok, monkeypatch):
    """bench.py bpe's last table: one row per length, the plain loop up to plain_up_to, checked equal."""
    import bench
    rows = bench.long_word_rows(roberta_tok, [200, 2000], plain_up_to=200)
    assert [n for n, _, _ in rows] == [200, 2000] and all(t > 0 for _, t, _ in rows)
    assert rows[0][2] > 0 and rows[1][2] is None
    monkeypatch.setattr(roberta_tok, "apply_merges", lambda ids: ids)  # a plain loop that merges nothing
    with pytest.raises(RuntimeError, match="differ"):
        bench.long_word_rows(roberta_tok, [200, 2000], plain_up_to=200)


@pytest.mark.slow
def test_a_million_character_word_encodes_in_seconds(roberta_tok):
    rng = random.Random(4)
    word = "".join(rng.choice(string.ascii_lowercase) for _ in range(1_000_000))
    t = time.perf_counter()
    ids = roberta_tok.encode(word)
    seconds = time.perf_counter() - t
    assert seconds < 10, f"{seconds:.1f} s"  # ~1.5 s measured; the plain loop would take hours
    assert roberta_tok.decode(ids) == word and len(ids) < len(word)


# ---------------------------------------------------------------- training: PairCounts equals the plain loop
def twins(texts, n_merges, min_frequency):
    """(naive, incremental): each (merges, count of the pair left, vocab) from the same pre-tokens."""
    counts = bpe.count_pretokens(texts)
    words = [[4 + b for b in w.encode("utf-8", "surrogatepass")] for w in counts]
    freqs = list(counts.values())
    out = []
    for learn in ("naive", "incremental"):
        vocab = {i: bytes([i - 4]) for i in range(4, 260)}
        vocab.update({i: s.encode() for i, s in enumerate(bpe.SPECIALS)})
        if learn == "naive":
            merges, left = bpe.learn_merges_naive([list(w) for w in words], freqs, vocab, n_merges, min_frequency)
        else:
            pairs = bpe.PairCounts([list(w) for w in words], freqs)
            merges, left = bpe.learn_merges(pairs, vocab, n_merges, min_frequency, verbose=False)
        out.append((list(merges.items()), left, vocab))
    return out


@pytest.mark.parametrize("texts, n_merges, min_frequency", [
    (["ab ab ab abc"], 10, 2),                      # hand-checkable: ab, then " ab", then stops (count 1)
    (["ab cd ef gh"], 10, 1),                       # every pair ties: smallest ids first
    (["aaaa aaa aa a aaaaaaa"], 10, 1),             # overlapping pairs: (aa)a, not a(aa)
    (["abab baba abba"] * 3, 5, 1),                 # stops at n_merges
    (["x"], 5, 1),                                  # no pair at all
    (["naïve café 東京 東京都 😀😀"], 30, 1),        # multi-byte characters
])
def test_naive_and_incremental_training_learn_the_same_merges(texts, n_merges, min_frequency):
    naive, incremental = twins(texts, n_merges, min_frequency)
    assert naive == incremental


def test_naive_and_incremental_training_on_random_corpora():
    rng = random.Random(5)
    for alphabet in ("ab ", "abc  ", "aab b\n", "éa 東"):
        texts = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(80))) for _ in range(60)]
        naive, incremental = twins(texts, 60, rng.choice([1, 2, 3]))
        assert naive == incremental
        assert len(naive[0]) > 5  # something was learned


def test_pair_counts_match_a_recount_after_every_merge():
    rng = random.Random(6)
    texts = ["".join(rng.choice("aab c") for _ in range(60)) for _ in range(40)]
    counts = bpe.count_pretokens(texts)
    words, freqs = [[ord(c) for c in w] for w in counts], list(counts.values())
    pairs = bpe.PairCounts(words, freqs)
    for new_id in range(1000, 1030):
        pair, _ = pairs.most_frequent()
        if pair is None:
            break
        pairs.merge(pair, new_id)
        recount = {}
        for word, f in zip(pairs.words, freqs):
            for p in zip(word, word[1:]):
                recount[p] = recount.get(p, 0) + f
        assert {p: c for p, c in pairs.counts.items() if c} == recount
