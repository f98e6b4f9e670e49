"""One writer per folder (machinery/basics/lock.py), with real processes: two data.py into one --out, a second
bpe.py train, finetune.py or experiments.py refused while the folder is held, a killed writer that blocks
no one, and what dead processes left removed at the next start. Also the one-line errors of issue 18 that
live in the command lines: empty paths, --workers' bound, --train-args' quoting."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import bpe
import data
from conftest import ROOT
from machinery.commands import corpora
from machinery.basics import files, lock
from machinery.datafolder import preparation
from machinery.formats import prepared

HOLDER = ("import sys, time; from machinery.basics import lock; lock.hold(sys.argv[1], 'the holder'); "
          "print('held', flush=True); time.sleep(60)")


def command(script, *args):
    return [sys.executable, os.path.join(ROOT, script), *map(str, args)]


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    """A tokenizer trained on the built-in corpus's reference documentation (430 KB; the standard library's
    docstrings take seconds to read), and that text fifteen times over (6.5 MB: a data.py of ~2 s)."""
    d = tmp_path_factory.mktemp("lock")
    path = str(d / "corpus.txt")
    files.write_atomic(path, "".join("\n".join(doc) + "\n\n" for doc in corpora.reference_topics()))
    bpe.Tokenizer.train(files.read_lines(path), 1000).save(d / "tok")
    with open(d / "big.txt", "w") as f:
        for i in range(15):
            f.write(open(path).read().replace("\n\n", f" {i}\n\n"))
    (d / "small.txt").write_text("a small corpus\nof two lines\n")
    return d


def hold_in_another_process(folder):
    """A process that holds `folder`'s lock (until killed)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def wait_for(condition, proc, seconds=30):
    deadline = time.time() + seconds
    while not condition():
        assert proc.poll() is None, "the writer ended before it was caught writing"
        assert time.time() < deadline
        time.sleep(0.002)


def temp_of(folder, name, pid):
    """The temporary file or folder NAME of process `pid` in `folder` (files.temp_name), or None."""
    found = [p for p in folder.glob(f"{name}.{files.MARK}.*") if files.TEMP.search(p.name).group(2) == str(pid)]
    return found[0] if found else None


def refused_by(result, folder, pid):
    """One line naming the folder and the holder's pid, exit status 1, no traceback."""
    err = result.stderr
    assert result.returncode == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: {folder} is in use by ") and f"(pid {pid})" in err, err
    return err


@pytest.mark.slow
def test_two_data_py_into_one_folder(tok_dir, tmp_path):
    """The second is refused in one line naming the folder and the first's pid; the folder is the first's,
    complete, with no temporary files."""
    out = tmp_path / "data"
    first = subprocess.Popen(command("data.py", "--input", tok_dir / "big.txt", "--tokenizer", tok_dir / "tok",
                                     "--out", out, "--workers", "1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    wait_for(lambda: temp_of(out, "prepare", first.pid), first)  # holds the lock, and writes
    os.kill(first.pid, signal.SIGSTOP)  # held still while the second tries
    try:
        second = subprocess.run(command("data.py", "--input", tok_dir / "small.txt", "--tokenizer", tok_dir / "tok",
                                        "--out", out, "--workers", "1"), capture_output=True, text=True)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert "data.py (pid" in refused_by(second, out, first.pid)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["inputs"] == [str(tok_dir / "big.txt")]
    tokens, ends, _ = prepared.load_split(out, "train")  # complete: the sizes meta.json says
    tok = bpe.Tokenizer.load(out)
    first_line = next(data.read_documents([tok_dir / "big.txt"]))
    assert tokens[:ends[0]].tolist() == tok.encode(first_line) + [tok.eos_id]
    assert sorted(os.listdir(out)) == [".lock", "merges.txt", "meta.json", "train.bin", "train.idx", "valid.bin",
                                       "valid.idx", "vocab.json"]


@pytest.mark.slow
def test_a_killed_writer_blocks_no_one_and_its_leftovers_go(tok_dir, tmp_path):
    """kill -9 of data.py midway: the next data.py takes the folder, and removes the dead one's temporary
    folder and files (files.temp_name), not a live process's nor other files."""
    out = tmp_path / "data"
    first = subprocess.Popen(command("data.py", "--input", tok_dir / "big.txt", "--tokenizer", tok_dir / "tok",
                                     "--out", out, "--workers", "2"), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    wait_for(lambda: temp_of(out, "prepare", first.pid) and (temp_of(out, "prepare", first.pid) / "train.bin").exists(),
             first)
    first.kill()
    first.wait()
    left = temp_of(out, "prepare", first.pid).name.replace("prepare.", "checkpoint.pt.")
    (out / left).write_text("left by a killed run")
    live = os.path.basename(files.temp_name(out / "meta.json"))
    (out / live).write_text("a live process's")
    (out / "notes.tmp").write_text("not a temporary file of ours")
    (out / f"draft.{first.pid}.tmp").write_text("a user's, named as temporary files once were")
    r = subprocess.run(command("data.py", "--input", tok_dir / "small.txt", "--tokenizer", tok_dir / "tok",
                               "--out", out, "--workers", "1"), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    names = os.listdir(out)
    assert not temp_of(out, "prepare", first.pid) and left not in names
    assert live in names and "notes.tmp" in names and f"draft.{first.pid}.tmp" in names
    assert json.loads((out / "meta.json").read_text())["inputs"] == [str(tok_dir / "small.txt")]


def test_a_rewrite_removes_the_kept_index_and_leaves_meta_last(tok_dir, tmp_path, monkeypatch):
    """preparation.prepare over a folder: the old data's examples index goes (it no longer fits), and meta.json is the
    last file to arrive (its modification time is the newest)."""
    from machinery.datafolder import index
    out = tmp_path / "data"
    preparation.prepare([str(tok_dir / "small.txt")], str(tok_dir / "tok"), str(out), verbose=False, workers=1)
    (out / index.FOLDER).mkdir()
    (out / index.FOLDER / "train-full-sentences-64.json").write_text("{}")
    preparation.prepare([str(tok_dir / "corpus.txt")], str(tok_dir / "tok"), str(out), verbose=False, workers=1)
    assert not (out / index.FOLDER).exists() and not lock.held(out)  # the lock is given back at the end
    times = {name: os.stat(out / name).st_mtime_ns for name in os.listdir(out) if name != ".lock"}
    assert max(times, key=times.get) == "meta.json"
    assert json.loads((out / "meta.json").read_text())["inputs"] == [str(tok_dir / "corpus.txt")]


SLOW = pytest.mark.slow  # a command that imports torch: seconds to start


@pytest.mark.parametrize("script, args", [
    pytest.param("bpe.py", ["train", "--input", "{d}/small.txt", "--vocab-size", "300", "--out", "{out}"], id="bpe"),
    pytest.param("data.py", ["--input", "{d}/small.txt", "--tokenizer", "{d}/tok", "--out", "{out}", "--workers", "1"],
                 id="data", marks=SLOW),
    pytest.param("finetune.py", ["--task", "rte", "--data", "{d}", "--checkpoint", "{d}/tok", "--out", "{out}"],
                 id="finetune", marks=SLOW),
    pytest.param("experiments.py", ["masking", "--quick", "--out", "{out}"], id="experiments", marks=SLOW),
])
def test_a_held_folder_refuses_a_second_writer_until_its_holder_is_killed(tok_dir, tmp_path, script, args):
    out = tmp_path / "out"
    holder = hold_in_another_process(out)
    argv = command(script, *[a.format(d=tok_dir, out=out) for a in args])
    try:
        refused_by(subprocess.run(argv, capture_output=True, text=True, timeout=60), out, holder.pid)
    finally:
        holder.kill()
        holder.wait()
    assert os.listdir(out) == [".lock"]  # nothing written
    if script == "bpe.py":  # the holder killed (-9): the next writer takes the folder
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and (out / "merges.txt").exists(), r.stderr


def test_lock_in_process():
    """Taken again by its holder (a no-op); a file in the way is one line; abandon removes a folder made for it."""
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        folder = os.path.join(d, "run")
        assert lock.hold(folder, "test") is lock.hold(folder, "test") and lock.held(folder)
        assert open(os.path.join(folder, ".lock")).read() == f"test (pid {os.getpid()}) on {files.HOST}\n"
        lock.abandon(folder)
        assert not os.path.exists(folder) and not lock.held(folder)
        for made in (True, False):  # a refusal inside lock.writing leaves what it found
            if not made:
                os.makedirs(folder)
            with pytest.raises(ValueError, match="refused"):
                with lock.writing(folder, "test"):
                    raise ValueError("refused")
            assert os.path.exists(folder) is not made and not lock.held(folder)
            assert not os.path.exists(os.path.join(folder, ".lock"))
        f = lock.hold(folder, "test")
        os.remove(os.path.join(folder, ".lock"))  # as abandon does: a process that waited on it takes it again
        assert not lock._still_there(f, folder)
        lock.release(folder)
        os.rmdir(folder)
        open(folder, "w").close()
        with pytest.raises(ValueError, match="run: a file is in the way"):
            lock.hold(folder, "test")


def test_sweep_removes_only_dead_processes_files(tmp_path):
    """Only names of this project's temporary files (files.temp_name), of a process of this machine that is gone."""
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    ours = files.temp_name("x").split(".", 1)[1].replace(f".{os.getpid()}.", f".{dead.pid}.")  # a dead one's suffix
    live = files.temp_name("b").rsplit("/", 1)[-1]
    other_host = ours.replace(f".{files.HOST}.", ".otherhost.")
    for name in (f"a.{ours}", live, "c.tmp", f"d.{ours}.keep", f"e.{other_host}", f"f.{dead.pid}.tmp"):
        (tmp_path / name).write_text("x")
    (tmp_path / f"prepare.{ours}").mkdir()
    (tmp_path / f"prepare.{ours}" / "train.bin").write_text("x")
    assert sorted(files.sweep(tmp_path)) == [f"a.{ours}", f"prepare.{ours}"]
    assert sorted(os.listdir(tmp_path)) == sorted([live, "c.tmp", f"d.{ours}.keep", f"e.{other_host}",
                                                   f"f.{dead.pid}.tmp"])


# ---------------------------------------------------------------- one clear line
@pytest.mark.parametrize("script, args, message", [
    ("data.py", ["--input", "", "--tokenizer", "t", "--out", "o"], "argument --input: expected a path, got an empty"),
    ("data.py", ["--input", "x", "--tokenizer", "", "--out", "o"], "argument --tokenizer: expected a path"),
    ("data.py", ["--input", "x", "--tokenizer", "t", "--out", ""], "argument --out: expected a path"),
    ("data.py", ["--input", "x", "--tokenizer", "t", "--out", "o", "--workers", "99999999999999999999"],
     "argument --workers: must be in [1, "),
    ("bpe.py", ["train", "--input", "", "--vocab-size", "300", "--out", "o"], "argument --input: expected a path"),
    ("bpe.py", ["train", "--input", "x", "--vocab-size", "300", "--out", ""], "argument --out: expected a path"),
    ("bpe.py", ["encode", "--tokenizer", "", "hi"], "argument --tokenizer: expected a path"),
    ("finetune.py", ["--task", "rte", "--data", "", "--checkpoint", "c", "--out", "o"], "argument --data: expected"),
    ("finetune.py", ["--task", "rte", "--data", "d", "--checkpoint", "", "--out", "o"], "argument --checkpoint: exp"),
    ("finetune.py", ["--task", "rte", "--data", "d", "--checkpoint", "c", "--out", ""], "argument --out: expected"),
    ("experiments.py", ["masking", "--quick", "--out", "{out}", "--train-args", "--dropout '0"],
     "error: --train-args: No closing quotation in \"--dropout '0\""),
])
def test_one_clear_line(tmp_path, monkeypatch, capsys, script, args, message):
    """In this process, as the command runs it: the exit message is the one line (argparse's, or cli.run's)."""
    import importlib
    monkeypatch.chdir(tmp_path)
    main = {"data.py": lambda argv: importlib.import_module("machinery.commands.data_cli").main(argv),
            "bpe.py": lambda argv: importlib.import_module("machinery.commands.bpe_cli").main(argv),
            "finetune.py": lambda argv: importlib.import_module("machinery.commands.finetune_cli").main(argv),
            "experiments.py": lambda argv: importlib.import_module("machinery.lab.command").main(argv)}[script]
    with pytest.raises(SystemExit) as e:
        main([a.format(out=tmp_path / "out") for a in args])
    err = capsys.readouterr().err + (e.value.code + "\n" if isinstance(e.value.code, str) else "")
    assert e.value.code not in (0, None) and message in err and err.count("\n") == 1, err
    assert not os.listdir(tmp_path)  # nothing made
