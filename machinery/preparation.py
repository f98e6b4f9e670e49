"""The machinery of data.prepare: the checks before anything is written, the worker processes that encode
the lines, and the .bin/.idx files of both splits, written whole or not at all."""
import json
import os
import sys
from collections import deque
from multiprocessing import get_all_start_methods, get_context

import numpy as np

import bpe
import data
from machinery import files

_worker_tok = None


def _init_worker(tokenizer_dir):
    global _worker_tok  # one per worker process
    _worker_tok = bpe.Tokenizer.load(tokenizer_dir)


def _encode(lines):
    return data.encode_lines(lines, _worker_tok)


def encoded_chunks(chunks, tok, tokenizer_dir, workers):
    """(split, (tokens, lengths)) for each chunk, in order; with workers > 1, encoded in worker processes
    with at most 2 chunks per worker in flight (bounded memory)."""
    if workers <= 1:
        for split, lines in chunks:
            yield split, data.encode_lines(lines, tok)
        return
    method = "fork" if "fork" in get_all_start_methods() else "spawn"  # fork: workers start at once
    with get_context(method).Pool(workers, _init_worker, (tokenizer_dir,)) as pool:
        pending = deque()
        for split, lines in chunks:
            pending.append((split, pool.apply_async(_encode, (lines,))))
            if len(pending) >= 2 * workers:
                split, result = pending.popleft()
                yield split, result.get()
        while pending:
            split, result = pending.popleft()
            yield split, result.get()


def check(tok, tokenizer_dir, inputs, out_dir, valid_fraction, overwrite, errors):
    """Before anything is written: a tokenizer with <s>, </s> and <mask>, a valid fraction in [0, 1), an
    --out folder that holds no data of another tokenizer (unless overwrite), inputs that are text files.
    Returns the tokenizer's fingerprint (data.tokenizer_hash)."""
    if tok.eos_id is None or tok.bos_id is None or tok.mask_id is None:
        raise ValueError(f"{tokenizer_dir}: the tokenizer has no <s>, </s> or <mask> token")
    if not 0 <= valid_fraction < 1:
        raise ValueError(f"--valid-fraction must be in [0, 1), got {valid_fraction}")
    digest = data.tokenizer_hash(tok)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"--out {out_dir}: a file is in the way (it must be a folder)")
    if os.path.isfile(os.path.join(out_dir, "meta.json")) and not overwrite:
        if data.read_meta(out_dir).get("tokenizer_sha256") != digest:
            raise ValueError(f"{out_dir} holds data from another tokenizer: pass --overwrite to replace it")
    for path in inputs:
        next(data.read_documents([path], errors), None)  # a missing or binary file fails before anything is written
    return digest


class SplitWriter:
    """The .bin/.idx files of both splits, written under temporary names and renamed only when complete."""

    def __init__(self, out_dir, dtype):
        self.out_dir, self.dtype = out_dir, dtype
        self.files = {(s, k): open(self.path(s, k) + ".tmp", "wb") for s in data.SPLITS for k in ("bin", "idx")}
        self.counts = {s: {"tokens": 0, "lines": 0, "documents": 0} for s in data.SPLITS}

    def path(self, split, kind):
        return os.path.join(self.out_dir, f"{split}.{kind}")

    def write(self, split, tokens, lengths):
        c = self.counts[split]
        self.files[split, "bin"].write(tokens.astype(self.dtype).tobytes())
        self.files[split, "idx"].write((np.cumsum(lengths) + c["tokens"]).tobytes())
        c["tokens"] += int(tokens.size)
        c["lines"] += int(lengths.size)
        c["documents"] += int(np.sum(lengths == 1) if lengths.size else 0)  # a lone </s> ends a document

    def close(self, keep):
        for f in self.files.values():
            f.close()
        for s, k in self.files:
            if keep:
                os.replace(self.path(s, k) + ".tmp", self.path(s, k))
            elif os.path.exists(self.path(s, k) + ".tmp"):
                os.remove(self.path(s, k) + ".tmp")


def write_splits(out_dir, dtype, encoded, inputs, verbose=True):
    """Write (split, (tokens, lengths)) parts into out_dir's .bin/.idx files, kept only when all went well
    and the train split is not empty; a meta.json already there is removed first (until data.prepare writes
    the new one, the folder reads as incomplete). Returns the counts of each split."""
    from tqdm import tqdm
    os.makedirs(out_dir, exist_ok=True)
    writer, done = SplitWriter(out_dir, dtype), False
    try:
        with tqdm(unit="tok", unit_scale=True, desc="encoding", disable=not verbose) as bar:
            for split, (tokens, lengths) in encoded:
                writer.write(split, tokens, lengths)
                bar.update(tokens.size)
        if writer.counts["train"]["tokens"] == 0:
            raise ValueError(f"no text in {', '.join(inputs)}: the input is empty")
        done = True
    finally:
        if os.path.isfile(os.path.join(out_dir, "meta.json")) and done:
            os.remove(os.path.join(out_dir, "meta.json"))
        writer.close(keep=done)
    return writer.counts


def finish(out_dir, tok, digest, inputs, valid_fraction, counts):
    """The tokenizer and meta.json (last: its presence means a complete folder) beside the data; a warning
    when the valid split is empty. Returns the meta."""
    tok.save(out_dir)
    meta = {"tokenizer_sha256": digest, "vocab_size": len(tok), "dtype": np.dtype(data.token_dtype(len(tok))).name,
            "bos_id": tok.bos_id, "pad_id": tok.pad_id, "eos_id": tok.eos_id, "mask_id": tok.mask_id,
            "inputs": [os.path.abspath(p) for p in inputs], "valid_fraction": valid_fraction, **counts}
    files.write_atomic(os.path.join(out_dir, "meta.json"), json.dumps(meta, indent=2))
    if valid_fraction > 0 and meta["valid"]["tokens"] == 0:
        print(f"warning: {out_dir}: the valid split is empty ({meta['train']['documents']} document(s) in all, "
              f"--valid-fraction {valid_fraction}): training will not evaluate; add documents (blank-line "
              f"separated) or raise --valid-fraction", file=sys.stderr)
    return meta
