"""Files, safely: atomic writes, what dead processes left removed, and text read with errors that name the file.

    write_atomic("out/meta.json", json.dumps(meta))          # a reader sees the old file or the new one
    write_atomic("out/checkpoint.pt", lambda f: torch.save(ckpt, f))
    sweep("out")                                             # NAME.<pid>.tmp of processes that are gone
    for line in read_lines("corpus.txt"): ...                # streaming, UTF-8 checked, \\r\\n and \\r read as \\n
    text = read_text("vocab.json")                           # whole, \\r\\n and \\r read as \\n
"""
import json
import os
import re
import shutil

BOM = b"\xef\xbb\xbf"  # UTF-8's byte-order mark: not text, dropped at the start of a file


def write_atomic(path, data):
    """Write `data` (str: UTF-8 text, bytes, or a function that writes to an open binary file, as
    `lambda f: torch.save(ckpt, f)`) to `path` all at once: a reader, or a run killed midway,
    sees the old file or the new one, never half of one. The data goes to a temporary file in the same
    folder (so that the rename stays on one filesystem), reaches the disk, and is renamed over `path`."""
    path = os.fspath(path)
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as f:
            if callable(data):  # a function that writes to the open file (torch.save of a checkpoint)
                data(f)
            else:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def temp_name(path):
    """The temporary name of `path` while this process writes it: PATH.<pid>.tmp (sweep removes it once the
    process is gone)."""
    return f"{os.fspath(path)}.{os.getpid()}.tmp"


def alive(pid):
    """Whether process `pid` runs (on this machine)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except (OverflowError, ValueError):  # no such pid can exist
        return False
    return True


def sweep(folder, host=None):
    """Remove what dead processes left in `folder`: files and folders named NAME.<pid>.tmp (NAME.<host>.<pid>.tmp
    with `host`, for files of a folder that several machines share) whose process no longer runs. Returns the
    names removed."""
    pattern = re.compile((r"\." + re.escape(host) if host else "") + r"\.(\d+)\.tmp$")
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        found = pattern.search(entry.name)
        if not found or alive(int(found.group(1))):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.remove(entry.path)
            removed.append(entry.name)
        except FileNotFoundError:  # another sweeper was quicker
            pass
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
            if line.endswith("\r\n"):
                line = line[:-2] + "\n"
            elif line.endswith("\r"):
                line = line[:-1] + "\n"
            yield line


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
