"""bench.py: the arithmetic behind the README's figures, and the command line refusing bad input."""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import bench
from conftest import ROOT

# The README's tokenizer table (seconds), in bench.py's row order: training first, then encoding.
README_ROWS = [
    ("train", bench.OURS, 2.15), ("train", bench.HF_TOKENIZERS, 1.51), ("train", bench.NAIVE, 31_081.0),
    ("encode", bench.OURS_ROBERTA, 2.06), ("encode", bench.OURS_GPT2, 1.92), ("encode", bench.TIKTOKEN, 0.90),
    ("encode", bench.HF_PYTHON, 6.07),
]


def test_bpe_ratios_divide_the_right_measurements():
    r = bench.bpe_ratios(README_ROWS)
    assert list(r) == [what for what, _, _ in bench.BPE_RATIOS]
    training, naive, encoding, python = r.values()
    assert training == pytest.approx(2.15 / 1.51) and round(training, 2) == 1.42  # not 1.92 / 1.51 = 1.27
    assert naive == pytest.approx(31_081 / 2.15) and round(naive, -2) == 14_500  # not 31,081 / 1.92 = 16,200
    assert encoding == pytest.approx(1.92 / 0.90)
    assert python == pytest.approx(6.07 / 2.06)
    # the order of the rows does not matter: each ratio names its two rows
    assert bench.bpe_ratios(README_ROWS[::-1]) == r


def test_bpe_ratios_without_peers():
    rows = [(task, name, None if name in (bench.HF_TOKENIZERS, bench.TIKTOKEN) else t) for task, name, t in README_ROWS]
    r = bench.bpe_ratios(rows)
    assert [what for what, v in r.items() if v is None] == [bench.BPE_RATIOS[0][0], bench.BPE_RATIOS[2][0]]
    assert r[bench.BPE_RATIOS[1][0]] == pytest.approx(31_081 / 2.15)


def test_bench_lines_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="corpora/wikitext-2/valid.txt: missing"):
        bench.bench_lines(str(tmp_path))
    for f in ("corpora/wikitext-2/valid.txt", "corpora/wikitext-2/test.txt", "corpora/tinyshakespeare/input.txt"):
        os.makedirs(tmp_path / os.path.dirname(f), exist_ok=True)
        (tmp_path / f).write_text("one\ntwo\n", encoding="utf-8")
    (tmp_path / "roberta").mkdir()
    (tmp_path / "gpt2").mkdir()
    os.makedirs(tmp_path / "race" / "dev" / "high")
    (tmp_path / "race" / "dev" / "high" / "1.txt").write_text(json.dumps({"article": "A passage.\nEnd."}))
    assert bench.bench_lines(str(tmp_path)) == ["one\n", "two\n"] * 3 + ["A passage.\n", "End."]
    (tmp_path / "race" / "dev" / "high" / "2.txt").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"race/dev/high/2.txt: not a RACE passage"):
        bench.bench_lines(str(tmp_path))


def test_model_bench_prints_a_row(capsys):
    bench.main(["model", "--runs", "tiny:2:16", "--steps", "1", "--amp", "none", "--device", "cpu"])
    out = capsys.readouterr().out.splitlines()
    assert "none: " in out[0] and "(measured peak)" in out[0]  # a CPU has no datasheet peak in the table
    row = out[-1].split(" | ")
    assert row[:3] == ["| tiny", "2x16", "none"] and float(row[3].replace(",", "")) > 0
    assert 0 < float(row[4].rstrip("%")) < 100 and row[5:] == ["-", "- |"]


# ---------------------------------------------------------------- the command line: bad input
CASES = [  # (name, arguments, expected message)
    ("no command", [], "required: what"),
    ("bpe vocab size 0", ["bpe", "--vocab-size", "0"], "--vocab-size: must be at least 261 (256 bytes + 5 special"),
    ("bpe vocab size not whole", ["bpe", "--vocab-size", "8e3"], "--vocab-size: expected a whole number, got '8e3'"),
    ("model unknown config", ["model", "--runs", "huge:8:128"], "--runs: expected CONFIG:BATCH:SEQ_LEN with CONFIG one"),
    ("model run without seq len", ["model", "--runs", "tiny:8"], "--runs: expected CONFIG:BATCH:SEQ_LEN"),
    ("model batch 0", ["model", "--runs", "tiny:0:128"], "--runs: tiny:0:128: BATCH must be at least 1, got 0"),
    ("model batch not whole", ["model", "--runs", "tiny:x:128"], "BATCH expected a whole number, got 'x'"),
    ("model seq len 0", ["model", "--runs", "tiny:8:0"], "SEQ_LEN must be in [1, 512] (the model's positions), got 0"),
    ("model seq len over positions", ["model", "--runs", "tiny:8:513"], "SEQ_LEN must be in [1, 512]"),
    ("model steps 0", ["model", "--steps", "0"], "--steps: must be at least 1, got 0"),
    ("model steps negative", ["model", "--steps", "-3"], "--steps: must be at least 1, got -3"),
    ("model amp fp16", ["model", "--amp", "fp16"], "--amp: invalid choice: 'fp16'"),
    ("model device unknown", ["model", "--device", "gpu"], "--device: expected cpu, cuda or cuda:N; got 'gpu'"),
    ("model device index", ["model", "--device", "cuda:99"], "--device: cuda:99: "),
    ("model batch out of memory", ["model", "--runs", "tiny:1000000000000:512", "--steps", "1", "--amp", "none",
                                   "--device", "cpu"], "tiny:1000000000000:512: out of memory on cpu; try a smaller batch"),
    # (4 PB: more than a process can address, so refused even where the kernel overcommits memory)
    ("data workers 0", ["data", "--workers", "0"], "--workers: must be in [1, 1024], got 0"),
    ("data workers huge", ["data", "--workers", "100000"], "--workers: must be in [1, 1024], got 100000"),
    ("data copies 0", ["data", "--copies", "0"], "--copies: must be in [1, 1000], got 0"),
    ("data copies huge", ["data", "--copies", "99999999"], "--copies: must be in [1, 1000]"),
    ("train unknown config", ["train", "--config", "huge"], "--config: invalid choice: 'huge'"),
    ("train batch size 0", ["train", "--batch-size", "0"], "--batch-size: must be at least 1, got 0"),
    ("train seq len 4", ["train", "--seq-len", "4"], "--seq-len: must be in [8, 512], got 4"),
    ("train seq len over positions", ["train", "--seq-len", "1024"], "--seq-len: must be in [8, 512], got 1024"),
    ("train steps 0", ["train", "--steps", "0"], "--steps: must be at least 1, got 0"),
    ("train vocab size 100", ["train", "--vocab-size", "100"], "--vocab-size: must be at least 261"),
    ("train delay negative", ["train", "--delay", "-1"], "--delay: must be in [0, 10], got -1"),
    ("train device unknown", ["train", "--device", "tpu"], "--device: expected cpu, cuda or cuda:N; got 'tpu'"),
    ("startup too few tokens", ["startup", "--tokens", "1000"], "--tokens: must be in [10000, 10000000000], got 1000"),
    ("startup too few for the batch", ["startup", "--tokens", "20000", "--batch-size", "64"],
     "--tokens 20,000: too few for one update of --batch-size 64 sequences of 512 tokens (at least 38,400)"),
    ("startup tokens inf", ["startup", "--tokens", "inf"], "--tokens: expected a whole number"),
    ("continue without data", ["continue", "--init-from", "run"], "--init-from needs --data: a folder prepared with"),
    ("continue steps 0", ["continue", "--steps", "0"], "--steps: must be at least 1, got 0"),
]
try:
    import transformers  # noqa: F401
except ImportError:
    CASES.append(("compare-hf without transformers", ["model", "--compare-hf"], "--compare-hf needs transformers"))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_cli_bad_input(case, tmp_path, monkeypatch, capsys):
    """In this process (each subprocess would import torch again): argparse's exit or main's, one line."""
    name, args, message = case
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where a benchmark would write
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:  # any other exception, a traceback, fails the test
        bench.main(args)
    code = e.value.code
    assert code not in (0, None)
    lines = capsys.readouterr().err.splitlines() + ([code] if isinstance(code, str) else [])  # sys.exit(message)
    assert len(lines) == 1 and message in lines[0], lines
    assert os.listdir(tmp_path) == []  # nothing written, in the temporary folder or here


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [(["model", "--runs", "tiny:1000000000000:512", "--steps", "1", "--amp",
                                             "none", "--device", "cpu"], "out of memory")])
def test_cli_bad_input_as_a_command(args, message):  # one real process; CASES (in this process) has --steps 0
    r = subprocess.run([sys.executable, os.path.join(ROOT, "bench.py"), *args], capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr


def test_cli_help_names_every_default():
    commands = next(a for a in bench.parser()._actions if isinstance(a, bench.argparse._SubParsersAction)).choices
    assert set(commands) == {"bpe", "model", "data", "train", "startup", "compile", "gpu", "continue"}
    for command, p in commands.items():
        for action in p._actions:
            if action.dest != "help":
                assert action.help and "default" in action.help, (command, action.dest)


def test_synthetic_corpus_is_in_data_py_layout(tmp_path):
    n = bench.synthetic_corpus(str(tmp_path), 50_000)
    tokens, ends, meta = bench.prepared.load_split(str(tmp_path), "train")
    assert n == meta["train"]["tokens"] == tokens.size == ends[-1] and n >= 50_000
    assert np.all(tokens[ends - 1] == 2)  # every line ends with </s>
    lengths = np.diff(np.concatenate([[0], ends]))
    assert meta["train"]["documents"] == np.sum(lengths == 1) > 0 and lengths.max() <= 62
    ex = bench.data.examples(tokens, ends, "doc-sentences", 512, 2)
    assert len(ex) > 0


@pytest.mark.slow
def test_startup_measures_each_format_and_an_epochs_first_batch(capsys):
    bench.main(["startup", "--tokens", "20000", "--formats", "sentence-pair", "--batch-size", "4",
                "--epoch-examples", "5000"])
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    corpus = next(r for r in rows if "sentence-pair" in r)
    assert int(corpus[2].replace(",", "")) > 0  # examples
    starts = [r for r in rows if r[0] in ("| epoch start", "| resume half way")]
    assert len(starts) == 2 and all(0 < int(r[5].strip(" |").replace(",", "")) <= 5000 for r in starts)
