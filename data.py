"""Pretraining data: corpus preparation, the input formats of Section 4.2, masking of Section 4.1.

Preparation streams text files through the BPE tokenizer (in worker processes) into flat token files:

    python data.py --input corpus.txt --tokenizer tok/ --out data/

Input: one sentence or paragraph per line; a blank line ends a document (fairseq's convention).
Output, as fairseq binarizes it: every line becomes its tokens followed by </s>, and a document end
adds one more </s> (the "extra separator token between documents" of FULL-SENTENCES):

    train.bin, valid.bin   the token stream, np.uint16 when the vocabulary fits, else np.int32
    train.idx, valid.idx   np.int64: where each line ends in the stream (a lone </s> = document end)
    meta.json              tokenizer hash, counts, dtype (written last: its presence means complete)
    vocab.json, merges.txt the tokenizer, so the folder is self-contained
    index/                 the examples of each format, built once by training (cached_examples)

From these files each format of Section 4.2 is one short builder in the table FORMATS (numpy over windows
of lines: the paper's 160 GB is built once, in minutes, then only mapped into memory), and each batch is
masked afresh when served (dynamic masking, Section 4.1) or with one of 10 fixed masks (static), by the
one masking rule `mask_tokens` under the one specification `Masking`.
"""
import argparse
import hashlib
import json
import mmap
import os
import socket
import sys
from collections import deque
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from typing import Callable, NamedTuple

import numpy as np
import torch

import bpe
from machinery import files
from machinery.corpus import DATASETS, builtin_corpus, download, reference_topics, stdlib_docstrings  # noqa: F401 (data.*)

SPLITS = ("train", "valid")


# ---------------------------------------------------------------------------------------- reading text
def read_documents(paths, errors="strict"):
    """Yield stripped lines; "" marks a document end (blank lines, and the end of every file)."""
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such file" if not os.path.isdir(path) else f"{path}: a folder, not a text file")
        with open(path, "rb") as f:
            if b"\x00" in f.read(1 << 16):
                raise ValueError(f"{path}: looks binary (NUL bytes), not a text corpus")
        in_document = False
        for line in files.read_lines(path, errors):
            line = line.strip()
            if line:
                in_document = True
                yield line
            elif in_document:  # a run of blank lines ends one document
                in_document = False
                yield ""
        if in_document:
            yield ""


def split_documents(lines, valid_fraction, chunk_lines=2000):
    """Group lines into (split, lines) chunks. Whole documents are held out, spread evenly: a document
    goes to "valid" when the held-out share of the characters read so far is below `valid_fraction`,
    so "valid" holds that fraction of the text (of the tokens, nearly), never half a document."""
    buffers, chars, split = {s: [] for s in SPLITS}, {s: 0 for s in SPLITS}, None
    for line in lines:
        if split is None:  # a document starts: choose its split
            split = "valid" if chars["valid"] < valid_fraction * (chars["train"] + chars["valid"]) else "train"
        buffers[split].append(line)
        chars[split] += len(line) + 1
        if len(buffers[split]) >= chunk_lines:
            yield split, buffers[split]
            buffers[split] = []
        if line == "":
            split = None
    for s in SPLITS:
        if buffers[s]:
            yield s, buffers[s]


# ---------------------------------------------------------------------------------------- preparation
_worker_tok = None


def _init_worker(tokenizer_dir):
    global _worker_tok  # one per worker process
    _worker_tok = bpe.Tokenizer.load(tokenizer_dir)


def encode_lines(lines, tok=None):
    """Lines -> (token stream, line lengths): each line's tokens + </s>; a "" (document end) is </s> alone."""
    tok = tok or _worker_tok
    tokens, lengths = [], []
    for line in lines:
        ids = tok.encode(line) if line else []
        ids.append(tok.eos_id)
        tokens += ids
        lengths.append(len(ids))
    return np.array(tokens, dtype=np.int64), np.array(lengths, dtype=np.int64)


def encoded_chunks(chunks, tok, tokenizer_dir, workers):
    """(split, (tokens, lengths)) for each chunk, in order; with workers > 1, encoded in worker processes
    with at most 2 chunks per worker in flight (bounded memory)."""
    if workers <= 1:
        for split, lines in chunks:
            yield split, encode_lines(lines, tok)
        return
    method = "fork" if "fork" in get_all_start_methods() else "spawn"  # fork: workers start at once
    with get_context(method).Pool(workers, _init_worker, (tokenizer_dir,)) as pool:
        pending = deque()
        for split, lines in chunks:
            pending.append((split, pool.apply_async(encode_lines, (lines,))))
            if len(pending) >= 2 * workers:
                split, result = pending.popleft()
                yield split, result.get()
        while pending:
            split, result = pending.popleft()
            yield split, result.get()


def token_dtype(vocab_size):
    return np.uint16 if vocab_size <= 1 << 16 else np.int32


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


class SplitWriter:
    """The .bin/.idx files of both splits, written under temporary names and renamed only when complete."""

    def __init__(self, out_dir, dtype):
        self.out_dir, self.dtype = out_dir, dtype
        self.files = {(s, k): open(self.path(s, k) + ".tmp", "wb") for s in SPLITS for k in ("bin", "idx")}
        self.counts = {s: {"tokens": 0, "lines": 0, "documents": 0} for s in SPLITS}

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


def check_out_dir(out_dir, digest, overwrite):
    """Refuse a folder holding data of another tokenizer (unless overwrite), or a file in the way."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"--out {out_dir}: a file is in the way (it must be a folder)")
    meta_path = os.path.join(out_dir, "meta.json")
    if os.path.isfile(meta_path) and not overwrite:
        old = read_meta(out_dir)
        if old.get("tokenizer_sha256") != digest:
            raise ValueError(f"{out_dir} holds data from another tokenizer: pass --overwrite to replace it")


def prepare(inputs, tokenizer_dir, out_dir, valid_fraction=0.01, workers=None, overwrite=False,
            errors="strict", chunk_lines=2000, verbose=True):
    """Encode `inputs` into out_dir's train/valid files (whole documents held out: split_documents)."""
    from tqdm import tqdm
    tok = bpe.Tokenizer.load(tokenizer_dir)
    if tok.eos_id is None or tok.bos_id is None or tok.mask_id is None:
        raise ValueError(f"{tokenizer_dir}: the tokenizer has no <s>, </s> or <mask> token")
    if not 0 <= valid_fraction < 1:
        raise ValueError(f"--valid-fraction must be in [0, 1), got {valid_fraction}")
    digest = tokenizer_hash(tok)
    check_out_dir(out_dir, digest, overwrite)
    for path in inputs:
        next(read_documents([path], errors), None)  # a missing or binary file fails before anything is written
    os.makedirs(out_dir, exist_ok=True)
    writer = SplitWriter(out_dir, token_dtype(len(tok)))
    done = False
    try:
        with tqdm(unit="tok", unit_scale=True, desc="encoding", disable=not verbose) as bar:
            chunks = split_documents(read_documents(inputs, errors), valid_fraction, chunk_lines)
            for split, (tokens, lengths) in encoded_chunks(chunks, tok, tokenizer_dir, workers or os.cpu_count() or 1):
                writer.write(split, tokens, lengths)
                bar.update(tokens.size)
        if writer.counts["train"]["tokens"] == 0:
            raise ValueError(f"no text in {', '.join(inputs)}: the input is empty")
        done = True
    finally:
        if os.path.isfile(os.path.join(out_dir, "meta.json")) and done:
            os.remove(os.path.join(out_dir, "meta.json"))  # until rewritten, the folder reads as incomplete
        writer.close(keep=done)
    tok.save(out_dir)
    meta = {"tokenizer_sha256": digest, "vocab_size": len(tok), "dtype": np.dtype(writer.dtype).name,
            "bos_id": tok.bos_id, "pad_id": tok.pad_id, "eos_id": tok.eos_id, "mask_id": tok.mask_id,
            "inputs": [os.path.abspath(p) for p in inputs], "valid_fraction": valid_fraction, **writer.counts}
    files.write_atomic(os.path.join(out_dir, "meta.json"), json.dumps(meta, indent=2))
    if valid_fraction > 0 and meta["valid"]["tokens"] == 0:
        print(f"warning: {out_dir}: the valid split is empty ({meta['train']['documents']} document(s) in all, "
              f"--valid-fraction {valid_fraction}): training will not evaluate; add documents (blank-line "
              f"separated) or raise --valid-fraction", file=sys.stderr)
    return meta


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
    if bad or any(not isinstance(meta[s].get(k), int) for s in SPLITS for k in ("tokens", "lines")):
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


# ---------------------------------------------------------------------------------------- formats
# An example is token ranges of the stream: segment A, segment B (pair formats only) and the
# next-sentence label (1: B is A's true continuation, 0: B comes from another document, -1: no B).
EXAMPLE = np.dtype([("a_start", np.int64), ("a_end", np.int64), ("b_start", np.int64), ("b_end", np.int64),
                    ("next", np.int64)])

# Examples are built a window of lines at a time, so that memory stays bounded at any corpus size (the
# paper's 160 GB is ~1.2B lines), with numpy over each window: no Python loop over lines or examples.
WINDOW = 1 << 16
NOWHERE = np.iinfo(np.int64).max // 4  # beyond any token position or line number


class Lines(NamedTuple):
    """A window of a token stream's lines: lines first .. first + own - 1, then a look-ahead of a few
    hundred more. Where each line starts and ends, and which lines are document separators: a line of one
    token, the lone </s> that data.py writes at a document end (every text line has tokens before its </s>)."""
    first: int
    own: int
    starts: np.ndarray
    ends: np.ndarray
    sep: np.ndarray
    at_end: bool  # the look-ahead reaches the end of the stream


class Documents(NamedTuple):
    """The first and last line of every document (a run of text lines), and all line ends: the pair
    formats draw their random B from any document of the corpus."""
    first: np.ndarray
    last: np.ndarray
    line_ends: np.ndarray


def _read(array, a, b):
    """array[a:b] as an array of its own. A file mapped whole (load_split's memmaps) is read with file I/O,
    so that a build that goes through all of a 10 GB .idx never holds it in this process's memory."""
    if isinstance(array, np.memmap) and isinstance(array.base, mmap.mmap) and b > a:
        return np.fromfile(array.filename, array.dtype, b - a, offset=array.offset + a * array.itemsize)
    return np.array(array[a:b])


def _window(line_ends, first, own, margin):
    stop = min(first + own + margin, len(line_ends))
    ends = _read(line_ends, max(first - 1, 0), stop).astype(np.int64)
    if first == 0:
        ends = np.concatenate([[0], ends])
    return Lines(first, own, ends[:-1], ends[1:], ends[1:] - ends[:-1] == 1, stop == len(line_ends))


def _documents(line_ends):
    """Every document's first and last line, read a window at a time."""
    firsts, lasts, after_sep = [], [], True
    for a in range(0, len(line_ends), WINDOW):
        w = _window(line_ends, a, min(WINDOW, len(line_ends) - a), 1)
        sep = np.append(w.sep, True)[:w.own + 1]  # the stream's end closes its last document
        text = ~sep[:-1]
        firsts.append(a + np.flatnonzero(text & np.append(after_sep, sep[:-2])))
        lasts.append(a + np.flatnonzero(text & sep[1:]))
        after_sep = bool(sep[-2])
    docs = Documents(np.concatenate(firsts), np.concatenate(lasts), line_ends)
    if len(docs.first) < 2:
        raise ValueError("the pair formats need at least two documents (blank-line separated)")
    return docs


def _next_text(lines):
    """For each line of the window, and one past its end: the first line at or after it that is not a
    separator (the window's length when it sees none)."""
    n = len(lines.sep)
    index = np.where(lines.sep, n, np.arange(n))
    return np.append(np.minimum.accumulate(index[::-1])[::-1], n)


def _separator_after(lines):
    """For each own line: the first separator at or after it (the stream's end counts as one; NOWHERE when
    the window sees none)."""
    index = np.where(lines.sep, np.arange(len(lines.sep)), NOWHERE)
    if lines.at_end:
        index = np.append(index, len(lines.sep))
    return np.minimum.accumulate(index[::-1])[::-1][:lines.own]


def _walk(step, entry, own):
    """The lines where examples start, in window order: entry, step[entry], step[step[entry]], ... while
    below `own`. Without a loop over examples, by pointer doubling: after k rounds `jump` leads 2**k steps
    ahead, and the walk's first 2**k lines bring in the next 2**k."""
    jump = np.append(np.minimum(step, own), own).astype(np.int32)  # past the window's own lines: the walk ends
    nodes = np.array([min(entry, own)])
    while (ahead := jump[nodes]).min() < own:
        nodes = np.concatenate([nodes, ahead])
        jump = jump[jump]
    on = np.zeros(own + 1, dtype=bool)
    on[nodes] = True
    return np.flatnonzero(on[:own])


def _rows(a_start, a_end, b_start=0, b_end=0, nxt=-1):
    ex = np.zeros(len(a_start), dtype=EXAMPLE)
    ex["a_start"], ex["a_end"], ex["b_start"], ex["b_end"], ex["next"] = a_start, a_end, b_start, b_end, nxt
    return ex


def _blocks(lines, seq_len, entry, within_documents):
    """Greedy packing of whole lines into blocks of at most seq_len - 1 tokens (<s> comes first), each
    block as full as the next line allows; a line longer than a block is cut into pieces of that size,
    never leaving its </s> alone for the next piece. Returns the window's blocks and where the walk goes
    on in the next window."""
    block, own, first = seq_len - 1, lines.own, lines.first
    start, end = lines.starts[:own], lines.ends[:own]
    cuts = -(-(end - start) // block) - 1  # > 0: a long line, cut before its last piece
    last = start + cuts * block - ((cuts > 0) & (end - start == cuts * block + 1))  # where that piece starts
    limit = last + block
    if within_documents:  # up to the document's separator, which no block includes
        bound = np.append(lines.starts, [lines.ends[-1], NOWHERE])
        limit = np.minimum(limit, bound[np.minimum(_separator_after(lines), len(bound) - 1)])
    to = np.searchsorted(lines.ends, limit, side="right") - 1  # the block's last line
    step = to + 1
    if within_documents:  # the next block starts after a separator
        text = _next_text(lines)
        step, entry = text[step], first + text[min(entry - first, len(text) - 1)]
    nodes = _walk(step, entry - first, own)
    count = cuts[nodes] + 1  # blocks that start in each line
    line = np.repeat(nodes, count)
    piece = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    cut = piece < cuts[line]
    a_start = np.where(cut, start[line] + piece * block, last[line])
    a_end = np.where(cut, np.minimum(a_start + block, last[line]), lines.ends[to[line]])
    return _rows(a_start, a_end), (first + step[nodes[-1]] if nodes.size else entry)


def _draws(lines, seed, stream):
    """Uniform draws in [0, 1) for the pair formats' random choices, one per line number: the counter-based
    hash of masking's `uniforms` (below), so that a choice depends on (seed, line, stream) alone, never on
    how the build is cut into windows."""
    return uniforms(np.asarray(lines, dtype=np.int64) * 1_000_003 + seed, 1, 100 + stream)[:, 0].numpy()


def _chunks(lines, seq_len, seed, single_sentences):
    """BERT's choices for a chunk starting at each own line: its number of sentences (up to seq_len - 4
    tokens, </s> not counted, within the document; or one sentence and the next), how many of them form A
    (a random cut), and whether B is the rest (with probability 1/2, when there is a rest)."""
    i = np.arange(lines.own)
    room = _separator_after(lines) - i  # sentences left in the document
    if single_sentences:
        chunk, n_a = np.minimum(2, room), np.ones_like(i)
    else:
        size = lines.ends - lines.starts - 1
        total = np.cumsum(size)
        reach = np.searchsorted(total, total[i] - size[i] + seq_len - 4)  # the sentence that fills the budget
        chunk = np.minimum(reach - i + 1, room)
        n_a = 1 + (_draws(lines.first + i, seed, 0) * (chunk - 1)).astype(np.int64)
    return chunk, n_a, (chunk > n_a) & (_draws(lines.first + i, seed, 1) < 0.5)


def _random_segment(at, n_lines, docs, seed):
    """B of label 0 for the chunk starting at line `at`: max(1, n_lines) sentences of a random other
    document, from a random sentence on (fewer at its end). Returns their token range."""
    d = np.searchsorted(docs.first, at, side="right") - 1
    other = (d + 1 + (_draws(at, seed, 2) * (len(docs.first) - 1)).astype(np.int64)) % len(docs.first)
    first = docs.first[other] + (_draws(at, seed, 3) * (docs.last[other] - docs.first[other] + 1)).astype(np.int64)
    last = np.minimum(first + np.maximum(n_lines, 1) - 1, docs.last[other])
    ends = docs.line_ends
    return np.where(first > 0, np.asarray(ends[np.maximum(first - 1, 0)]), 0), np.asarray(ends[last])


def _pairs(lines, seq_len, seed, entry, docs, single_sentences):
    """Sentence-pair formats with next-sentence prediction, as the original BERT builds them: from each
    document's first sentence on, a chunk (see _chunks) splits into A and the rest; B is the rest (label
    1), or else as many sentences of another document (label 0), and then the rest is read again as the
    start of the next chunk. Random choices are `_draws` of the chunk's first line."""
    own, first, text = lines.own, lines.first, _next_text(lines)
    chunk, n_a, follows = _chunks(lines, seq_len, seed, single_sentences)
    step = text[np.arange(own) + np.where(follows, chunk, n_a)]
    nodes = _walk(step, text[min(entry - first, len(text) - 1)], own)
    chunk, n_a, follows = chunk[nodes], n_a[nodes], follows[nodes]
    rows = _rows(lines.starts[nodes], lines.ends[nodes + n_a - 1], lines.starts[np.minimum(nodes + n_a,
                 len(lines.sep) - 1)], lines.ends[nodes + chunk - 1], follows.astype(np.int64))
    other = ~follows
    rows["b_start"][other], rows["b_end"][other] = _random_segment(first + nodes[other], (chunk - n_a)[other],
                                                                   docs, seed)
    return rows, (first + step[nodes[-1]] if nodes.size else first + text[min(entry - first, len(text) - 1)])


def full_sentences(lines, seq_len, seed, entry, docs):
    """FULL-SENTENCES: whole lines packed into blocks of up to seq_len - 1 tokens (+ <s>), across documents."""
    return _blocks(lines, seq_len, entry, within_documents=False)


def doc_sentences(lines, seq_len, seed, entry, docs):
    """DOC-SENTENCES: the same, but a block never crosses a document end."""
    return _blocks(lines, seq_len, entry, within_documents=True)


def segment_pairs(lines, seq_len, seed, entry, docs):
    """SEGMENT-PAIR+NSP (BERT): <s> A </s></s> B </s>, A and B runs of whole sentences, B the continuation or not."""
    return _pairs(lines, seq_len, seed, entry, docs, single_sentences=False)


def sentence_pairs(lines, seq_len, seed, entry, docs):
    """SENTENCE-PAIR+NSP: the same with single sentences."""
    return _pairs(lines, seq_len, seed, entry, docs, single_sentences=True)


class Format(NamedTuple):
    build: Callable      # (Lines, seq_len, seed, entry line, Documents) -> (EXAMPLE rows, the next entry line)
    pairs: bool          # <s> A </s></s> B </s> with a next-sentence label (the NSP loss)
    by_tokens: bool      # batches of a token budget (more sequences when they are short), not a fixed count


# Section 4.2 and Table 2. Adding a format: a builder above and a row here.
FORMATS = {
    "full-sentences": Format(full_sentences, pairs=False, by_tokens=False),
    "doc-sentences": Format(doc_sentences, pairs=False, by_tokens=True),
    "segment-pair": Format(segment_pairs, pairs=True, by_tokens=False),
    "sentence-pair": Format(sentence_pairs, pairs=True, by_tokens=True),
}


def check_format(fmt):
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return FORMATS[fmt]


def check_examples(tokens, line_ends, fmt, seq_len, eos_id):
    """The arguments of `examples`, checked before any work: a known format, a sequence length of at least
    8, and line ends that fit a token stream ending with </s> (data.py's files)."""
    check_format(fmt)
    if seq_len < 8:
        raise ValueError(f"sequence length {seq_len} is too short (at least 8 tokens)")
    if len(line_ends) and (int(line_ends[-1]) != len(tokens) or int(tokens[-1]) != eos_id):
        raise ValueError(f"the line ends ({int(line_ends[-1]):,}) do not fit the token stream ({len(tokens):,} "
                         f"tokens, ending with </s>): not a split written by data.py")


def examples(tokens, line_ends, fmt, seq_len, eos_id, seed=0, limit=None):
    """The training examples of one input format (Section 4.2), an array of EXAMPLE rows (the first `limit`
    of them: only the windows of lines that they need are read)."""
    check_examples(tokens, line_ends, fmt, seq_len, eos_id)
    parts, n = [np.zeros(0, EXAMPLE)], 0
    for rows in build_examples(line_ends, fmt, seq_len, seed):
        parts.append(rows)
        n += len(rows)
        if limit is not None and n >= limit:
            break
    return np.concatenate(parts)[:limit]


def build_examples(line_ends, fmt, seq_len, seed=0):
    """The examples a window of lines at a time (memory: a window, whatever the corpus size)."""
    build, n, entry = FORMATS[fmt].build, len(line_ends), 0
    docs = _documents(line_ends) if FORMATS[fmt].pairs and n else None
    for first in range(0, n, WINDOW):
        lines = _window(line_ends, first, min(WINDOW, n - first), seq_len + 2)
        rows, entry = build(lines, seq_len, seed, entry, docs)
        yield rows


def example_lengths(ex, fmt, seq_len=None):
    """Tokens per example (for token-budget batching): the ranges plus the special tokens, at most
    `seq_len` (a pair longer than a sequence is cut to one by `collate`, and counts as what it becomes)."""
    if not FORMATS[fmt].pairs:  # <s> A
        lengths = ex["a_end"] - ex["a_start"] + 1
    else:  # <s> A </s></s> B </s>
        lengths = (ex["a_end"] - ex["a_start"]) + (ex["b_end"] - ex["b_start"]) + 4
    return lengths if seq_len is None else np.minimum(lengths, seq_len)


def truncate_pair(len_a, len_b, room):
    """Lengths of two segments cut to fit `room` tokens together: the longer one loses a token at a time,
    the second on ties (BERT's truncate_seq_pair, fairseq's BlockPairDataset), computed in closed form.
    Takes ints or numpy arrays; the caller keeps a[:len_a'] and b[:len_b']."""
    la, lb = np.asarray(len_a), np.asarray(len_b)
    over = np.maximum(la + lb - room, 0)
    cut_a = np.where(la > lb, np.minimum(over, la - lb), 0)   # first the longer one down to the other's length,
    cut_b = np.where(la <= lb, np.minimum(over, lb - la), 0)
    rest = over - cut_a - cut_b                                # then both alternately, the second first
    new_a, new_b = la - cut_a - rest // 2, lb - cut_b - (rest + 1) // 2
    return (int(new_a), int(new_b)) if new_a.ndim == 0 else (new_a, new_b)


def pad(seqs, pad_id):
    """Sequences of ids -> a LongTensor [n, longest], padded on the right with `pad_id`."""
    width = max(len(s) for s in seqs)
    out = np.full((len(seqs), width), pad_id, dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return torch.from_numpy(out)


def collate(tokens, ex, seq_len, tok, fmt="full-sentences"):
    """Examples -> (input_ids [n, L] padded with <pad>, next-sentence labels [n] or None)."""
    if not FORMATS[fmt].pairs:  # <s> A, where A ends with its line's </s>
        return pad([np.concatenate([[tok.bos_id], tokens[a0:a1]]) for a0, a1 in zip(ex["a_start"], ex["a_end"])],
                   tok.pad_id), None
    seqs = []
    for a0, a1, b0, b1 in zip(ex["a_start"], ex["a_end"], ex["b_start"], ex["b_end"]):
        a, b = np.asarray(tokens[a0:a1], dtype=np.int64), np.asarray(tokens[b0:b1], dtype=np.int64)
        a, b = a[a != tok.eos_id], b[b != tok.eos_id]  # sentence ends inside a segment are dropped
        la, lb = truncate_pair(len(a), len(b), seq_len - 4)
        seqs.append(np.concatenate([[tok.bos_id], a[:la], [tok.eos_id, tok.eos_id], b[:lb], [tok.eos_id]]))
    return pad(seqs, tok.pad_id), torch.from_numpy(ex["next"].astype(np.int64))


# ---------------------------------------------------------------------------------------- the examples index, kept
# At the paper's scale (160 GB, ~40B tokens, ~80M blocks of 512) the examples are built once, by one process,
# and kept beside the data in data_dir/index/; every start then maps them into memory in milliseconds.
INDEX_VERSION = 2  # raise it when a builder's rule changes: every kept index is then rebuilt


class ExampleIndex(NamedTuple):
    examples: np.ndarray  # one row per example, the fields of `stored_dtype`
    lengths: np.ndarray   # np.int32 tokens per example (example_lengths)


def stored_dtype(fmt):
    """The fields a kept index stores for a format: 16 bytes a block, 33 a pair (collate reads no others)."""
    fields = [("a_start", np.int64), ("a_end", np.int64)]
    if FORMATS[fmt].pairs:
        fields += [("b_start", np.int64), ("b_end", np.int64), ("next", np.int8)]
    return np.dtype(fields)


def _ends_digest(path, span=1 << 20):
    """A hash of a file's first and last MiB: cheap at any size."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(span))
        f.seek(max(os.path.getsize(path) - span, 0))
        h.update(f.read(span))
    return h.hexdigest()[:16]


def source_fingerprint(data_dir, split):
    """What a kept index was built from: meta.json's tokenizer and counts, and the .bin's and .idx's size,
    modification time and hash of their ends. Data changed in any of these makes the index stale."""
    meta = read_meta(data_dir)
    out = {"tokenizer_sha256": meta["tokenizer_sha256"], "counts": meta[split]}
    for kind in ("bin", "idx"):
        path = os.path.join(data_dir, f"{split}.{kind}")
        out[kind] = [os.path.getsize(path), os.stat(path).st_mtime_ns, _ends_digest(path)]
    return out


def cached_examples(data_dir, tokens, line_ends, fmt, seq_len, eos_id, seed=0, split="train", build=True):
    """`examples` of a prepared folder's split, built once and kept in data_dir/index/, memory-mapped when
    read: an ExampleIndex (examples, lengths) whose rows have the fields of `stored_dtype(fmt)`.

    A kept index is used only when it was built from this very data (`source_fingerprint`) by these rules
    (INDEX_VERSION), for this format, seq_len and (pair formats) seed, and is whole; otherwise it is rebuilt,
    or, with build=False, refused with a ValueError. In a job of many processes only one builds it (rank 0;
    on each node its local rank 0 when the nodes have copies of the data, not one shared folder):

        if rank == 0:
            data.cached_examples(data_dir, tokens, line_ends, fmt, seq_len, eos_id, seed)  # builds if needed
        torch.distributed.barrier()
        ex, lengths = data.cached_examples(data_dir, tokens, line_ends, fmt, seq_len, eos_id, seed, build=False)

    A folder that cannot be written to gets no index: every process builds the examples in memory."""
    check_examples(tokens, line_ends, fmt, seq_len, eos_id)
    if len(line_ends) == 0:
        return ExampleIndex(np.zeros(0, stored_dtype(fmt)), np.zeros(0, np.int32))
    pairs = FORMATS[fmt].pairs
    path = os.path.join(data_dir, "index", f"{split}-{fmt}-{seq_len}" + (f"-{seed}" if pairs else ""))
    want = {"version": INDEX_VERSION, "format": fmt, "seq_len": seq_len, "seed": seed if pairs else None,
            "source": source_fingerprint(data_dir, split)}
    index, why = _open_index(path, want, fmt)
    if index is not None:
        return index
    if not _writable(os.path.dirname(path)):
        print(f"warning: {data_dir} cannot be written to: the examples are built in memory at every start",
              file=sys.stderr)
        ex = examples(tokens, line_ends, fmt, seq_len, eos_id, seed)
        return ExampleIndex(ex, example_lengths(ex, fmt, seq_len).astype(np.int32))
    if not build:
        raise ValueError(f"{path}.json: the examples index is {why}: one process builds it (build=True) before "
                         f"the others read it")
    if why != "missing":
        print(f"{path}: the examples index is {why}: rebuilding it", file=sys.stderr)
    _write_index(path, want, build_examples(line_ends, fmt, seq_len, seed), fmt)
    index, why = _open_index(path, want, fmt)
    if index is None:
        raise ValueError(f"{path}: the examples index is {why} just after it was built (another process?)")
    return index


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
    if info.get("digest") != [_ends_digest(path + ".rows"), _ends_digest(path + ".len")]:
        return None, "corrupt (its files changed after it was built)"
    sample = _sample_rows(path + ".rows", dtype, n)
    if np.any(sample["a_start"] >= sample["a_end"]) or np.any(sample["a_end"] > want["source"]["counts"]["tokens"]):
        return None, "corrupt (rows outside the token stream)"
    return ExampleIndex(np.memmap(path + ".rows", dtype, mode="r"), np.memmap(path + ".len", np.int32, mode="r")), None


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
    tmp, dtype, n = f".{socket.gethostname()}.{os.getpid()}.tmp", stored_dtype(fmt), 0  # one per builder
    try:
        with open(path + ".rows" + tmp, "wb") as rows, open(path + ".len" + tmp, "wb") as lengths:
            for ex in parts:
                kept = np.empty(len(ex), dtype)
                for field in dtype.names:
                    kept[field] = ex[field]
                rows.write(kept.tobytes())
                lengths.write(example_lengths(ex, fmt, info["seq_len"]).astype(np.int32).tobytes())
                n += len(ex)
            for f in (rows, lengths):
                f.flush()
                os.fsync(f.fileno())
        for ext in (".rows", ".len"):
            os.replace(path + ext + tmp, path + ext)
    finally:
        for ext in (".rows", ".len"):
            if os.path.exists(path + ext + tmp):
                os.remove(path + ext + tmp)
    info = {**info, "count": n, "digest": [_ends_digest(path + ".rows"), _ends_digest(path + ".len")]}
    files.write_atomic(path + ".json", json.dumps(info, indent=1))


# ---------------------------------------------------------------------------------------- batches
SHUFFLE_ABOVE = 1 << 27  # examples: an epoch's order above this many is computed slice by slice (Shuffle)


def epoch_order(n, seed, epoch):
    """The random order of n examples in one epoch, fixed by (seed, epoch). Up to 2**27 examples it is
    torch.randperm, held as np.int32 (512 MB at most); beyond, a Shuffle that computes any slice of the
    order when it is asked for, so that no process holds the order of a 40B-token epoch (0.8B sentence
    pairs: 3.2 GB, and two minutes to draw)."""
    key = seed * 1_000_003 + epoch
    if n > SHUFFLE_ABOVE:
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


def epoch_batches(lengths, batch_size, seed, epoch, token_budget=None, first=0, offset=None):
    """The global batches of one epoch (Ragged): arrays of example indices in a random order fixed by
    (seed, epoch).

    With `token_budget` (doc-sentences, sentence-pair) a batch takes examples until it would exceed
    the budget, so shorter examples mean more of them per batch (Section 4.2); otherwise each batch has
    `batch_size` examples. A resumed run starts at batch `first`, `offset` examples into the order.
    """
    if batch_size < 1 or (token_budget is not None and token_budget < 1):
        raise ValueError(f"a batch needs at least one example and one token, got {batch_size} and {token_budget}")
    order = epoch_order(len(lengths), seed, epoch)
    if token_budget is None:
        return Ragged(order, None, batch_size, first, offset)
    return Ragged(order, lengths, token_budget, first, offset)


def shard(batch, rank, world):
    """This process's share of a global batch: every world-th example from `rank` on, so that the global
    batch is the same set of examples for any number of processes."""
    return batch[rank::world]


# ---------------------------------------------------------------------------------------- masking
@dataclass(frozen=True)
class Masking:
    """Section 4.1 in one place: which tokens become prediction targets, and what the model sees there.

    rate:    the share of ordinary tokens selected as targets (BERT and RoBERTa: 15%)
    split:   of the selected, the shares shown as <mask>, as a random ordinary token, and unchanged
             (BERT's 80/10/10: the model cannot trust that an unmasked token is right)
    dynamic: a new mask every epoch (RoBERTa) or BERT's static masking, the data duplicated 10 times
             with 10 fixed masks (epoch e sees mask number e % 10)
    """
    rate: float = 0.15
    split: tuple = (0.8, 0.1, 0.1)
    dynamic: bool = True

    def __post_init__(self):
        object.__setattr__(self, "split", tuple(float(x) for x in self.split))
        if not 0 < self.rate < 1:
            raise ValueError(f"the masking rate must be in (0, 1), got {self.rate}")
        if len(self.split) != 3 or min(self.split) < 0 or abs(sum(self.split) - 1) > 1e-6:
            raise ValueError(f"the mask/random/keep split must be 3 shares summing to 1, got {self.split}")


def special_token_mask(tokens, tok):
    """True where a token is one of the tokenizer's special tokens (never a prediction target)."""
    return torch.isin(tokens, torch.tensor(sorted(tok.special_ids), dtype=tokens.dtype))


def random_ordinary_tokens(u, tok):
    """Uniform draws in [0, 1) -> ids drawn uniformly among the ordinary (non-special) tokens: draw among
    the ids left once the specials are taken out, then step over each special id at or below the draw."""
    specials = sorted(tok.special_ids)
    ids = (u * (len(tok) - len(specials))).long()
    for s in specials:  # five, not a loop over tokens
        ids += ids >= s
    return ids


def mask_tokens(tokens, tok, mask_prob=0.15, generator=None, split=(0.8, 0.1, 0.1), draws=None):
    """BERT's masking (Section 4.1 / Devlin et al.): select each ordinary token with probability mask_prob;
    of the selected, split[0] become <mask>, split[1] a random ordinary token, split[2] stay unchanged.
    Returns (inputs, labels) with labels = -100 where not selected. Special tokens are never selected.

    `draws`: three uniform [0, 1) tensors shaped like `tokens` (select, action, random id); training passes
    counter-based ones (mask_batch), otherwise they come from torch.rand(generator=generator).
    """
    u_select, u_action, u_token = torch.rand((3,) + tuple(tokens.shape), generator=generator) \
        if draws is None else draws
    selected = (u_select < mask_prob) & ~special_token_mask(tokens, tok)
    labels = torch.where(selected, tokens, -100)
    to_mask = selected & (u_action < split[0])
    to_random = selected & (u_action >= split[0]) & (u_action < split[0] + split[1])
    inputs = torch.where(to_mask, tok.mask_id, tokens)
    inputs = torch.where(to_random, random_ordinary_tokens(u_token, tok), inputs)
    return inputs, labels


def uniforms(keys, width, stream):
    """Counter-based random numbers: a [len(keys), width] float64 tensor in [0, 1), each entry the
    splitmix64 hash of (key, position, stream). No state: any entry can be recomputed on its own."""
    with np.errstate(over="ignore"):
        x = (np.asarray(keys, dtype=np.uint64)[:, None] * np.uint64(0x9E3779B97F4A7C15)
             + np.arange(width, dtype=np.uint64)[None, :] * np.uint64(0xD1B54A32D192ED03)
             + np.uint64(stream) * np.uint64(0x8CB92BA72F3D8DD7))
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return torch.from_numpy((x >> np.uint64(11)).astype(np.float64) * 2.0 ** -53)


def mask_batch(input_ids, example_ids, tok, seed, epoch, masking=Masking()):
    """Mask a batch with `mask_tokens`; every token's draws depend only on (seed, mask version, example
    index, position), so an example gets the same mask however batches are split over processes or resumed.
    The mask version is the epoch (dynamic masking) or epoch % 10 (static)."""
    version = epoch if masking.dynamic else epoch % 10
    keys = (np.asarray(example_ids, dtype=np.int64) * 1_000_003 + version) * 1_000_033 + seed
    draws = [uniforms(keys, input_ids.shape[1], stream) for stream in range(3)]
    return mask_tokens(input_ids, tok, masking.rate, split=masking.split, draws=draws)


# ---------------------------------------------------------------------------------------- held-out evaluation
def heldout_batches(tokens, line_ends, tok, seq_len, batch_size=16, masking=Masking(), rank=0, world=1,
                    max_sequences=None, seed=1234):
    """The held-out set as fixed (inputs, labels) batches: FULL-SENTENCES blocks, each masked by a fixed
    seed, so that every evaluation sees the same masks. This process's share of the first `max_sequences`."""
    ex = examples(tokens, line_ends, "full-sentences", seq_len, tok.eos_id, limit=max_sequences)
    order = np.arange(len(ex))[rank::world]
    batches = []
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        ids, _ = collate(tokens, ex[idx], seq_len, tok)
        batches.append(mask_batch(ids, idx, tok, seed, epoch=0, masking=masking))
    return batches


@torch.no_grad()
def evaluate_mlm(model, batches, device="cpu", amp_dtype=None, detailed=False):
    """Masked-LM loss (natural log) on fixed batches: {"loss_sum", "targets"} of this process's share (sum
    them over processes for the whole set). With `detailed`, from the full logits, also "loss_sq_sum" (for
    a standard error) and "correct" (how often the top guess is the target)."""
    was_training = model.training
    model.eval()
    out = {"loss_sum": 0.0, "targets": 0, "loss_sq_sum": 0.0, "correct": 0}
    for inputs, labels in batches:
        inputs, labels = inputs.to(device), labels.to(device)
        targets = labels != -100
        with torch.autocast(torch.device(device).type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            if detailed:
                logits = model(inputs)[targets].float()
                nll = torch.nn.functional.cross_entropy(logits, labels[targets], reduction="none")
                out["loss_sum"] += nll.sum().item()
                out["loss_sq_sum"] += (nll ** 2).sum().item()
                out["correct"] += int((logits.argmax(-1) == labels[targets]).sum())
            else:
                out["loss_sum"] += model(inputs, labels=labels, reduction="sum").item()
        out["targets"] += int(targets.sum())
    model.train(was_training)
    return out


def heldout_loss(model, tokens, line_ends, tok, seq_len, batch_size=16, seed=1234, rank=0, world=1,
                 device="cpu", max_sequences=None, amp_dtype=None, masking=Masking()):
    """(loss sum, target count) of the masked LM on held-out data (heldout_batches, evaluate_mlm)."""
    batches = heldout_batches(tokens, line_ends, tok, seq_len, batch_size, masking, rank, world, max_sequences, seed)
    out = evaluate_mlm(model, batches, device, amp_dtype)
    return out["loss_sum"], out["targets"]


def unigram_baselines(train_tokens, batches, tok):
    """Two baselines on the same held-out masks (what a model learns first): the unigram distribution of
    the training tokens (add-one smoothed), and always guessing the most frequent ordinary token.
    Returns {"unigram_loss", "most_frequent_accuracy", "most_frequent"}."""
    counts = np.bincount(np.asarray(train_tokens), minlength=len(tok)).astype(np.float64) + 1.0
    counts[sorted(tok.special_ids)] = 0.0  # a target is never a special token
    with np.errstate(divide="ignore"):  # log 0 = -inf for the specials, never looked up
        log_p = torch.from_numpy(np.log(counts / counts.sum()))
    best = int(counts.argmax())
    loss, correct, n = 0.0, 0, 0
    for _, labels in batches:
        targets = labels[labels != -100]
        loss -= float(log_p[targets].sum())
        correct += int((targets == best).sum())
        n += targets.numel()
    return {"unigram_loss": loss / max(n, 1), "most_frequent_accuracy": correct / max(n, 1), "most_frequent": best}


# ---------------------------------------------------------------------------------------- command line
def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def fraction(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def download_main(argv):
    p = argparse.ArgumentParser(prog="data.py download", description="Fetch a dataset, sha256-checked.")
    p.add_argument("name", choices=sorted(DATASETS), metavar="NAME", help="one of: " + ", ".join(sorted(DATASETS)))
    p.add_argument("--cache", default=os.path.join(os.path.expanduser("~"), ".cache", "roberta-reference"),
                   help="where datasets are kept (default: %(default)s)")
    args = p.parse_args(argv)
    print(download(args.name, args.cache))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["download"]:
            return download_main(argv[1:])
        p = argparse.ArgumentParser(description="Prepare a text corpus for pretraining (or: data.py download NAME).")
        p.add_argument("--input", nargs="+", required=True, help="UTF-8 text files; a blank line ends a document")
        p.add_argument("--tokenizer", required=True, help="folder with vocab.json + merges.txt")
        p.add_argument("--out", required=True, help="folder for train/valid .bin/.idx, meta.json and the tokenizer")
        p.add_argument("--valid-fraction", type=fraction, default=0.01,
                       help="share of the text held out, in whole documents (default: %(default)s)")
        p.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1,
                       help="encoding processes (default: the number of cores, %(default)s)")
        p.add_argument("--overwrite", action="store_true", help="replace data made with another tokenizer")
        p.add_argument("--errors", choices=["strict", "replace"], default="strict",
                       help="bytes that are not UTF-8: an error, or U+FFFD (default: %(default)s)")
        args = p.parse_args(argv)
        meta = prepare(args.input, args.tokenizer, args.out, args.valid_fraction, args.workers,
                       args.overwrite, args.errors)
        print(f"{args.out}: train {meta['train']['tokens']:,} tokens in {meta['train']['documents']:,} documents, "
              f"valid {meta['valid']['tokens']:,} tokens in {meta['valid']['documents']:,} documents")
    except (OSError, ValueError) as err:
        sys.exit(f"error: {err}")
    except KeyboardInterrupt:
        sys.exit("interrupted")


if __name__ == "__main__":
    main()
