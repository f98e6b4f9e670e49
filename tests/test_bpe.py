import json
import os
import argparse
import random
import subprocess
import sys

import pytest

import bpe
from conftest import ROOT
from make_bpe_fixture import trained_corpus
from machinery.commands import bpe_cli
from machinery.basics import files

FIXTURE = os.path.join(ROOT, "tests", "fixtures", "bpe_reference.json")


@pytest.fixture(scope="module")
def reference():
    with open(FIXTURE, encoding="utf-8") as f:
        return json.load(f)


def run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, os.path.join(ROOT, "bpe.py"), *args], cwd=cwd,
                          capture_output=True, text=True)


# ---------------------------------------------------------------- the released vocabularies
def test_fairseq_published_vectors(roberta_tok, gpt2_tok):
    # fairseq's RoBERTa README: roberta.encode('Hello world!') -> [0, 31414, 232, 328, 2]
    ids = [roberta_tok.bos_id] + roberta_tok.encode("Hello world!") + [roberta_tok.eos_id]
    assert ids == [0, 31414, 232, 328, 2]
    assert gpt2_tok.encode("Hello world!") == [15496, 995, 0]


def test_roberta_special_ids(roberta_tok):
    t = roberta_tok
    assert (t.bos_id, t.pad_id, t.eos_id, t.unk_id, t.mask_id) == (0, 1, 2, 3, 50264)
    assert len(t) == 50265
    assert t.id_to_token(5) == "Ġthe" and t.decode([5]) == " the"


@pytest.mark.parametrize("name", ["gpt2", "roberta"])
def test_matches_reference_tokenizers(name, reference, request):
    tok = request.getfixturevalue(f"{name}_tok")
    got = [tok.encode(s) for s in reference["strings"]]
    mismatches = [s for s, g, want in zip(reference["strings"], got, reference[name]) if g != want]
    assert not mismatches, f"{len(mismatches)} strings differ, first: {mismatches[0]!r}"
    assert len(reference["strings"]) > 300


# ---------------------------------------------------------------- lossless round trip
ROUND_TRIP = ["", " ", "\n\n", "a  b\t\tc\r\n", "naïve 😀👨‍👩‍👧 e\u0301", "\x00\x1f\x7f", "\ud800 lone surrogate",
              "\U0010ffff", "x" * 1000, "   \n  \t ", "<s> <mask> </s>"]


def random_strings(n, seed=0):
    rng = random.Random(seed)
    for _ in range(n):
        yield "".join(chr(rng.choice([rng.randint(0, 0x7f), rng.randint(0x80, 0x7ff), rng.randint(0x800, 0xffff),
                                      rng.randint(0x10000, 0x10ffff), 0x20, 0x0a]))
                      for _ in range(rng.randint(0, 40)))


def test_round_trip_trained():
    tok = bpe.Tokenizer.train(trained_corpus(), vocab_size=500)
    for s in ROUND_TRIP + list(random_strings(500)):
        assert tok.decode(tok.encode(s)) == s


def test_round_trip_roberta(roberta_tok):
    for s in ROUND_TRIP + list(random_strings(300, seed=1)):
        assert roberta_tok.decode(roberta_tok.encode(s)) == s


def test_reordered_pattern_splits_exactly_as_gpt2s():
    gpt2, ours = bpe.regex.compile(bpe.GPT2_PATTERN), bpe.regex.compile(bpe.PATTERN)
    rng = random.Random(2)
    tricky = ["".join(rng.choice(["'", "s", "t", "re", "ve", "m", "ll", "d", "D", " ", "  ", "a", "1", "!", "\n", "’"])
                      for _ in range(rng.randint(0, 25))) for _ in range(5000)]
    for s in ROUND_TRIP + tricky + list(random_strings(2000, seed=3)):
        assert ours.findall(s) == gpt2.findall(s), s


def test_decode_of_a_cut_character_does_not_raise(roberta_tok):
    ids = roberta_tok.encode("😀")
    assert len(ids) > 1
    assert roberta_tok.decode(ids[:1]) == "\ufffd"


# ---------------------------------------------------------------- training
def test_hand_checkable_training():
    # Pre-tokens: "ab" x1, " ab" x2, " abc" x1. Pairs: (a,b)=4, (' ',a)=3, (b,c)=1.
    # Merge 1: a+b -> "ab" (4). Then (' ',ab)=3, (ab,c)=1. Merge 2: ' '+ab -> " ab" (3).
    # Then only (" ab", c) is left, seen once < min_frequency=2: training stops early.
    tok = bpe.Tokenizer.train(["ab ab ab abc"], vocab_size=300, min_frequency=2)
    learned = [tok.vocab[new] for new in tok.merges.values()]
    assert learned == [b"ab", b" ab"]
    assert len(tok) == 4 + 256 + 2 + 1
    assert tok.encode(" abc ab") == [261, 4 + ord("c"), 261]


def test_ties_break_on_smallest_ids():
    # every pair occurs once; (' ', c) has smaller ids than (a, b) because ' ' < 'a' as bytes
    tok = bpe.Tokenizer.train(["ab cd"], vocab_size=262, min_frequency=1)
    assert [tok.vocab[i] for i in tok.merges.values()] == [b" c"]


def test_trained_layout_matches_roberta():
    tok = bpe.Tokenizer.train(trained_corpus(), vocab_size=400)
    assert (tok.bos_id, tok.pad_id, tok.eos_id, tok.unk_id) == (0, 1, 2, 3)
    assert tok.mask_id == len(tok) - 1 == 399
    assert sorted(tok.vocab) == list(range(400))


def test_save_load_and_other_implementation(tmp_path, reference):
    tok = bpe.Tokenizer.train(trained_corpus(), vocab_size=400)
    tok.save(tmp_path)
    with open(tmp_path / "merges.txt", encoding="utf-8") as f:
        assert f.readline() == "#version: 0.2\n"
    loaded = bpe.Tokenizer.load(tmp_path)
    assert loaded.vocab == tok.vocab and loaded.merges == tok.merges
    assert loaded.mask_id == tok.mask_id
    # Hugging Face `tokenizers` read these files and produced these ids (tests/make_bpe_fixture.py)
    assert [loaded.encode(s) for s in reference["strings"]] == reference["trained"]


def test_training_is_fast_algorithm_not_naive():
    """The incremental trainer must give the merges a naive recount-everything trainer gives."""
    texts = trained_corpus()
    tok = bpe.Tokenizer.train(texts, vocab_size=330, min_frequency=2)
    words = [[4 + b for b in w.encode("utf-8", "surrogatepass")]
             for t in texts for w in tok.pattern.findall(t)]
    naive = []
    for new_id in range(260, 260 + len(tok.merges)):
        counts = {}
        for w in words:
            for p in zip(w, w[1:]):
                counts[p] = counts.get(p, 0) + 1
        pair = min(counts, key=lambda p: (-counts[p], p))
        naive.append(pair)
        words = [bpe.merge_word(w, pair, new_id)[0] for w in words]
    assert naive == list(tok.merges)


def test_merge_word_reports_pair_changes():
    word, changes = bpe.merge_word([1, 2, 1, 2, 3], (1, 2), 9)
    assert word == [9, 9, 3]
    delta = {}
    for p, s in changes:
        delta[p] = delta.get(p, 0) + s
    delta = {p: d for p, d in delta.items() if d}
    # old pairs (1,2)x2 (2,1) (2,3); new pairs (9,9) (9,3); (1,2) itself is removed by the caller
    assert delta == {(2, 1): -1, (2, 3): -1, (9, 9): 1, (9, 3): 1}


# ---------------------------------------------------------------- bad input
def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="too small"):
        bpe.Tokenizer.train(["hello"], vocab_size=100)
    with pytest.raises(ValueError, match="empty"):
        bpe.Tokenizer.train(["", ""], vocab_size=300)
    with pytest.raises(FileNotFoundError, match="no tokenizer files"):
        bpe.Tokenizer.load(tmp_path)
    bpe.Tokenizer.train(["ab ab ab"], vocab_size=300).save(tmp_path)
    with open(tmp_path / "merges.txt", "a", encoding="utf-8") as f:
        f.write("Ġzz q\n")
    with pytest.raises(ValueError, match="merges.txt:4: merge 'Ġzz' 'q' names 'Ġzz'"):
        bpe.Tokenizer.load(tmp_path)


def test_cli_train_encode_and_errors(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(trained_corpus()), encoding="utf-8")
    r = run_cli("train", "--input", str(corpus), "--vocab-size", "300", "--out", str(tmp_path / "tok"))
    assert r.returncode == 0, r.stderr
    r = run_cli("encode", "--tokenizer", str(tmp_path / "tok"), "Hello world")
    assert r.returncode == 0 and r.stdout.startswith("[")

    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"fine line\nbad \xff byte\n")
    r = run_cli("train", "--input", str(binary), "--vocab-size", "300", "--out", str(tmp_path / "t2"))
    assert r.returncode != 0
    assert "binary.txt: not UTF-8 text at byte 14" in r.stderr and "--errors replace" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_cli("train", "--input", str(binary), "--vocab-size", "300", "--out", str(tmp_path / "t2"),
                "--errors", "replace", "--min-frequency", "1")
    assert r.returncode == 0, r.stderr

    for args in (["train", "--input", str(tmp_path / "missing.txt"), "--vocab-size", "300", "--out", "x"],
                 ["encode", "--tokenizer", str(tmp_path / "nowhere"), "hi"]):
        r = run_cli(*args)
        assert r.returncode != 0 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr


def test_cli_train_reads_cr_crlf_and_bom_as_plain_text(tmp_path, capsys):
    """Text as people write it: CR (old Mac) and CRLF (Windows) line ends are line ends, and a UTF-8 byte-order
    mark is not text: the vocabulary and merges equal those of the plain LF file."""
    lines = [line + "\n" for line in trained_corpus() if "\r" not in line and "\n" not in line][:200]
    text = "".join(lines)
    variants = {"lf": text.encode(), "cr": text.replace("\n", "\r").encode(),
                "bom-crlf": b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode()}
    for name, raw in variants.items():
        (tmp_path / f"{name}.txt").write_bytes(raw)
        bpe_cli.main(["train", "--input", str(tmp_path / f"{name}.txt"), "--vocab-size", "300", "--out",
                      str(tmp_path / name)])
        assert list(files.read_lines(tmp_path / f"{name}.txt")) == lines
    for name in ("cr", "bom-crlf"):
        for file in ("vocab.json", "merges.txt"):
            assert (tmp_path / name / file).read_bytes() == (tmp_path / "lf" / file).read_bytes(), (name, file)
    assert "\ufeff" not in (tmp_path / "bom-crlf" / "vocab.json").read_text(encoding="utf-8")


# ---------------------------------------------------------------- a vocabulary smaller than asked
def test_training_says_why_the_vocabulary_is_smaller_than_asked(capsys):
    # as in test_hand_checkable_training: 2 merges, then (" ab", c) is seen once < min_frequency=2
    tok = bpe.Tokenizer.train(["ab ab ab abc"], vocab_size=300, verbose=True)
    note = "vocabulary 263 of the 300 asked: after 2 merges no pair occurs 2 times or more"
    assert tok.training_note.startswith(note) and "--min-frequency" in tok.training_note
    assert [line for line in capsys.readouterr().err.splitlines() if "warning" in line] == [f"warning: {tok.training_note}"]
    # with min_frequency=1 the third merge makes every pre-token one token: nothing is left to merge
    tok = bpe.Tokenizer.train(["ab ab ab abc"], vocab_size=300, min_frequency=1)
    assert tok.training_note == "vocabulary 264 of the 300 asked: after 3 merges every pre-token is a single token; add text"
    assert capsys.readouterr().err == ""  # not verbose: the note is kept, not printed
    assert bpe.Tokenizer.train(["ab ab ab abc"], vocab_size=263).training_note is None


# ---------------------------------------------------------------- the atomic write
def test_write_atomic(tmp_path):
    path = tmp_path / "f.txt"
    files.write_atomic(path, "héllo")
    assert path.read_bytes() == "héllo".encode()
    files.write_atomic(str(path), b"\x00\xff")
    assert path.read_bytes() == b"\x00\xff"
    with pytest.raises(TypeError):
        files.write_atomic(path, 12)  # fails while writing: the old file stays whole, no temporary file is left
    assert path.read_bytes() == b"\x00\xff" and os.listdir(tmp_path) == ["f.txt"]


# ---------------------------------------------------------------- the command line: bad input
def snapshot(folder):
    """Every file and folder under `folder`, with its bytes: a bad command must change none of it."""
    return {os.path.relpath(os.path.join(d, n), folder): open(os.path.join(d, n), "rb").read() if n in files else None
            for d, dirs, files in os.walk(folder) for n in dirs + files}


GOOD = {"vocab.json": None, "merges.txt": None}  # the trained tokenizer's own files (see workspace)
TOKENIZER_CASES = [  # (name, files of the tokenizer folder `bad` changed from a good one, expected message)
    ("vocab.json not JSON", {"vocab.json": b'{"a": '}, "bad/vocab.json: not valid JSON"),
    ("vocab.json empty", {"vocab.json": b""}, "bad/vocab.json: empty file"),
    ("vocab.json not UTF-8", {"vocab.json": b'{"\xff": 0}'}, "bad/vocab.json: not UTF-8 text at byte 2"),
    ("vocab.json a list", {"vocab.json": b"[1, 2]"}, "bad/vocab.json: expected a JSON object mapping tokens to ids"),
    ("vocab.json a string id", {"vocab.json": b'{"a": "x"}'}, 'bad/vocab.json: entry "a": "x": expected'),
    ("vocab.json a gap in ids", {"vocab.json": b'{"a": 0, "b": 2}'}, "bad/vocab.json: the ids must be 0..1, each once; id 1"),
    ("vocab.json an id twice", {"vocab.json": b'{"a": 0, "b": 0}'}, "bad/vocab.json: the ids must be 0..1, each once; an id"),
    ("vocab.json without bytes", {"vocab.json": b'{"a": 0}', "merges.txt": b"#version: 0.2\n"},
     "bad/vocab.json: vocabulary lacks 255 of the 256 byte tokens"),
    ("merges.txt missing", {"merges.txt": None}, "bad: has vocab.json but no merges.txt"),
    ("merges.txt a folder", {"merges.txt": "folder"}, "bad/merges.txt: a folder, not a file"),
    ("merges.txt empty", {"merges.txt": b""}, "bad/merges.txt: empty file"),
    ("merges.txt not UTF-8", {"merges.txt": b"#version: 0.2\n\xff\xfe\n"}, "bad/merges.txt: not UTF-8 text at byte 14"),
    ("merges.txt three symbols", {"merges.txt": b"#version: 0.2\na b c\n"}, "bad/merges.txt:2: expected two symbols"),
    ("merges.txt unknown token", {"merges.txt": "#version: 0.2\nĠzz q\n".encode()},
     "bad/merges.txt:2: merge 'Ġzz' 'q' names 'Ġzz', which is not in vocab.json"),
]
TRAIN = ["train", "--input", "ok.txt", "--out", "new"]
CLI_CASES = [  # (name, arguments, expected message)
    ("no command", [], "required: command"),
    ("vocab size 0", TRAIN + ["--vocab-size", "0"], "--vocab-size: must be at least 261 (256 bytes + 5 special tokens)"),
    ("vocab size negative", TRAIN + ["--vocab-size", "-300"], "--vocab-size: must be at least 261"),
    ("vocab size below the bytes", TRAIN + ["--vocab-size", "260"], "--vocab-size: must be at least 261"),
    ("vocab size not whole", TRAIN + ["--vocab-size", "1e3"], "--vocab-size: expected a whole number, got '1e3'"),
    ("min frequency 0", TRAIN + ["--vocab-size", "300", "--min-frequency", "0"], "--min-frequency: must be at least 1"),
    ("min frequency negative", TRAIN + ["--vocab-size", "300", "--min-frequency", "-2"], "--min-frequency: must be at least 1"),
    ("errors not a choice", TRAIN + ["--vocab-size", "300", "--errors", "ignore"], "--errors: invalid choice"),
    ("input missing", ["train", "--input", "nothing.txt", "--vocab-size", "300", "--out", "new"], "nothing.txt: no such file"),
    ("input a folder", ["train", "--input", "folder", "--vocab-size", "300", "--out", "new"], "folder: a folder, not a file"),
    ("input empty", ["train", "--input", "empty.txt", "--vocab-size", "300", "--out", "new"], "empty.txt: no text to train on"),
    ("input not UTF-8", ["train", "--input", "binary.txt", "--vocab-size", "300", "--out", "new"],
     "binary.txt: not UTF-8 text at byte 14 (pass --errors replace"),
    ("out a file", ["train", "--input", "ok.txt", "--vocab-size", "300", "--out", "ok.txt"], "--out ok.txt: "),
    ("out inside a file", ["train", "--input", "ok.txt", "--vocab-size", "300", "--out", "ok.txt/sub"], "ok.txt is a file"),
    ("out empty", ["train", "--input", "ok.txt", "--vocab-size", "300", "--out", ""], "--out: expected a path"),
    ("out holds a tokenizer", ["train", "--input", "ok.txt", "--vocab-size", "300", "--out", "tok"],
     "--out tok already holds a tokenizer (vocab.json); pass --overwrite"),
    ("tokenizer missing", ["encode", "--tokenizer", "nowhere", "hi"], "nowhere: no such folder"),
    ("tokenizer a file", ["encode", "--tokenizer", "ok.txt", "hi"], "ok.txt: not a folder"),
    ("tokenizer empty", ["encode", "--tokenizer", "", "hi"], "--tokenizer: expected a path"),
    ("tokenizer folder empty", ["encode", "--tokenizer", "folder", "hi"], "folder: no tokenizer files"),
    ("encode without text", ["encode", "--tokenizer", "tok"], "required: text"),
] + [(name, ["encode", "--tokenizer", "bad", "hi"], message, files) for name, files, message in TOKENIZER_CASES]


@pytest.fixture(scope="module")
def trained_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok")
    bpe.Tokenizer.train(trained_corpus(), vocab_size=300).save(folder)
    return {name: (folder / name).read_bytes() for name in GOOD}


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input(case, tmp_path, trained_files):
    name, args, message, broken = (case + (None,))[:4]
    (tmp_path / "ok.txt").write_text("\n".join(trained_corpus()[:50]), encoding="utf-8")
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "binary.txt").write_bytes(b"fine line\nbad \xff byte\n")
    (tmp_path / "folder").mkdir()
    for folder, extra in (("tok", {}), ("bad", broken or {})):
        (tmp_path / folder).mkdir()
        for file, content in {**trained_files, **extra}.items():
            if content == "folder":
                (tmp_path / folder / file).mkdir()
            elif content is not None:
                (tmp_path / folder / file).write_bytes(content)
    before = snapshot(tmp_path)
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert snapshot(tmp_path) == before  # nothing written, nothing overwritten


def test_cli_overwrite_and_short_vocabulary(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("ab ab ab abc\n", encoding="utf-8")
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "vocab.json").write_text("old", encoding="utf-8")
    r = run_cli("train", "--input", str(corpus), "--vocab-size", "300", "--out", str(tmp_path / "tok"), "--overwrite")
    assert r.returncode == 0, r.stderr
    assert bpe.Tokenizer.load(tmp_path / "tok").merges == {(4 + ord("a"), 4 + ord("b")): 260, (4 + ord(" "), 260): 261}
    warnings = [line for line in r.stderr.replace("\r", "\n").splitlines() if line.startswith("warning")]
    assert warnings == ["warning: vocabulary 263 of the 300 asked: after 2 merges no pair occurs 2 times or more; "
                        "lower --min-frequency or add text"]


def test_cli_help_names_every_default():
    """Every option has a help text, and the help of every option with a default states it."""
    commands = next(a for a in bpe_cli.parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(commands) == {"train", "encode"}
    for command, p in commands.items():
        for action in p._actions:
            if action.dest == "help":
                continue
            assert action.help, (command, action.dest)
            if action.required and action.option_strings:
                assert "required" in action.help, (command, action.dest)
            elif action.default not in (None, False):
                assert "%(default)s" in action.help, (command, action.dest)
