"""One writer per folder: an OS lock on FOLDER/.lock, released when the process ends, so a killed run never
blocks the next one. Writers hold it exclusively; readers (training opening prepared data) share it, so a
folder is never read while it is being rewritten. The holder writes who it is into the file, so that a
refusal can name it.

    lock.hold("out/run", "train.py")                  # a writer; ValueError if anyone else holds the folder
    lock.hold("data/", "train.py", shared=True)       # a reader; ValueError while a writer holds it
    lock.release("out/run")                           # or let the process end
"""
import fcntl
import os

NAME = ".lock"
_held = {}  # real path of the folder -> the open lock file: the lock lasts while the file is open


def hold(folder, what, shared=False):
    """Take the folder's lock (creating the folder if needed), or raise ValueError naming the holder."""
    os.makedirs(folder, exist_ok=True)
    key = os.path.realpath(folder)
    if key in _held:  # this process holds it already
        return _held[key]
    f = open(os.path.join(folder, NAME), "a+")
    try:
        fcntl.flock(f, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise ValueError(f"{folder} is in use by {holder}: wait for it to finish, or choose another folder") from None
    if not shared:  # a reader leaves the writer's name alone: it would be stale once the reader is gone
        f.seek(0)
        f.truncate()
        f.write(f"{what} (pid {os.getpid()})")
        f.flush()
    _held[key] = f
    return f


def release(folder):
    """Give the folder's lock back (a no-op when this process does not hold it)."""
    f = _held.pop(os.path.realpath(folder), None)
    if f is not None:
        f.close()
