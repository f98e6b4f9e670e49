"""The examples index kept beside the data, and the batches of an epoch at the paper's scale.

At the paper's scale (160 GB, ~40B tokens, ~80M blocks of 512) the examples are built once, by one process,
and kept beside the data in data_dir/roberta-index/; every start then maps them into memory in milliseconds. An
epoch's order of 0.8B sentence pairs is computed slice by slice (Shuffle), and its batches are found as they
are asked for (Ragged). data.cached_examples and data.epoch_batches are the names the training loop calls.
"""
import json
import os
import re
import socket
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import torch

import data
from machinery import fast_formats, files, prepared

INDEX_VERSION = 3  # raise it when a builder's rule changes: every kept index is then rebuilt (3: checksums)
FOLDER = "roberta-index"  # beside the data: a name of this project's, so that no folder of the user's is taken for it
NAMES = re.compile(r"(train|valid)-[a-z-]+-\d+(-\d+)?\.(json|rows|len)$")  # its files (and their files.temp_name)
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
    meta = data.read_meta(data_dir)
    out = {"tokenizer_sha256": meta["tokenizer_sha256"], "counts": meta[split]}
    for kind in ("bin", "idx"):
        path = os.path.join(data_dir, f"{split}.{kind}")
        out[kind] = [os.path.getsize(path), os.stat(path).st_mtime_ns, prepared.ends_digest(path)]
    return out


def cached_examples(data_dir, tokens, line_ends, fmt, seq_len, eos_id, seed=0, split="train", build=True):
    """data.examples of a prepared folder's split, built once and kept in data_dir/roberta-index/, memory-mapped when
    read: an ExampleIndex (examples, lengths) whose rows have the fields of `stored_dtype(fmt)`.

    Below data.SPEC_BELOW lines (the classroom's corpora) nothing is kept: data.examples builds the examples
    at every start with the plain Python formats of data.py, in well under a second, so that an edit to a
    format takes effect at once (a kept index would hide it: its key knows INDEX_VERSION, not the edit).

    A kept index is used only when it was built from this very data (`source_fingerprint`) by these rules
    (INDEX_VERSION), for this format, seq_len and (pair formats) seed, and is whole; otherwise it is rebuilt,
    or, with build=False, refused with a ValueError. In a job of many processes only one builds it (rank 0;
    on each node its local rank 0 when the nodes have copies of the data, not one shared folder):

        if rank == 0:
            data.cached_examples(data_dir, tokens, line_ends, fmt, seq_len, eos_id, seed)  # builds if needed
        torch.distributed.barrier()
        ex, lengths = data.cached_examples(data_dir, tokens, line_ends, fmt, seq_len, eos_id, seed, build=False)

    A folder that cannot be written to gets no index: every process builds the examples in memory."""
    fast_formats.check_examples(tokens, line_ends, fmt, seq_len, eos_id)
    if len(line_ends) == 0:
        return ExampleIndex(np.zeros(0, stored_dtype(fmt)), np.zeros(0, np.int32))
    if len(line_ends) < data.SPEC_BELOW:
        check_line_ends(line_ends, os.path.join(data_dir, f"{split}.idx"))
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
    check_line_ends(line_ends, os.path.join(data_dir, f"{split}.idx"))
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


def check_line_ends(line_ends, path, chunk=1 << 24):
    """The line ends of a split (its .idx file, `path`) rise at every line (each line holds its </s> at least),
    checked a chunk at a time before any example is built from them; else a ValueError names the file and the
    first line where they do not."""
    previous = 0
    for first in range(0, len(line_ends), chunk):
        part = np.asarray(line_ends[first:first + chunk], dtype=np.int64)
        bad = np.flatnonzero(np.diff(part, prepend=previous) <= 0)
        if bad.size:
            i = int(bad[0])
            before = previous if i == 0 else int(part[i - 1])
            raise ValueError(f"{path}: the line ends are not increasing at line {first + i:,} ({before:,} then "
                             f"{int(part[i]):,}): not a split written by data.py (prepare the data again)")
        previous = int(part[-1])


def in_memory(tokens, line_ends, fmt, seq_len, eos_id, seed):
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


class Checksum:
    """CRC-32s of a file's bytes, one per CHECK_CHUNK, fed as the file is written (update) or read (of_file)."""

    def __init__(self):
        self.crcs, self.crc, self.filled = [], 0, 0

    def update(self, buf):
        buf = memoryview(buf).cast("B")
        while len(buf):
            take = min(len(buf), CHECK_CHUNK - self.filled)
            self.crc, self.filled = zlib.crc32(buf[:take], self.crc), self.filled + take
            buf = buf[take:]
            if self.filled == CHECK_CHUNK:
                self.crcs.append(self.crc)
                self.crc, self.filled = 0, 0

    def value(self):
        return self.crcs + ([self.crc] if self.filled else [])


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


def _verify(path, want):
    """None when the file's bytes match the CRC-32s `want` written when it was built (checked whole, the chunks
    in parallel, once a process); else what is wrong, as "does not match its checksum at bytes a-b"."""
    stat = os.stat(path)
    if _verified.get(path) == (stat.st_ino, stat.st_size, stat.st_mtime_ns):
        return None
    chunks = range(0, stat.st_size, CHECK_CHUNK)
    if not isinstance(want, list) or len(want) != len(chunks):
        return "has no checksum of the right length"
    fd = os.open(path, os.O_RDONLY)
    try:
        with ThreadPoolExecutor(min(8, os.cpu_count() or 1, max(1, len(chunks)))) as pool:
            got = list(pool.map(lambda start: _chunk_crc(fd, start, CHECK_CHUNK), chunks))
    finally:
        os.close(fd)
    for start, a, b in zip(chunks, got, want):
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
    """Write the examples and their lengths a window at a time under temporary names, then rename them; the
    .json comes last (and goes first), so that its presence means a whole index."""
    if os.path.exists(path + ".json"):
        os.remove(path + ".json")
    files.sweep(os.path.dirname(path))  # what builders killed on this machine left
    dtype, n = stored_dtype(fmt), 0
    sums = {".rows": Checksum(), ".len": Checksum()}
    try:
        with open(files.temp_name(path + ".rows"), "wb") as rows, \
                open(files.temp_name(path + ".len"), "wb") as lengths:
            for ex in parts:
                kept = np.empty(len(ex), dtype)
                for field in dtype.names:
                    kept[field] = ex[field]
                for f, ext, part in ((rows, ".rows", kept.tobytes()), (lengths, ".len", data.example_lengths(
                        ex, fmt, info["seq_len"]).astype(np.int32).tobytes())):
                    f.write(part)
                    sums[ext].update(part)
                n += len(ex)
            for f in (rows, lengths):
                f.flush()
                os.fsync(f.fileno())
        for ext in (".rows", ".len"):
            os.replace(files.temp_name(path + ext), path + ext)
    finally:
        for ext in (".rows", ".len"):
            if os.path.exists(files.temp_name(path + ext)):
                os.remove(files.temp_name(path + ext))
    info = {**info, "count": n, "crc32": {ext: c.value() for ext, c in sums.items()}}
    files.write_atomic(path + ".json", json.dumps(info, indent=1))
    for ext in (".rows", ".len"):  # written by this process: no need to read them back to check them
        stat = os.stat(path + ext)
        _verified[path + ext] = (stat.st_ino, stat.st_size, stat.st_mtime_ns)


# ---------------------------------------------------------------------------------------- batches
def epoch_order(n, seed, epoch):
    """The random order of n examples in one epoch, fixed by (seed, epoch). Up to data.SHUFFLE_ABOVE (2**27)
    examples it is torch.randperm, held as np.int32 (512 MB at most); beyond, a Shuffle that computes any slice
    of the order when it is asked for, so that no process holds the order of a 40B-token epoch (0.8B sentence
    pairs: 3.2 GB, and two minutes to draw)."""
    key = seed * 1_000_003 + epoch
    if n > data.SHUFFLE_ABOVE:
        return Shuffle(n, key)
    return torch.randperm(n, generator=torch.Generator().manual_seed(key), dtype=torch.int32).numpy()


class Shuffle:
    """A random permutation of range(n) that is computed, not stored: order[a:b] for any slice. A
    Feistel network (4 rounds, keyed by `key`) is a bijection of the 2**(2h) >= n integers below it;
    a value that lands at n or beyond is sent through again until it falls below n ("cycle walking"),
    which keeps it a bijection of range(n). Memory and time are the slice's."""

    ROUNDS = 4

    def __init__(self, n, key):
        self.n, self.half = n, max(1, ((n - 1).bit_length() + 1) // 2)
        self.keys = np.random.default_rng(key).integers(0, 2 ** 63, self.ROUNDS, dtype=np.uint64)

    def __len__(self):
        return self.n

    def __getitem__(self, part):
        if not isinstance(part, slice):
            raise TypeError("a Shuffle is read in slices: order[a:b]")
        x = self._encrypt(np.arange(*part.indices(self.n), dtype=np.uint64))
        out = np.flatnonzero(x >= self.n)
        while out.size:
            x[out] = self._encrypt(x[out])
            out = out[x[out] >= self.n]
        return x.astype(np.int64)

    def _encrypt(self, x):
        half, mask = np.uint64(self.half), np.uint64((1 << self.half) - 1)
        left, right = x >> half, x & mask
        for key in self.keys:
            left, right = right, left ^ (_mix(right ^ key) & mask)
        return (left << half) | right


def _mix(z):
    """splitmix64's finalizer: every bit of the output depends on every bit of z (uint64 arithmetic wraps)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class Ragged:
    """The batches of one epoch's order, found as they are asked for: batch i is order[bounds[i]:bounds[i+1]].

    A batch takes examples until the next would take it over `budget`, counting each example's length
    (`lengths`), or one per example when `lengths` is None, so that a budget of B is B examples a batch.
    The order is scanned a chunk at a time, and only as far as the batches asked for: the start of a run
    costs nothing, whatever the epoch's size. A resumed run passes where its next batch begins (`first`,
    and `offset` in the order, as train.py saves them); without `offset`, the batches before `first` are
    found again. An incomplete last batch is dropped. len(), [i], [a:b], iteration; get(i) is None past the end.
    """

    def __init__(self, order, lengths, budget, first=0, offset=None, chunk=1 << 22):
        self.order, self.lengths, self.budget, self.chunk = order, lengths, budget, chunk
        self.first = first if offset is not None else 0
        self.bounds = [offset or 0]  # bounds[k]: where batch first + k begins
        self.done = False
        self.get(first)  # an offset saved with the run is trusted; without one, find the batches before

    def get(self, i):
        while not self.done and i + 1 - self.first >= len(self.bounds):
            self._scan()
        k = i - self.first
        if k < 0:
            raise IndexError(f"batch {i} comes before batch {self.first}, where this run resumed")
        return self.order[self.bounds[k]:self.bounds[k + 1]] if k + 1 < len(self.bounds) else None

    def start(self, i):
        """Where batch i begins in the order (the end of the epoch's last batch for i == len(self))."""
        while not self.done and i - self.first >= len(self.bounds):
            self._scan()
        return self.bounds[i - self.first]

    def __len__(self):
        while not self.done:
            self._scan()
        return self.first + len(self.bounds) - 1

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        batch = self.get(i if i >= 0 else len(self) + i)
        if batch is None or i < -len(self):
            raise IndexError(f"batch {i} of {len(self)}")
        return batch

    def __iter__(self):
        return (self[i] for i in range(self.first, len(self)))

    def _scan(self):
        """Add the batches that end in the next chunk of the order (a longer chunk if none does)."""
        start, n = self.bounds[-1], len(self.order)
        part = slice(start, min(start + self.chunk, n))
        weights = np.ones(part.stop - part.start, np.int64) if self.lengths is None else self.lengths[self.order[part]]
        total = np.cumsum(weights, dtype=np.int64)
        whole, at, used = part.stop == n, 0, 0  # whole: the chunk reaches the end of the epoch
        while at < len(total):
            end = max(int(np.searchsorted(total, used + self.budget, side="right")), at + 1)
            if end >= len(total) and (not whole or total[-1] - used < self.budget):
                break  # the batch goes on in the next chunk, or is the epoch's incomplete tail
            self.bounds.append(start + end)
            at, used = end, int(total[end - 1])
        self.done = whole
        self.chunk = self.chunk if at else 2 * self.chunk  # a batch longer than a chunk: a longer chunk

