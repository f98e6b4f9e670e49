import hashlib
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

import bpe
import data
from conftest import ROOT, shared_path
from machinery.basics import baselines, files
from machinery.commands import corpora, data_cli
from machinery.datafolder import fast_formats, preparation
from machinery.formats import prepared


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The built-in corpus's first part, Python's reference documentation (79 documents, 430 KB: read in a
    blink, where the standard library's docstrings take seconds), a tokenizer trained on it, and the corpus
    prepared (2 workers, tiny chunks)."""
    d = tmp_path_factory.mktemp("corpus")
    path = str(d / "corpus.txt")
    files.write_atomic(path, "".join("\n".join(doc) + "\n\n" for doc in corpora.reference_topics()))
    tok = bpe.Tokenizer.train(files.read_lines(path), 1000)
    tok.save(d / "tok")
    meta = preparation.prepare([path], str(d / "tok"), str(d / "data"), valid_fraction=0.05, workers=2,
                        chunk_lines=7, verbose=False)
    return d, path, tok, meta


def run_cli(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "data.py"), *args], capture_output=True, text=True)


def run_here(capsys, *args):
    """`python data.py ARGS` in this process (for refusals; test_bad_options runs the real command): an object
    with the process's returncode and stderr."""
    from types import SimpleNamespace
    try:
        data_cli.main(list(args))
        code = 0
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err + (f"{code}\n" if isinstance(code, str) else "")
    return SimpleNamespace(returncode=1 if isinstance(code, str) else (code or 0), stderr=err)


# ---------------------------------------------------------------- preparation
def test_prepared_tokens_equal_per_line_encoding(corpus):
    """Nothing dropped or doubled at chunk or worker boundaries; documents whole in one split."""
    d, path, tok, meta = corpus
    want, chars, split = {"train": [], "valid": []}, {"train": 0, "valid": 0}, None
    for line in data.read_documents([path]):  # a document is held out while valid has < 5% of the text
        split = split or ("valid" if chars["valid"] < 0.05 * (chars["train"] + chars["valid"]) else "train")
        want[split] += (tok.encode(line) if line else []) + [tok.eos_id]
        chars[split] += len(line) + 1
        split = None if line == "" else split
    for split in ("train", "valid"):
        tokens, ends, _ = prepared.load_split(d / "data", split)
        assert tokens.dtype == np.uint16
        assert tokens.tolist() == want[split]
        assert ends[-1] == tokens.size and np.all(tokens[ends - 1] == tok.eos_id)
    assert meta["valid"]["documents"] >= 3 and meta["train"]["documents"] > 50
    assert meta["valid"]["tokens"] == len(want["valid"]) and meta["train"]["tokens"] == len(want["train"])
    # whole documents: the share held out passes 5% by at most the last document (some topics are long)
    assert 0.04 < meta["valid"]["tokens"] / (meta["train"]["tokens"] + meta["valid"]["tokens"]) < 0.1
    assert sorted(os.listdir(d / "data")) == [".lock", "merges.txt", "meta.json", "train.bin", "train.idx",
                                              "valid.bin", "valid.idx", "vocab.json"]


def test_same_result_with_one_worker(corpus, tmp_path):
    d, path, tok, meta = corpus
    preparation.prepare([path], str(d / "tok"), str(tmp_path), valid_fraction=0.05, workers=1, verbose=False)
    for name in ("train.bin", "train.idx", "valid.bin"):
        assert (tmp_path / name).read_bytes() == (d / "data" / name).read_bytes()


def test_blank_lines_and_files_end_documents(tmp_path, corpus):
    d, _, tok, _ = corpus
    (tmp_path / "a.txt").write_text("one\n\n\n  \ntwo\nthree")
    (tmp_path / "b.txt").write_text("\nfour\n")
    assert list(data.read_documents([tmp_path / "a.txt", tmp_path / "b.txt"])) == \
        ["one", "", "two", "three", "", "four", ""]


def test_cr_and_crlf_end_lines_and_a_bom_is_not_text(tmp_path, corpus):
    """Text as people write it: a CR-only file (old Mac) or CRLF (Windows) gives the lines and documents of its
    LF twin, and a UTF-8 byte-order mark at the start is no token (the prepared data equal the plain file's)."""
    d, _, tok, _ = corpus
    text = "one two\nthree\n\nfour five six\n\n\nseven\n"
    for name, raw in (("lf", text.encode()), ("cr", text.replace("\n", "\r").encode()),
                      ("crlf", text.replace("\n", "\r\n").encode()), ("bom", b"\xef\xbb\xbf" + text.encode()),
                      ("bom-cr", b"\xef\xbb\xbf" + text.replace("\n", "\r").encode())):
        (tmp_path / f"{name}.txt").write_bytes(raw)
    want = list(data.read_documents([tmp_path / "lf.txt"]))
    assert want == ["one two", "three", "", "four five six", "", "seven", ""]
    for name in ("cr", "crlf", "bom", "bom-cr"):
        assert list(data.read_documents([tmp_path / f"{name}.txt"])) == want, name
    for name in ("lf", "bom-cr"):
        preparation.prepare([str(tmp_path / f"{name}.txt")], str(d / "tok"), str(tmp_path / name), valid_fraction=0,
                     workers=1, verbose=False)
    assert (tmp_path / "lf" / "train.bin").read_bytes() == (tmp_path / "bom-cr" / "train.bin").read_bytes()
    assert (tmp_path / "lf" / "train.idx").read_bytes() == (tmp_path / "bom-cr" / "train.idx").read_bytes()
    (tmp_path / "bad.txt").write_bytes(b"\xef\xbb\xbfok\r\r\xff")  # offsets still count the file's bytes
    with pytest.raises(ValueError, match="bad.txt: not UTF-8 text at byte 7"):
        list(data.read_documents([tmp_path / "bad.txt"]))


def test_read_lines_across_blocks():
    """files.read_lines' blocks split nothing: a \\r\\n cut between two blocks is one line end."""
    import io
    import random
    rng = random.Random(0)
    for _ in range(2000):
        raw = bytes(rng.choice(b"ab\r\n") for _ in range(rng.randint(0, 24)))
        for size in (1, 2, 3, 5, 64):
            assert list(files._raw_lines(io.BytesIO(raw), size)) == raw.splitlines(keepends=True), (raw, size)


def test_bad_inputs(tmp_path, corpus, capsys):
    d, path, tok, _ = corpus
    (tmp_path / "empty.txt").write_text("\n\n")
    (tmp_path / "binary.txt").write_bytes(b"\x00\x01\x02" * 100)
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    cases = [
        (["--input", str(tmp_path / "missing.txt")], "missing.txt: no such file"),
        (["--input", str(tmp_path / "empty.txt")], "the input is empty"),
        (["--input", str(tmp_path / "binary.txt")], "looks binary"),
        (["--input", str(tmp_path / "latin1.txt")], "not UTF-8 text at byte 3"),
    ]
    for args, message in cases:
        r = run_here(capsys, *args, "--tokenizer", str(d / "tok"), "--out", str(tmp_path / "out"), "--workers", "1")
        assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = run_here(capsys, "--input", path, "--tokenizer", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"))
    assert r.returncode != 0 and "nowhere: no such folder" in r.stderr
    # a folder of data from another tokenizer is refused, and left as it was
    other = tmp_path / "other"
    bpe.Tokenizer.train(["something else entirely"] * 3, 300, min_frequency=1).save(other)
    before = (d / "data" / "meta.json").read_bytes()
    r = run_here(capsys, "--input", path, "--tokenizer", str(other), "--out", str(d / "data"), "--workers", "1")
    assert r.returncode != 0 and "another tokenizer" in r.stderr
    assert (d / "data" / "meta.json").read_bytes() == before
    with pytest.raises(FileNotFoundError, match="meta.json missing"):
        prepared.load_split(tmp_path, "train")


def test_nul_bytes_anywhere_are_refused(tmp_path, corpus):
    """UTF-16 text after 100 KB of UTF-8 is valid UTF-8 byte for byte: its NUL bytes name it, wherever they are."""
    d, _, _, _ = corpus
    (tmp_path / "mixed.txt").write_bytes(b"plain text\n" * 10_000 + "late text\n".encode("utf-16-le"))
    with pytest.raises(ValueError, match=r"mixed.txt: looks binary \(a NUL byte on line 10,001\)"):
        preparation.prepare([str(tmp_path / "mixed.txt")], str(d / "tok"), str(tmp_path / "out"), workers=1,
                            verbose=False)
    assert not (tmp_path / "out").exists()


def test_a_named_pipe_is_read_as_it_is_fed(tmp_path, corpus):
    """data.py --input a FIFO reads it once, as bpe.py does: the data of the same text in a file."""
    import threading
    d, path, _, _ = corpus
    os.mkfifo(tmp_path / "pipe")
    feeder = threading.Thread(target=lambda: (tmp_path / "pipe").write_bytes(open(path, "rb").read()), daemon=True)
    feeder.start()
    preparation.prepare([str(tmp_path / "pipe")], str(d / "tok"), str(tmp_path / "out"), valid_fraction=0.05,
                        workers=1, verbose=False)
    feeder.join()
    for name in ("train.bin", "valid.bin", "train.idx"):
        assert (tmp_path / "out" / name).read_bytes() == (d / "data" / name).read_bytes(), name


def test_failed_run_leaves_no_complete_looking_output(tmp_path, corpus):
    d, _, _, _ = corpus
    (tmp_path / "ok.txt").write_text("fine\n")
    (tmp_path / "bad.txt").write_bytes(b"fine\n\xff\n")
    with pytest.raises(ValueError):
        preparation.prepare([str(tmp_path / "ok.txt"), str(tmp_path / "bad.txt")], str(d / "tok"), str(tmp_path / "out"),
                     workers=1, verbose=False)
    assert not (tmp_path / "out" / "meta.json").exists() and not (tmp_path / "out" / "train.bin").exists()


# ---------------------------------------------------------------- formats (Section 4.2)
def test_full_sentences_cover_the_stream_in_order(corpus):
    d, _, tok, _ = corpus
    tokens, ends, _ = prepared.load_split(d / "data", "train")
    ex = data.examples(tokens, ends, "full-sentences", 64, tok.eos_id)
    a0, a1 = ex["a_start"], ex["a_end"]
    assert a0[0] == 0 and np.all(a0[1:] == a1[:-1]) and a1[-1] == tokens.size
    assert np.all(a1 - a0 <= 63) and np.all(ex["next"] == -1)
    ids, nsp = data.collate(tokens, ex[:8], 64, tok)
    assert nsp is None and ids.shape[1] <= 64 and torch.all(ids[:, 0] == tok.bos_id)
    crossing = [r for r in ex if np.any((tokens[r["a_start"]:r["a_end"] - 1] == tok.eos_id)
                                        & (tokens[r["a_start"] + 1:r["a_end"]] == tok.eos_id))]
    assert crossing, "FULL-SENTENCES should cross document ends (with the extra separator)"


def test_doc_sentences_never_cross_documents(corpus):
    d, _, tok, _ = corpus
    tokens, ends, _ = prepared.load_split(d / "data", "train")
    ex = data.examples(tokens, ends, "doc-sentences", 64, tok.eos_id)
    for a0, a1 in zip(ex["a_start"], ex["a_end"]):
        seq = np.asarray(tokens[a0:a1])
        assert not np.any((seq[:-1] == tok.eos_id) & (seq[1:] == tok.eos_id)) and seq[0] != tok.eos_id
    n_sep = int(np.sum(np.diff(np.concatenate([[0], ends])) == 1))
    assert np.sum(ex["a_end"] - ex["a_start"]) == tokens.size - n_sep  # every ordinary token once
    lengths = data.example_lengths(ex, "doc-sentences")
    full = data.example_lengths(data.examples(tokens, ends, "full-sentences", 64, tok.eos_id), "full-sentences")
    assert lengths.mean() < full.mean()  # shorter blocks near document ends ...
    budget = 16 * 64
    sizes = [len(b) for b in data.epoch_batches(lengths, 16, 0, 0, token_budget=budget)]
    assert np.mean(sizes) > 16  # ... so more sequences per batch


@pytest.mark.parametrize("fmt", ["segment-pair", "sentence-pair"])
def test_pair_formats(corpus, fmt):
    d, _, tok, _ = corpus
    tokens, ends, _ = prepared.load_split(d / "data", "train")
    ex = data.examples(tokens, ends, fmt, 128, tok.eos_id, seed=0)
    assert 0.4 < ex["next"].mean() < 0.6
    starts = set(np.concatenate([[0], ends[:-1]]).tolist())
    assert all(r["a_start"] in starts and r["b_start"] in starts for r in ex)  # segments begin at sentences
    nxt = ex[ex["next"] == 1]
    assert np.all(nxt["b_start"] == nxt["a_end"])  # B is the true continuation
    ids, nsp = data.collate(tokens, ex[:16], 128, tok, fmt)
    assert ids.shape[1] <= 128 and torch.equal(nsp, torch.from_numpy(ex["next"][:16]))
    row = ids[0][ids[0] != tok.pad_id].tolist()
    assert row[0] == tok.bos_id and row[-1] == tok.eos_id and row.count(tok.eos_id) == 3
    i = row.index(tok.eos_id)
    assert row[i + 1] == tok.eos_id  # <s> A </s></s> B </s>
    if fmt == "sentence-pair":
        assert np.all(np.isin(ex["a_end"], ends))  # A is one whole sentence


def test_unknown_format(corpus):
    d, _, tok, _ = corpus
    tokens, ends, _ = prepared.load_split(d / "data", "train")
    with pytest.raises(ValueError, match="unknown format"):
        data.examples(tokens, ends, "paragraphs", 64, tok.eos_id)


# ---------------------------------------------------------------- batches
def test_batches_deterministic_and_sharded():
    lengths = np.full(100, 10)
    a = data.epoch_batches(lengths, 8, seed=1, epoch=0)
    assert len(a) == 12 and all(len(b) == 8 for b in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, data.epoch_batches(lengths, 8, seed=1, epoch=0)))
    assert not np.array_equal(a[0], data.epoch_batches(lengths, 8, seed=1, epoch=1)[0])
    for world in (1, 2, 4):
        got = np.sort(np.concatenate([data.shard(a[0], r, world) for r in range(world)]))
        assert np.array_equal(got, np.sort(a[0]))


# ---------------------------------------------------------------- masking (Section 4.1)
class Tok:  # the ids of RoBERTa's vocabulary, without loading it
    bos_id, pad_id, eos_id, unk_id, mask_id = 0, 1, 2, 3, 999
    special_ids = {0, 1, 2, 3, 999}

    def __len__(self):
        return 1000


def test_mask_tokens_rates_and_specials():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(4, 999, (200, 500), generator=g)
    tokens[:, 0], tokens[:, -1], tokens[:, 250:260] = 0, 2, 1
    inputs, labels = data.mask_tokens(tokens, Tok(), generator=g)
    special = (tokens == 0) | (tokens == 1) | (tokens == 2)
    selected = labels != -100
    assert not selected[special].any()
    assert abs(selected.float().sum() / (~special).sum() - 0.15) < 0.005
    assert torch.equal(labels[selected], tokens[selected])
    masked = (inputs == 999) & selected
    changed = (inputs != tokens) & selected & ~masked
    n = selected.sum().float()
    assert abs(masked.sum() / n - 0.8) < 0.01
    assert abs((selected & (inputs == tokens)).sum() / n - 0.1) < 0.01  # (a random draw can hit the same id)
    assert abs(changed.sum() / n - 0.1) < 0.01
    random_ids = inputs[changed]
    assert not torch.isin(random_ids, torch.tensor([0, 1, 2, 3, 999])).any()
    assert random_ids.min() == 4 and random_ids.max() == 998  # the whole ordinary range is reachable
    assert torch.equal(inputs[~selected], tokens[~selected])
    g2 = torch.Generator().manual_seed(0)
    torch.randint(4, 999, (200, 500), generator=g2)  # the same generator state as the first call had
    again = data.mask_tokens(tokens, Tok(), generator=g2)
    assert torch.equal(again[1], labels) and torch.equal(again[0], inputs)  # reproducible
    other = data.mask_tokens(tokens, Tok(), generator=torch.Generator().manual_seed(1))
    assert not torch.equal(other[1], labels)


def test_mask_batch_depends_on_example_not_batch():
    tokens = torch.randint(4, 999, (6, 40))
    inputs, labels = data.mask_batch(tokens, [10, 11, 12, 13, 14, 15], Tok(), seed=3, epoch=2)
    # example 12 alone, in another batch position and with extra padding: the same mask
    padded = torch.cat([tokens[2:3], torch.ones(1, 10, dtype=torch.long)], 1)
    solo_in, solo_labels = data.mask_batch(padded, [12], Tok(), seed=3, epoch=2)
    assert torch.equal(solo_labels[0, :40], labels[2]) and torch.equal(solo_in[0, :40], inputs[2])
    dynamic = [data.mask_batch(tokens, range(6), Tok(), seed=3, epoch=e)[1] for e in (0, 1, 10)]
    assert not torch.equal(dynamic[0], dynamic[1]) and not torch.equal(dynamic[0], dynamic[2])
    static = [data.mask_batch(tokens, range(6), Tok(), seed=3, epoch=e, masking=data.Masking(dynamic=False))[1]
              for e in (0, 1, 10)]
    assert not torch.equal(static[0], static[1]) and torch.equal(static[0], static[2])  # 10 fixed masks
    assert abs((labels != -100).float().mean() - 0.15) < 0.1


def test_uniforms_are_uniform():
    u = data.uniforms(np.arange(100), 1000, stream=0)
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.01 and abs(u.std() - 0.2887) < 0.01
    assert not torch.equal(u, data.uniforms(np.arange(100), 1000, stream=1))


# ---------------------------------------------------------------- downloads (offline, file:// addresses)
def test_download_checks_sha256_and_unpacks(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "input.txt").write_text("hello\n")
    with zipfile.ZipFile(src / "glue.zip", "w") as z:
        z.writestr("SST-2/dev.tsv", "sentence\tlabel\nok\t1\n")
    good = hashlib.sha256(b"hello\n").hexdigest()
    registry = {"tiny": [((src / "input.txt").as_uri(), "input.txt", good)],
                "glue": [((src / "glue.zip").as_uri(), "glue.zip", None)],
                "bad": [((src / "input.txt").as_uri(), "input.txt", "0" * 64)]}
    folder = corpora.download("tiny", tmp_path / "cache", registry, verbose=False)
    assert (tmp_path / "cache" / "tiny" / "input.txt").read_text() == "hello\n" and folder.endswith("tiny")
    corpora.download("glue", tmp_path / "cache", registry, verbose=False)
    assert (tmp_path / "cache" / "glue" / "SST-2" / "dev.tsv").exists()
    with pytest.raises(ValueError, match="expected 0000"):
        corpora.download("bad", tmp_path / "cache", registry, verbose=False)
    assert not (tmp_path / "cache" / "bad" / "input.txt").exists()
    with pytest.raises(ValueError, match="unknown dataset"):
        corpora.download("imagenet", tmp_path / "cache", registry)
    assert "tinyshakespeare" in corpora.DATASETS and "glue-sst-2" in corpora.DATASETS


def test_download_of_shared_copy_matches_pinned_hash(tmp_path):
    local = shared_path("corpora", "tinyshakespeare", "input.txt")
    url, name, sha = corpora.DATASETS["tinyshakespeare"][0]
    corpora.download("tinyshakespeare", tmp_path, {"tinyshakespeare": [(f"file://{os.path.abspath(local)}", name, sha)]},
                  verbose=False)
    assert (tmp_path / "tinyshakespeare" / name).stat().st_size == 1115394


# ---------------------------------------------------------------- one place for each idea
def test_truncate_pair_equals_trimming_one_token_at_a_time():
    def loop(la, lb, room):  # BERT's truncate_seq_pair: the longer loses a token, the second on ties
        while la + lb > room:
            if la > lb:
                la -= 1
            else:
                lb -= 1
        return la, lb
    rng = np.random.default_rng(0)
    cases = rng.integers(0, 40, size=(500, 3))
    for la, lb, room in cases:
        assert data.truncate_pair(int(la), int(lb), int(room)) == loop(int(la), int(lb), int(room))
    a, b = data.truncate_pair(cases[:, 0], cases[:, 1], 30)  # vectorised
    assert [(x, y) for x, y in zip(a.tolist(), b.tolist())] == [loop(int(x), int(y), 30) for x, y, _ in cases]
    assert data.truncate_pair(5, 5, 9) == (5, 4)  # a tie trims the second segment


def test_pad():
    ids = data.pad([[5, 6, 7], [8], []], pad_id=1)
    assert ids.tolist() == [[5, 6, 7], [8, 1, 1], [1, 1, 1]] and ids.dtype == torch.long


def test_masking_spec_reaches_the_rule():
    tokens = torch.randint(4, 999, (100, 200), generator=torch.Generator().manual_seed(0))
    for rate, split in ((0.3, (1.0, 0.0, 0.0)), (0.4, (0.0, 0.0, 1.0)), (0.15, (0.5, 0.5, 0.0))):
        inputs, labels = data.mask_batch(tokens, range(100), Tok(), seed=0, epoch=0,
                                         masking=data.Masking(rate=rate, split=split))
        selected = labels != -100
        assert abs(selected.float().mean() - rate) < 0.01
        assert abs(((inputs == 999) & selected).sum() / selected.sum() - split[0]) < 0.02
        assert abs(((inputs == tokens) & selected).sum() / selected.sum() - split[2]) < 0.02
    for bad in (dict(rate=0.0), dict(rate=1.5), dict(split=(0.8, 0.1)), dict(split=(0.8, 0.3, 0.1))):
        with pytest.raises(ValueError, match="masking rate|split"):
            data.Masking(**bad)


def test_mask_tokens_never_selects_a_special_token_but_unk():
    """<unk> stands for text (a character-level BPE's unknown character): it can be a target."""
    tokens = torch.tensor([[0, 3, 999, 5, 1, 2] * 500])  # <s> <unk> <mask> ordinary <pad> </s>
    _, labels = data.mask_tokens(tokens, Tok(), mask_prob=0.9, generator=torch.Generator().manual_seed(0))
    assert set(tokens[labels != -100].tolist()) == {3, 5}


def test_formats_table():
    assert set(data.FORMATS) == {"full-sentences", "doc-sentences", "segment-pair", "sentence-pair"}
    assert [f for f, row in data.FORMATS.items() if row.pairs] == ["segment-pair", "sentence-pair"]
    assert [f for f, row in data.FORMATS.items() if row.by_tokens] == ["doc-sentences", "sentence-pair"]


def test_unigram_baselines_on_known_counts():
    train = np.array([5, 5, 5, 6, 2, 0], dtype=np.uint16)  # specials 0 and 2 are not counted
    labels = torch.tensor([[5, -100, 6, 7]])
    out = baselines.unigram_baselines(train, [(None, labels)], Tok())
    counts = np.ones(1000)
    counts[[0, 1, 2, 999]] = 0  # <unk> can be a target: it keeps its count
    counts[5] += 3
    counts[6] += 1
    p = counts / counts.sum()
    assert out["most_frequent"] == 5 and out["most_frequent_accuracy"] == pytest.approx(1 / 3)
    assert out["unigram_loss"] == pytest.approx(-np.mean(np.log(p[[5, 6, 7]])))


# ---------------------------------------------------------------- bad files name themselves
def test_damaged_prepared_folders_name_the_file(corpus, tmp_path):
    import shutil
    d, _, _, _ = corpus
    bad = tmp_path / "bad"
    shutil.copytree(d / "data", bad)
    with open(bad / "train.bin", "ab") as f:
        f.write(b"\x00")  # an odd number of bytes
    with pytest.raises(ValueError, match="train.bin: .* bytes"):
        prepared.load_split(bad, "train")
    (bad / "meta.json").write_text('{"tokenizer_sha256": 1, "\x01')
    with pytest.raises(ValueError, match="meta.json: not valid JSON"):
        prepared.load_split(bad, "train")
    (bad / "meta.json").write_text('[1, 2]')
    with pytest.raises(ValueError, match="meta.json: not data.py's meta.json"):
        prepared.load_split(bad, "train")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        prepared.load_split(tmp_path / "nowhere", "train")


def test_small_corpus_warns_of_an_empty_valid_split(corpus, tmp_path, capsys):
    d, _, _, _ = corpus
    (tmp_path / "small.txt").write_text("one line only\nand another\n")
    r = run_here(capsys, "--input", str(tmp_path / "small.txt"), "--tokenizer", str(d / "tok"), "--out",
                str(tmp_path / "out"), "--workers", "1")
    assert r.returncode == 0 and "valid split is empty" in r.stderr
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["valid"]["tokens"] == 0


@pytest.mark.parametrize("args, message", [
    (["--valid-fraction", "1"], "--valid-fraction: must be in [0, 1)"),
    (["--valid-fraction", "-0.1"], "--valid-fraction: must be in [0, 1)"),
    (["--workers", "0"], "--workers: must be in [1, "),
    (["--workers", "two"], "--workers: expected a whole number"),
])
def test_bad_options(corpus, tmp_path, args, message, capsys):
    d, path, _, _ = corpus
    r = run_here(capsys, "--input", path, "--tokenizer", str(d / "tok"), "--out", str(tmp_path / "out"), *args)
    assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()


def test_out_is_a_file_and_failures_leave_no_temporary_files(corpus, tmp_path, capsys):
    d, path, _, _ = corpus
    (tmp_path / "file").write_text("x")
    r = run_here(capsys, "--input", path, "--tokenizer", str(d / "tok"), "--out", str(tmp_path / "file"),
                 "--workers", "1")
    assert r.returncode != 0 and "a file is in the way" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "bad.txt").write_bytes(b"fine\n\xff\n")
    r = run_here(capsys, "--input", str(tmp_path / "bad.txt"), "--tokenizer", str(d / "tok"), "--out", str(tmp_path / "o"),
                "--workers", "1")
    assert r.returncode != 0 and "not UTF-8" in r.stderr
    assert not (tmp_path / "o").exists()  # a failure leaves no folder made for it, nor its temporary files


def test_failed_download_leaves_nothing(tmp_path):
    registry = {"gone": [(f"file://{tmp_path}/missing.zip", "missing.zip", None)]}
    with pytest.raises(OSError, match="could not fetch"):
        corpora.download("gone", tmp_path / "cache", registry, verbose=False)
    assert not (tmp_path / "cache" / "gone").exists()


def test_a_download_cache_that_cannot_be_made_names_home_and_the_option(tmp_path, monkeypatch, capsys):
    """A service account (HOME unset, its home not writable): the line names the cache, HOME and --cache."""
    (tmp_path / "home").write_text("a file, where a folder should be")
    cache = str(tmp_path / "home" / ".cache" / "roberta-reference")
    monkeypatch.setattr(data_cli, "DEFAULT_CACHE", cache)
    monkeypatch.delenv("HOME", raising=False)
    r = run_here(capsys, "download", "tinyshakespeare")
    assert r.stderr == (f"error: {cache}: the download cache cannot be made there (Not a directory): it lies in this "
                        f"account's home directory, as HOME is unset; pass --cache DIR, or set HOME, to keep the "
                        f"datasets elsewhere\n")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    r = run_here(capsys, "download", "tinyshakespeare")
    assert f"it lies under HOME ({tmp_path / 'home'}); pass --cache DIR" in r.stderr
    mine = tmp_path / "home" / "mine"
    r = run_here(capsys, "download", "tinyshakespeare", "--cache", str(mine))
    assert r.returncode == 1 and f"--cache {mine}: the download cache cannot be made there" in r.stderr


# ---------------------------------------------------------------- the vectorised builders equal the loops
def reference_blocks(tokens, line_ends, eos_id, seq_len, within_documents):
    """data.py's loop of 3563ce3, one block at a time: the specification of FULL- and DOC-SENTENCES."""
    starts = np.concatenate([[0], line_ends[:-1]])
    doc_end = (line_ends - starts == 1) & (tokens[line_ends - 1] == eos_id)
    rows, p, n_tokens, block = [], 0, int(line_ends[-1]), seq_len - 1
    limits = line_ends[doc_end] if within_documents else np.zeros(0, dtype=np.int64)
    while p < n_tokens:
        limit = p + block
        if within_documents:
            k = np.searchsorted(limits, p, side="right")
            if k < limits.size:
                if limits[k] - 1 == p:
                    p += 1
                    continue
                limit = min(limit, int(limits[k]) - 1)
        j = np.searchsorted(line_ends, limit, side="right") - 1
        if j >= 0 and line_ends[j] > p:
            end = int(line_ends[j])
        else:
            line_end = int(line_ends[np.searchsorted(line_ends, p, side="right")])
            end = limit - 1 if line_end - limit == 1 else min(limit, line_end)
        rows.append((p, end))
        p = end
    return rows


def reference_pairs(line_ends, seq_len, seed, single_sentences):
    """The loop of 3563ce3 (BERT's) with its random choices from data.line_draws of the chunk's first line."""
    starts = np.concatenate([[0], line_ends[:-1]])
    docs, current = [], []
    for i, is_end in enumerate((line_ends - starts == 1).tolist()):
        if is_end:
            docs, current = docs + [current] if current else docs, []
        else:
            current.append(i)
    docs += [current] if current else []
    draw = lambda line, stream: float(data.line_draws([line], seed, stream)[0])  # noqa: E731
    rows, budget = [], seq_len - 4
    for d, doc in enumerate(docs):
        i = 0
        while i < len(doc):
            key = doc[i]
            if single_sentences:
                chunk = doc[i:i + 2]
                i += len(chunk)
                a, rest = chunk[:1], chunk[1:]
            else:
                chunk, size = [], 0
                while i < len(doc) and (size < budget or not chunk):
                    chunk.append(doc[i])
                    size += line_ends[doc[i]] - starts[doc[i]] - 1
                    i += 1
                cut = 1 + int(draw(key, 0) * (len(chunk) - 1))
                a, rest = chunk[:cut], chunk[cut:]
            if rest and draw(key, 1) < 0.5:
                b, label = rest, 1
            else:
                other = docs[(d + 1 + int(draw(key, 2) * (len(docs) - 1))) % len(docs)]
                first = int(draw(key, 3) * len(other))
                b, label = other[first:first + max(1, len(rest))], 0
                i -= len(rest)
            rows.append((starts[a[0]], line_ends[a[-1]], starts[b[0]], line_ends[b[-1]], label))
    return rows


def random_stream(seed, n_docs, eos_id=2, long_lines=True):
    """A token stream in data.py's layout: documents of 1-12 lines of 1-40 tokens + </s> (some 60-300, longer
    than a block), each document followed by a lone </s>; a document of lines of exactly 1, 2 and 3 blocks
    of 15 tokens and one token more or less (the cuts of seq_len 16)."""
    rng = np.random.default_rng(seed)
    lengths = []
    for d in range(n_docs):
        n = rng.integers(1, 13)
        short, long = rng.integers(1, 41, n), rng.integers(60, 300, n)
        lengths += list(np.where(long_lines & (rng.random(n) < 0.1), long, short) + 1) + [1]
        if d == 1:
            lengths += [14, 15, 16, 29, 30, 31, 45, 46, 47, 1]
    ends = np.cumsum(lengths).astype(np.int64)
    tokens = rng.integers(4, 1000, int(ends[-1])).astype(np.uint16)
    tokens[ends - 1] = eos_id
    return tokens, ends


@pytest.mark.parametrize("window", [1 << 18, 37, 300])
@pytest.mark.parametrize("seq_len", [8, 16, 64, 512])
@pytest.mark.parametrize("fast", [False, True])
def test_builders_equal_the_loops(monkeypatch, window, seq_len, fast):
    """The formats of data.py, and the vectorised builders (in windows of lines, small ones crossing long lines
    and documents) = the loops."""
    monkeypatch.setattr(fast_formats, "WINDOW", window)
    monkeypatch.setattr(data, "SPEC_BELOW", 0 if fast else data.SPEC_BELOW)
    for seed, n_docs, long_lines in ((0, 300, True), (1, 2, True), (2, 150, False)):
        tokens, ends = random_stream(seed, n_docs, long_lines=long_lines)
        for fmt in data.FORMATS:
            ex = data.examples(tokens, ends, fmt, seq_len, 2, seed=seed)
            if data.FORMATS[fmt].pairs:
                want = reference_pairs(ends, seq_len, seed, fmt == "sentence-pair")
                got = list(zip(*(ex[k].tolist() for k in ("a_start", "a_end", "b_start", "b_end", "next"))))
            else:
                want = reference_blocks(tokens, ends, 2, seq_len, fmt == "doc-sentences")
                got = list(zip(ex["a_start"].tolist(), ex["a_end"].tolist()))
                assert np.all(ex["next"] == -1) and np.all(ex["b_start"] == 0)
            assert got == [tuple(int(x) for x in row) for row in want], (fmt, seed)


def test_a_pair_longer_than_a_sequence_counts_as_what_it_becomes(corpus):
    """Token budgets count real tokens: a sentence pair longer than seq_len is cut to seq_len by collate,
    so SENTENCE-PAIR batches hold about budget / seq_len examples or more, never a lone long pair."""
    d, _, tok, _ = corpus
    tokens, ends, _ = prepared.load_split(d / "data", "train")
    ex = data.examples(tokens, ends, "sentence-pair", 32, tok.eos_id)
    lengths = data.example_lengths(ex, "sentence-pair", 32)
    ids, _ = data.collate(tokens, ex[:200], 32, tok, "sentence-pair")
    assert np.all(lengths[:200] >= (ids != tok.pad_id).sum(1).numpy())  # never less than the real tokens
    assert lengths.max() <= 32 and data.example_lengths(ex, "sentence-pair").max() > 32
    sizes = [len(b) for b in data.epoch_batches(lengths, 8, 0, 0, token_budget=8 * 32)]
    assert min(sizes) >= 8
