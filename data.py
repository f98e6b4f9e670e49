"""Pretraining data: corpus preparation, the input formats of Section 4.2, masking of Section 4.1.

    python data.py --input corpus.txt --tokenizer tok/ --out data/

Input: one sentence or paragraph per line; a blank line ends a document (fairseq's convention). Output, as fairseq
binarizes it: each line's tokens and </s>, a document end one more </s> (FULL-SENTENCES' "extra separator token"):

    train.bin, valid.bin   the token stream, np.uint16 when the vocabulary fits, else np.int32
    train.idx, valid.idx   np.int64: where each line ends in the stream (a lone </s> = document end)
    meta.json              tokenizer hash, counts, dtype (written last: its presence means complete)
    vocab.json, merges.txt the tokenizer, so the folder is self-contained

Each format of Section 4.2 is a short loop in FORMATS (at the paper's scale, numpy's: machinery/datafolder/
fast_formats.py). A batch is masked afresh when served (dynamic, Section 4.1) or with one of 10 fixed masks (static).
"""
import os
from dataclasses import dataclass
from functools import partial
from typing import Callable, NamedTuple

import numpy as np
import torch

from machinery.basics import files  # machinery: text read line by line, one error line for a bad file
from machinery.fast import orders  # machinery: an epoch's order and batches, computed as they are asked for

SPLITS = ("train", "valid")


# ---------------------------------------------------------------------------------------- reading text
def read_documents(paths, errors="strict"):
    """Yield stripped lines; "" marks a document end (blank lines, and the end of every file)."""
    for path in paths:
        if not (os.path.isfile(path) or files.is_pipe(path)):  # a named pipe is read once, as it is fed
            raise FileNotFoundError(f"{path}: no such file" if not os.path.isdir(path) else f"{path}: a folder, not a text file")
        in_document = False
        for n, line in enumerate(files.read_lines(path, errors), 1):  # machinery: any line ending; bad bytes named
            if "\x00" in line:  # UTF-8 allows NUL; text has none: UTF-16, or a binary file, anywhere in it
                raise ValueError(f"{path}: looks binary (a NUL byte on line {n:,}), not a text corpus")
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
    """Group lines into (split, lines) chunks. A whole document goes to "valid" when the held-out share of the
    characters read so far is below `valid_fraction`: that share of the text, spread evenly, never half a document."""
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
def encode_lines(lines, tok):
    """Lines -> (token stream, line lengths): each line's tokens + </s>; a "" (document end) is </s> alone."""
    tokens, lengths = [], []
    for line in lines:
        ids = tok.encode(line) if line else []
        ids.append(tok.eos_id)
        tokens += ids
        lengths.append(len(ids))
    return np.array(tokens, dtype=np.int64), np.array(lengths, dtype=np.int64)


# ---------------------------------------------------------------------------------------- formats (Section 4.2)
# An example: token ranges of segments A and B (pair formats), the NSP label (1: B follows A, 0: it does not, -1: no B).
EXAMPLE = np.dtype([(field, np.int64) for field in ("a_start", "a_end", "b_start", "b_end", "next")])


def lines_and_documents(line_ends):
    """The stream's lines as (start, end) token ranges, and its documents as lists of line numbers: the runs
    of text lines between separators (a separator is a line of one token, the lone </s> of a document end)."""
    lines = list(zip([0] + line_ends[:-1], line_ends))
    documents = [[]]
    for i, (start, end) in enumerate(lines):
        if end - start > 1:
            documents[-1].append(i)
        elif documents[-1]:
            documents.append([])
    return lines, [doc for doc in documents if doc]


def pack(lines, block):
    """Whole lines, greedily, into blocks of at most `block` tokens, each as full as the next line allows; a
    longer line is cut into pieces of that size (never its </s> alone), the last piece then packed as a line."""
    blocks, i = [], 0
    while i < len(lines):
        start, end = lines[i]
        while end - start > block:
            cut = start + block - (end - start == block + 1)  # one token less: the </s> keeps a companion
            blocks.append((start, cut))
            start = cut
        i += 1
        while i < len(lines) and lines[i][1] - start <= block:
            end, i = lines[i][1], i + 1
        blocks.append((start, end))
    return blocks


def full_sentences(lines, documents, seq_len, seed):
    """FULL-SENTENCES: whole lines packed into blocks of up to seq_len - 1 tokens (+ <s>), across document
    ends (the separator, a lone </s>, is packed like any line: the "extra separator token")."""
    return [(a, b, 0, 0, -1) for a, b in pack(lines, seq_len - 1)]


def doc_sentences(lines, documents, seq_len, seed):
    """DOC-SENTENCES: the same within each document: a block never crosses a document end."""
    return [(a, b, 0, 0, -1) for doc in documents for a, b in pack([lines[i] for i in doc], seq_len - 1)]


def line_draws(lines, seed, stream):
    """Uniform draws in [0, 1) for the pair formats' choices, one per line: `uniforms` of (seed, line, stream)."""
    return uniforms(np.asarray(lines, dtype=np.int64) * 1_000_003 + seed, 1, 100 + stream)[:, 0].numpy()


def chunk_at(lines, doc, i, seq_len, single_sentences):
    """BERT's chunk from sentence i of a document: that sentence and the next (single_sentences), or sentences
    until they hold seq_len - 4 tokens (their </s> not counted: the pair's 4 special tokens replace them)."""
    if single_sentences:
        return doc[i:i + 2]
    end, size = i, 0
    while end < len(doc) and size < seq_len - 4:
        start, stop = lines[doc[end]]
        size, end = size + stop - start - 1, end + 1
    return doc[i:end]


def bert_pairs(lines, documents, seq_len, seed, single_sentences):
    """Sentence pairs with next-sentence prediction, as BERT builds them: a chunk (chunk_at) from each document's
    first sentence on; its first sentences (a random cut) are A; B is the rest (label 1, probability 1/2), or as many
    sentences of another document (label 0), the rest then read again. The choices: its first line's `line_draws`."""
    if len(documents) < 2:
        raise ValueError("the pair formats need at least two documents (blank-line separated)")
    draw, rows = [line_draws(np.arange(len(lines)), seed, stream).tolist() for stream in range(4)], []
    for d, doc in enumerate(documents):
        i = 0
        while i < len(doc):
            chunk, key = chunk_at(lines, doc, i, seq_len, single_sentences), doc[i]
            n_a = 1 + int(draw[0][key] * (len(chunk) - 1))
            a, rest = chunk[:n_a], chunk[n_a:]
            if rest and draw[1][key] < 0.5:
                b, label = rest, 1
            else:
                other = documents[(d + 1 + int(draw[2][key] * (len(documents) - 1))) % len(documents)]
                first = int(draw[3][key] * len(other))
                b, label = other[first:first + max(1, len(rest))], 0
            i += len(chunk) if label else len(a)
            rows.append((lines[a[0]][0], lines[a[-1]][1], lines[b[0]][0], lines[b[-1]][1], label))
    return rows


class Format(NamedTuple):
    build: Callable      # (lines, documents, seq_len, seed) -> example rows (a_start, a_end, b_start, b_end, next)
    pairs: bool          # <s> A </s></s> B </s> with a next-sentence label (the NSP loss)
    by_tokens: bool      # batches of a token budget (more sequences when they are short), not a fixed count


# Section 4.2, Table 2. A new format: a builder above, a row here, a numpy twin in machinery/datafolder/fast_formats.py
FORMATS = {
    "full-sentences": Format(full_sentences, pairs=False, by_tokens=False),
    "doc-sentences": Format(doc_sentences, pairs=False, by_tokens=True),
    # SEGMENT-PAIR+NSP (BERT): <s> A </s></s> B </s>, A and B runs of whole sentences; SENTENCE-PAIR+NSP: single ones
    "segment-pair": Format(partial(bert_pairs, single_sentences=False), pairs=True, by_tokens=False),
    "sentence-pair": Format(partial(bert_pairs, single_sentences=True), pairs=True, by_tokens=True),
}
# Below this many lines (the demo's ~19,000 take a fraction of a second) the formats above build the examples;
# above it, their numpy twins (tested equal).
SPEC_BELOW = 1 << 18


def check_format(fmt):
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return FORMATS[fmt]


def check_examples(tokens, line_ends, fmt, seq_len, eos_id):
    """The arguments of `examples`, checked before any work."""
    check_format(fmt)
    if seq_len < 8:
        raise ValueError(f"sequence length {seq_len} is too short (at least 8 tokens)")
    if len(line_ends) and (int(line_ends[-1]) != len(tokens) or int(tokens[-1]) != eos_id):
        raise ValueError(f"the line ends ({int(line_ends[-1]):,}) do not fit the token stream ({len(tokens):,} "
                         f"tokens, ending with </s>): not a split written by data.py")


def examples(tokens, line_ends, fmt, seq_len, eos_id, seed=0, limit=None):
    """The training examples of one input format (Section 4.2), an array of EXAMPLE rows (the first `limit`).
    At the paper's scale the same rows come from machinery/datafolder/fast_formats.py, kept in an index (index.py)."""
    check_examples(tokens, line_ends, fmt, seq_len, eos_id)
    lines, documents = lines_and_documents(np.asarray(line_ends).tolist())
    rows = FORMATS[fmt].build(lines, documents, seq_len, seed) if lines else []
    return np.array(rows, dtype=EXAMPLE)[:limit]


def example_lengths(ex, fmt, seq_len=None):
    """Tokens per example (for token-budget batching): the ranges plus the special tokens, at most
    `seq_len` (a pair longer than a sequence is cut to one by `collate`, and counts as what it becomes)."""
    if not FORMATS[fmt].pairs:  # <s> A
        lengths = ex["a_end"] - ex["a_start"] + 1
    else:  # <s> A </s></s> B </s>
        lengths = (ex["a_end"] - ex["a_start"]) + (ex["b_end"] - ex["b_start"]) + 4
    return lengths if seq_len is None else np.minimum(lengths, seq_len)


def truncate_pair(len_a, len_b, room):
    """Lengths of two segments (ints or arrays) cut to fit `room` tokens: the longer one loses a token at a time,
    the second on ties (BERT's truncate_seq_pair, fairseq's BlockPairDataset), in closed form."""
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


# ---------------------------------------------------------------------------------------- batches
def budget_batches(order, lengths, budget):
    """Section 4.2: DOC-SENTENCES "dynamically increase the batch size to achieve a similar number of total tokens as
    FULL-SENTENCES": a new batch where the next example would pass `budget` tokens (one example at least), an
    incomplete last batch dropped. machinery/fast/orders.Ragged finds the same batches a chunk at a time."""
    batches, start, used = [], 0, 0
    for k, i in enumerate(order):
        if k > start and used + lengths[i] > budget:  # the next example would not fit: close the batch
            batches.append(order[start:k])
            start, used = k, 0
        used += lengths[i]
    if used >= budget:  # the last batch, if full
        batches.append(order[start:])
    return batches


def epoch_batches(lengths, batch_size, seed, epoch, token_budget=None, first=0, offset=0):
    """An epoch's batches of example indices in an order fixed by (seed, epoch): `batch_size` examples, or as many
    as fit `token_budget` (budget_batches). A resumed run starts at batch `first`, `offset` examples in."""
    if batch_size < 1 or (token_budget is not None and token_budget < 1):
        raise ValueError(f"a batch needs at least one example and one token, got {batch_size} and {token_budget}")
    order = orders.epoch_order(len(lengths), seed, epoch)  # machinery: a random order, past 2**27 examples too
    # machinery: budget_batches's batches, found lazily (a fixed batch size: a budget of one token per example)
    return orders.Ragged(order, None if token_budget is None else lengths, token_budget or batch_size, first, offset)


def shard(batch, rank, world):
    """This process's share of a global batch: every world-th example from `rank` on (any process count)."""
    return batch[rank::world]


# ---------------------------------------------------------------------------------------- masking
@dataclass(frozen=True)
class Masking:
    """Section 4.1 in one place. rate: the share of ordinary tokens selected as targets (15%); split: of those, the
    shares shown as <mask>, a random ordinary token, unchanged (BERT's 80/10/10); dynamic: a new mask every epoch
    (RoBERTa), else BERT's static masking: epoch e sees mask e % static_masks (BERT: 10 masks over 40 epochs)."""
    rate: float = 0.15
    split: tuple = (0.8, 0.1, 0.1)
    dynamic: bool = True
    static_masks: int = 10

    def __post_init__(self):
        object.__setattr__(self, "split", tuple(float(x) for x in self.split))
        if not 0 < self.rate < 1:
            raise ValueError(f"the masking rate must be in (0, 1), got {self.rate}")
        if len(self.split) != 3 or min(self.split) < 0 or not abs(sum(self.split) - 1) <= 1e-6:  # NaN: refused
            raise ValueError(f"the mask/random/keep split must be 3 shares summing to 1, got {self.split}")


def special_token_mask(tokens, tok):
    """True where a token is special, never a prediction target (<unk> stands for text: it can be one)."""
    return torch.isin(tokens, torch.tensor(sorted(tok.special_ids - {tok.unk_id}), dtype=tokens.dtype))


def random_ordinary_tokens(u, tok):
    """Uniform draws in [0, 1) -> ids drawn uniformly among the ordinary (non-special) tokens: draw among
    the ids left once the specials are taken out, then step over each special id at or below the draw."""
    specials = sorted(tok.special_ids)
    ids = (u * (len(tok) - len(specials))).long()
    for s in specials:  # five, not a loop over tokens
        ids += ids >= s
    return ids


def mask_tokens(tokens, tok, mask_prob=0.15, generator=None, split=(0.8, 0.1, 0.1), draws=None):
    """BERT's masking (Section 4.1): select each ordinary token with probability mask_prob; of the selected,
    split[0] become <mask>, split[1] a random ordinary token, split[2] stay. Returns (inputs, labels), labels -100
    where not selected. `draws`: three uniform tensors (select, action, id) shaped like `tokens`, else torch.rand's."""
    split = Masking(split=split).split  # the shares checked: three, non-negative, summing to 1
    u_select, u_action, u_token = torch.rand((3, *tokens.shape), generator=generator) if draws is None else draws
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
    """`mask_tokens` with draws of (seed, version, example, position) alone: the same mask however batches are split
    over processes or resumed. The version is the epoch (dynamic masking) or epoch % static_masks (static)."""
    version = epoch if masking.dynamic else epoch % masking.static_masks
    keys = (np.asarray(example_ids, dtype=np.int64) * 1_000_003 + version) * 1_000_033 + seed
    draws = [uniforms(keys, input_ids.shape[1], stream) for stream in range(3)]  # splitmix64 hashes, no RNG state
    return mask_tokens(input_ids, tok, masking.rate, split=masking.split, draws=draws)


# ---------------------------------------------------------------------------------------- held-out evaluation
def heldout_batches(tokens, line_ends, tok, seq_len, batch_size=16, masking=Masking(), rank=0, world=1,
                    max_sequences=None, seed=1234, fmt="full-sentences"):
    """The held-out set as fixed (inputs, labels) batches: `fmt` examples (FULL-SENTENCES blocks), each masked
    by a fixed seed, so that every evaluation sees the same masks. This process's share of the first `max_sequences`."""
    ex = examples(tokens, line_ends, fmt, seq_len, tok.eos_id, limit=max_sequences)
    order = np.arange(len(ex))[rank::world]
    batches = []
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        ids, _ = collate(tokens, ex[idx], seq_len, tok, fmt)
        batches.append(mask_batch(ids, idx, tok, seed, epoch=0, masking=masking))
    return batches


@torch.no_grad()
def evaluate_mlm(model, batches, device="cpu", amp_dtype=None, detailed=False):
    """Masked-LM loss (nats) on fixed batches: {"loss_sum", "targets"} of this process's share; `detailed`, from the
    full logits, also "loss_sq_sum" (a standard error's) and "correct" (the top guess is the target)."""
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


if __name__ == "__main__":  # machinery: the command line (prepare, download), its checks, one-line errors
    from machinery.commands import data_cli
    data_cli.main()
