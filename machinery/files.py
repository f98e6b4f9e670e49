"""Files, safely: atomic writes, and text read with errors that name the file.

    write_atomic("out/meta.json", json.dumps(meta))          # a reader sees the old file or the new one
    write_atomic("out/checkpoint.pt", lambda f: torch.save(ckpt, f))
    for line in read_lines("corpus.txt"): ...                # streaming, UTF-8 checked
    text = read_text("vocab.json")                           # whole, \\r\\n and \\r read as \\n
"""
import os


def write_atomic(path, data):
    """Write `data` (str: UTF-8 text, bytes, or a function that writes to an open binary file, as
    `lambda f: torch.save(ckpt, f)`) to `path` all at once: a reader, or a run killed midway,
    sees the old file or the new one, never half of one. The data goes to a temporary file in the same
    folder (so that the rename stays on one filesystem), reaches the disk, and is renamed over `path`."""
    path = os.fspath(path)
    tmp = f"{path}.{os.getpid()}.tmp"
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


def read_lines(path, errors="strict"):
    """Yield the lines of a UTF-8 text file, streaming. A decoding error names the file and byte offset."""
    offset = 0
    with open(path, "rb") as f:
        for raw in f:
            try:
                yield raw.decode("utf-8", errors)
            except UnicodeDecodeError as e:
                raise ValueError(f"{path}: not UTF-8 text at byte {offset + e.start} "
                                 f"(pass --errors replace to substitute U+FFFD)") from None
            offset += len(raw)


def read_text(path, dataset=False):
    """A whole UTF-8 text file, newlines as Python's text mode reads them. Errors name the file and why.
    dataset: a downloaded dataset's file (GLUE, SQuAD, RACE): a leading byte-order mark is dropped (GLUE's
    MRPC has one), and an empty file is left to its reader to refuse (it knows what was expected)."""
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path}: a folder, not a file")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text at byte {e.start}") from None
    if dataset:
        text = text.removeprefix("\ufeff")
    if not text.strip() and not dataset:
        raise ValueError(f"{path}: empty file")
    return text.replace("\r\n", "\n").replace("\r", "\n")
