import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import bpe
import data
import roberta
import train
from conftest import ROOT
from machinery import corpora, files, speed

TINY = ["--config", "tiny", "--seq-len", "32", "--batch-size", "8", "--lr", "1e-3", "--warmup-steps", "2",
        "--log-interval", "1", "--eval-interval", "4", "--eval-sequences", "16", "--device", "cpu", "--dropout", "0"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    corpus = corpora.builtin_corpus(str(d / "corpus.txt"))
    bpe.Tokenizer.train(files.read_lines(corpus), 500).save(d / "tok")
    data.prepare([corpus], str(d / "tok"), str(d / "data"), valid_fraction=0.05, workers=1, verbose=False)
    return d / "data"


def run(*args, cwd=ROOT, torchrun=0, check=True):
    cmd = [sys.executable] + (["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}"]
                              if torchrun else []) + [os.path.join(ROOT, "train.py"), *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if check:
        assert r.returncode == 0, r.stderr[-3000:]
    return r


def run_here(capsys, *args):
    """train.main in this process, for runs refused before any training (a fresh process each costs a second
    of imports; test_the_demo_refuses_options_it_would_ignore checks a real one): (exit code, its stderr,
    with the message of a sys.exit)."""
    with pytest.raises(SystemExit) as e:
        train.main([str(a) for a in args])
    code, err = e.value.code, capsys.readouterr().err
    return code, err + (f"{code}\n" if isinstance(code, str) else "")


def read_log(out):
    with open(os.path.join(out, "log.jsonl")) as f:
        return [json.loads(line) for line in f]


def losses(out):
    return {r["step"]: r["loss"] for r in read_log(out) if "loss" in r}


# ---------------------------------------------------------------- pieces
def test_schedule():
    cfg = train.TrainConfig(lr=1e-3, warmup_steps=10, max_steps=110)
    assert train.lr_at(0, cfg) == pytest.approx(1e-4)
    assert train.lr_at(9, cfg) == pytest.approx(1e-3)
    assert train.lr_at(10, cfg) == pytest.approx(1e-3)
    assert train.lr_at(60, cfg) == pytest.approx(5e-4)
    assert train.lr_at(110, cfg) == 0.0
    assert train.RECIPES["base"]["lr"] == 6e-4 and train.RECIPES["large"]["warmup_steps"] == 30_000
    assert train.RECIPES["base"]["batch_size"] == 8192 and train.RECIPES["base"]["max_steps"] == 500_000


def test_no_weight_decay_on_biases_and_layer_norms():
    model = roberta.RobertaForMaskedLM(roberta.RobertaConfig.preset("tiny", vocab_size=100))
    decay, no_decay = roberta.param_groups(model, 0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim == 2 for p in decay["params"])
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in no_decay["params"]} >= {"lm_head.bias", "roberta.embeddings.norm.weight"}
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


# ---------------------------------------------------------------- runs
@pytest.mark.slow
def test_single_process_run_logs_and_saves(prepared, tmp_path):
    out = tmp_path / "one"
    run("--data", prepared, "--out", out, "--max-steps", 8, *TINY)
    log = read_log(out)
    assert [r["step"] for r in log] == list(range(1, 9))
    assert all({"step", "loss", "lr", "tokens_per_s", "mfu"} <= set(r) for r in log)
    evals = [r for r in log if "valid_loss" in r]
    assert [r["step"] for r in evals] == [4, 8] and evals[0]["valid_ppl"] == pytest.approx(
        torch.tensor(evals[0]["valid_loss"]).exp().item(), rel=1e-4)
    assert log[-1]["loss"] < log[0]["loss"]
    assert {"checkpoint.pt", "vocab.json", "merges.txt", "log.jsonl"} <= set(os.listdir(out))
    model = roberta.load_pretrained(str(out), verbose=False)  # evaluate.py and finetune.py read it so
    assert model.cfg.vocab_size == 500


@pytest.mark.slow
def test_two_processes_equal_one(prepared, tmp_path):
    """Footnote 8: the same --batch-size gives the same losses whatever the number of processes
    (here 2 gloo processes x 2 micro-batches of 2 against 1 process x 1 micro-batch of 8)."""
    run("--data", prepared, "--out", tmp_path / "one", "--max-steps", 4, *TINY)
    run("--data", prepared, "--out", tmp_path / "two", "--max-steps", 4, "--micro-batch-size", 2, *TINY, torchrun=2)
    a, b = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert a.keys() == b.keys() == {1, 2, 3, 4}
    for step in a:
        assert abs(a[step] - b[step]) < 1e-4, (step, a[step], b[step])
    va = [r["valid_loss"] for r in read_log(tmp_path / "one") if "valid_loss" in r]
    vb = [r["valid_loss"] for r in read_log(tmp_path / "two") if "valid_loss" in r]
    assert va and abs(va[0] - vb[0]) < 1e-4


@pytest.mark.slow
def test_resume_after_kill_equals_uninterrupted(prepared, tmp_path):
    args = ["--data", prepared, "--max-steps", 24, "--save-interval", 4, *TINY[:-2], "--dropout", "0.1"]
    run("--out", tmp_path / "straight", *args)
    out = tmp_path / "killed"
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--out", str(out), *map(str, args)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(out / "log.jsonl") and len(read_log(out)) >= 10:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    run("--out", out, *args, "--resume")
    a, b = losses(tmp_path / "straight"), losses(out)
    assert a.keys() == b.keys() == set(range(1, 25))
    assert all(abs(a[s] - b[s]) <= 1e-6 for s in a), [(s, a[s], b[s]) for s in a if a[s] != b[s]]


@pytest.mark.slow
def test_bf16_static_masking_and_nsp_formats(prepared, tmp_path):
    run("--data", prepared, "--out", tmp_path / "bf16", "--max-steps", 3, "--amp", "bf16", "--masking", "static",
        *TINY)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in read_log(tmp_path / "bf16"))
    run("--data", prepared, "--out", tmp_path / "nsp", "--max-steps", 2, "--format", "segment-pair", *TINY)
    assert all("nsp_loss" in r for r in read_log(tmp_path / "nsp"))
    run("--data", prepared, "--out", tmp_path / "doc", "--max-steps", 2, "--format", "doc-sentences", *TINY)
    assert len(read_log(tmp_path / "doc")) == 2


@pytest.mark.slow
def test_bad_inputs(prepared, tmp_path, capsys):
    out = tmp_path / "run"
    cases = [
        (["--data", tmp_path / "nowhere", "--out", out, *TINY], "meta.json missing"),
        (["--data", prepared, "--out", out, *TINY, "--micro-batch-size", "3"], "not divisible"),
        (["--data", prepared, "--out", out, *TINY[2:], "--config", "huge"], "unknown --config"),
        (["--data", prepared, "--out", out, *TINY, "--amp", "fp16"], "needs a GPU"),
        (["--data", prepared, "--out", out, *TINY, "--resume"], "no checkpoint.pt"),
    ]
    for args, message in cases:
        code, err = run_here(capsys, *args)
        assert code not in (0, None) and message in err and "Traceback" not in err, err[-2000:]
    run("--data", prepared, "--out", out, "--max-steps", 2, *TINY)
    r = run("--data", prepared, "--out", out, "--max-steps", 2, *TINY, check=False)
    assert r.returncode != 0 and "already holds a checkpoint" in r.stderr
    r = run("--data", prepared, "--out", out, "--max-steps", 4, *TINY[:4], "--batch-size", "4", *TINY[6:],
            "--resume", check=False)
    assert r.returncode != 0 and "--batch-size was 8" in r.stderr
    ckpt = out / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # torn
    torn = ckpt.read_bytes()
    r = run("--data", prepared, "--out", out, "--max-steps", 4, *TINY, "--resume", check=False)
    assert r.returncode != 0 and "not a readable checkpoint" in r.stderr and ckpt.read_bytes() == torn


@pytest.mark.slow
def test_non_finite_losses_skip_then_stop_keeping_the_last_checkpoint(prepared, tmp_path):
    out = tmp_path / "nan"
    r = run("--data", prepared, "--out", out, "--max-steps", 30, "--save-interval", 1, *TINY[:6], "--lr", "1e6",
            *TINY[8:], check=False)
    assert r.returncode != 0 and "non-finite losses in a row" in r.stderr and "Traceback" not in r.stderr
    log = read_log(out)
    skipped = [rec for rec in log if rec.get("skipped") == "non-finite loss"]
    assert len(skipped) == 5
    good = max(rec["step"] for rec in log if isinstance(rec.get("loss"), float))
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["state"]["step"] == good  # the last good update, saved whole
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


@pytest.mark.slow
def test_export_to_hugging_face_layout(prepared, tmp_path):
    run("--data", prepared, "--out", tmp_path / "run", "--max-steps", 1, *TINY)
    r = subprocess.run([sys.executable, os.path.join(ROOT, "roberta.py"), "export", "--checkpoint",
                        str(tmp_path / "run"), "--out", str(tmp_path / "hf")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert {"config.json", "model.safetensors", "vocab.json", "merges.txt"} <= set(os.listdir(tmp_path / "hf"))
    a = roberta.load_pretrained(str(tmp_path / "run"), verbose=False).eval()
    b = roberta.load_pretrained(str(tmp_path / "hf"), verbose=False).eval()
    ids = torch.randint(4, 500, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(a(ids), b(ids))


@pytest.mark.slow
def test_demo(tmp_path):
    r = run("--max-steps", 3, cwd=tmp_path)
    assert "held-out perplexity" in r.stdout and "->" in r.stdout
    assert (tmp_path / "cache" / "demo" / "data" / "meta.json").exists()
    assert (tmp_path / "out" / "demo" / "checkpoint.pt").exists()
    again = run("--max-steps", 3, cwd=tmp_path)  # cached: a finished run is read back, not redone
    assert "held-out perplexity" in again.stdout and "training a byte-level BPE" not in again.stdout


# ---------------------------------------------------------------- bad input: one line, nothing written
@pytest.fixture
def damaged(prepared, tmp_path):
    """Copies of the prepared folder with a torn train.bin and a meta.json of the wrong shape."""
    import shutil
    torn, shape = tmp_path / "torn", tmp_path / "shape"
    shutil.copytree(prepared, torn)
    shutil.copytree(prepared, shape)
    with open(torn / "train.bin", "r+b") as f:
        f.truncate(os.path.getsize(torn / "train.bin") - 1)
    (shape / "meta.json").write_text('{"train": [1, 2]}')
    return torn, shape


BAD = [  # (options, what the one-line error must say)
    (["--seq-len", "0"], "--seq-len: must be at least 8"),
    (["--seq-len", "2"], "--seq-len: must be at least 8"),
    (["--seq-len", "10000"], "longer than the model's 512 positions"),
    (["--batch-size", "0"], "--batch-size: must be at least 1"),
    (["--micro-batch-size", "-2"], "--micro-batch-size: must be at least 1"),
    (["--max-steps", "0"], "--max-steps: must be at least 1"),
    (["--log-interval", "0"], "--log-interval: must be at least 1"),
    (["--save-interval", "0"], "--save-interval: must be at least 1"),
    (["--eval-interval", "0"], "--eval-interval: must be at least 1"),
    (["--lr", "0"], "--lr: must be > 0"),
    (["--lr", "fast"], "--lr: expected a number"),
    (["--dropout", "1"], "--dropout: must be in [0, 0.99]"),
    (["--mask-rate", "0"], "--mask-rate: must be in (0, 1]"),
    (["--mask-split", "0.5,0.5"], "--mask-split: expected three shares"),
    (["--mask-split", "0.8,0.1,0.2"], "--mask-split: expected three shares"),
    (["--device", "cuda:0"] if not torch.cuda.is_available() else ["--device", "cuda:99"], "--device cuda"),
    (["--format", "paragraphs"], "--format: invalid choice"),
    (["--device", "tpu"], "--device: expected cpu, cuda or cuda:N"),
    (["--seed", "99999999999999999999"], "--seed: must be in [0, 2147483647]"),
    (["--max-positions", "1000000000"], "--max-positions: must be in [8, 65536]"),
]


@pytest.mark.parametrize("options, message", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_options_one_line_and_nothing_written(prepared, tmp_path, capsys, options, message):
    out = tmp_path / "run"
    code, err = run_here(capsys, "--data", prepared, "--out", out, *TINY, *options)
    lines = err.strip().splitlines()
    assert code not in (0, None) and len(lines) == 1 and message in lines[0], err[-2000:]
    assert not out.exists()


def test_bad_files_and_folders_are_named(prepared, damaged, tmp_path, capsys):
    torn, shape = damaged
    (tmp_path / "file").write_text("not a folder")
    cases = [
        (["--data", torn, "--out", tmp_path / "a"], "train.bin: "),
        (["--data", shape, "--out", tmp_path / "b"], "meta.json: not data.py's meta.json"),
        (["--data", tmp_path / "nowhere", "--out", tmp_path / "c"], "nowhere: no such folder"),
        (["--data", prepared, "--out", tmp_path / "file"], "a file is in the way"),
        (["--data", prepared, "--out", tmp_path / "d", "--resume"], "must be a folder every node shares"),
    ]
    for args, message in cases:
        code, err = run_here(capsys, *args, *TINY)
        lines = err.strip().splitlines()
        assert code not in (0, None) and len(lines) == 1 and message in lines[0], err[-2000:]
    assert (tmp_path / "file").read_text() == "not a folder"


def test_the_demo_refuses_options_it_would_ignore(tmp_path):
    r = run("--config", "base", "--batch-size", "4", "--lr", "1e-5", "--seq-len", "64", "--out", tmp_path / "x",
            cwd=tmp_path, check=False)
    assert r.returncode != 0 and "needs --data" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_overwrite_starts_again(prepared, tmp_path):
    out = tmp_path / "run"
    run("--data", prepared, "--out", out, "--max-steps", 2, *TINY)
    run("--data", prepared, "--out", out, "--max-steps", 3, *TINY, "--overwrite")
    assert [r["step"] for r in read_log(out)] == [1, 2, 3]


def test_help_describes_every_option():
    r = run("--help")
    options = r.stdout[r.stdout.index("options:"):].split("\n  --")[1:]
    assert len(options) >= 27
    for text in options:  # each option: its meaning, and its default where it has one
        assert len(text.split()) > 4, text
        assert "default" in text or text.startswith(("help", "resume", "overwrite")), text


# ---------------------------------------------------------------- several nodes (issue: multi-node)
def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_nodes(args, out):
    """Two torchrun "nodes" on this machine (c10d rendezvous on localhost), one process each, sharing --out."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                               "--node-rank", str(rank), "--rdzv-backend", "c10d", "--rdzv-id", "test",
                               "--rdzv-endpoint", f"127.0.0.1:{port}", os.path.join(ROOT, "train.py"), "--out", str(out),
                               *map(str, args)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for rank in (0, 1)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors[0][-2000:] + errors[1][-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["full-sentences", "doc-sentences", "segment-pair", "sentence-pair"])
def test_two_nodes_equal_one_process(prepared, tmp_path, fmt):
    """Every format on two "nodes" logs the losses of one process (sentence-pair: token-budget batches that can
    hold a single example, so one node's share is empty and it still joins every collective)."""
    micro = 3 if data.FORMATS[fmt].by_tokens else 2  # fixed-size batches: a divisor of the batch of 8
    args = ["--data", prepared, "--max-steps", 3, "--micro-batch-size", micro, "--format", fmt, *TINY]
    run("--out", tmp_path / "one", *args)
    two_nodes(args, tmp_path / "two")
    a, b = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert a.keys() == b.keys() == {1, 2, 3}
    assert all(abs(a[s] - b[s]) < 1e-5 for s in a), (a, b)


@pytest.mark.slow
def test_background_preparation_changes_no_number(prepared, tmp_path):
    """The batch thread only moves work in time: with --prefetch 0 (prepared in the loop) the same losses."""
    run("--data", prepared, "--out", tmp_path / "thread", "--max-steps", 4, *TINY)
    run("--data", prepared, "--out", tmp_path / "inline", "--max-steps", 4, "--prefetch", 0, *TINY)
    assert losses(tmp_path / "thread") == losses(tmp_path / "inline")


def test_a_compiler_that_fails_falls_back_to_eager(monkeypatch, capsys):
    def broken(model):
        def call(*args, **kwargs):
            raise RuntimeError("no C++ compiler here")
        return call
    monkeypatch.setattr(torch, "compile", broken)
    model = roberta.RobertaForMaskedLM(roberta.RobertaConfig.preset("tiny", vocab_size=100))
    before = torch.get_rng_state()
    got = speed.maybe_compile(model, train.TrainConfig(compile=True), torch.device("cpu"), master=True)
    assert got is model and "torch.compile failed (RuntimeError: no C++ compiler here); training eagerly" in \
        capsys.readouterr().err
    assert torch.equal(torch.get_rng_state(), before) and all(p.grad is None for p in model.parameters())


def test_batches_resume_at_a_saved_offset_in_a_computed_order(prepared, monkeypatch):
    """At the paper's scale an epoch's order is computed (data.Shuffle) and its token-budget batches are found
    as they are needed: the (epoch, position, offset) saved after an update restarts the same updates, across
    the end of an epoch, without finding the batches before it."""
    monkeypatch.setattr(data, "SHUFFLE_ABOVE", 0)
    tokens, ends, meta = data.load_split(str(prepared), "train")
    tok = bpe.Tokenizer.load(os.path.join(os.path.dirname(prepared), "tok"))
    cfg = train.TrainConfig(data=str(prepared), format="sentence-pair", seq_len=32, batch_size=64, prefetch=0)
    ex = data.examples(tokens, ends, cfg.format, cfg.seq_len, tok.eos_id)
    lengths = data.example_lengths(ex, cfg.format, cfg.seq_len)
    per_epoch = len(data.epoch_batches(lengths, 64, 0, 0, token_budget=64 * 32))

    def updates(epoch, position, offset, n):
        found = train.global_batches(cfg, lengths, epoch, position, offset)
        b = train.updates(train.TrainSet(tokens, ex, lengths, tok), cfg, 64, 0, 1, epoch, position, found)
        return [next(b) for _ in range(n)]

    straight = updates(0, 0, 0, per_epoch + 3)
    epoch, position, offset, _ = straight[per_epoch - 3]
    assert (epoch, position) == (0, per_epoch - 2) and offset > 0
    resumed = updates(epoch, position, offset, 5)
    assert [u[:3] for u in resumed] == [u[:3] for u in straight[per_epoch - 2:]]
    assert resumed[-1][0] == 1  # the next epoch
    for (*_, a), (*_, b) in zip(resumed, straight[per_epoch - 2:]):
        assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a.micro_batches, b.micro_batches))
