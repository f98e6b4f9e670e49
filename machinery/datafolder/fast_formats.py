"""The input formats of Section 4.2 at the paper's scale: the same EXAMPLE rows as data.py's plain Python
formats (the specification), built with numpy a window of lines at a time, so that memory stays bounded at
any corpus size (the paper's 160 GB is ~1.2B lines) and no Python loop runs over lines or examples. The examples
index (index.py) uses these above data.SPEC_BELOW lines; tests/test_machinery_fast_formats.py holds them equal.
"""
import mmap
from typing import NamedTuple

import numpy as np

import data


WINDOW = 1 << 16  # lines
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
    ex = np.zeros(len(a_start), dtype=data.EXAMPLE)
    ex["a_start"], ex["a_end"], ex["b_start"], ex["b_end"], ex["next"] = a_start, a_end, b_start, b_end, nxt
    return ex


def _blocks(lines, seq_len, entry, within_documents):
    """Greedy packing of whole lines into blocks of at most seq_len - 1 tokens (<s> comes first); a line longer than
    a block is cut into pieces of that size, never leaving its </s> alone for the next piece. Returns the window's
    blocks and where the walk goes on in the next window."""
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
        n_a = 1 + (data.line_draws(lines.first + i, seed, 0) * (chunk - 1)).astype(np.int64)
    return chunk, n_a, (chunk > n_a) & (data.line_draws(lines.first + i, seed, 1) < 0.5)


def _random_segment(at, n_lines, docs, seed):
    """B of label 0 for the chunk starting at line `at`: max(1, n_lines) sentences of a random other
    document, from a random sentence on (fewer at its end). Returns their token range."""
    d = np.searchsorted(docs.first, at, side="right") - 1
    other = (d + 1 + (data.line_draws(at, seed, 2) * (len(docs.first) - 1)).astype(np.int64)) % len(docs.first)
    first = docs.first[other] + (data.line_draws(at, seed, 3) * (docs.last[other] - docs.first[other] + 1)).astype(np.int64)
    last = np.minimum(first + np.maximum(n_lines, 1) - 1, docs.last[other])
    ends = docs.line_ends
    return np.where(first > 0, np.asarray(ends[np.maximum(first - 1, 0)]), 0), np.asarray(ends[last])


def _pairs(lines, seq_len, seed, entry, docs, single_sentences):
    """Sentence-pair formats with next-sentence prediction, as the original BERT builds them: from each
    document's first sentence on, a chunk (see _chunks) splits into A and the rest; B is the rest (label
    1), or else as many sentences of another document (label 0), and then the rest is read again as the
    start of the next chunk. Random choices are `data.line_draws` of the chunk's first line."""
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


# The fast builder of each format: (Lines, seq_len, seed, entry line, Documents) -> (EXAMPLE rows, next entry).
BUILDERS = {
    "full-sentences": lambda lines, seq_len, seed, entry, docs: _blocks(lines, seq_len, entry, within_documents=False),
    "doc-sentences": lambda lines, seq_len, seed, entry, docs: _blocks(lines, seq_len, entry, within_documents=True),
    "segment-pair": lambda lines, seq_len, seed, entry, docs: _pairs(lines, seq_len, seed, entry, docs, False),
    "sentence-pair": lambda lines, seq_len, seed, entry, docs: _pairs(lines, seq_len, seed, entry, docs, True),
}


def build_examples(line_ends, fmt, seq_len, seed=0):
    """The examples a window of lines at a time (memory: a window, whatever the corpus size)."""
    if fmt not in BUILDERS:  # a new row of data.FORMATS: its plain Python builder serves smaller corpora only
        raise ValueError(f"format {fmt!r} has no numpy builder in machinery/datafolder/fast_formats.py (BUILDERS), which "
                         f"corpora of data.SPEC_BELOW ({data.SPEC_BELOW:,}) lines or more need")
    build, n, entry = BUILDERS[fmt], len(line_ends), 0
    docs = _documents(line_ends) if data.FORMATS[fmt].pairs and n else None
    for first in range(0, n, WINDOW):
        lines = _window(line_ends, first, min(WINDOW, n - first), seq_len + 2)
        rows, entry = build(lines, seq_len, seed, entry, docs)
        yield rows


def examples(line_ends, fmt, seq_len, seed=0, limit=None):
    """data.examples's rows (the first `limit` of them: only the windows of lines that they need are read)."""
    parts, n = [np.zeros(0, data.EXAMPLE)], 0
    for rows in build_examples(line_ends, fmt, seq_len, seed):
        parts.append(rows)
        n += len(rows)
        if limit is not None and n >= limit:
            break
    return np.concatenate(parts)[:limit]
