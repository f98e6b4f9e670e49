"""One writer per folder: an OS lock on FOLDER/.lock, released when the process ends, so a killed run never
blocks the next one. Writers hold it exclusively; readers (training opening prepared data) share it, so a
folder is never read while it is being rewritten. The holder writes who it is into the file, so that a
refusal can name it. A writer that takes the lock first removes what dead processes left in the folder (their
temporary files, files.sweep): it knows that no one else writes there.

    lock.hold("out/run", "train.py")                  # a writer; ValueError if anyone else holds the folder
    lock.hold("data/", "train.py", shared=True)       # a reader; ValueError while a writer holds it
    lock.release("out/run")                           # or let the process end
    lock.abandon("out/run")                           # refused before writing: a folder made for it goes
    with lock.writing("tok/", "bpe.py train"): ...    # hold, release; a failure before writing leaves no folder
"""
import contextlib
import fcntl
import os

from machinery.basics import files

NAME = ".lock"
_held = {}  # real path of the folder -> the open lock file: the lock lasts while the file is open


def hold(folder, what, shared=False):
    """Take the folder's lock (creating the folder if needed), or raise ValueError naming the holder."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(f"{folder}: a file is in the way (it must be a folder)")
    os.makedirs(folder, exist_ok=True)
    key = os.path.realpath(folder)
    if key in _held:  # this process holds it already
        return _held[key]
    while True:
        f = open(os.path.join(folder, NAME), "a+")
        try:
            fcntl.flock(f, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise ValueError(f"{folder} is in use by {holder}: wait for it to finish, or choose another "
                             f"folder") from None
        if _still_there(f, folder):
            break
        f.close()  # its holder removed the file (abandon, writing) between our open and our lock: again
    if not shared:  # a reader leaves the writer's name alone: it would be stale once the reader is gone
        f.seek(0)
        f.truncate()
        f.write(f"{what} (pid {os.getpid()})")
        f.flush()
        files.sweep(folder)
    _held[key] = f
    return f


@contextlib.contextmanager
def writing(folder, what):
    """`with lock.writing(out, "bpe.py train"): ...`: hold the folder's lock while the block writes it, and give
    it back after. A block that fails (a refusal, before it writes) leaves what it found: a folder made for the
    lock goes when nothing but the lock file is in it, and a lock file made for it goes."""
    made = not os.path.exists(folder)
    lock_made = made or not os.path.exists(os.path.join(folder, NAME))
    hold(folder, what)
    try:
        yield
    except BaseException:
        if made:
            abandon(folder)
        elif lock_made and held(folder):
            try:
                os.remove(os.path.join(folder, NAME))  # while still held: a waiter sees it gone (_still_there)
            except OSError:
                pass
        raise
    finally:
        release(folder)


def _still_there(f, folder):
    """Whether the locked file is still FOLDER/.lock (not one removed while we waited for it)."""
    try:
        return os.stat(os.path.join(folder, NAME)).st_ino == os.fstat(f.fileno()).st_ino
    except FileNotFoundError:
        return False


def _forget():
    """In a forked child (an encoding worker, a batch loader): the locks stay the parent's alone, so that they
    go when the parent dies, even while the child lives on. Closing the child's copy of the file releases nothing."""
    for f in _held.values():
        try:
            f.close()
        except OSError:
            pass
    _held.clear()


os.register_at_fork(after_in_child=_forget)


def held(folder):
    """Whether this process holds the folder's lock."""
    return os.path.realpath(folder) in _held


def abandon(folder):
    """Give back the lock of a folder made for a run that was refused before it wrote anything: the folder goes
    too when nothing but the lock file is in it, so that a refusal leaves nothing behind."""
    f = _held.pop(os.path.realpath(folder), None)
    try:
        if f is not None and os.listdir(folder) == [NAME]:
            os.remove(os.path.join(folder, NAME))  # while still held: no one else can have taken it
            os.rmdir(folder)
    except OSError:
        pass
    finally:
        if f is not None:
            f.close()


def release(folder):
    """Give the folder's lock back (a no-op when this process does not hold it)."""
    f = _held.pop(os.path.realpath(folder), None)
    if f is not None:
        f.close()
