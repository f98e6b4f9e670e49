"""The examples index kept beside the data at the paper's scale (160 GB, ~40B tokens, ~80M blocks of 512): built
once, by one process, and kept in data_dir/roberta-index/; every start then maps it in milliseconds. train.py's
command line passes it to train.train (run_examples): a cache above the core, which the core does not import.
"""
import fcntl
import json
import os
import re
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

import bpe
import data
from machinery.datafolder import fast_formats
from machinery.formats import prepared
from machinery.basics import files

INDEX_VERSION = 3  # raise it when a builder's rule changes: every kept index is then rebuilt (3: checksums)
FOLDER = "roberta-index"  # beside the data: a name of this project's, so that no folder of the user's is taken for it
NAMES = re.compile(r"((train|valid)-[a-z-]+-\d+(-\d+)?\.(json|rows|len)|\.build-lock)$")  # its files (and their files.temp_name)
CHECK_CHUNK = 1 << 26  # a kept file's checksum is a CRC-32 per 64 MiB: checked in parallel, a damage located


class ExampleIndex(NamedTuple):
    examples: np.ndarray  # one row per example, the fields of `stored_dtype`
    lengths: np.ndarray   # np.int32 tokens per example (example_lengths)


def stored_dtype(fmt):
    """The fields a kept index stores for a format: 16 bytes a block, 33 a pair (collate reads no others)."""
    fields = [("a_start", np.int64), ("a_end", np.int64)]
    if data.FORMATS[fmt].pairs:
        fields += [("b_start", np.int64), ("b_end", np.int64), ("next", np.int8)]
    return np.dtype(fields)


def source_fingerprint(data_dir, split):
    """What a kept index was built from: meta.json's tokenizer and counts, and the .bin's and .idx's size,
    modification time and hash of their ends. Data changed in any of these makes the index stale."""
    meta = prepared.read_meta(data_dir)
    out = {"tokenizer_sha256": meta["tokenizer_sha256"], "counts": meta[split]}
    for kind in ("bin", "idx"):
        path = os.path.join(data_dir, f"{split}.{kind}")
        out[kind] = [os.path.getsize(path), os.stat(path).st_mtime_ns, prepared.ends_digest(path)]
    return out


def run_examples(cfg):
    """train.train's `examples` for a TrainConfig's data: kept beside a large folder's split, built by the first of
    the node's processes to take the index's lock while the others wait, then mapped by each; None below
    data.SPEC_BELOW lines (train.py builds them itself, in well under a second) or without --data."""
    if not cfg.data or not os.path.isfile(os.path.join(cfg.data, "meta.json")):
        return None  # train.py says what is missing
    tokens, line_ends, _ = prepared.load_split(cfg.data, "train")
    if len(line_ends) < data.SPEC_BELOW:
        return None
    args = (cfg.data, tokens, line_ends, cfg.format, cfg.seq_len, bpe.Tokenizer.load(cfg.data).eos_id, cfg.seed)
    folder = os.path.join(cfg.data, FOLDER)
    if not _writable(folder):
        return cached_examples(*args)  # built in memory: nothing to wait for
    with open(os.path.join(folder, ".build-lock"), "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # released when the file closes, or when its process dies
        return cached_examples(*args)


def cached_examples(data_dir, tokens, line_ends, fmt, seq_len, eos_id, seed=0, split="train", build=True):
    """data.examples of a prepared folder's split, built once and kept in data_dir/roberta-index/, memory-mapped: an
    ExampleIndex of `stored_dtype(fmt)` rows. Below data.SPEC_BELOW lines nothing is kept (an edit to a format takes
    effect at once). A kept index is used only when built from this very data (`source_fingerprint`) by these rules
    (INDEX_VERSION), for this format, seq_len and (pair formats) seed, and whole; otherwise it is rebuilt, or, with
    build=False, refused. A folder that cannot be written to gets no index: the examples are built in memory."""
    data.check_examples(tokens, line_ends, fmt, seq_len, eos_id)
    if len(line_ends) == 0:
        return ExampleIndex(np.zeros(0, stored_dtype(fmt)), np.zeros(0, np.int32))
    if len(line_ends) < data.SPEC_BELOW:
        prepared.check_line_ends(line_ends, os.path.join(data_dir, f"{split}.idx"))
        return in_memory(tokens, line_ends, fmt, seq_len, eos_id, seed)
    pairs = data.FORMATS[fmt].pairs
    path = os.path.join(data_dir, FOLDER, f"{split}-{fmt}-{seq_len}" + (f"-{seed}" if pairs else ""))
    want = {"version": INDEX_VERSION, "format": fmt, "seq_len": seq_len, "seed": seed if pairs else None,
            "source": source_fingerprint(data_dir, split)}
    index, why = _open_index(path, want, fmt)
    if index is not None:
        return index
    if not _writable(os.path.dirname(path)):
        print(f"warning: {data_dir} cannot be written to: the examples are built in memory at every start",
              file=sys.stderr)
        return in_memory(tokens, line_ends, fmt, seq_len, eos_id, seed)
    if not build:
        raise ValueError(f"{path}.json: the examples index is {why}: one process builds it (build=True) before "
                         f"the others read it")
    if why != "missing":
        print(f"{path}: the examples index is {why}: rebuilding it", file=sys.stderr)
    prepared.check_line_ends(line_ends, os.path.join(data_dir, f"{split}.idx"))
    _write_index(path, want, fast_formats.build_examples(line_ends, fmt, seq_len, seed), fmt)
    index, why = _open_index(path, want, fmt)
    if index is None:
        raise ValueError(f"{path}: the examples index is {why} just after it was built (another process?)")
    return index


def remove(data_dir):
    """Remove the examples index kept beside the data (data.py replacing the data: it no longer fits): only files
    this module writes, in its own folder, which goes too once empty. Anything else there stays."""
    folder = os.path.join(data_dir, FOLDER)
    if not os.path.isdir(folder) or os.path.islink(folder):
        return
    for name in os.listdir(folder):
        if NAMES.match(files.TEMP.sub("", name)) and os.path.isfile(os.path.join(folder, name)):
            os.remove(os.path.join(folder, name))
    if not os.listdir(folder):
        os.rmdir(folder)


def in_memory(tokens, line_ends, fmt, seq_len, eos_id, seed):
    """The examples built now: by data.py's plain formats below data.SPEC_BELOW lines, else by their numpy twins."""
    if len(line_ends) >= data.SPEC_BELOW:
        ex = fast_formats.examples(line_ends, fmt, seq_len, seed)
    else:
        ex = data.examples(tokens, line_ends, fmt, seq_len, eos_id, seed)
    return ExampleIndex(ex, data.example_lengths(ex, fmt, seq_len).astype(np.int32))


def _writable(folder):
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def _open_index(path, want, fmt):
    """(ExampleIndex memory-mapped, None) when the index at `path` is the one wanted and whole, else (None, why)."""
    try:
        with open(path + ".json", encoding="utf-8") as f:
            info = json.load(f)
    except FileNotFoundError:
        return None, "missing"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None, "unreadable (its .json is damaged)"
    if not isinstance(info, dict) or {k: info.get(k) for k in want} != want:
        return None, "stale (built from other data, or by another version of data.py)"
    dtype, n = stored_dtype(fmt), info.get("count")
    for ext, size in ((".rows", dtype.itemsize), (".len", 4)):
        if not isinstance(n, int) or not os.path.isfile(path + ext) or os.path.getsize(path + ext) != n * size:
            return None, f"torn (its {ext} file is missing or of the wrong size)"
    for ext in (".rows", ".len"):
        damaged = _verify(path + ext, (info.get("crc32") or {}).get(ext))
        if damaged:
            return None, f"corrupt ({path}{ext} {damaged})"
    sample = _sample_rows(path + ".rows", dtype, n)
    if np.any(sample["a_start"] >= sample["a_end"]) or np.any(sample["a_end"] > want["source"]["counts"]["tokens"]):
        return None, "corrupt (rows outside the token stream)"
    return ExampleIndex(np.memmap(path + ".rows", dtype, mode="r"), np.memmap(path + ".len", np.int32, mode="r")), None


def _chunk_crc(fd, start, size):
    """The CRC-32 of `size` bytes of an open file from `start` (os.pread and zlib let other threads run)."""
    crc, done = 0, 0
    while done < size:
        buf = os.pread(fd, min(size - done, 1 << 24), start + done)
        if not buf:
            break
        crc, done = zlib.crc32(buf, crc), done + len(buf)
    return crc


_verified = {}  # path -> (inode, size, mtime) of the kept files this process has checked whole: checked once a process


def _crcs(path):
    """The CRC-32s of a file's bytes, one per CHECK_CHUNK, the chunks read in parallel."""
    fd, size = os.open(path, os.O_RDONLY), os.path.getsize(path)
    try:
        with ThreadPoolExecutor(min(8, os.cpu_count() or 1, max(1, -(-size // CHECK_CHUNK)))) as pool:
            return list(pool.map(lambda start: _chunk_crc(fd, start, CHECK_CHUNK), range(0, size, CHECK_CHUNK)))
    finally:
        os.close(fd)


def _verify(path, want):
    """None when the file's bytes match the CRC-32s `want` written when it was built (checked whole, once a
    process); else what is wrong, as "does not match its checksum at bytes a-b"."""
    stat = os.stat(path)
    if _verified.get(path) == (stat.st_ino, stat.st_size, stat.st_mtime_ns):
        return None
    if not isinstance(want, list) or len(want) != len(range(0, stat.st_size, CHECK_CHUNK)):
        return "has no checksum of the right length"
    for start, a, b in zip(range(0, stat.st_size, CHECK_CHUNK), _crcs(path), want):
        if a != b:
            return (f"does not match the checksum written when it was built (bytes {start:,} to "
                    f"{min(start + CHECK_CHUNK, stat.st_size):,})")
    _verified[path] = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    return None


def _sample_rows(path, dtype, n, count=1024):
    """`count` rows spread over a file of n rows, read with file I/O: a cheap look, nothing kept mapped."""
    rows = []
    with open(path, "rb") as f:
        for i in range(0, n, max(1, n // count)):
            f.seek(i * dtype.itemsize)
            rows.append(f.read(dtype.itemsize))
    return np.frombuffer(b"".join(rows), dtype)


def _write_index(path, info, parts, fmt):
    """Write the examples and their lengths a window at a time, each file whole or not at all (files.write_atomic);
    the .json comes last (and goes first), so that its presence means a whole index."""
    if os.path.exists(path + ".json"):
        os.remove(path + ".json")
    files.sweep(os.path.dirname(path))  # what builders killed on this machine left
    dtype, n = stored_dtype(fmt), 0

    def write(rows, lengths):
        nonlocal n
        for ex in parts:
            rows.write(ex[list(dtype.names)].astype(dtype).tobytes())
            lengths.write(data.example_lengths(ex, fmt, info["seq_len"]).astype(np.int32).tobytes())
            n += len(ex)
    files.write_atomic(path + ".rows", lambda rows: files.write_atomic(  # .len is renamed first: no .json yet
        path + ".len", lambda lengths: write(rows, lengths)))
    info = {**info, "count": n, "crc32": {ext: _crcs(path + ext) for ext in (".rows", ".len")}}
    files.write_atomic(path + ".json", files.json_text(info, indent=1))
