"""Reading a folder written by data.py (data.prepare), checked: meta.json has the keys data.py reads, the .bin
and .idx files have the sizes meta.json says, and the folder's tokenizer is the one the data was made with.
data.py re-exports these names (data.load_split, data.read_meta, ...), the ones its callers use."""
import hashlib
import json
import os

import numpy as np

import bpe


def tokenizer_hash(tok):
    """A short fingerprint of a tokenizer (a loaded one, or a folder): its vocabulary and merges."""
    if isinstance(tok, (str, os.PathLike)):
        tok = bpe.Tokenizer.load(tok)
    h = hashlib.sha256()
    for i in sorted(tok.vocab):
        h.update(tok.vocab[i] + b"\x00")
    for (a, b), new in tok.merges.items():
        h.update(f"{a},{b},{new};".encode())
    return h.hexdigest()[:16]


META_KEYS = {"tokenizer_sha256": str, "vocab_size": int, "dtype": str, "train": dict, "valid": dict}


def read_meta(data_dir):
    """meta.json of a prepared folder, checked for the keys this module reads."""
    meta_path = os.path.join(data_dir, "meta.json")
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"{data_dir}: no such folder, so no prepared data (meta.json missing; run data.py "
                                f"first)")
    if not os.path.isfile(meta_path):
        raise FileNotFoundError(f"{data_dir}: no prepared data (meta.json missing; run data.py first)")
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{meta_path}: not valid JSON ({e})") from None
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


def open_prepared(data_dir):
    """The train split, its meta and the folder's tokenizer, checked to be the one the data was made with."""
    tokens, line_ends, meta = load_split(data_dir, "train")
    tok = bpe.Tokenizer.load(data_dir)
    check_tokenizer(meta, tok, data_dir)
    return tokens, line_ends, meta, tok


def check_tokenizer(meta, tok, data_dir, source=None):
    """The one tokenizer check: data made with `tok`'s vocabulary and merges (meta.json's fingerprint)."""
    if meta["vocab_size"] != len(tok) or meta["tokenizer_sha256"] != tokenizer_hash(tok):
        raise ValueError(f"{data_dir} was prepared with another tokenizer than "
                         f"{source + chr(39) + 's' if source else 'the one in that folder'}")


