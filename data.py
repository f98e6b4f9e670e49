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

From these files each format of Section 4.2 is one short function, `examples(...)`, and each batch is
masked afresh when served (dynamic masking, Section 4.1) or with one of 10 fixed masks (static).
"""
import argparse
import hashlib
import json
import os
import sys
import tarfile
import urllib.request
import zipfile
from collections import deque
from multiprocessing import get_all_start_methods, get_context

import numpy as np
import torch

import bpe

FORMATS = ("full-sentences", "doc-sentences", "segment-pair", "sentence-pair")


# ---------------------------------------------------------------------------------------- preparation
def read_documents(paths, errors="strict"):
    """Yield stripped lines; "" marks a document end (blank lines, and the end of every file)."""
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such file")
        with open(path, "rb") as f:
            if b"\x00" in f.read(1 << 16):
                raise ValueError(f"{path}: looks binary (NUL bytes), not a text corpus")
        in_document = False
        for line in bpe.read_lines(path, errors):
            line = line.strip()
            if line:
                in_document = True
                yield line
            elif in_document:  # a run of blank lines ends one document
                in_document = False
                yield ""
        if in_document:
            yield ""


_worker_tok = None


def _init_worker(tokenizer_dir):
    global _worker_tok
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


def prepare(inputs, tokenizer_dir, out_dir, valid_fraction=0.01, workers=None, overwrite=False,
            errors="strict", chunk_lines=2000, verbose=True):
    """Encode `inputs` into out_dir's train/valid files. Whole documents go to valid, evenly spread:
    document d is held out when floor((d+1) * fraction) > floor(d * fraction)."""
    from tqdm import tqdm
    tok = bpe.Tokenizer.load(tokenizer_dir)
    if tok.eos_id is None or tok.bos_id is None or tok.mask_id is None:
        raise ValueError(f"{tokenizer_dir}: the tokenizer has no <s>, </s> or <mask> token")
    if not 0 <= valid_fraction < 1:
        raise ValueError(f"--valid-fraction must be in [0, 1), got {valid_fraction}")
    digest = tokenizer_hash(tok)
    meta_path = os.path.join(out_dir, "meta.json")
    if os.path.isfile(meta_path) and not overwrite:
        with open(meta_path) as f:
            old = json.load(f)
        if old.get("tokenizer_sha256") != digest:
            raise ValueError(f"{out_dir} holds data from another tokenizer: pass --overwrite to replace it")
    os.makedirs(out_dir, exist_ok=True)
    dtype = token_dtype(len(tok))
    workers = workers or os.cpu_count() or 1
    total_bytes = sum(os.path.getsize(p) for p in inputs if os.path.isfile(p))

    files = {s: {kind: open(os.path.join(out_dir, f"{s}.{kind}.tmp"), "wb") for kind in ("bin", "idx")}
             for s in ("train", "valid")}
    counts = {s: {"tokens": 0, "lines": 0, "documents": 0} for s in ("train", "valid")}

    def write(split, result):
        tokens, lengths = result
        files[split]["bin"].write(tokens.astype(dtype).tobytes())
        files[split]["idx"].write((np.cumsum(lengths) + counts[split]["tokens"]).tobytes())
        counts[split]["tokens"] += int(tokens.size)
        counts[split]["lines"] += int(lengths.size)

    def chunks():  # (split, lines), a document never split between train and valid
        buffers, doc, read = {"train": [], "valid": []}, 0, 0
        progress = tqdm(total=total_bytes, unit="B", unit_scale=True, desc="encoding", disable=not verbose)
        for line in read_documents(inputs, errors):
            split = "valid" if int((doc + 1) * valid_fraction) > int(doc * valid_fraction) else "train"
            buffers[split].append(line)
            read += len(line) + 1
            if line == "":
                counts[split]["documents"] += 1
                doc += 1
            if len(buffers[split]) >= chunk_lines:
                yield split, buffers[split]
                buffers[split] = []
                progress.update(read)
                read = 0
        progress.update(read)
        progress.close()
        for split, lines in buffers.items():
            if lines:
                yield split, lines

    try:
        if workers <= 1:
            for split, lines in chunks():
                write(split, encode_lines(lines, tok))
        else:  # encode in worker processes, at most 2 chunks per worker in flight (bounded memory)
            # fork where the platform has it: the workers inherit the loaded tokenizer (they run bpe.py
            # only, no torch) and start at once; elsewhere each loads it
            global _worker_tok
            fork = "fork" in get_all_start_methods()
            _worker_tok = tok if fork else None
            with get_context("fork" if fork else "spawn").Pool(
                    workers, None if fork else _init_worker, None if fork else (tokenizer_dir,)) as pool:
                pending = deque()
                for split, lines in chunks():
                    pending.append((split, pool.apply_async(encode_lines, (lines,))))
                    if len(pending) >= 2 * workers:
                        split, result = pending.popleft()
                        write(split, result.get())
                while pending:
                    split, result = pending.popleft()
                    write(split, result.get())
    finally:
        for f in (f for kinds in files.values() for f in kinds.values()):
            f.close()
    if counts["train"]["tokens"] == 0:
        raise ValueError(f"no text in {', '.join(inputs)}: the input is empty")
    if os.path.isfile(meta_path):
        os.remove(meta_path)  # from here until meta.json is rewritten, the folder reads as incomplete
    for split in files:
        for kind in ("bin", "idx"):
            os.replace(os.path.join(out_dir, f"{split}.{kind}.tmp"), os.path.join(out_dir, f"{split}.{kind}"))
    tok.save(out_dir)
    meta = {"tokenizer_sha256": digest, "vocab_size": len(tok), "dtype": np.dtype(dtype).name,
            "bos_id": tok.bos_id, "pad_id": tok.pad_id, "eos_id": tok.eos_id, "mask_id": tok.mask_id,
            "inputs": [os.path.abspath(p) for p in inputs], "valid_fraction": valid_fraction, **counts}
    tmp = meta_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=2)
    os.replace(tmp, meta_path)
    return meta


def load_split(data_dir, split):
    """(tokens, line_ends, meta) of a prepared folder, memory-mapped."""
    meta_path = os.path.join(data_dir, "meta.json")
    if not os.path.isfile(meta_path):
        raise FileNotFoundError(f"{data_dir}: no prepared data (meta.json missing; run data.py first)")
    with open(meta_path) as f:
        meta = json.load(f)
    if meta[split]["tokens"] == 0:
        return np.zeros(0, dtype=meta["dtype"]), np.zeros(0, dtype=np.int64), meta
    tokens = np.memmap(os.path.join(data_dir, f"{split}.bin"), dtype=meta["dtype"], mode="r")
    line_ends = np.fromfile(os.path.join(data_dir, f"{split}.idx"), dtype=np.int64)
    if tokens.size != meta[split]["tokens"] or line_ends.size != meta[split]["lines"]:
        raise ValueError(f"{data_dir}: {split}.bin/.idx do not match meta.json (a torn or mixed folder)")
    return tokens, line_ends, meta


# ---------------------------------------------------------------------------------------- formats
def examples(tokens, line_ends, fmt, seq_len, eos_id, seed=0):
    """The training examples of one input format (Section 4.2), as int64 rows
    (a_start, a_end, b_start, b_end, nsp_label): token ranges of the stream. Single-segment formats
    have b_start = b_end = 0 and label -1; a pair's label is 1 when B is the true continuation.

    full-sentences: lines packed into blocks of up to seq_len - 1 tokens (+ <s>), across documents
    doc-sentences:  the same, but a block never crosses a document end
    segment-pair:   <s> A </s></s> B </s>, A and B runs of whole sentences, B the continuation or not
    sentence-pair:  the same with single sentences
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if line_ends.size == 0:
        return np.zeros((0, 5), dtype=np.int64)
    starts = np.concatenate([[0], line_ends[:-1]])
    doc_end = (line_ends - starts == 1) & (np.asarray(tokens[line_ends - 1]) == eos_id)
    if fmt in ("full-sentences", "doc-sentences"):
        return _blocks(line_ends, doc_end if fmt == "doc-sentences" else None, seq_len - 1)
    return _pairs(starts, line_ends, doc_end, fmt, seq_len, seed)


def _blocks(line_ends, doc_end, block):
    """Greedy packing of whole lines into blocks of at most `block` tokens; a longer line is cut."""
    rows, p, n_tokens = [], 0, int(line_ends[-1])
    limits = line_ends[doc_end] if doc_end is not None else np.zeros(0, dtype=np.int64)  # separator ends
    while p < n_tokens:
        limit = p + block
        if doc_end is not None:
            k = np.searchsorted(limits, p, side="right")
            if k < limits.size:
                if limits[k] - 1 == p:  # the block would start at a separator: skip it
                    p += 1
                    continue
                limit = min(limit, int(limits[k]) - 1)
        j = np.searchsorted(line_ends, limit, side="right") - 1  # the last line that ends within limit
        if j >= 0 and line_ends[j] > p:
            end = int(line_ends[j])
        else:  # a line longer than a block: cut it, never leaving its </s> alone for the next block
            line_end = int(line_ends[np.searchsorted(line_ends, p, side="right")])
            end = limit - 1 if line_end - limit == 1 else min(limit, line_end)
        rows.append((p, end, 0, 0, -1))
        p = end
    return np.array(rows, dtype=np.int64).reshape(-1, 5)


def _pairs(starts, ends, doc_end, fmt, seq_len, seed):
    """Sentence-pair formats with next-sentence prediction, as the original BERT builds them."""
    rng = np.random.default_rng(seed)
    budget = seq_len - 4  # <s> A </s> </s> B </s>
    docs, current = [], []
    for i in range(len(ends)):  # a Python loop over lines: the pair formats are for Table 2's experiments
        if doc_end[i]:
            if current:
                docs.append(current)
            current = []
        else:
            current.append(i)
    if current:
        docs.append(current)
    if len(docs) < 2:
        raise ValueError("the pair formats need at least two documents (blank-line separated)")
    rows = []
    for d, doc in enumerate(docs):
        i = 0
        while i < len(doc):
            if fmt == "sentence-pair":  # one sentence, and the next one if there is one
                chunk = doc[i:i + 2]
                i += len(chunk)
                a, rest = chunk[:1], chunk[1:]
            else:  # segment-pair: sentences up to the budget, split at a random sentence
                chunk, size = [], 0
                while i < len(doc) and (size < budget or not chunk):
                    chunk.append(doc[i])
                    size += ends[doc[i]] - starts[doc[i]] - 1
                    i += 1
                cut = int(rng.integers(1, len(chunk))) if len(chunk) > 1 else 1
                a, rest = chunk[:cut], chunk[cut:]
            if rest and rng.random() < 0.5:
                b, label = rest, 1
            else:  # B from another document; unused sentences of this one are read again
                other = docs[(d + int(rng.integers(1, len(docs)))) % len(docs)]
                first = int(rng.integers(0, len(other)))
                b, label = other[first:first + max(1, len(rest))], 0
                i -= len(rest)
            rows.append((starts[a[0]], ends[a[-1]], starts[b[0]], ends[b[-1]], label))
    return np.array(rows, dtype=np.int64).reshape(-1, 5)


def example_lengths(ex):
    """Approximate tokens per example (for token-budget batching): the ranges plus specials."""
    return (ex[:, 1] - ex[:, 0]) + (ex[:, 3] - ex[:, 2]) + np.where(ex[:, 4] >= 0, 4, 1)


def collate(tokens, ex, seq_len, tok):
    """Examples -> (input_ids [n, L] padded with <pad>, nsp_labels [n] or None)."""
    seqs = []
    for a0, a1, b0, b1, label in ex.tolist():
        a = np.asarray(tokens[a0:a1], dtype=np.int64)
        if label < 0:
            seqs.append(np.concatenate([[tok.bos_id], a]))
            continue
        b = np.asarray(tokens[b0:b1], dtype=np.int64)
        a, b = a[a != tok.eos_id], b[b != tok.eos_id]
        while len(a) + len(b) > seq_len - 4:  # trim the longer segment's end
            if len(a) > len(b):
                a = a[:-1]
            else:
                b = b[:-1]
        seqs.append(np.concatenate([[tok.bos_id], a, [tok.eos_id, tok.eos_id], b, [tok.eos_id]]))
    width = max(len(s) for s in seqs)
    ids = np.full((len(seqs), width), tok.pad_id, dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = s
    nsp = torch.from_numpy(ex[:, 4].copy()) if ex[0, 4] >= 0 else None
    return torch.from_numpy(ids), nsp


# ---------------------------------------------------------------------------------------- batches
def epoch_batches(lengths, batch_size, seed, epoch, token_budget=None):
    """The global batches of one epoch: lists of example indices in a random order fixed by (seed, epoch).

    With `token_budget` (doc-sentences, sentence-pair) a batch takes examples until it would exceed
    the budget, so shorter examples mean more of them per batch (Section 4.2); otherwise each batch has
    `batch_size` examples. An incomplete last batch is dropped.
    """
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(len(lengths), generator=g).numpy()
    if token_budget is None:
        n = len(order) // batch_size
        return [order[i * batch_size:(i + 1) * batch_size] for i in range(n)]
    batches, cum = [], np.cumsum(lengths[order])
    start, used = 0, 0
    while start < len(order):
        end = int(np.searchsorted(cum, used + token_budget, side="right"))
        end = max(end, start + 1)
        if end >= len(order) and cum[-1] - used < token_budget:
            break  # the incomplete tail
        batches.append(order[start:end])
        used, start = int(cum[end - 1]), end
    return batches


def shard(batch, rank, world):
    """This process's share of a global batch: every world-th example from `rank` on, so that the global
    batch is the same set of examples for any number of processes."""
    return batch[rank::world]


# ---------------------------------------------------------------------------------------- masking
def mask_tokens(tokens, tok, mask_prob=0.15, generator=None):
    """BERT's masking (Section 4.1 / Devlin et al.): select each ordinary token with probability
    mask_prob; of the selected, 80% become <mask>, 10% a random ordinary token, 10% stay unchanged.
    Returns (inputs, labels) with labels = -100 where not selected. <s>, </s> and <pad> are never selected.
    """
    u = torch.rand((3,) + tuple(tokens.shape), generator=generator)
    return mask_with(tokens, tok, mask_prob, u[0], u[1], u[2])


def mask_with(tokens, tok, mask_prob, u_select, u_action, u_token):
    """The masking rule, given three uniform [0, 1) draws per token."""
    special = (tokens == tok.bos_id) | (tokens == tok.eos_id) | (tokens == tok.pad_id)
    selected = (u_select < mask_prob) & ~special
    labels = torch.where(selected, tokens, -100)
    # a random ordinary token: draw among the ids left once the specials are taken out, then step
    # over each special id at or below the draw (there are five)
    specials = sorted(tok.special_ids)
    random_ids = (u_token * (len(tok) - len(specials))).long()
    for s in specials:
        random_ids += random_ids >= s
    inputs = torch.where(selected & (u_action < 0.8), tok.mask_id, tokens)
    inputs = torch.where(selected & (u_action >= 0.8) & (u_action < 0.9), random_ids, inputs)
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


def mask_batch(input_ids, example_ids, tok, seed, epoch, static=False, mask_prob=0.15):
    """Mask a batch; every token's draws depend only on (seed, epoch, example index, position), so an
    example gets the same mask however batches are split over processes or resumed.

    Dynamic masking (RoBERTa, Section 4.1): a new mask every epoch. Static masking (original BERT):
    the data duplicated 10 times with 10 fixed masks, i.e. epoch e sees mask number e % 10.
    """
    version = epoch % 10 if static else epoch
    keys = (np.asarray(example_ids, dtype=np.int64) * 1_000_003 + version) * 1_000_033 + seed
    u = [uniforms(keys, input_ids.shape[1], stream) for stream in range(3)]
    return mask_with(input_ids, tok, mask_prob, *u)


@torch.no_grad()
def heldout_loss(model, tokens, line_ends, tok, seq_len, batch_size=16, seed=1234, rank=0, world=1,
                 device="cpu", max_sequences=None, amp_dtype=None):
    """Masked-LM loss (natural log, per target token) on held-out data: FULL-SENTENCES blocks, each
    masked by a fixed seed so that every evaluation sees the same masks. Returns (loss sum, target count)
    of this process's share; sum them over processes for the whole set (the first `max_sequences`)."""
    ex = examples(tokens, line_ends, "full-sentences", seq_len, tok.eos_id)
    order = np.arange(len(ex) if max_sequences is None else min(len(ex), max_sequences))[rank::world]
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        ids, _ = collate(tokens, ex[idx], seq_len, tok)
        inputs, labels = mask_batch(ids, idx, tok, seed, epoch=0)
        with torch.autocast(torch.device(device).type, dtype=amp_dtype or torch.float32,
                            enabled=amp_dtype is not None):
            total += model(inputs.to(device), labels=labels.to(device), reduction="sum").item()
        count += int((labels != -100).sum())
    model.train(was_training)
    return total, count


# ---------------------------------------------------------------------------------------- built-in corpus
def builtin_corpus(path):
    """A small English corpus that needs no network: the reference texts of Python's documentation
    (pydoc_data.topics, ~465 KB, on every Python install), one paragraph per line, a blank line
    between topics (documents)."""
    from pydoc_data.topics import topics
    lines = []
    for name in sorted(topics):
        for para in topics[name].split("\n\n"):
            para = " ".join(para.split())
            if para:
                lines.append(para)
        lines.append("")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------- downloads
# name -> [(url, file name, sha256 or None)]. None: no checksum is pinned (the address's content is
# printed with its sha256 so that it can be pinned); the SQuAD and tiny shakespeare hashes are the
# official files' (see ../shared/data/SOURCES.md).
DATASETS = {
    "tinyshakespeare": [("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
                         "input.txt", "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed")],
    "wikitext-103": [("https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-103-raw-v1.zip",
                      "wikitext-103-raw-v1.zip", None)],
    "squad1": [("https://rajpurkar.github.io/SQuAD-explorer/dataset/train-v1.1.json", "train-v1.1.json", None),
               ("https://rajpurkar.github.io/SQuAD-explorer/dataset/dev-v1.1.json", "dev-v1.1.json",
                "95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9")],
    "squad2": [("https://rajpurkar.github.io/SQuAD-explorer/dataset/train-v2.0.json", "train-v2.0.json", None),
               ("https://rajpurkar.github.io/SQuAD-explorer/dataset/dev-v2.0.json", "dev-v2.0.json",
                "80a5225e94905956a6446d296ca1093975c4d3b3260f1d6c8f68bc2ab77182d8")],
    "race": [("http://www.cs.cmu.edu/~glai1/data/race/RACE.tar.gz", "RACE.tar.gz", None)],
    **{f"glue-{t.lower()}": [(f"https://dl.fbaipublicfiles.com/glue/data/{t}.zip", f"{t}.zip", None)]
       for t in ("CoLA", "SST-2", "MRPC", "QQP", "STS-B", "MNLI", "QNLI", "RTE", "WNLI")},
}


def download(name, cache_dir, registry=DATASETS, verbose=True):
    """Fetch a dataset into cache_dir/name (once), check its sha256, unpack archives. Returns the folder."""
    if name not in registry:
        raise ValueError(f"unknown dataset {name!r}: choose one of {', '.join(sorted(registry))}")
    folder = os.path.join(cache_dir, name)
    os.makedirs(folder, exist_ok=True)
    for url, filename, sha256 in registry[name]:
        path = os.path.join(folder, filename)
        if not os.path.isfile(path):
            tmp, h = path + ".part", hashlib.sha256()
            try:
                with urllib.request.urlopen(url) as response, open(tmp, "wb") as f:
                    while block := response.read(1 << 20):
                        h.update(block)
                        f.write(block)
            except OSError as e:
                raise OSError(f"{name}: could not fetch {url} ({e})") from None
            if sha256 and h.hexdigest() != sha256:
                os.remove(tmp)
                raise ValueError(f"{name}: {filename} has sha256 {h.hexdigest()}, expected {sha256}")
            os.replace(tmp, path)
            if verbose:
                print(f"{filename}: sha256 {h.hexdigest()}" + ("" if sha256 else " (no pinned checksum)"))
        if filename.endswith(".zip"):
            with zipfile.ZipFile(path) as z:
                z.extractall(folder)
        elif filename.endswith((".tar.gz", ".tgz")):
            with tarfile.open(path) as t:
                t.extractall(folder, filter="data")
    return folder


# ---------------------------------------------------------------------------------------- command line
def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["download"]:
            p = argparse.ArgumentParser(prog="data.py download", description="Fetch a dataset, sha256-checked.")
            p.add_argument("name", help=", ".join(sorted(DATASETS)))
            p.add_argument("--cache", default=os.path.join(os.path.expanduser("~"), ".cache", "roberta-reference"))
            args = p.parse_args(argv[1:])
            print(download(args.name, args.cache))
            return
        p = argparse.ArgumentParser(description="Prepare a text corpus for pretraining (or: data.py download NAME).")
        p.add_argument("--input", nargs="+", required=True, help="UTF-8 text files; a blank line ends a document")
        p.add_argument("--tokenizer", required=True, help="folder with vocab.json + merges.txt")
        p.add_argument("--out", required=True)
        p.add_argument("--valid-fraction", type=float, default=0.01, help="share of documents held out")
        p.add_argument("--workers", type=int, default=os.cpu_count(), help="encoding processes")
        p.add_argument("--overwrite", action="store_true", help="replace data made with another tokenizer")
        p.add_argument("--errors", choices=["strict", "replace"], default="strict",
                       help="what to do with bytes that are not UTF-8")
        args = p.parse_args(argv)
        meta = prepare(args.input, args.tokenizer, args.out, args.valid_fraction, args.workers,
                       args.overwrite, args.errors)
        print(f"{args.out}: train {meta['train']['tokens']:,} tokens in {meta['train']['documents']:,} documents, "
              f"valid {meta['valid']['tokens']:,} tokens in {meta['valid']['documents']:,} documents")
    except (OSError, ValueError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
