"""Files, safely: atomic writes, what dead processes left removed, and text read with errors that name the file.

    write_atomic("out/meta.json", json_text(meta))           # a reader sees the old file or the new one; strict JSON
    write_atomic("out/checkpoint.pt", lambda f: torch.save(ckpt, f))
    append("out/log.jsonl", line)                            # a full disk: one line, what is intact
    sweep("out")                                             # temporary files of processes that are gone
    for line in read_lines("corpus.txt"): ...                # streaming, UTF-8 checked, \\r\\n and \\r read as \\n
    text = read_text("vocab.json")                           # whole, \\r\\n and \\r read as \\n
"""
import contextlib
import errno
import json
import math
import os
import re
import secrets
import shutil
import socket
import stat

BOM = b"\xef\xbb\xbf"  # UTF-8's byte-order mark: not text, dropped at the start of a file


def write_atomic(path, data):
    """Write `data` (str: UTF-8 text, bytes, or a function that writes to an open binary file) to `path` all at
    once: a reader, or a run killed midway, sees the old file or the new one. The data goes to a temporary file in
    the same folder, reaches the disk, and is renamed over `path`. A full disk is a WriteFailed of one line."""
    path = os.fspath(path)
    tmp, before, sink = temp_name(path), os.path.exists(path), None
    try:
        with open(tmp, "wb") as f:
            if callable(data):  # a function that writes to the open file (torch.save of a checkpoint)
                sink = _Sink(f)
                data(sink)
            else:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.lexists(tmp):
            os.remove(tmp)
        cause = sink.error if sink is not None and sink.error is not None else e  # torch: a RuntimeError
        if isinstance(cause, OSError) and (cause is not e or cause.errno in FULL):
            raise write_failed(cause, os.path.dirname(os.path.abspath(path)), os.path.basename(path),
                               f"the previous {os.path.basename(path)} is intact" if before else
                               "nothing was written") from None
        raise


def append(path, text):
    """Append UTF-8 text to a file (a log's line). A full disk is a WriteFailed of one line: the folder, the file,
    and that its earlier lines are intact (a torn last line is for its reader to drop)."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        if e.errno not in FULL:
            raise
        raise write_failed(e, os.path.dirname(os.path.abspath(path)), os.path.basename(path),
                           "its earlier lines are intact") from None


FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)  # the disk, not the path: said in one line


class WriteFailed(OSError):
    """A write that failed midway (a full disk), as one line: the folder, what failed, what is intact."""

    def __str__(self):
        return self.args[0]


def write_failed(cause, folder, what, intact):
    """WriteFailed("FOLDER: could not write WHAT (No space left on device); INTACT"), the cause's errno kept."""
    err = WriteFailed(f"{folder}: could not write {what} ({cause.strerror or cause}); {intact}")
    err.errno, err.strerror = cause.errno, cause.strerror
    return err


class _Sink:
    """An open file as a writer function sees it, keeping the first OSError of a write: torch.save's zip writer
    reports a full disk as a RuntimeError ("unexpected pos"), which hides the reason."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, b):
        try:
            return self.f.write(b)
        except OSError as e:
            self.error = self.error or e
            raise

    def __getattr__(self, name):
        return getattr(self.f, name)


# A temporary file is NAME.roberta-tmp.<host>.<pid>.<token>.tmp: the marker, the machine and process that write
# it, and a random token of that process. Only such names are ever swept, and only once their process is gone:
# a user's own draft.123.tmp is never touched.
MARK = "roberta-tmp"
HOST = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname()) or "host"
TEMP = re.compile(r"\." + MARK + r"\.(.+)\.(\d+)\.([0-9a-f]{8})\.tmp$")
_token = secrets.token_hex(4)
os.register_at_fork(after_in_child=lambda: globals().update(_token=secrets.token_hex(4)))  # a child's own token


def temp_name(path):
    """The temporary name of `path` while this process writes it: PATH.roberta-tmp.<host>.<pid>.<token>.tmp
    (sweep removes it once the process is gone)."""
    return f"{os.fspath(path)}.{MARK}.{HOST}.{os.getpid()}.{_token}.tmp"


def alive(pid):
    """Whether process `pid` runs (on this machine)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError, ValueError):  # gone, or no such pid can exist
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def sweep(folder):
    """Remove what dead processes of this project left in `folder`: files and folders named by temp_name, written
    on this machine by a process that no longer runs (another machine's, sharing the folder, are left: whether
    they run cannot be known here). Returns the names removed."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        found = TEMP.search(entry.name)
        if not found or found.group(1) != HOST or alive(int(found.group(2))):
            continue
        with contextlib.suppress(FileNotFoundError):  # another sweeper was quicker
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.remove(entry.path)
            removed.append(entry.name)
    return removed


def _raw_lines(f, size=1 << 20):
    """The lines of a binary file with their ends (\\n, \\r\\n or a lone \\r), read a block at a time: a file
    with no line end at all is read in blocks too, joined once."""
    pending = []  # the pieces of a line not finished yet (only the last may end with a lone \\r)
    for block in iter(lambda: f.read(size), b""):
        if pending and pending[-1].endswith(b"\r"):  # a \\r at a block's end: is it the start of \\r\\n?
            if block.startswith(b"\n"):
                pending.append(b"\n")
                block = block[1:]
            yield b"".join(pending)
            pending = []
        parts = block.splitlines(keepends=True)  # bytes split at \\n, \\r\\n and \\r only
        last = parts.pop() if parts and not parts[-1].endswith(b"\n") else None  # unfinished, or \\r before \\n?
        if pending and parts:
            yield b"".join(pending + [parts[0]])
            pending, parts = [], parts[1:]
        yield from parts
        if last is not None:
            pending.append(last)
    if pending:
        yield b"".join(pending)


def is_pipe(path):
    """A named pipe (mkfifo, or /dev/stdin fed by a shell pipe): it has no size, and what is read is gone."""
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False


def read_lines(path, errors="strict"):
    """Yield the lines of a UTF-8 text file, streaming, each ending with "\\n" (but perhaps the last): \\r\\n and a
    lone \\r are line ends too, and a byte-order mark at the start is dropped. A decoding error names the file
    and byte offset."""
    offset = 0
    with open(path, "rb") as f:
        for raw in _raw_lines(f):
            if offset == 0 and raw.startswith(BOM):
                raw, offset = raw[len(BOM):], len(BOM)
            try:
                line = raw.decode("utf-8", errors)
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}: not UTF-8 text at byte {offset + e.start} "
                                 f"(pass --errors replace to substitute U+FFFD)") from None
            offset += len(raw)
            yield line.rstrip("\n").removesuffix("\r") + "\n" if line.endswith(("\r\n", "\r")) else line


def read_text(path, dataset=False):
    """A whole UTF-8 text file, newlines as Python's text mode reads them. Errors name the file and why.
    A leading byte-order mark is dropped (GLUE's MRPC has one). dataset: a downloaded dataset's file (GLUE,
    SQuAD, RACE): an empty file is left to its reader to refuse (it knows what was expected)."""
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path}: a folder, not a file")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text at byte {e.start}") from None
    text = text.removeprefix("\ufeff")  # a byte-order mark is not text
    if not text.strip() and not dataset:
        raise ValueError(f"{path}: empty file")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def json_text(value, **options):
    """`value` as strict JSON text (json.dumps' options): a number that is not finite, which JSON cannot hold, is
    written as the string "nan", "inf" or "-inf" (json.dumps would write NaN or Infinity, which readers refuse)."""
    return json.dumps(_finite(value), allow_nan=False, **options)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def read_json(path, what=None, missing=False):
    """A JSON file's content; a file that is not UTF-8 JSON is named in one line. what: the file must hold a
    JSON object of `what` (the error says so otherwise). missing=True: None for a missing or unreadable file
    (a record that may not be there yet), instead of an error."""
    if missing and not os.path.isfile(path):
        return None
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: {'a folder, not a file' if os.path.isdir(path) else 'no such file'}")
    try:
        out = json.loads(read_text(path, dataset=True))
    except (ValueError, OSError, RecursionError) as e:  # RecursionError: nested past reason
        if missing:
            return None
        raise ValueError(f"{path}: not valid JSON ({e})" if not isinstance(e, OSError) else str(e)) from None
    if what and not isinstance(out, dict):
        raise ValueError(f"{path}: expected a JSON object of {what}, got a {type(out).__name__}")
    return out
