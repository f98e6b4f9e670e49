"""The examples index kept beside the data (machinery/datafolder/index.py), and the batches of an epoch: Shuffle, Ragged."""
import os

import numpy as np
import pytest
import torch

import data
from machinery.datafolder import fast_formats
from machinery.fast import orders
from machinery.formats import prepared
from machinery.datafolder import index as kept
from test_data import corpus  # noqa: F401 (the prepared built-in corpus, a fixture)


# ---------------------------------------------------------------- the examples index, kept beside the data
def kept_copy(corpus, tmp_path, monkeypatch):
    """A copy of the prepared corpus, taken as one of the paper's scale (an index is kept above SPEC_BELOW)."""
    import shutil
    monkeypatch.setattr(data, "SPEC_BELOW", 0)
    d, _, tok, _ = corpus
    shutil.copytree(d / "data", tmp_path / "data")
    tokens, ends, _ = prepared.load_split(tmp_path / "data", "train")
    return tmp_path / "data", tokens, ends, tok


def test_kept_index_equals_the_examples_and_is_read_back(corpus, tmp_path, monkeypatch):
    folder, tokens, ends, tok = kept_copy(corpus, tmp_path, monkeypatch)
    built = {}
    for fmt in data.FORMATS:
        ex = built[fmt] = data.examples(tokens, ends, fmt, 64, tok.eos_id, seed=3)
        index = kept.cached_examples(folder, tokens, ends, fmt, 64, tok.eos_id, seed=3)
        assert isinstance(index.examples, np.memmap) and index.examples.dtype == kept.stored_dtype(fmt)
        assert all(np.array_equal(index.examples[f], ex[f]) for f in index.examples.dtype.names)
        assert np.array_equal(index.lengths, data.example_lengths(ex, fmt, 64)) and index.lengths.dtype == np.int32
        step = max(1, len(ex) // 10)
        assert np.array_equal(kept._sample_rows(index.examples.filename, index.examples.dtype, len(ex), 10),
                              index.examples[::step])
        ids, nsp = data.collate(tokens, index.examples[[5, 0, 9]], 64, tok, fmt)
        want_ids, want_nsp = data.collate(tokens, ex[[5, 0, 9]], 64, tok, fmt)
        assert torch.equal(ids, want_ids) and (nsp is None or torch.equal(nsp, want_nsp) and nsp.dtype == torch.long)
    monkeypatch.setattr(fast_formats, "build_examples", None)  # a second start builds nothing: it maps the files
    again = kept.cached_examples(folder, tokens, ends, "segment-pair", 64, tok.eos_id, seed=3, build=False)
    assert np.array_equal(again.examples["b_start"], built["segment-pair"]["b_start"])
    names = sorted(os.listdir(folder / kept.FOLDER))
    assert "train-full-sentences-64.rows" in names and "train-sentence-pair-64-3.json" in names
    assert not [n for n in names if n.endswith(".tmp")]


def test_stale_or_damaged_index_is_rebuilt_or_refused(corpus, tmp_path, monkeypatch, capsys):
    """Never silently used: other data, another version, a damaged description, torn or changed files."""
    folder, tokens, ends, tok = kept_copy(corpus, tmp_path, monkeypatch)
    args = (folder, tokens, ends, "doc-sentences", 32, tok.eos_id)
    want = data.examples(*args[1:])
    kept.cached_examples(*args)
    path = folder / kept.FOLDER / "train-doc-sentences-32"
    stat = os.stat(folder / "train.idx")

    def damage_rows():
        with open(f"{path}.rows", "r+b") as f:
            f.write(np.array([7, 3], np.int64).tobytes())
    damages = {
        "stale": lambda: os.utime(folder / "train.idx", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10 ** 9)),
        "unreadable": lambda: open(f"{path}.json", "w").write("{not json"),
        "torn": lambda: open(f"{path}.len", "ab").write(b"\0\0"),
        "corrupt": damage_rows,
    }
    for why, damage in damages.items():
        damage()
        with pytest.raises(ValueError, match=f"index is {why}.*one process builds it"):
            kept.cached_examples(*args, build=False)
        index = kept.cached_examples(*args)
        assert f"index is {why}" in capsys.readouterr().err
        assert np.array_equal(index.examples["a_start"], want["a_start"])
        assert np.array_equal(index.examples["a_end"], want["a_end"])
    monkeypatch.setattr(kept, "INDEX_VERSION", kept.INDEX_VERSION + 1)
    with pytest.raises(ValueError, match="index is stale"):
        kept.cached_examples(*args, build=False)


def synthetic_folder(folder, n_tokens, seed=0):
    """A data.py folder of random lines (3 to 20 tokens, each ending with </s> = 2; a lone </s> ends a document),
    written directly: a corpus of millions of tokens in a fraction of a second."""
    import json
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 21, n_tokens // 5)
    lengths[rng.random(len(lengths)) < 0.02] = 1  # document ends
    ends = np.cumsum(lengths)
    ends = ends[ends <= n_tokens]
    tokens = rng.integers(5, 1000, int(ends[-1])).astype(np.uint16)
    tokens[ends - 1] = 2
    os.makedirs(folder, exist_ok=True)
    tokens.tofile(os.path.join(folder, "train.bin"))
    ends.astype(np.int64).tofile(os.path.join(folder, "train.idx"))
    meta = {"tokenizer_sha256": "0" * 16, "vocab_size": 1000, "dtype": "uint16", "eos_id": 2,
            "train": {"tokens": int(ends[-1]), "lines": len(ends), "documents": int(np.sum(lengths == 1))},
            "valid": {"tokens": 0, "lines": 0, "documents": 0}}
    with open(os.path.join(folder, "meta.json"), "w") as f:
        json.dump(meta, f)
    return prepared.load_split(folder, "train")[:2]


def test_a_row_damaged_in_the_middle_of_a_large_kept_index_is_caught(tmp_path, monkeypatch, capsys):
    """The kept index carries CRC-32s (one per CHECK_CHUNK, here 1 MiB) written as it was built, and a process
    checks the files whole when it first maps them: a row changed in the middle of a 5 MiB index, to values
    that look right (another row's), is refused naming the file (build=False) or rebuilt."""
    import time
    monkeypatch.setattr(data, "SPEC_BELOW", 0)
    monkeypatch.setattr(kept, "CHECK_CHUNK", 1 << 20)
    tokens, ends = synthetic_folder(tmp_path / "data", 2_500_000)
    args = (tmp_path / "data", tokens, ends, "full-sentences", 8, 2)
    built = kept.cached_examples(*args)
    rows = tmp_path / "data" / kept.FOLDER / "train-full-sentences-8.rows"
    n = len(built.examples)
    assert os.path.getsize(rows) > 5 << 20 and n > 300_000
    want = np.array(built.examples)
    middle = n // 2 + 7
    assert middle % max(1, n // 1024)  # not one of the rows that _sample_rows looks at
    with open(rows, "r+b") as f:
        f.seek(middle * 16)
        f.write(want[middle + 1:middle + 2].tobytes())  # the next row's values: in range, increasing
    kept._verified.clear()  # a new process: it checks the files whole when it first maps them
    start = middle * 16 // (1 << 20) * (1 << 20)
    t = time.perf_counter()
    with pytest.raises(ValueError, match=rf"train-full-sentences-8.rows does not match the checksum written when it "
                                         rf"was built \(bytes {start:,} to {start + (1 << 20):,}\)"):
        kept.cached_examples(*args, build=False)
    elapsed = time.perf_counter() - t
    again = kept.cached_examples(*args)
    assert "rebuilding it" in capsys.readouterr().err
    assert np.array_equal(np.array(again.examples), want)
    kept._verified.clear()
    t = time.perf_counter()
    assert np.array_equal(kept.cached_examples(*args, build=False).examples, want)  # the rebuilt one passes
    print(f"\nthe kept index's check: {os.path.getsize(rows) / 2 ** 20:.1f} MiB in {time.perf_counter() - t:.3f} s "
          f"(refusal: {elapsed:.3f} s)")
    assert time.perf_counter() - t < 5


def test_line_ends_that_do_not_rise_are_named(corpus, tmp_path, monkeypatch):
    """A train.idx whose ends do not rise is refused naming the file and the first bad line, before any
    example is built from it: kept above data.SPEC_BELOW or built in memory below."""
    import shutil
    d, _, tok, _ = corpus
    shutil.copytree(d / "data", tmp_path / "data")
    ends = np.fromfile(tmp_path / "data" / "train.idx", np.int64)
    ends[40], ends[41] = ends[41], ends[40]
    ends.tofile(tmp_path / "data" / "train.idx")
    tokens, ends, _ = prepared.load_split(tmp_path / "data", "train")
    message = rf"data/train.idx: the line ends are not increasing at line 41 \({ends[40]:,} then {ends[41]:,}\)"
    with pytest.raises(ValueError, match=message):
        kept.cached_examples(tmp_path / "data", tokens, ends, "full-sentences", 64, tok.eos_id)
    monkeypatch.setattr(data, "SPEC_BELOW", 0)
    with pytest.raises(ValueError, match=message):
        kept.cached_examples(tmp_path / "data", tokens, ends, "doc-sentences", 64, tok.eos_id)
    assert not os.path.exists(tmp_path / "data" / kept.FOLDER) or not os.listdir(tmp_path / "data" / kept.FOLDER)
    with pytest.raises(ValueError, match="not increasing at line 0"):
        prepared.check_line_ends(np.array([0, 3]), "x.idx")


def test_unwritable_folder_builds_in_memory(corpus, tmp_path, monkeypatch, capsys):
    folder, tokens, ends, tok = kept_copy(corpus, tmp_path, monkeypatch)
    monkeypatch.setattr(kept, "_writable", lambda folder: False)
    index = kept.cached_examples(folder, tokens, ends, "full-sentences", 64, tok.eos_id, build=False)
    assert "cannot be written to" in capsys.readouterr().err
    assert np.array_equal(index.examples, data.examples(tokens, ends, "full-sentences", 64, tok.eos_id))
    assert not (folder / kept.FOLDER).exists() or not os.listdir(folder / kept.FOLDER)



# ---------------------------------------------------------------- epoch batches equal the old lists
def reference_epoch_batches(lengths, batch_size, seed, epoch, token_budget=None, order=None):
    """data.py's epoch_batches of 3563ce3: an int64 permutation, a Python list, a cumsum of the epoch."""
    if order is None:
        order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).numpy()
    if token_budget is None:
        n = len(order) // batch_size
        return [order[i * batch_size:(i + 1) * batch_size] for i in range(n)]
    batches, cum = [], np.cumsum(lengths[order])
    start, used = 0, 0
    while start < len(order):
        end = int(np.searchsorted(cum, used + token_budget, side="right"))
        end = max(end, start + 1)
        if end >= len(order) and cum[-1] - used < token_budget:
            break
        batches.append(order[start:end])
        used, start = int(cum[end - 1]), end
    return batches


def same_batches(got, want):
    return len(got) == len(want) and all(np.array_equal(g, w) for g, w in zip(got, want))


def test_epoch_batches_equal_the_old_ones():
    """data.epoch_batches (orders.Ragged, found lazily) and data.budget_batches (the plain loop) give the batches
    of the old list-and-cumsum code, for fixed sizes and token budgets, across Ragged's chunks."""
    rng = np.random.default_rng(0)
    for n, top in ((1000, 60), (5000, 600), (7, 10), (0, 5)):
        lengths = rng.integers(1, top, n).astype(np.int32)
        for seed, epoch in ((0, 0), (1, 3)):
            fixed = data.epoch_batches(lengths, 16, seed, epoch)
            assert len(fixed) == n // 16 and all(len(b) == 16 for b in fixed)
            assert same_batches(fixed, reference_epoch_batches(lengths, 16, seed, epoch))
            for budget in (1, 100, 512, 10 ** 6):
                want = reference_epoch_batches(lengths, 16, seed, epoch, budget)
                got = data.epoch_batches(lengths, 16, seed, epoch, token_budget=budget)
                assert same_batches(got, want) and same_batches(list(got), want)
                assert same_batches(got[1:3], want[1:3]) and (not want or np.array_equal(got[-1], want[-1]))
                order = orders.epoch_order(n, seed, epoch)
                assert same_batches(data.budget_batches(order, lengths, budget), want)  # the plain loop: the spec
                for chunk in (1, 3, 50):  # batches across chunks of the running sums, and longer than a chunk
                    assert same_batches(orders.Ragged(order, lengths, budget, chunk=chunk), want)
            order = orders.epoch_order(n, seed, epoch)  # a fixed batch size: a budget of one token per example
            assert same_batches(data.budget_batches(order, np.ones(n, np.int64), 16), fixed)
    with pytest.raises(ValueError, match="at least one example"):
        data.epoch_batches(np.ones(5), 0, 0, 0)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 64, 1000, 4097])
def test_a_computed_shuffle_is_a_permutation_of_its_epoch(n):
    order = orders.Shuffle(n, key=7)
    full = order[0:n]
    assert np.array_equal(np.sort(full), np.arange(n))
    assert all(np.array_equal(order[a:b], full[a:b]) for a, b in ((0, 0), (1, n), (n // 3, n // 2), (n - 1, n)))
    assert np.array_equal(orders.Shuffle(n, key=7)[0:n], full)  # fixed by the key
    if n >= 64:
        assert not np.array_equal(orders.Shuffle(n, key=8)[0:n], full)
        assert abs(np.corrcoef(np.arange(n), full)[0, 1]) < 0.35  # no trace of the original order


def test_large_epochs_are_ordered_slice_by_slice(monkeypatch):
    """Above SHUFFLE_ABOVE examples the order is a Shuffle; the batches are the same rule on it, found as they
    are asked for, and a run resumed at (batch, offset) sees the batches of the uninterrupted epoch."""
    lengths = np.random.default_rng(0).integers(1, 60, 3000).astype(np.int32)
    assert isinstance(orders.epoch_order(3000, 0, 0), np.ndarray)
    monkeypatch.setattr(orders, "SHUFFLE_ABOVE", 1000)
    order = orders.epoch_order(3000, 0, 1)
    assert isinstance(order, orders.Shuffle) and not np.array_equal(order[0:3000], orders.epoch_order(3000, 0, 2)[0:3000])
    for budget in (None, 512):
        whole = data.epoch_batches(lengths, 16, 0, 1, token_budget=budget)
        assert same_batches(whole, reference_epoch_batches(lengths, 16, 0, 1, budget, order=order[0:3000]))
        later = data.epoch_batches(lengths, 16, 0, 1, budget, first=5, offset=whole.start(5))
        assert later.first == 5 and later.bounds[0] == whole.start(5) > 0  # nothing before batch 5 is found
        assert same_batches(later[5:], whole[5:]) and len(later) == len(whole)



def test_below_the_threshold_nothing_is_kept_and_an_edit_to_a_format_takes_effect(corpus, tmp_path, monkeypatch):
    import shutil
    d, _, tok, _ = corpus
    shutil.copytree(d / "data", tmp_path / "data")
    tokens, ends, _ = prepared.load_split(tmp_path / "data", "train")
    assert len(ends) < data.SPEC_BELOW
    got = kept.cached_examples(tmp_path / "data", tokens, ends, "full-sentences", 64, tok.eos_id, build=False)
    assert np.array_equal(got.examples, data.examples(tokens, ends, "full-sentences", 64, tok.eos_id))
    assert not (tmp_path / "data" / kept.FOLDER).exists()
    halves = lambda lines, documents, seq_len, seed: data.full_sentences(lines, documents, seq_len // 2, seed)  # noqa: E731
    monkeypatch.setitem(data.FORMATS, "full-sentences", data.FORMATS["full-sentences"]._replace(build=halves))
    edited = kept.cached_examples(tmp_path / "data", tokens, ends, "full-sentences", 64, tok.eos_id)
    assert edited.lengths.max() <= 32 < got.lengths.max()
