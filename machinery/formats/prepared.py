"""Reading a folder written by data.py, checked: meta.json's keys, the sizes of the .bin and .idx files, the ids and
the tokenizer. A leaf: it imports nothing of the core (a tokenizer is read through its vocab and merges)."""
import hashlib
import os

import numpy as np

from machinery.basics import files


def tokenizer_hash(tok):
    """A short fingerprint of a loaded tokenizer: its vocabulary and merges."""
    h = hashlib.sha256()
    for i in sorted(tok.vocab):
        h.update(tok.vocab[i] + b"\x00")
    for (a, b), new in tok.merges.items():
        h.update(f"{a},{b},{new};".encode())
    return h.hexdigest()[:16]


TOKENIZER_FILES = ("vocab.json", "merges.txt", "char_bpe.json")  # a tokenizer's files, of either kind


def check_not_users(folder, own, marker, who, tok):
    """A folder that is not `who`'s (no `marker` file in it) is not written into without --overwrite when it holds
    a file the writer would replace: one of `own`, or another tokenizer's files than `tok`'s (the user's, perhaps).
    The folder's tokenizer is read by `tok`'s own class."""
    if os.path.isfile(os.path.join(folder, marker)):
        return
    held = [name for name in own if os.path.lexists(os.path.join(folder, name))]
    theirs = [name for name in TOKENIZER_FILES if os.path.lexists(os.path.join(folder, name))]
    if not held and theirs:
        try:
            same = tokenizer_hash(type(tok).load(folder)) == tokenizer_hash(tok)
        except (OSError, ValueError, KeyError, TypeError):
            same = False
        held = [] if same else theirs
    if held:
        raise ValueError(f"--out {folder} holds {held[0]} but is not {who} (no {marker}): pass --overwrite to write "
                         f"there anyway, or choose another --out")


def token_dtype(vocab_size):
    """The .bin files' dtype: np.uint16 when the vocabulary fits, else np.int32."""
    return np.uint16 if vocab_size <= 1 << 16 else np.int32


META_KEYS = {"tokenizer_sha256": str, "vocab_size": int, "dtype": str, "train": dict, "valid": dict}


def read_meta(data_dir):
    """meta.json of a prepared folder, checked for the keys this module reads."""
    meta_path = os.path.join(data_dir, "meta.json")
    if not os.path.isfile(meta_path):
        raise FileNotFoundError(f"{data_dir}: {'' if os.path.isdir(data_dir) else 'no such folder, so '}no prepared "
                                f"data (meta.json missing; run data.py first)")
    meta = files.read_json(meta_path)
    bad = [k for k, kind in META_KEYS.items() if not isinstance(meta, dict) or not isinstance(meta.get(k), kind)]
    if bad or any(not isinstance(meta[s].get(k), int) for s in ("train", "valid") for k in ("tokens", "lines")):
        raise ValueError(f"{meta_path}: not data.py's meta.json (missing or wrong: {', '.join(bad) or 'counts'})")
    if meta["dtype"] not in ("uint16", "int32"):
        raise ValueError(f"{meta_path}: unknown token dtype {meta['dtype']!r}")
    return meta


def load_split(data_dir, split):
    """(tokens, line_ends, meta) of a prepared folder, both memory-mapped."""
    meta = read_meta(data_dir)
    if meta[split]["tokens"] == 0:
        return np.zeros(0, dtype=meta["dtype"]), np.zeros(0, dtype=np.int64), meta
    arrays = []
    for kind, dtype, count in (("bin", meta["dtype"], meta[split]["tokens"]), ("idx", np.int64, meta[split]["lines"])):
        path = os.path.join(data_dir, f"{split}.{kind}")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: missing (the folder is incomplete; rerun data.py)")
        size = os.path.getsize(path)
        if size != count * np.dtype(dtype).itemsize:
            raise ValueError(f"{path}: {size:,} bytes, but meta.json says {count:,} entries of "
                             f"{np.dtype(dtype).itemsize} bytes (a torn or mixed folder; rerun data.py)")
        arrays.append(np.memmap(path, dtype=dtype, mode="r"))
    return arrays[0], arrays[1], meta


SCAN_BELOW = 1 << 28  # tokens: a split this small has every id checked (~0.05 s); a larger one, its recorded max


def open_prepared(data_dir, tok):
    """The train split and its meta, checked against the folder's tokenizer `tok`: every id (check_ids) up to
    SCAN_BELOW tokens; above, the largest id data.py recorded in meta.json (a pass over 40B tokens takes a minute)."""
    tokens, line_ends, meta = load_split(data_dir, "train")
    check_tokenizer(meta, tok, data_dir)
    for split, (ids, ends) in (("train", (tokens, line_ends)), ("valid", load_split(data_dir, "valid")[:2])):
        path, recorded = os.path.join(data_dir, f"{split}.bin"), meta[split].get("max_id")
        if ids.size < SCAN_BELOW or not isinstance(recorded, int):
            check_ids(ids, len(tok), path)
            check_line_ends(ends, path[:-4] + ".idx")  # above SCAN_BELOW: checked once, as its index is built
        elif recorded >= len(tok):
            raise ValueError(f"{path}: holds token id {recorded:,} (meta.json), outside the vocabulary of {len(tok):,} "
                             f"tokens (a damaged or mixed folder; rerun data.py)")
    return tokens, line_ends, meta


def check_line_ends(line_ends, path, chunk=1 << 24):
    """The line ends of a split (its .idx file, `path`) rise at every line (each holds its </s> at least), checked
    a chunk at a time; else a ValueError names the file and the first line where they do not."""
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


CHUNK = 1 << 26  # tokens per vectorised pass (128 MiB of uint16)


def check_ids(tokens, vocab_size, path):
    """Every id in `tokens` (a mapped .bin) is in [0, vocab_size): one vectorised pass, a chunk at a time (~2 s per
    GB read from memory); none for uint16 data when the vocabulary holds every uint16 value."""
    if tokens.size == 0 or (tokens.dtype == np.uint16 and vocab_size >= 1 << 16):
        return
    low, high = 0, -1
    for i in range(0, tokens.size, CHUNK):
        part = tokens[i:i + CHUNK]
        low, high = min(low, int(part.min())), max(high, int(part.max()))
    if low < 0 or high >= vocab_size:
        raise ValueError(f"{path}: holds token id {high if high >= vocab_size else low:,}, outside the vocabulary of "
                         f"{vocab_size:,} tokens (a damaged or mixed folder; rerun data.py)")


def ends_digest(path, span=1 << 20):
    """A hash of a file's first and last MiB (None when there is no file): cheap at any size."""
    if not os.path.isfile(path):
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(span))
        f.seek(max(os.path.getsize(path) - span, 0))
        h.update(f.read(span))
    return h.hexdigest()[:16]


def data_fingerprint(data_dir):
    """What a checkpoint records of its training data, so that --resume refuses other data: meta.json's
    tokenizer and counts, and a hash of the ends of each .bin and .idx (cheap at any size; no path or time,
    so a copy of the same folder resumes)."""
    meta = read_meta(data_dir)
    out = {"tokenizer": meta["tokenizer_sha256"]}
    for split in ("train", "valid"):
        out[f"{split} counts"] = {k: meta[split][k] for k in sorted(meta[split])}
        for kind in ("bin", "idx"):
            out[f"{split}.{kind}"] = ends_digest(os.path.join(data_dir, f"{split}.{kind}"))
    return out


def fingerprint_differences(then, now):
    """What differs between two data_fingerprint()s, in words ([] when nothing)."""
    differ = []
    for key in sorted(set(then) | set(now)):
        if then.get(key) == now.get(key):
            continue
        if key.endswith("counts") and isinstance(then.get(key), dict) and isinstance(now.get(key), dict):
            differ += [f"{key.split()[0]} {k}: {then[key].get(k)} then, {now[key].get(k)} now"
                       for k in sorted(set(then[key]) | set(now[key])) if then[key].get(k) != now[key].get(k)]
        else:
            differ.append(f"{key}: other contents" if "." in key else f"{key}: {then.get(key)} then, {now.get(key)} now")
    return differ


def check_tokenizer(meta, tok, data_dir, source=None):
    """The one tokenizer check: data made with `tok`'s vocabulary and merges (meta.json's fingerprint)."""
    if meta["vocab_size"] != len(tok) or meta["tokenizer_sha256"] != tokenizer_hash(tok):
        raise ValueError(f"{data_dir} was prepared with another tokenizer than "
                         f"{source + chr(39) + 's' if source else 'the one in that folder'}")


