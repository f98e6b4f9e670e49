"""Faults of files and folders, each as a user would meet it: a .lock that is a link, temporary-looking files of
the user's, an index/ folder of the user's, a run's --out holding the user's files or lying inside --data, a
refusal that names who holds a folder (readers too), an export with no lock, a refused run's folder left
behind, data.py stopped by a signal, and a disk that fills up mid-write, on a real small filesystem (tmpfs,
mounted here when the tests run as root; skipped otherwise)."""
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

import bpe
import roberta
from conftest import ROOT
from machinery.basics import files, lock
from machinery.commands import data_cli, finetune_cli, roberta_cli, train_cli
from machinery.formats import checkpoints
from machinery.datafolder import index, preparation

TINY = ["--config", "tiny", "--seq-len", "32", "--batch-size", "4", "--lr", "1e-3", "--warmup-steps", "0",
        "--log-interval", "1", "--eval-interval", "100", "--eval-sequences", "4", "--device", "cpu", "--dropout", "0"]
WORDS = ("the a river stone light cold bright runs falls over under near far old new green small large sings "
         "holds keeps moves").split()
HOLDER = ("import sys, time; from machinery.basics import lock; lock.hold(sys.argv[1], sys.argv[2], shared=sys.argv[3] == "
          "'shared'); print('held', flush=True); time.sleep(60)")


@pytest.fixture(scope="module", autouse=True)
def one_thread(one_torch_thread):
    pass


def text(lines, seed=0):
    """Documents of short invented sentences, a blank line between documents."""
    rng = random.Random(seed)
    out = []
    for i in range(lines):
        out.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))).capitalize() + ".")
        if i % 8 == 7:
            out.append("")
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A corpus, a 300-token tokenizer and the data prepared from them (a second or two)."""
    d = tmp_path_factory.mktemp("faults")
    (d / "corpus.txt").write_text(text(1200))
    bpe.Tokenizer.train(files.read_lines(d / "corpus.txt"), 300).save(d / "tok")
    preparation.prepare([str(d / "corpus.txt")], str(d / "tok"), str(d / "data"), valid_fraction=0.1, workers=1,
                 verbose=False)
    return d


@pytest.fixture
def fresh_data(made, tmp_path):
    """A copy of the prepared data this test may rewrite."""
    shutil.copytree(made / "data", tmp_path / "data")
    return tmp_path / "data"


def tree(folder):
    """Every file under `folder` (links unfollowed) with its bytes: to see that nothing changed."""
    out = {}
    for d, dirs, names in os.walk(folder):
        for name in names + [n for n in dirs if os.path.islink(os.path.join(d, n))]:
            path = os.path.join(d, name)
            out[os.path.relpath(path, folder)] = (os.readlink(path) if os.path.islink(path) else
                                                  open(path, "rb").read() if os.path.isfile(path) else "not a file")
    return out


def one_line(code, err):
    """A refusal: a non-zero exit and one line on stderr (beside a progress bar's), no traceback. Returns it."""
    err = re.sub(r"\r[^\r\n]*\n?", "", err)  # a progress bar: redrawn with \r, ended with \n
    assert code not in (0, None) and "Traceback" not in err and err.count("\n") == 1, err
    return err.strip()


def exits(capsys, main, argv):
    """A command's main in this process, as its command line runs it: (exit code, stderr with the exit message).
    Locks it held (it would give them back as it ends) are given back."""
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = e.code
    finally:
        for key in list(lock._held):
            lock.release(key)
    err = capsys.readouterr().err
    return (1 if isinstance(code, str) else code), err + (f"{code}\n" if isinstance(code, str) else "")


def hold_in_another_process(folder, what="the holder", shared=False):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), what, "shared" if shared else "writer"],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


# ---------------------------------------------------------------- the lock file is this project's own
def test_a_lock_that_is_a_link_is_refused_never_followed(made, tmp_path, capsys):
    """RUN/.lock -> notes.txt: train.py and data.py refuse in one line; notes.txt is unchanged. A dangling
    link makes no file outside the folder."""
    (tmp_path / "notes.txt").write_text("my notes\n")
    for script, main, args in (("train.py", train_cli.main, ["--data", made / "data", *TINY, "--max-steps", 1]),
                               ("data.py", data_cli.main, ["--input", made / "corpus.txt", "--tokenizer",
                                                           made / "tok", "--workers", 1])):
        run = tmp_path / f"run-{script}"
        run.mkdir()
        os.symlink(tmp_path / "notes.txt", run / ".lock")
        line = one_line(*exits(capsys, main, args + ["--out", run]))
        assert line == (f"error: {run}/.lock is not a lock file of this project (a symbolic link): it is left as it "
                        f"is; move it away, or choose another folder")
        assert (tmp_path / "notes.txt").read_text() == "my notes\n" and os.listdir(run) == [".lock"]
        os.remove(run / ".lock")
        os.symlink(tmp_path / "elsewhere.txt", run / ".lock")  # dangling
        one_line(*exits(capsys, main, args + ["--out", run]))
        assert not (tmp_path / "elsewhere.txt").exists()


def test_a_lock_that_is_not_a_plain_file_of_records_is_refused(tmp_path):
    """A hard link to the user's file, a folder, a FIFO, a file of other text: each refused, each left as it is.
    A .lock of records (a dead holder's) is taken."""
    (tmp_path / "notes.txt").write_text("my notes\n")
    cases = {"hard": lambda p: os.link(tmp_path / "notes.txt", p), "folder": os.mkdir, "fifo": os.mkfifo,
             "text": lambda p: open(p, "w").write("my own lock notes\n")}
    whys = {"hard": "a hard link to another file", "folder": "not a file", "fifo": "not a file",
            "text": "it holds other text"}
    for name, make in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        make(folder / ".lock")
        before = tree(tmp_path)
        for shared in (False, True):
            with pytest.raises(ValueError, match=f"is not a lock file of this project \\({whys[name]}\\)"):
                lock.hold(folder, "test", shared=shared)
        assert tree(tmp_path) == before and not lock.held(folder)
    old = tmp_path / "old"
    old.mkdir()
    (old / ".lock").write_text(f"data.py (pid {dead_pid()}) on {files.HOST}\n")  # a dead holder's record
    lock.hold(old, "reader", shared=True)
    lock.release(old)
    assert (old / ".lock").read_text().splitlines()[1] == f"reader (pid {os.getpid()}) on {files.HOST} reading it"


# ---------------------------------------------------------------- temporary files: ours alone are swept
def test_the_sweep_leaves_the_users_tmp_names(made, tmp_path, capsys):
    """draft.<dead pid>.tmp/ and results.<dead pid>.tmp (the user's) stay when train.py takes the folder; a
    temporary file of this project's left by a dead process goes, a live one's stays."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "draft.3999999.tmp").mkdir()
    (run / "draft.3999999.tmp" / "chapter.txt").write_text("mine")
    (run / "results.3999998.tmp").write_text("mine too")
    (run / f"results.{dead_pid()}.tmp").write_text("and this")
    ours = files.temp_name(run / "checkpoint.pt").replace(f".{os.getpid()}.", f".{dead_pid()}.")
    live = files.temp_name(run / "log.jsonl")
    for path in (ours, live):
        open(path, "w").write("x")
    (run / "checkpoint.pt").write_text("a run's: train.py takes the folder (and sweeps it), then refuses")
    users = tree(run)
    del users[os.path.basename(ours)], users[os.path.basename(live)]
    line = one_line(*exits(capsys, train_cli.main, ["--data", made / "data", "--out", run, *TINY, "--max-steps", 1]))
    assert "already holds a checkpoint" in line
    now = tree(run)
    assert all(now.get(name) == content for name, content in users.items())
    assert not os.path.exists(ours) and os.path.exists(live)


# ---------------------------------------------------------------- no folder of the user's taken for ours
def test_data_py_keeps_a_users_index_folder(made, fresh_data, capsys):
    """data.py over its own folder leaves an index/ of the user's whole; its own kept index lives in
    roberta-index/, whose files it removes (and a file of the user's there stays)."""
    (fresh_data / "index").mkdir()
    (fresh_data / "index" / "train-full-sentences-64.json").write_text("the user's")
    (fresh_data / "index" / "notes.txt").write_text("the user's")
    (fresh_data / index.FOLDER).mkdir()
    for name in ("train-full-sentences-64.json", "train-full-sentences-64.rows", "valid-sentence-pair-32-3.len"):
        (fresh_data / index.FOLDER / name).write_text("ours")
    users = tree(fresh_data / "index")
    code, err = exits(capsys, data_cli.main, ["--input", made / "corpus.txt", "--tokenizer", made / "tok", "--out",
                                              fresh_data, "--workers", 1])
    assert code == 0, err
    assert tree(fresh_data / "index") == users and not (fresh_data / index.FOLDER).exists()
    (fresh_data / index.FOLDER).mkdir()
    (fresh_data / index.FOLDER / "train-full-sentences-64.rows").write_text("ours")
    (fresh_data / index.FOLDER / "mine.txt").write_text("the user's")
    index.remove(fresh_data)
    assert os.listdir(fresh_data / index.FOLDER) == ["mine.txt"]


def test_data_py_refuses_to_replace_files_of_a_folder_not_its_own(made, tmp_path, capsys):
    """A folder without meta.json holding train.bin, or another tokenizer's vocab.json: refused without
    --overwrite, all left as it was; the same tokenizer's files (--out its tokenizer folder) are no loss."""
    argv = ["--input", made / "corpus.txt", "--tokenizer", made / "tok", "--workers", 1]
    for name, content in (("train.bin", b"my binary"), ("vocab.json", b'{"mine": 0}')):
        out = tmp_path / name
        out.mkdir()
        (out / name).write_bytes(content)
        line = one_line(*exits(capsys, data_cli.main, argv + ["--out", out]))
        assert f"--out {out} holds {name}" in line and "pass --overwrite" in line, line
        assert tree(out) == {name: content}  # no lock file left either: the refusal made it, and took it back
        code, err = exits(capsys, data_cli.main, argv + ["--out", out, "--overwrite"])
        assert code == 0 and (out / "meta.json").exists(), err
    shutil.copytree(made / "tok", tmp_path / "tok")
    code, err = exits(capsys, data_cli.main, ["--input", made / "corpus.txt", "--tokenizer", tmp_path / "tok",
                                              "--workers", 1, "--out", tmp_path / "tok"])
    assert code == 0 and (tmp_path / "tok" / "meta.json").exists(), err


def test_finetune_refuses_a_folder_holding_the_users_files(made, tmp_path, capsys):
    """--out with a predictions.json and log.jsonl of the user's (no metrics.json, no checkpoint.pt): refused in
    one line without --overwrite, the files unchanged. --out inside --data is refused too."""
    (tmp_path / "task").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "predictions.json").write_text('{"q1": "my answer"}')
    (out / "log.jsonl").write_text('{"my": "log"}\n')
    before = tree(out)
    argv = ["--task", "rte", "--data", tmp_path / "task", "--checkpoint", made / "tok"]
    line = one_line(*exits(capsys, finetune_cli.main, argv + ["--out", out]))
    assert line == (f"error: --out {out} is not empty (log.jsonl) and holds no finished finetuning run: pass "
                    f"--overwrite to write there anyway, or choose an empty folder")
    assert tree(out) == before
    for inside in (tmp_path / "task", tmp_path / "task" / "run"):
        line = one_line(*exits(capsys, finetune_cli.main, argv + ["--out", inside]))
        assert "--data folder: the run would write among the task's files" in line
    assert os.listdir(tmp_path / "task") == []


def test_train_refuses_a_folder_holding_the_users_files(made, tmp_path, capsys):
    """A fresh train.py run into a folder that is not a run's (no train_config.json) holding a log.jsonl, or
    another tokenizer's vocab.json: refused without --overwrite, nothing changed."""
    for name, content in (("log.jsonl", "my own log\n"), ("vocab.json", '{"mine": 0}')):
        out = tmp_path / name
        out.mkdir()
        (out / name).write_text(content)
        line = one_line(*exits(capsys, train_cli.main, ["--data", made / "data", "--out", out, *TINY, "--max-steps", 1]))
        assert line == (f"error: --out {out} holds {name} but is not a train.py run (no train_config.json): pass "
                        f"--overwrite to write there anyway, or choose another --out")
        assert tree(out) == {name: content.encode()}


# ---------------------------------------------------------------- --out apart from --data
def test_out_equal_to_or_inside_data_is_refused(made, fresh_data, capsys):
    """One line each; the data folder unchanged (no sub-folder, no checkpoint). In one process, a folder held to
    be read cannot also be taken to be written."""
    before = tree(fresh_data)
    for out, how in ((fresh_data, "the"), (fresh_data / "sub", "inside the")):
        for resume in ([], ["--resume"]):
            line = one_line(*exits(capsys, train_cli.main, ["--data", fresh_data, "--out", out, *TINY, "--max-steps", 1,
                                                        *resume]))
            assert (line == f"error: --out {out} is {how} --data folder {fresh_data}: a run writes a folder of its "
                            f"own; choose another --out") or (resume and "no checkpoint.pt" in line), line
    now = tree(fresh_data)
    del now[".lock"], before[".lock"]  # where each reading adds its record
    assert now == before and not (fresh_data / "sub").exists()
    lock.hold(fresh_data, "train.py", shared=True)
    try:
        with pytest.raises(ValueError, match="this process reads it .* cannot also write it"):
            lock.hold(fresh_data, "train.py")
        assert not lock.held(fresh_data, exclusive=True)
    finally:
        lock.release(fresh_data)


# ---------------------------------------------------------------- who holds a folder
def test_a_refusal_names_the_reader_not_a_dead_writer(made, fresh_data, capsys):
    """The data folder's lock file still names the data.py that wrote it (gone); a train.py reads it now: a
    second data.py is refused naming the reader. Two readers are named both."""
    (fresh_data / ".lock").write_text(f"data.py (pid {dead_pid()}) on {files.HOST}\n")
    readers = [hold_in_another_process(fresh_data, "train.py", shared=True) for _ in range(2)]
    try:
        line = one_line(*exits(capsys, data_cli.main, ["--input", made / "corpus.txt", "--tokenizer", made / "tok",
                                                       "--out", fresh_data, "--workers", 1]))
        assert line == (f"error: {fresh_data} is in use by train.py (pid {readers[0].pid}) reading it, train.py (pid "
                        f"{readers[1].pid}) reading it: wait for it to finish, or choose another folder")
    finally:
        for r in readers:
            r.kill()
            r.wait()
    code, err = exits(capsys, data_cli.main, ["--input", made / "corpus.txt", "--tokenizer", made / "tok", "--out",
                                              fresh_data, "--workers", 1])
    assert code == 0, err
    assert (fresh_data / ".lock").read_text() == f"data.py (pid {os.getpid()}) on {files.HOST}\n"  # readers' go


def test_export_takes_the_lock_and_replaces_no_file_of_the_users(made, tmp_path, capsys):
    """roberta.py export into a folder another process holds: refused naming it. Into a folder with a vocab.json
    of the user's: refused without --overwrite. Nothing written either time."""
    model = tmp_path / "model"
    torch.manual_seed(0)
    roberta.save_pretrained(roberta.RobertaForMaskedLM(roberta.RobertaConfig.preset("tiny", vocab_size=300,
                                                                                    max_positions=64)), model)
    bpe.Tokenizer.load(made / "tok").save(model)
    out = tmp_path / "hf"
    holder = hold_in_another_process(out, "train.py")
    try:
        line = one_line(*exits(capsys, roberta_cli.main, ["export", "--checkpoint", model, "--out", out]))
        assert line.startswith(f"error: {out} is in use by train.py (pid {holder.pid})"), line
    finally:
        holder.kill()
        holder.wait()
    assert os.listdir(out) == [".lock"]
    os.remove(out / ".lock")
    (out / "vocab.json").write_text("my vocabulary")
    line = one_line(*exits(capsys, roberta_cli.main, ["export", "--checkpoint", model, "--out", out]))
    assert "already holds an exported model (vocab.json); pass --overwrite" in line
    assert tree(out) == {"vocab.json": b"my vocabulary"}
    code, err = exits(capsys, roberta_cli.main, ["export", "--checkpoint", model, "--out", tmp_path / "new"])
    assert code == 0 and (tmp_path / "new" / "model.safetensors").exists(), err
    (tmp_path / "bare").mkdir()  # weights without a tokenizer: the earlier export's tokenizer goes
    for name in ("config.json", "model.safetensors"):
        shutil.copy(model / name, tmp_path / "bare")
    code, err = exits(capsys, roberta_cli.main, ["export", "--checkpoint", tmp_path / "bare", "--out", tmp_path / "new",
                                                 "--overwrite"])
    assert code == 0 and sorted(set(os.listdir(tmp_path / "new")) - {".lock"}) == ["config.json", "model.safetensors"]


def test_json_written_is_strict():
    """JSON has no NaN or Infinity (json.dumps writes them; other readers refuse them): files.json_text, which
    every JSON the project writes goes through, writes a figure that is not finite as a string."""
    text = files.json_text({"loss": math.nan, "ppl": (math.inf, -math.inf, 2.5), "ok": [1, "x", None]}, indent=1)
    refuse = lambda name: pytest.fail(f"not JSON: {name}")  # noqa: E731
    assert json.loads(text, parse_constant=refuse) == {"loss": "nan", "ppl": ["inf", "-inf", 2.5], "ok": [1, "x", None]}


# ---------------------------------------------------------------- a refusal leaves nothing behind
def test_a_refused_empty_corpus_leaves_no_folder(made, tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("\n\n")
    line = one_line(*exits(capsys, data_cli.main, ["--input", tmp_path / "empty.txt", "--tokenizer", made / "tok",
                                                   "--out", tmp_path / "new", "--workers", 1]))
    assert "the input is empty" in line and not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    one_line(*exits(capsys, data_cli.main, ["--input", tmp_path / "empty.txt", "--tokenizer", made / "tok",
                                            "--out", tmp_path / "old", "--workers", 1]))
    assert os.listdir(tmp_path / "old") == []  # a folder that was there stays, without a lock file of ours


# ---------------------------------------------------------------- data.py stopped by a signal
@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C", "kill -9"])
def test_data_py_stopped_by_a_signal(made, fresh_data, tmp_path, how):
    """SIGTERM to data.py, Ctrl-C (SIGINT to its process group) or kill -9, while 2 workers encode: no traceback
    (no BrokenPipeError from the workers, no hang), the old data intact, no worker left; one line
    `error: interrupted` (kill -9: nothing)."""
    (tmp_path / "big.txt").write_text(text(40000, seed=1) * 8)  # ~17 MB: seconds of encoding, signalled early
    before = tree(fresh_data)
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "data.py"), "--input", tmp_path / "big.txt",
                             "--tokenizer", made / "tok", "--out", fresh_data, "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 60
    while not list(fresh_data.glob(f"prepare.{files.MARK}.*/train.bin")):
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
        time.sleep(0.01)
    time.sleep(0.3)  # the workers busy
    if how == "Ctrl-C":
        os.killpg(proc.pid, signal.SIGINT)
    else:
        os.kill(proc.pid, signal.SIGTERM if how == "SIGTERM" else signal.SIGKILL)
    try:
        _, err = proc.communicate(timeout=30)  # returns once every process holding its stderr (the workers) is gone
    except subprocess.TimeoutExpired:
        hung = subprocess.run(["ps", "-o", "pid,ppid,stat,wchan:24,cmd", "-s", str(proc.pid)], capture_output=True,
                              text=True).stdout
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"data.py hung after {how}:\n{hung}") from None
    assert "Traceback" not in err and "Error" not in err, err
    if how == "kill -9":
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 1 and err.splitlines()[-1] == "error: interrupted", err
        assert not list(fresh_data.glob(f"*.{files.MARK}.*"))
    left = {k: v for k, v in tree(fresh_data).items() if files.MARK not in k}
    assert left.keys() == before.keys() and all(left[k] == before[k] for k in before if k != ".lock")
    deadline = time.time() + 10
    while True:  # no worker lives on (the dead await their reaper; one exiting may still show as running)
        states = subprocess.run(["ps", "-o", "stat=", "-s", str(proc.pid)], capture_output=True, text=True).stdout
        if all(state.startswith("Z") for state in states.split()):
            break
        assert time.time() < deadline, states
        time.sleep(0.05)


# ---------------------------------------------------------------- a full disk, on a real small filesystem
@pytest.fixture
def small_disk(tmp_path):
    """A real 16 MiB filesystem (tmpfs) mounted under tmp_path; skipped where it cannot be (not root)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small filesystem needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(disk, leave):
    """Take all of the disk's free space but `leave` bytes."""
    st = os.statvfs(disk)
    with open(disk / f"filler{time.time_ns()}", "wb") as f:
        os.posix_fallocate(f.fileno(), 0, st.f_bavail * st.f_frsize - leave)


def test_torch_save_on_a_full_disk_is_one_line(small_disk):
    """torch.save's zip writer reports a real full disk as a RuntimeError ("unexpected pos"): checkpoints.save (and
    every files.write_atomic) says it as one line naming the folder, the previous file whole, no temporary left."""
    state = {"model": {"w": torch.arange(200_000, dtype=torch.float32)}, "config": {}}
    path = small_disk / "checkpoint.pt"
    checkpoints.save(path, state)
    before = path.read_bytes()
    fill(small_disk, len(before) // 2)
    for target, intact in ((path, "the previous checkpoint.pt is intact"),
                           (small_disk / "new.pt", "nothing was written")):
        with pytest.raises(files.WriteFailed) as e:
            checkpoints.save(target, state)
        assert str(e.value) == f"{small_disk}: could not write {target.name} (No space left on device); {intact}"
    with pytest.raises(files.WriteFailed, match="could not write checkpoint.pt .No space left on device.; the prev"):
        files.write_atomic(path, lambda f: torch.save(state, f))
    assert path.read_bytes() == before and not [n for n in os.listdir(small_disk) if files.MARK in n]


@pytest.mark.slow
def test_a_full_disk_while_training_saves_is_one_line(made, small_disk, tmp_path, capsys):
    """train.py --save-interval 1 with room for one checkpoint and a half: the second save fails (torch's zip writer
    reports it as a RuntimeError) in one line naming the folder; the first checkpoint is whole."""
    probe = tmp_path / "probe"
    code, err = exits(capsys, train_cli.main, ["--data", made / "data", "--out", probe, *TINY, "--max-steps", 1])
    assert code == 0, err
    size = os.path.getsize(probe / "checkpoint.pt")
    fill(small_disk, size * 3 // 2 + (1 << 16))
    out = small_disk / "run"
    line = one_line(*exits(capsys, train_cli.main, ["--data", made / "data", "--out", out, *TINY, "--max-steps", 3,
                                                "--save-interval", 1]))
    assert line == (f"error: {out}: could not write checkpoint.pt (No space left on device); the previous "
                    f"checkpoint.pt is intact")
    assert checkpoints.read_checkpoint(out / "checkpoint.pt")["state"]["step"] == 1
    assert not [n for n in os.listdir(out) if files.MARK in n]


def test_a_full_disk_while_data_py_writes_is_one_line(made, small_disk, capsys):
    """data.py over its own folder on a full disk: one line, the data there before intact, no temporary
    folder; into a new folder: one line, no folder left."""
    out = small_disk / "data"
    shutil.copytree(made / "data", out)
    before = tree(out)
    del before[".lock"]  # rewritten by every writer: its record
    fill(small_disk, 100_000)
    argv = ["--input", made / "corpus.txt", made / "corpus.txt", "--tokenizer", made / "tok", "--workers", 1]
    line = one_line(*exits(capsys, data_cli.main, argv + ["--out", out]))
    assert line == (f"error: {out}: could not write the prepared data (No space left on device); the data already in "
                    f"{out} is intact")
    assert {k: v for k, v in tree(out).items() if k != ".lock"} == before
    line = one_line(*exits(capsys, data_cli.main, argv + ["--out", small_disk / "new"]))
    assert line.endswith("(No space left on device); nothing was kept") and not (small_disk / "new").exists()


def test_a_full_disk_while_exporting_is_one_line(made, small_disk, tmp_path, capsys):
    """roberta.py export with room for less than the weights: one line; the files it wrote are gone, and so is
    the folder it made."""
    model = tmp_path / "model"
    torch.manual_seed(0)
    roberta.save_pretrained(roberta.RobertaForMaskedLM(roberta.RobertaConfig.preset("tiny", vocab_size=300,
                                                                                    max_positions=64)), model)
    bpe.Tokenizer.load(made / "tok").save(model)
    fill(small_disk, 500_000)
    out = small_disk / "hf"
    line = one_line(*exits(capsys, roberta_cli.main, ["export", "--checkpoint", model, "--out", out]))
    assert line == f"error: {out}: could not write the export (No space left on device); nothing was exported"
    assert not out.exists()


def test_export_overwrite_on_a_full_disk_leaves_the_old_export_whole(made, small_disk, tmp_path, capsys):
    """export --overwrite writes the new export aside and moves it in by renames: a full disk midway leaves the
    export already there whole (not a folder mixing two models), and no temporary files."""
    model = tmp_path / "model"
    roberta.save_pretrained(roberta.RobertaForMaskedLM(roberta.RobertaConfig.preset("tiny", vocab_size=300,
                                                                                    max_positions=64)), model)
    bpe.Tokenizer.load(made / "tok").save(model)
    out = small_disk / "hf"
    assert exits(capsys, roberta_cli.main, ["export", "--checkpoint", model, "--out", out])[0] == 0
    before = tree(out)
    fill(small_disk, 200_000)
    line = one_line(*exits(capsys, roberta_cli.main, ["export", "--checkpoint", model, "--out", out, "--overwrite"]))
    assert line == (f"error: {out}: could not write the export (No space left on device); the export already in "
                    f"{out} is intact")
    assert tree(out) == before


@pytest.mark.slow
def test_a_full_disk_while_finetuning_is_one_line(made, small_disk, tmp_path, capsys):
    """finetune.py with room for less than its checkpoint: one line naming the folder and the file."""
    model = tmp_path / "model"
    tok = bpe.Tokenizer.load(made / "tok")
    torch.manual_seed(0)
    roberta.save_pretrained(roberta.RobertaForMaskedLM(roberta.RobertaConfig.preset("tiny", vocab_size=len(tok),
                                                                                    max_positions=64)), model)
    tok.save(model)
    task = tmp_path / "rte"
    task.mkdir()
    lines = text(16, seed=2).split("\n")
    rows = "".join(f"{i}\t{lines[i]}\t{lines[i + 1]}\t{['entailment', 'not_entailment'][i % 2]}\n" for i in range(6))
    for name in ("train.tsv", "dev.tsv"):
        (task / name).write_text("index\tsentence1\tsentence2\tlabel\n" + rows)
    fill(small_disk, 500_000)
    out = small_disk / "rte"
    code, err = exits(capsys, finetune_cli.main, ["--task", "rte", "--data", task, "--checkpoint", model, "--out", out,
                                              "--epochs", 1, "--max-seq-len", 32, "--no-progress"])
    last = err.strip().splitlines()[-1]
    assert code == 1 and "Traceback" not in err, err
    assert last == f"error: {out}: could not write checkpoint.pt (No space left on device); nothing was written"
    assert not [n for n in os.listdir(out) if files.MARK in n] and "checkpoint.pt" not in os.listdir(out)
