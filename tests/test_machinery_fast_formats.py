"""The numpy builders of machinery/datafolder/fast_formats.py give exactly the rows of data.py's plain Python formats
(the specification): a change to one without the other fails here."""
import numpy as np
import pytest

import data
from machinery.datafolder import fast_formats, index
from test_data import random_stream


def random_corpus(rng, n_lines, seq_len):
    """A stream in data.py's layout, and stranger ones: lines of 1 to 3 blocks of tokens (+ </s>), lines just
    around a block's size, one-line documents, empty documents (separators in a row), a separator first, and
    sometimes no separator at the end."""
    kind = rng.random(n_lines)
    size = np.where(kind < 0.1, rng.integers(seq_len - 3, seq_len + 2, n_lines),  # around a block
                    np.where(kind < 0.2, rng.integers(seq_len, 3 * seq_len, n_lines), rng.integers(1, 12, n_lines)))
    sep = rng.random(n_lines) < rng.choice([0.02, 0.2, 0.5])  # long, short and one-line documents
    lengths = np.where(sep, 1, size + 1)
    if n_lines > 2 and rng.random() < 0.5:
        lengths[rng.integers(0, n_lines - 1)] = lengths[rng.integers(0, n_lines)] = 1
    if rng.random() < 0.8:
        lengths[-1] = 1
    ends = np.cumsum(lengths).astype(np.int64)
    tokens = rng.integers(4, 1000, int(ends[-1])).astype(np.uint16)
    tokens[ends - 1] = 2
    return tokens, ends


def spec_and_fast(tokens, ends, fmt, seq_len, seed):
    """data.examples by the specification, and the fast builder's rows (or the error each raises)."""
    out = []
    for build in (lambda: data.examples(tokens, ends, fmt, seq_len, 2, seed=seed),
                  lambda: fast_formats.examples(ends, fmt, seq_len, seed)):
        try:
            out.append(build())
        except ValueError as err:
            out.append(str(err))
    return out


@pytest.mark.parametrize("window", [1 << 16, 37, 300])
def test_fast_builders_equal_the_specification(monkeypatch, window):
    monkeypatch.setattr(fast_formats, "WINDOW", window)
    rng = np.random.default_rng(window)
    for n_lines in (1, 2, 3, 7, 50, 400, 3000):
        for seed, seq_len in enumerate((8, 9, 13, 16, 33, 64)):
            tokens, ends = random_corpus(rng, n_lines, seq_len)
            for fmt in data.FORMATS:
                spec, fast = spec_and_fast(tokens, ends, fmt, seq_len, seed)
                assert type(spec) is type(fast), (fmt, n_lines, seq_len, spec, fast)
                assert spec == fast if isinstance(spec, str) else np.array_equal(spec, fast), (fmt, n_lines, seq_len)


def test_examples_built_in_memory_use_the_fast_builders_above_the_threshold(monkeypatch):
    tokens, ends = random_stream(0, 40)
    spec = data.examples(tokens, ends, "segment-pair", 32, 2, seed=1)
    monkeypatch.setattr(data, "SPEC_BELOW", 0)
    monkeypatch.setattr(data, "FORMATS", {**data.FORMATS, "segment-pair": data.FORMATS["segment-pair"]._replace(
        build=None)})  # the specification is not called: the fast builder gives the rows
    assert np.array_equal(index.in_memory(tokens, ends, "segment-pair", 32, 2, seed=1).examples, spec)


def test_first_examples_read_only_the_windows_they_need(monkeypatch):
    tokens, ends = random_stream(0, 300)
    monkeypatch.setattr(fast_formats, "WINDOW", 64)
    full = fast_formats.examples(ends, "full-sentences", 16)
    read = []
    monkeypatch.setattr(fast_formats, "_window",
                        lambda *a, window=fast_formats._window: read.append(a[1]) or window(*a))
    for limit in (0, 1, 100, len(full), len(full) + 5):
        read.clear()
        assert np.array_equal(fast_formats.examples(ends, "full-sentences", 16, limit=limit), full[:limit])
    assert read == list(range(0, len(ends), 64))  # the whole stream for more than it has
    read.clear()
    fast_formats.examples(ends, "full-sentences", 16, limit=100)
    assert read == [0]  # 100 blocks of 15 tokens: one window of 64 lines has them
