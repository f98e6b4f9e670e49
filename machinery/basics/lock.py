"""One writer per folder: an OS lock on FOLDER/.lock, released when the process ends (a killed run never blocks
the next). Writers hold it exclusively; readers (training's data) share it. Every holder writes who it is into the
file, so that a refusal names the live holders; a writer then sweeps what dead processes left (files.sweep). A
.lock that is a link, a folder, a hard link or a file of other text is refused, untouched.

    lock.hold("out/run", "train.py")                  # a writer; ValueError if anyone else holds the folder
    lock.hold("data/", "train.py", shared=True)       # a reader; ValueError while a writer holds it
    lock.release("out/run")                           # or let the process end
    lock.abandon("out/run")                           # refused: what hold made (the lock file, the folder) goes
    with lock.writing("tok/", "bpe.py train"): ...    # hold, release; a failure leaves no folder made for it
"""
import contextlib
import errno
import fcntl
import os
import re
import stat
from typing import NamedTuple

from machinery.basics import files

NAME = ".lock"
RECORD = re.compile(r"(?P<what>.*) \(pid (?P<pid>\d+)\)( on (?P<host>\S+))?(?P<reading> reading it)?")


class Held(NamedTuple):
    file: object        # the open lock file: the lock lasts while it is open
    shared: bool        # a reader's
    made_folder: bool   # hold made the folder
    made_file: bool     # hold made the lock file


_held = {}  # real path of the folder -> Held


def hold(folder, what, shared=False):
    """Take the folder's lock (creating the folder if needed), or raise ValueError naming the holders."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(f"{folder}: a file is in the way (it must be a folder)")
    key = os.path.realpath(folder)
    if key in _held:  # this process holds it already
        if _held[key].shared and not shared:
            raise ValueError(f"{folder}: this process reads it (as its data) and cannot also write it: choose "
                             f"another folder")
        return _held[key].file
    made_folder = not os.path.exists(folder)
    os.makedirs(folder, exist_ok=True)
    while True:
        f, made_file = _open(folder, shared)
        if f is None:
            continue  # removed by its holder between our open and our look: again
        try:
            fcntl.flock(f, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holders = ", ".join(_holders(f)) or "another process"
            f.close()
            raise ValueError(f"{folder} is in use by {holders}: wait for it to finish, or choose another "
                             f"folder") from None
        if _still_there(f, folder):
            break
        f.close()  # its holder removed the file (abandon, writing) between our open and our lock: again
    try:
        _record(f, folder, what, shared)
    except BaseException:
        f.close()
        raise
    _held[key] = Held(f, shared, made_folder, made_file)
    return f


def _open(folder, shared):
    """(the lock file opened without following a link, made now?); (None, False): removed meanwhile."""
    path = os.path.join(folder, NAME)
    flags = os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # NONBLOCK: a FIFO never waits
    made = True
    try:
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            made = False
            try:
                fd = os.open(path, flags)
            except OSError as e:
                if not shared or e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                    raise
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)  # a reader may
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            raise not_ours(folder, "a symbolic link" if e.errno == errno.ELOOP else "not a file") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        if stat.S_ISREG(info.st_mode) and info.st_nlink == 0:  # removed by its holder meanwhile
            return None, False
        raise not_ours(folder, "not a file" if not stat.S_ISREG(info.st_mode) else "a hard link to another file")
    return os.fdopen(fd, "a+" if os.O_RDWR & fcntl.fcntl(fd, fcntl.F_GETFL) else "r", encoding="utf-8",
                     errors="replace"), made


def not_ours(folder, why):
    return ValueError(f"{os.path.join(folder, NAME)} is not a lock file of this project ({why}): it is left as it "
                      f"is; move it away, or choose another folder")


def _read(f, limit=1 << 16):
    f.seek(0)
    return f.read(limit)


def _record(f, folder, what, shared):
    """Write who holds the folder: a writer replaces the records, a reader adds its own; other text is refused."""
    text = _read(f)
    lines = text.splitlines()[:-1] if len(text) >= 1 << 16 else text.splitlines()  # a cut last line unchecked
    if any(line.strip() and not RECORD.fullmatch(line.strip()) for line in lines):
        raise not_ours(folder, "it holds other text")
    if not f.writable():  # a reader of a folder it may not write to: it holds the lock, unrecorded
        return
    record = f"{what} (pid {os.getpid()}) on {files.HOST}" + (" reading it" if shared else "")
    if not shared:
        f.truncate(0)
    f.write(record + "\n")  # O_APPEND: at the end, whole, even beside other readers
    f.flush()
    if not shared:
        files.sweep(folder)


def _holders(f):
    """The records of the processes that may hold the lock: those gone (on this machine) are left out."""
    names = []
    for line in _read(f, -1).splitlines():
        found = RECORD.fullmatch(line.strip())
        if not found:
            continue
        host, pid = found.group("host") or files.HOST, int(found.group("pid"))
        if host == files.HOST and (not files.alive(pid) or pid == os.getpid()):  # gone, or this process: stale
            continue
        name = f"{found.group('what')} (pid {found.group('pid')})" + (f" on {host}" if host != files.HOST else "") \
            + (" reading it" if found.group("reading") else "")
        if name not in names:
            names.append(name)
    return names


@contextlib.contextmanager
def writing(folder, what):
    """Hold the folder's lock while the block writes it; a block that fails gives back what hold made (abandon)."""
    hold(folder, what)
    try:
        yield
    except BaseException:
        abandon(folder)
        raise
    finally:
        release(folder)


def _still_there(f, folder):
    """Whether the locked file is still FOLDER/.lock (not one removed while we waited for it)."""
    with contextlib.suppress(FileNotFoundError):
        return os.stat(os.path.join(folder, NAME), follow_symlinks=False).st_ino == os.fstat(f.fileno()).st_ino
    return False


def _forget():
    """In a forked child (an encoding worker): the locks stay the parent's alone (closing the copy releases none)."""
    for h in _held.values():
        with contextlib.suppress(OSError):
            h.file.close()
    _held.clear()


os.register_at_fork(after_in_child=_forget)


def held(folder, exclusive=False):
    """Whether this process holds the folder's lock (exclusive: as a writer)."""
    h = _held.get(os.path.realpath(folder))
    return h is not None and not (exclusive and h.shared)


def abandon(folder):
    """Give back the lock of a run refused or failed: the lock file `hold` made goes, and the folder it made when
    empty, so that a refusal leaves nothing behind. A reader's lock is only given back."""
    h = _held.pop(os.path.realpath(folder), None)
    if h is None:
        return
    with contextlib.suppress(OSError):
        if h.made_file and not h.shared:
            os.remove(os.path.join(folder, NAME))  # while still held: no one else can have taken it
            if h.made_folder:
                os.rmdir(folder)  # only when empty
    h.file.close()


def abandon_all():
    """abandon every folder this process holds as a writer (a command that failed: cli.run)."""
    for key in [k for k, h in _held.items() if not h.shared]:
        abandon(key)


def release(folder):
    """Give the folder's lock back (a no-op when this process does not hold it)."""
    h = _held.pop(os.path.realpath(folder), None)
    if h is not None:
        h.file.close()
