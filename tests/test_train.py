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
from machinery.formats import checkpoints, run_folder
from machinery.commands import corpora, roberta_cli, train_cli
from machinery.basics import files, lock, speed
from machinery.fast import orders
from machinery.datafolder import preparation
from machinery.formats import prepared as folder_checks

TINY = ["--config", "tiny", "--seq-len", "32", "--batch-size", "8", "--lr", "1e-3", "--warmup-steps", "2",
        "--log-interval", "1", "--eval-interval", "4", "--eval-sequences", "16", "--device", "cpu", "--dropout", "0"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The built-in corpus's reference documentation (79 documents, 430 KB; the standard library's docstrings,
    read in seconds, are left out), a 500-token BPE trained on it, the data prepared with 5% held out."""
    d = tmp_path_factory.mktemp("train")
    corpus = str(d / "corpus.txt")
    files.write_atomic(corpus, "".join("\n".join(doc) + "\n\n" for doc in corpora.reference_topics()))
    bpe.Tokenizer.train(files.read_lines(corpus), 500).save(d / "tok")
    preparation.prepare([corpus], str(d / "tok"), str(d / "data"), valid_fraction=0.05, workers=1, verbose=False)
    return d / "data"


def command(args, torchrun=0):
    return [sys.executable] + (["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}"]
                               if torchrun else []) + [os.path.join(ROOT, "train.py"), *map(str, args)]


def run(*args, cwd=ROOT, torchrun=0, check=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(command(args, torchrun), cwd=cwd, capture_output=True, text=True, env=env)
    if check:
        assert r.returncode == 0, r.stderr[-3000:]
    return r


def run_together(*runs):
    """Independent train.py runs (argument lists; torchrun=N as a ("torchrun", N) first item) side by side, one
    thread each, so that both cores work: each must succeed."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = []
    for args in runs:
        n = args[1] if args and args[0] == "torchrun" else 0
        procs.append(subprocess.Popen(command(args[2:] if n else args, n), cwd=ROOT, env=env, text=True,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(e[-2000:] for e in errors)


def run_here(capsys, *args):
    """train_cli.main (`python train.py`) in this process, for runs refused before any training (a fresh process each costs a second
    of imports; test_the_demo_refuses_options_it_would_ignore checks a real one): (exit code, its stderr,
    with the message of a sys.exit)."""
    code, err = train_here(capsys, *args)
    assert code is not None, "expected a refusal"
    return code, err


def train_here(capsys, *args):
    """train_cli.main (`python train.py`) in this process, for a short run that may finish (exit code 0) or fail: (exit code, stderr with
    the message of a sys.exit). The locks a process holds until it ends (--out's, --data's) are given back."""
    args = [str(a) for a in args]
    try:
        train_cli.main(args)
        code = 0
    except SystemExit as e:
        code = e.code
    finally:
        for option in ("--out", "--data"):
            if option in args:
                lock.release(args[max(i for i, a in enumerate(args) if a == option) + 1])
    err = capsys.readouterr().err
    return code, err + (f"{code}\n" if isinstance(code, str) else "")


def strict(text):
    """json.loads that refuses NaN and Infinity (Python's accepts them; JSON does not)."""
    def refuse(name):
        raise ValueError(f"not JSON: {name}")
    return json.loads(text, parse_constant=refuse)


def read_log(out):
    with open(os.path.join(out, "log.jsonl")) as f:
        return [strict(line) for line in f]


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
    run_together(["--data", prepared, "--out", tmp_path / "one", "--max-steps", 4, *TINY],
                 ["torchrun", 2, "--data", prepared, "--out", tmp_path / "two", "--max-steps", 4, "--micro-batch-size",
                  2, *TINY])
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
    straight = subprocess.Popen(command(["--out", tmp_path / "straight", *args]), cwd=ROOT, env={
        **os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # beside the other
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
    assert straight.wait(timeout=300) == 0
    a, b = losses(tmp_path / "straight"), losses(out)
    assert a.keys() == b.keys() == set(range(1, 25))
    assert all(abs(a[s] - b[s]) <= 1e-6 for s in a), [(s, a[s], b[s]) for s in a if a[s] != b[s]]


@pytest.mark.slow
def test_bf16_static_masking_and_nsp_formats(prepared, tmp_path, capsys):
    for args in (["--out", tmp_path / "bf16", "--max-steps", 3, "--amp", "bf16", "--masking", "static"],
                 ["--out", tmp_path / "nsp", "--max-steps", 2, "--format", "segment-pair"],
                 ["--out", tmp_path / "doc", "--max-steps", 2, "--format", "doc-sentences"]):
        code, err = train_here(capsys, "--data", prepared, *args, *TINY)
        assert code == 0, err[-2000:]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in read_log(tmp_path / "bf16"))
    assert all("nsp_loss" in r for r in read_log(tmp_path / "nsp"))
    assert len(read_log(tmp_path / "doc")) == 2


@pytest.mark.slow
def test_bad_inputs(prepared, tmp_path, capsys):
    out = tmp_path / "run"
    cases = [
        (["--data", tmp_path / "nowhere", "--out", out, *TINY], "nowhere: no such folder"),
        (["--data", prepared, "--out", out, *TINY, "--micro-batch-size", "3"], "not divisible"),
        (["--data", prepared, "--out", out, *TINY[2:], "--config", "huge"], "unknown --config"),
        (["--data", prepared, "--out", out, *TINY, "--amp", "fp16"], "needs a GPU"),
        (["--data", prepared, "--out", out, *TINY, "--resume"], "no checkpoint.pt"),
    ]
    for args, message in cases:
        code, err = run_here(capsys, *args)
        assert code not in (0, None) and message in err and "Traceback" not in err, err[-2000:]
    assert train_here(capsys, "--data", prepared, "--out", out, "--max-steps", 2, *TINY)[0] == 0
    code, err = run_here(capsys, "--data", prepared, "--out", out, "--max-steps", 2, *TINY)
    assert code not in (0, None) and "already holds a checkpoint" in err
    code, err = run_here(capsys, "--data", prepared, "--out", out, "--max-steps", 4, *TINY[:4], "--batch-size", "4",
                         *TINY[6:], "--resume")
    assert code not in (0, None) and "--batch-size was 8" in err
    ckpt = out / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # torn
    torn = ckpt.read_bytes()
    code, err = run_here(capsys, "--data", prepared, "--out", out, "--max-steps", 4, *TINY, "--resume")
    assert code not in (0, None) and "not a readable checkpoint" in err and ckpt.read_bytes() == torn


@pytest.mark.slow
def test_non_finite_losses_skip_then_stop_keeping_the_last_checkpoint(prepared, tmp_path, capsys):
    out = tmp_path / "nan"
    code, err = train_here(capsys, "--data", prepared, "--out", out, "--max-steps", 30, "--save-interval", 1,
                           *TINY[:6], "--lr", "1e6", *TINY[8:])
    assert code not in (0, None) and "non-finite losses in a row" in err
    log = read_log(out)
    skipped = [rec for rec in log if rec.get("skipped") == "non-finite loss"]
    assert len(skipped) == 5
    good = max(rec["step"] for rec in log if isinstance(rec.get("loss"), float))
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["state"]["step"] == good  # the last good update, saved whole
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


@pytest.mark.slow
def test_export_to_hugging_face_layout(prepared, tmp_path, capsys):
    """In this process (the export command as typed: tests/test_roberta.py)."""
    assert train_here(capsys, "--data", prepared, "--out", tmp_path / "run", "--max-steps", 1, *TINY)[0] == 0
    roberta_cli.main(["export", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "hf")])
    assert {"config.json", "model.safetensors", "vocab.json", "merges.txt"} <= set(os.listdir(tmp_path / "hf"))
    a = roberta.load_pretrained(str(tmp_path / "run"), verbose=False).eval()
    b = roberta.load_pretrained(str(tmp_path / "hf"), verbose=False).eval()
    ids = torch.randint(4, 500, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(a(ids), b(ids))


# the demo end to end, run again and with other options: tests/test_doc_commands.py (the classroom path)


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
    (["--lr", "0"], "--lr: must be in (0, 1000000], got 0"),
    (["--lr", "fast"], "--lr: expected a number"),
    (["--lr", "inf"], "--lr: must be in (0, 1000000], got inf"),
    (["--lr", "1e30"], "--lr: must be in (0, 1000000]"),
    (["--lr", "nan"], "--lr: must be in (0, 1000000]"),
    (["--weight-decay", "inf"], "--weight-decay: must be in [0, 10]"),
    (["--weight-decay", "-0.1"], "--weight-decay: must be in [0, 10]"),
    (["--clip-grad", "nan"], "--clip-grad: must be in [0, 1000000]"),
    (["--dropout", "1"], "--dropout: must be in [0, 0.99]"),
    (["--dropout", "nan"], "--dropout: must be in [0, 0.99]"),
    (["--mask-rate", "0"], "--mask-rate: the masking rate must be in (0, 1)"),
    (["--mask-rate", "1"], "--mask-rate: the masking rate must be in (0, 1), got 1"),
    (["--mask-rate", "nan"], "--mask-rate: the masking rate must be in (0, 1)"),
    (["--mask-rate=-inf"], "--mask-rate: the masking rate must be in (0, 1)"),
    (["--mask-split", "0.5,0.5"], "--mask-split: the mask/random/keep split must be 3 shares"),
    (["--mask-split", "0.8,0.1,0.2"], "--mask-split: the mask/random/keep split must be 3 shares"),
    (["--mask-split", "nan,0.5,0.5"], "--mask-split: the mask/random/keep split must be 3 shares"),
    (["--mask-split", "1.5,-0.5,0"], "--mask-split: the mask/random/keep split must be 3 shares"),
    (["--mask-split", "inf,0,0"], "--mask-split: the mask/random/keep split must be 3 shares"),
    (["--prepare-delay", "inf"], "--prepare-delay: must be in [0, 60]"),
    (["--prepare-delay", "61"], "--prepare-delay: must be in [0, 60]"),
    (["--out", ""], "--out: expected a path"),
    (["--data", ""], "--data: expected a path"),
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


@pytest.mark.slow  # as typed, a process; in this process: tests/test_first_hour.py
def test_the_demo_refuses_options_it_would_ignore(tmp_path):
    r = run("--config", "base", "--batch-size", "4", "--lr", "1e-5", "--seq-len", "64", "--out", tmp_path / "x",
            cwd=tmp_path, check=False)
    assert r.returncode != 0 and "needs --data" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_overwrite_starts_again(prepared, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_here(capsys, "--data", prepared, "--out", out, "--max-steps", 2, *TINY)[0] == 0
    assert train_here(capsys, "--data", prepared, "--out", out, "--max-steps", 3, *TINY, "--overwrite")[0] == 0
    assert [r["step"] for r in read_log(out)] == [1, 2, 3]


def test_help_describes_every_option(capsys):
    with pytest.raises(SystemExit) as e:
        train_cli.main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    options = out[out.index("options:"):].split("\n  --")[1:]
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


def two_nodes(args, out, beside=()):
    """Two torchrun "nodes" on this machine (c10d rendezvous on localhost), one process each, sharing --out;
    `beside`: the arguments of a one-process train.py run to make meanwhile."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                               "--node-rank", str(rank), "--rdzv-backend", "c10d", "--rdzv-id", "test",
                               "--rdzv-endpoint", f"127.0.0.1:{port}", os.path.join(ROOT, "train.py"), "--out", str(out),
                               *map(str, args)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for rank in (0, 1)]
    if beside:
        procs.append(subprocess.Popen(command(beside), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True))
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), "".join(e[-2000:] for e in errors)


@pytest.fixture
def sigterm_kept():
    """This process's SIGTERM handler, put back after a test that lets train_cli.peers_kept replace it."""
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)


def test_a_lost_peer_error_becomes_one_line_and_other_errors_pass(tmp_path, monkeypatch, sigterm_kept):
    cfg = train.TrainConfig(out=str(tmp_path))
    gloo = RuntimeError("[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer "
                        "[127.0.0.1]:5528. This is typically caused by a remote worker crashing.\nmore")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(ValueError) as e, train_cli.peers_kept(cfg):
        raise gloo
    assert str(e.value) == ("lost rank 0 of the 2 processes of this run (Connection closed by peer [127.0.0.1]:5528): "
                            "rank 1 stops too; no checkpoint was saved yet: rerun the same command")
    monkeypatch.setenv("WORLD_SIZE", "4")
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"^lost a process of the 4 .* rank 1 stops too; rerun the same command with "
                                         r"--resume to continue from the last checkpoint in "), train_cli.peers_kept(cfg):
        raise gloo
    for world, err in (("4", RuntimeError("a bug")), ("1", gloo)):  # not a lost peer: as it was
        monkeypatch.setenv("WORLD_SIZE", world)
        with pytest.raises(RuntimeError) as e, train_cli.peers_kept(cfg):
            raise err
        assert e.value is err
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun stops the other processes with SIGTERM
    with pytest.raises(SystemExit, match=r"^error: rank 1 was stopped \(SIGTERM: torchrun .*; rerun the same command "
                                         r"with --resume"), train_cli.peers_kept(cfg):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)


@pytest.mark.slow
def test_a_lost_peer_is_one_line_naming_it_and_how_to_resume(prepared, tmp_path):
    """Issue 32: two ranks started by hand (env rendezvous, no torchrun), the first (which holds the rendezvous
    store) killed mid-run: the other stops in one line, no traceback, naming the lost rank and --resume."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           "WORLD_SIZE": "2"}
    args = ["--data", prepared, "--out", tmp_path / "run", "--max-steps", 10 ** 5, "--save-interval", 2, *TINY]
    procs = [subprocess.Popen(command(args), cwd=ROOT, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    try:
        deadline = time.time() + 120
        while not (tmp_path / "run" / "checkpoint.pt").exists():  # training, a checkpoint saved
            assert time.time() < deadline and all(p.poll() is None for p in procs), "the run did not start"
            time.sleep(0.1)
        procs[0].kill()
        start = time.time()
        err = procs[1].communicate(timeout=60)[1]
        assert procs[1].returncode not in (0, None) and time.time() - start < 60
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
        assert lines[0].startswith("error: lost rank 0 of the 2 processes of this run (") and lines[0].endswith(
            f"rank 1 stops too; rerun the same command with --resume to continue from the last checkpoint in "
            f"{tmp_path / 'run'}"), lines[0]
    finally:
        for p in procs:
            p.kill()
            p.communicate()


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["doc-sentences", "sentence-pair"])
def test_two_nodes_equal_one_process(prepared, tmp_path, fmt):
    """The token-budget formats, blocks and pairs, on two "nodes" log the losses of one process (sentence-pair:
    batches that can hold a single example, so one node's share is empty and it still joins every collective).
    Fixed-size batches across processes: test_two_processes_equal_one (full-sentences); the pair collation is
    sentence-pair's."""
    micro = 3 if data.FORMATS[fmt].by_tokens else 2  # fixed-size batches: a divisor of the batch of 8
    args = ["--data", prepared, "--max-steps", 3, "--micro-batch-size", micro, "--format", fmt, *TINY]
    two_nodes(args, tmp_path / "two", beside=["--out", tmp_path / "one", *args])
    a, b = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert a.keys() == b.keys() == {1, 2, 3}
    assert all(abs(a[s] - b[s]) < 1e-5 for s in a), (a, b)


@pytest.mark.slow
def test_background_preparation_changes_no_number(prepared, tmp_path, capsys):
    """The batch thread only moves work in time: with --prefetch 0 (prepared in the loop) the same losses. And on a
    CPU a run is exact already: --deterministic (torch's deterministic algorithms) changes no number either."""
    import torch._inductor.config
    try:
        for args in (["--out", tmp_path / "thread"], ["--out", tmp_path / "inline", "--prefetch", 0],
                     ["--out", tmp_path / "det", "--deterministic"]):
            code, err = train_here(capsys, "--data", prepared, "--max-steps", 4, *args, *TINY)
            assert code == 0, err[-2000:]
    finally:  # --deterministic set them for this process
        torch.use_deterministic_algorithms(False)
        torch._inductor.config.deterministic = False
    assert losses(tmp_path / "thread") == losses(tmp_path / "inline") == losses(tmp_path / "det")


def test_a_compiler_that_fails_falls_back_to_eager(monkeypatch, capsys):
    def broken(model, **kwargs):
        def call(*args, **kwargs):
            raise RuntimeError("no C++ compiler here")
        return call
    monkeypatch.setattr(torch, "compile", broken)
    model = roberta.RobertaForMaskedLM(roberta.RobertaConfig.preset("tiny", vocab_size=100))
    tr = train.Trainer(train.TrainConfig(compile=True, seq_len=16), model, model, roberta.adamw(model, 1e-3, 0.01),
                       None, None, torch.device("cpu"), 0, 1, None)
    before = torch.get_rng_state()
    got = speed.compile_trainer(tr, 2)  # its warm-up calls the model
    assert got is tr and "torch.compile failed (RuntimeError: no C++ compiler here); training eagerly" in \
        capsys.readouterr().err
    assert torch.equal(torch.get_rng_state(), before) and all(p.grad is None for p in model.parameters())


def test_batches_resume_at_a_saved_offset_in_a_computed_order(prepared, monkeypatch):
    """At the paper's scale an epoch's order is computed (machinery/index.Shuffle) and its token-budget batches are found
    as they are needed: the (epoch, position, offset) saved after an update restarts the same updates, across
    the end of an epoch, without finding the batches before it."""
    monkeypatch.setattr(orders, "SHUFFLE_ABOVE", 0)
    tokens, ends, meta = folder_checks.load_split(str(prepared), "train")
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


# ---------------------------------------------------------------- issue 18: one run per folder, no NaN called good
def copy_of(prepared, tmp_path, name="data"):
    import shutil
    return shutil.copytree(prepared, tmp_path / name, ignore=shutil.ignore_patterns(".lock", "index"))


def test_the_help_states_the_ranges_it_accepts():
    """--mask-rate: the help, the option's check and data.Masking agree on (0, 1) (1 was refused under a help
    saying (0, 1])."""
    helps = {name: text for name, _, text in train_cli.options(train.RECIPES)}
    assert "in (0, 1)" in helps["mask_rate"]
    args = train_cli.parse(["--data", "d", "--mask-rate", "0.999"])
    assert train_cli.config_from_args(args).masking.rate == 0.999
    assert "in [0, 60]" in helps["prepare_delay"] and "in (0, 1e6]" in helps["lr"]


def test_masking_refuses_a_split_that_is_not_three_shares_summing_to_1():
    """data.Masking checks the split (train.py --mask-split, a resumed run's record); mask_tokens, which a student
    may write again from its docstring (EXERCISES.md B2), is then tested with a split of one share."""
    tok = bpe.Tokenizer.train(["a small text for a small tokenizer"] * 5, 270, min_frequency=1)
    tokens = torch.randint(5, 270, (2, 16))
    for split in [(float("nan"), 0.5, 0.5), (0.5, 0.5), (1.5, -0.5, 0.0), (float("inf"), 0, 0), (0.8, 0.1, 0.2)]:
        with pytest.raises(ValueError, match="3 shares summing to 1"):
            data.Masking(split=split)
    inputs, labels = data.mask_tokens(tokens, tok, split=(1, 0, 0), generator=torch.Generator().manual_seed(0))
    assert torch.equal(inputs[labels != -100], torch.full_like(inputs[labels != -100], tok.mask_id))


@pytest.mark.slow
def test_two_runs_on_one_out_one_refuses(prepared, tmp_path):
    """The audit's case: two train.py on one --out. The second (here with --overwrite, which would delete the first's
    files) refuses in one line naming the folder and the first's pid; the log holds each step once."""
    out = tmp_path / "run"
    args = ["--data", prepared, "--out", out, "--max-steps", 12, "--prepare-delay", "0.5", *TINY]
    first = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), *map(str, args)], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 60  # the first holds the lock (and runs 12 x 0.5 s more) when the second starts
    while first.poll() is None and time.time() < deadline and \
            not ((out / ".lock").exists() and f"pid {first.pid}" in (out / ".lock").read_text()):
        time.sleep(0.05)
    second = run(*args, "--overwrite", "--seed", 2, check=False)
    err = first.communicate(timeout=120)[1]
    assert first.returncode == 0, err[-2000:]
    lines = second.stderr.strip().splitlines()
    assert second.returncode != 0 and len(lines) == 1, second.stderr
    assert str(out) in lines[0] and f"train.py (pid {first.pid})" in lines[0], lines[0]
    assert [r["step"] for r in read_log(out)] == list(range(1, 13))
    assert torch.load(out / "checkpoint.pt", weights_only=True)["train"]["seed"] == 0


def test_training_refuses_data_that_data_py_is_rewriting(prepared, tmp_path, capsys):
    d = copy_of(prepared, tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from machinery.basics import lock; "
                               "lock.hold(sys.argv[1], 'data.py'); print('held', flush=True); time.sleep(60)", str(d)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, err = run_here(capsys, "--data", d, "--out", tmp_path / "run", *TINY)
    finally:
        holder.kill()
        holder.wait()
    lines = err.strip().splitlines()
    assert code not in (0, None) and len(lines) == 1 and f"data.py (pid {holder.pid})" in lines[0], err
    assert str(d) in lines[0] and not (tmp_path / "run").exists()


def test_ids_outside_the_vocabulary_are_refused_when_training_opens_the_data(prepared, tmp_path, capsys):
    import numpy as np
    d = copy_of(prepared, tmp_path)
    tokens = np.memmap(d / "train.bin", dtype=np.uint16, mode="r+")
    tokens[len(tokens) // 2] = 600  # the vocabulary has 500
    tokens.flush()
    del tokens
    code, err = run_here(capsys, "--data", d, "--out", tmp_path / "run", *TINY)
    lines = err.strip().splitlines()
    assert code not in (0, None) and len(lines) == 1, err
    assert "train.bin: holds token id 600, outside the vocabulary of 500 tokens" in lines[0]


def test_at_scale_the_largest_id_data_py_recorded_stands_for_the_pass(prepared, tmp_path, monkeypatch):
    """Above prepared.SCAN_BELOW tokens the ids are not read again: meta.json's max_id (written by data.py) is
    checked, and a wrong one refuses the folder; below, every id is read (the test above)."""
    import json as js
    prep = folder_checks
    tok = bpe.Tokenizer.load(str(prepared))
    meta = js.loads((prepared / "meta.json").read_text())
    assert 0 < meta["train"]["max_id"] < 500 and meta["valid"]["max_id"] < 500
    monkeypatch.setattr(prep, "SCAN_BELOW", 0)
    monkeypatch.setattr(prep, "check_ids", lambda *a: pytest.fail("the ids were read again"))
    assert prep.open_prepared(str(prepared), tok)[2]["train"]["max_id"] == meta["train"]["max_id"]
    d = copy_of(prepared, tmp_path)
    (d / "meta.json").write_text(js.dumps({**meta, "train": {**meta["train"], "max_id": 777}}))
    with pytest.raises(ValueError, match="holds token id 777 .meta.json., outside the vocabulary of 500"):
        prep.open_prepared(str(d), tok)


def test_a_run_whose_masking_selects_no_targets_stops(prepared, tmp_path, capsys):
    code, err = run_here(capsys, "--data", prepared, "--out", tmp_path / "run", "--max-steps", 3, *TINY,
                         "--mask-rate", "1e-300")
    assert code not in (0, None) and "step 1: the masking selected no targets" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_non_finite_weights_are_never_saved(prepared, tmp_path, capsys, monkeypatch):
    """An update that makes the weights non-finite with a finite loss (--lr 1e30 did): the save refuses, the
    run stops in one line, the previous checkpoint stays as it was."""
    real, calls = train.train_step, []

    def diverging(tr, batch, n_targets):
        out = real(tr, batch, n_targets)
        calls.append(1)
        if len(calls) == 2:
            with torch.no_grad():
                tr.body.lm_head.bias.fill_(float("inf"))
        return out
    monkeypatch.setattr(train, "train_step", diverging)
    out = tmp_path / "run"
    code, err = train_here(capsys, "--data", prepared, "--out", out, "--max-steps", 4, "--save-interval", 1, *TINY)
    assert code not in (0, None) and "step 2: non-finite weights (lm_head.bias" in err and "not saved" in err, err
    ckpt = checkpoints.read_checkpoint(out / "checkpoint.pt")
    assert ckpt["state"]["step"] == 1 and all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_a_run_that_ends_on_a_skipped_update_says_so(prepared, tmp_path, capsys, monkeypatch):
    real, calls = train.train_step, []

    def last_one_bad(tr, batch, n_targets):
        sums, finite = real(tr, batch, n_targets)
        calls.append(1)
        return (sums * float("nan"), torch.tensor(False)) if len(calls) == 3 else (sums, finite)
    monkeypatch.setattr(train, "train_step", last_one_bad)
    out = tmp_path / "run"
    code, err = train_here(capsys, "--data", prepared, "--out", out, "--max-steps", 3, "--save-interval", 1, *TINY)
    assert code not in (0, None) and "1 non-finite losses in a row at step 3" in err, err
    log = read_log(out)  # strict JSON: the non-finite loss is a string
    assert log[-1]["step"] == 3 and log[-1]["loss"] == "nan" and log[-1]["skipped"] == "non-finite loss"
    assert checkpoints.read_checkpoint(out / "checkpoint.pt")["state"]["step"] == 2


def test_the_log_is_strict_json_and_a_torn_last_line_is_dropped_on_resume(tmp_path, capsys):
    path = tmp_path / "log.jsonl"
    run_folder.log(path, {"step": 1, "loss": 2.5, "valid_loss": float("nan"), "valid_ppl": float("inf")})
    run_folder.log(path, {"step": 2, "loss": 2.4})
    assert strict(path.read_text().splitlines()[0]) == {"step": 1, "loss": 2.5, "valid_loss": "nan",
                                                        "valid_ppl": "inf"}
    with open(path, "a") as f:
        f.write('{"step": 3, "loss": 2.3, "lr": 0.0')  # a crash (or a full disk) mid-append
    run_folder.keep_log_until(str(path), 2)
    assert f"warning: {path}: dropped its torn last line" in capsys.readouterr().err
    assert [strict(line)["step"] for line in path.read_text().splitlines()] == [1, 2]
    path.write_text('{"step": 1}\n{"step": 2, "lo\n{"step": 3}\n')
    with pytest.raises(ValueError, match=f"{path}: line 2 is not JSON"):
        run_folder.keep_log_until(str(path), 3)


@pytest.mark.slow
def test_resume_refuses_other_data_and_keeps_going_on_the_same(prepared, tmp_path, capsys):
    """The checkpoint records its data's fingerprint: --resume with other data (same tokenizer) refuses in one
    line saying what differs; a copy of the same data resumes; a checkpoint from before the fingerprint is refused
    (nothing says what data it trained on)."""
    import numpy as np
    out, same, other = tmp_path / "run", copy_of(prepared, tmp_path, "same"), copy_of(prepared, tmp_path, "other")
    tokens = np.memmap(other / "train.bin", dtype=np.uint16, mode="r+")
    tokens[10] = 100 if tokens[10] != 100 else 101
    tokens.flush()
    del tokens
    code, err = train_here(capsys, "--data", prepared, "--out", out, "--max-steps", 2, *TINY)
    assert code == 0, err
    code, err = run_here(capsys, "--data", other, "--out", out, "--max-steps", 3, *TINY, "--resume")
    lines = err.strip().splitlines()
    assert code not in (0, None) and len(lines) == 1, err
    assert "trained on other data than --data" in lines[0] and "train.bin: other contents" in lines[0]
    with open(out / "log.jsonl", "a") as f:
        f.write('{"step": 3, "lo')  # torn: the resume drops it with a warning
    code, err = train_here(capsys, "--data", same, "--out", out, "--max-steps", 3, *TINY, "--resume")
    assert code == 0 and "dropped its torn last line" in err, err
    assert [r["step"] for r in read_log(out)] == [1, 2, 3]
    ckpt = checkpoints.read_checkpoint(out / "checkpoint.pt")  # a checkpoint from before issue 18
    del ckpt["data_fingerprint"], ckpt["checksum"]
    torch.save(ckpt, out / "checkpoint.pt")
    code, err = run_here(capsys, "--data", same, "--out", out, "--max-steps", 4, *TINY, "--resume")
    assert code not in (0, None) and "saved by an older train.py" in err and len(err.strip().splitlines()) == 1, err
    assert [r["step"] for r in read_log(out)] == [1, 2, 3]


@pytest.mark.slow
def test_a_full_disk_during_a_save_is_one_line(prepared, tmp_path, capsys, monkeypatch):
    import errno
    real, saves = torch.save, []

    def full_disk(obj, f, *a, **k):
        saves.append(1)
        if len(saves) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, f, *a, **k)
    monkeypatch.setattr(torch, "save", full_disk)
    out = tmp_path / "run"
    code, err = train_here(capsys, "--data", prepared, "--out", out, "--max-steps", 3, "--save-interval", 1, *TINY)
    lines = err.strip().splitlines()
    assert code not in (0, None) and "Traceback" not in err, err
    assert lines[-1] == (f"error: {out}: could not write checkpoint.pt (No space left on device); the previous "
                         f"checkpoint.pt is intact")
    assert checkpoints.read_checkpoint(out / "checkpoint.pt")["state"]["step"] == 1
    assert not [name for name in os.listdir(out) if name.endswith(".tmp")]


@pytest.mark.parametrize("factor", ["inf", "nan", "0", "1e9"])
def test_experiments_steps_factor_is_a_finite_sane_number(factor, capsys, tmp_path):
    from machinery.lab import command  # experiments.py runs train.py: its --steps-factor multiplies --max-steps
    with pytest.raises(SystemExit) as e:
        command.main(["masking", "--steps-factor", factor, "--out", str(tmp_path / "x")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(lines) == 1 and "--steps-factor: must be in (0, 1000]" in lines[0], lines
    assert not (tmp_path / "x").exists()


def test_the_demo_takes_the_cpus_other_work_leaves_free(monkeypatch):
    """On 2 allowed CPUs with one busy now (by /proc/stat over the interval, not the trailing load average),
    1 thread (2.4x faster here than 2 fighting the other work); none busy, 2."""
    import functools
    from machinery.commands import demo
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(speed, "cpus_allowed", lambda: 2)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    idle_cpus = speed.idle_cpus
    for busy, want in (((0.05, 0.0), 2), ((1.0, 0.2), 1), ((0.9, 0.9), 1)):
        readings = iter([0, 100])

        def stat(readings=readings):  # cumulative jiffies of cpu0 and cpu1: user, nice, system, idle, iowait
            n = next(readings)
            return "cpu  0 0 0 0 0\n" + "".join(f"cpu{i} {round(n * b)} 0 0 {round(n * (1 - b))} 0\n"
                                                for i, b in enumerate(busy))
        monkeypatch.setattr(speed, "idle_cpus", functools.partial(idle_cpus, seconds=0, read_stat=stat))
        assert demo.set_threads() == want, busy

    def unreadable():
        raise OSError("no /proc/stat here")
    assert idle_cpus(seconds=0, read_stat=unreadable) == 2  # all the allowed CPUs; OMP_NUM_THREADS overrides
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert demo.set_threads() == 2  # asked for, whatever the load


def test_tokens_per_batch_sets_the_budget_of_the_token_formats(prepared):
    """--tokens-per-batch: DOC-SENTENCES' and SENTENCE-PAIR's updates take as many sequences as fit that many
    tokens (Section 4.2's equal tokens per update), in place of batch-size x seq-len; other formats ignore it."""
    tokens, ends, _ = folder_checks.load_split(str(prepared), "train")
    tok = bpe.Tokenizer.load(os.path.join(os.path.dirname(prepared), "tok"))
    for fmt, budget in (("doc-sentences", 100), ("sentence-pair", 300)):
        cfg = train.TrainConfig(data=str(prepared), format=fmt, seq_len=32, batch_size=8, tokens_per_batch=budget)
        lengths = data.example_lengths(data.examples(tokens, ends, fmt, 32, tok.eos_id), fmt, 32)
        found = train.global_batches(cfg, lengths, 0)
        sums = [int(lengths[found.get(i)].sum()) for i in range(len(found))]
        assert max(sums) <= budget < max(sums) + lengths.max() and len(found) > 1
    cfg = train.TrainConfig(data=str(prepared), seq_len=32, batch_size=8, tokens_per_batch=100)
    lengths = data.example_lengths(data.examples(tokens, ends, cfg.format, 32, tok.eos_id), cfg.format, 32)
    assert len(train.global_batches(cfg, lengths, 0).get(0)) == 8


# ---------------------------------------------------------------- ready for a GPU: the step's skip, ranks, resume
@pytest.mark.parametrize("fused", [True, False])
def test_a_non_finite_update_is_skipped_by_fused_found_inf_or_by_a_host_check(fused):
    """Fused AdamW skips on found_inf (on the device, no host sync; torch's undocumented hook, checked here on this
    torch); an optimizer that is not fused skips by reading `finite` on the host. Both step when finite."""
    from types import SimpleNamespace
    model = roberta.RobertaForMaskedLM(roberta.RobertaConfig.preset("tiny", vocab_size=100))
    tr = SimpleNamespace(scaler=None, opt=roberta.adamw(model, 1e-3, 0.01, fused=fused))
    assert bool(tr.opt.defaults["fused"]) == fused
    before = [p.detach().clone() for p in model.parameters()]
    for finite in (False, True):
        for p in model.parameters():
            p.grad = torch.ones_like(p)
        train.optimizer_step(tr, torch.tensor(finite))
        same = all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
        assert same != finite and all(p.grad is None for p in model.parameters())


def test_a_process_the_saved_run_did_not_have_gets_a_random_state_of_its_own():
    from dataclasses import asdict
    model = roberta.RobertaForMaskedLM(roberta.RobertaConfig.preset("tiny", vocab_size=100))
    opt = roberta.adamw(model, 1e-3, 0.01)
    saved = torch.manual_seed(5).get_state()
    ckpt = {"config": asdict(model.cfg), "model": model.state_dict(), "optimizer": opt.state_dict(), "scaler": None,
            "rng": [run_folder.rng_state(torch.device("cpu"))], "state": {"step": 7, "position": 0, "offset": 0},
            "train": {}}
    cfg = train.TrainConfig(out="x")
    drawn = []
    for rank in (0, 1, 2, 1):
        run_folder.restore(ckpt, model, opt, None, cfg, rank, torch.device("cpu"), 10)
        drawn.append(torch.rand(4))
    assert torch.equal(torch.get_rng_state(), torch.get_rng_state()) and torch.equal(drawn[0], drawn[0])
    torch.set_rng_state(saved)
    assert torch.equal(drawn[0], torch.rand(4))  # rank 0: the saved state
    assert not torch.equal(drawn[1], drawn[0]) and not torch.equal(drawn[2], drawn[1])  # each its own
    assert torch.equal(drawn[3], drawn[1])  # and the same on the next resume


@pytest.mark.slow
def test_a_compile_failure_on_one_of_two_processes_ends_the_job_in_one_line(prepared, tmp_path):
    """torchrun, 2 gloo processes, torch.compile broken on rank 1 only (rank 0 compiles with dynamo's eager, quick):
    the ranks agree, and the job ends within 60 s with one line naming the failed process, no hang."""
    script = tmp_path / "broken_on_rank_1.py"
    script.write_text(f"""import os, sys
import torch
sys.path.insert(0, {ROOT!r})
compile_ = torch.compile
def broken(model, **kwargs):
    raise RuntimeError("injected: no compiler on this process")
torch.compile = broken if os.environ["RANK"] == "1" else lambda model, **kwargs: compile_(model, backend="eager")
from machinery.commands import train_cli
train_cli.main(sys.argv[1:])
""")
    t = time.perf_counter()
    args = ["--data", prepared, "--out", tmp_path / "run", "--max-steps", 2, "--compile", *TINY]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
                        *map(str, args)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode != 0 and time.perf_counter() - t < 60
    said = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert said == ["error: torch.compile failed on process 1 of 2 (RuntimeError: injected: no compiler on this "
                    "process) and not on the others: stopping them all; pass --no-compile to train eagerly"], r.stderr
