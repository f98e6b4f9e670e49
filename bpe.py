"""Byte-level BPE, written from scratch, exact to GPT-2's and RoBERTa's tokenizer.

Section 4.4 of the RoBERTa paper: "we instead consider training BERT with a larger byte-level BPE
vocabulary containing 50K subword units ... byte-level BPE uses bytes instead of unicode characters
as the base subword units", so any text is encoded without an unknown token (Radford et al., 2019).

How it works, top to bottom:
  1. pre-tokenize: GPT-2's regex splits text into words, numbers, punctuation runs and spaces;
     a word keeps its leading space (" world"), so merges never cross word boundaries;
  2. each pre-token becomes its UTF-8 bytes, one token id per byte;
  3. merges learned in training are applied, lowest rank (earliest learned) first.

Inside this module everything is token *ids* and *bytes*. The printable strings of vocab.json and
merges.txt (where byte 0x20, a space, is written "Ġ") exist only at the file boundary, through
`bytes_to_unicode`, exactly as GPT-2's encoder.py defines them.

    tok = Tokenizer.load("path/to/roberta")   # vocab.json + merges.txt (or encoder.json + vocab.bpe)
    ids = tok.encode("Hello world!")          # [31414, 232, 328]
    tok.decode(ids)                           # "Hello world!"
    tok = Tokenizer.train(lines, vocab_size=8000)
    tok.save("out/")
"""
import argparse
import gc
import heapq
import json
import os
import sys
from collections import Counter

import regex

# GPT-2's pre-tokenization pattern: contractions, letters, numbers, other symbols, and whitespace
# (a run of spaces gives all but its last space to the next piece, so " world" keeps its space).
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# The same pattern with letters and numbers tried first: where a contraction can match (at a "'"),
# neither of those can, so every split is the same, and the regex engine finds most pieces sooner (~15%).
PATTERN = r""" ?\p{L}+| ?\p{N}+|'s|'t|'re|'ve|'m|'ll|'d| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")  # ids 0-3, as fairseq's dictionary puts them
MASK = "<mask>"                                # the last id, as RoBERTa appends it
INF = float("inf")


def bytes_to_unicode():
    """GPT-2's reversible map from the 256 bytes to printable unicode characters.

    Printable Latin-1 bytes map to themselves; the others (controls, space, ...) are shifted to
    256+n so that vocab files never contain whitespace or control characters: 0x20 -> 'Ġ'.
    """
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    table, n = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + n)
            n += 1
    return table


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


def token_to_bytes(token):
    """A vocab-file string ('Ġworld') to its bytes (b' world'). Special tokens are their own text."""
    if all(c in CHAR_TO_BYTE for c in token):
        return bytes(CHAR_TO_BYTE[c] for c in token)
    return token.encode("utf-8")


def bytes_to_token(bs):
    return "".join(BYTE_TO_CHAR[b] for b in bs)


def merge_word(word, pair, new_id):
    """Merge every occurrence of `pair` in `word`, left to right. Returns the new word and the changes
    to the counts of adjacent pairs, as (pair, +1 or -1): only the neighbours of a merge change."""
    a, b = pair
    out, changes, i, n = [], [], 0, len(word)
    while i < n:
        if i + 1 < n and word[i] == a and word[i + 1] == b:
            if out:  # (x a) b  ->  (x new)
                changes += ((out[-1], a), -1), ((out[-1], new_id), 1)
            if i + 2 < n:  # a (b y)  ->  (new y)
                changes += ((b, word[i + 2]), -1), ((new_id, word[i + 2]), 1)
            out.append(new_id)
            i += 2
        else:
            out.append(word[i])
            i += 1
    return out, changes


class Tokenizer:
    """A byte-level BPE vocabulary: `vocab` (id -> bytes) and `merges` (pair of ids -> new id, in rank order)."""

    def __init__(self, vocab, merges):
        self.vocab = dict(vocab)    # id -> bytes
        self.merges = dict(merges)  # (id, id) -> id, insertion order = rank
        self.ranks = {pair: rank for rank, pair in enumerate(self.merges)}
        self.pattern = regex.compile(PATTERN)
        by_bytes = {}
        for i, bs in self.vocab.items():
            by_bytes.setdefault(bs, i)  # first id wins if a special token spells ordinary bytes
        missing = [b for b in range(256) if bytes([b]) not in by_bytes]
        if missing:
            raise ValueError(f"vocabulary lacks {len(missing)} of the 256 byte tokens (e.g. byte {missing[0]})")
        self.byte_ids = [by_bytes[bytes([b])] for b in range(256)]
        for (a, b), new in self.merges.items():
            for i in (a, b, new):
                if i not in self.vocab:
                    raise ValueError(f"merge ({a}, {b}) -> {new} names id {i}, which is not in the vocabulary")
        names = {bs: i for i, bs in self.vocab.items()}
        self.bos_id, self.pad_id, self.eos_id, self.unk_id, self.mask_id = (
            names.get(s.encode()) for s in SPECIALS + (MASK,))
        self.special_ids = {i for i in (self.bos_id, self.pad_id, self.eos_id, self.unk_id, self.mask_id)
                            if i is not None}
        self.cache = {}  # pre-token -> ids; GPT-2's encoder.py caches the same way

    def __len__(self):
        return len(self.vocab)

    # ---------------------------------------------------------------- encoding and decoding
    def encode_piece(self, piece):
        """BPE on one pre-token: start from its bytes and apply the lowest-ranked merge until none applies.

        Merging the leftmost lowest-ranked pair one at a time gives GPT-2's result (it merges all
        occurrences of that pair at once): a pair made by a merge always ranks after that merge.
        """
        ids = [self.byte_ids[b] for b in piece.encode("utf-8", "surrogatepass")]
        rank = self.ranks.get
        ranks = [rank(p, INF) for p in zip(ids, ids[1:])]  # ranks[i]: the rank of (ids[i], ids[i+1])
        while ranks:
            best = min(ranks)
            if best == INF:
                break
            i = ranks.index(best)
            ids[i:i + 2] = [self.merges[ids[i], ids[i + 1]]]
            del ranks[i]
            if i > 0:
                ranks[i - 1] = rank((ids[i - 1], ids[i]), INF)
            if i < len(ranks):
                ranks[i] = rank((ids[i], ids[i + 1]), INF)
        return ids

    def encode(self, text):
        """Text -> token ids. Plain text only: no <s>/</s> are added and '<mask>' is not special here."""
        ids, cache = [], self.cache
        if len(cache) > 500_000:  # bound memory on huge corpora
            cache.clear()
        for piece in self.pattern.findall(text):
            try:
                ids += cache[piece]  # the hot path: one dict lookup per pre-token
            except KeyError:
                cache[piece] = tuple(self.encode_piece(piece))  # tuples of ints: not tracked by the GC
                ids += cache[piece]
        return ids

    def encode_with_offsets(self, text):
        """(ids, offsets): offsets[i] = (start, end) of token i as character positions in `text`, so
        that a span of tokens maps back to the exact original text (SQuAD). A token that holds part of
        a multi-byte character spans that whole character."""
        ids, offsets = [], []
        for m in self.pattern.finditer(text):
            piece = m.group()
            piece_ids = self.cache.get(piece) or self.encode_piece(piece)
            char_of_byte = [c for c, ch in enumerate(piece) for _ in ch.encode("utf-8", "surrogatepass")]
            b = 0
            for i in piece_ids:
                n = len(self.vocab[i])
                offsets.append((m.start() + char_of_byte[b], m.start() + char_of_byte[b + n - 1] + 1))
                b += n
            ids += piece_ids
        return ids, offsets

    def decode(self, ids):
        """Token ids -> text. Bytes that are not valid UTF-8 (a cut multi-byte character) become U+FFFD."""
        data = b"".join(self.vocab[i] for i in ids)
        try:
            return data.decode("utf-8", "surrogatepass")  # lossless, even for lone surrogates
        except UnicodeDecodeError:
            return data.decode("utf-8", "replace")

    def id_to_token(self, i):
        """The printable vocab-file spelling of token `i` ('Ġworld')."""
        bs = self.vocab[i]
        return bs.decode() if i in self.special_ids else bytes_to_token(bs)

    # ---------------------------------------------------------------- training
    @classmethod
    def train(cls, texts, vocab_size, min_frequency=2, verbose=False):
        """Learn a vocabulary of `vocab_size` tokens: <s> <pad> </s> <unk>, 256 bytes, merges, <mask>.

        The fast algorithm: count each distinct pre-token once; keep the count of every adjacent pair
        and, per pair, the words it occurs in; merge the most frequent pair (ties: the pair of smallest
        ids) taken from a heap; then update only the words that contained it. Training stops early if
        no pair occurs `min_frequency` times.
        """
        n_merges = vocab_size - len(SPECIALS) - 256 - 1
        if n_merges < 0:
            raise ValueError(f"vocab size {vocab_size} is too small: the 256 bytes and 5 special tokens need 261")
        gc_was_enabled = gc.isenabled()
        gc.disable()  # millions of short-lived small lists and no reference cycles: ~30% faster
        try:
            return cls._train(texts, n_merges, min_frequency, verbose)
        finally:
            if gc_was_enabled:
                gc.enable()

    @classmethod
    def _train(cls, texts, n_merges, min_frequency, verbose):
        pattern = regex.compile(PATTERN)
        counts = Counter()
        for text in texts:
            counts.update(pattern.findall(text))
        if not counts:
            raise ValueError("no text to train on: the input is empty")

        # vocabulary: specials, then one token per byte, then one per merge
        vocab = {i: s.encode() for i, s in enumerate(SPECIALS)}
        first = len(vocab)
        vocab.update({first + b: bytes([b]) for b in range(256)})
        words = [[first + b for b in w.encode("utf-8", "surrogatepass")] for w in counts]
        freqs = list(counts.values())

        pair_counts = Counter()
        where = {}  # pair -> indices of the words that contain it (may hold stale entries)
        for wi, (word, f) in enumerate(zip(words, freqs)):
            for pair in zip(word, word[1:]):
                pair_counts[pair] += f
                where.setdefault(pair, set()).add(wi)
        heap = [(-c, pair) for pair, c in pair_counts.items()]
        heapq.heapify(heap)

        merges = {}
        progress = _progress(n_merges, "merges", verbose)
        while len(merges) < n_merges and heap:
            neg, pair = heapq.heappop(heap)
            count = pair_counts.get(pair, 0)
            if -neg != count:  # stale entry: the count went down since it was pushed
                if count > 0:
                    heapq.heappush(heap, (-count, pair))
                continue
            if count < min_frequency:
                break
            new_id = len(vocab)
            vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
            merges[pair] = new_id
            progress.update(1)
            changed = set()
            for wi in where.pop(pair):  # the words that hold (or once held) the pair
                words[wi], changes = merge_word(words[wi], pair, new_id)
                for p, sign in changes:
                    pair_counts[p] += sign * freqs[wi]
                    if sign > 0:
                        where.setdefault(p, set()).add(wi)
                        changed.add(p)
            del pair_counts[pair]
            for p in changed:  # only pairs with the new token can have grown
                heapq.heappush(heap, (-pair_counts[p], p))
        progress.close()
        vocab[len(vocab)] = MASK.encode()
        return cls(vocab, merges)

    # ---------------------------------------------------------------- files
    def save(self, directory):
        """Write vocab.json + merges.txt in the GPT-2/RoBERTa format (loadable by other BPE libraries)."""
        os.makedirs(directory, exist_ok=True)
        vocab = {self.id_to_token(i): i for i in sorted(self.vocab)}
        merges = [f"{self.id_to_token(a)} {self.id_to_token(b)}" for a, b in self.merges]
        write_atomic(os.path.join(directory, "vocab.json"), json.dumps(vocab, ensure_ascii=False))
        write_atomic(os.path.join(directory, "merges.txt"), "\n".join(["#version: 0.2"] + merges) + "\n")

    @classmethod
    def load(cls, directory):
        """Read vocab.json + merges.txt (RoBERTa / Hugging Face names) or encoder.json + vocab.bpe (GPT-2)."""
        for vocab_name, merges_name in (("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe")):
            vocab_path = os.path.join(directory, vocab_name)
            merges_path = os.path.join(directory, merges_name)
            if os.path.isfile(vocab_path) and os.path.isfile(merges_path):
                break
        else:
            raise FileNotFoundError(f"{directory}: no tokenizer files (vocab.json + merges.txt, "
                                    f"or encoder.json + vocab.bpe)")
        try:
            with open(vocab_path, encoding="utf-8") as f:
                token_ids = json.load(f)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{vocab_path}: not a JSON vocabulary ({e})") from None
        if not isinstance(token_ids, dict):
            raise ValueError(f"{vocab_path}: expected a JSON object mapping tokens to ids")
        vocab = {i: token_to_bytes(t) for t, i in token_ids.items()}
        merges = {}
        with open(merges_path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.startswith("#version") or not line.strip():
                    continue
                parts = line.rstrip("\n").split(" ")
                if len(parts) != 2:
                    raise ValueError(f"{merges_path}:{n}: expected two symbols, got {line.strip()!r}")
                a, b = parts
                for t in (a, b, a + b):
                    if t not in token_ids:
                        raise ValueError(f"{merges_path}:{n}: merge {a!r} {b!r} names {t!r}, "
                                         f"which is not in {vocab_name}")
                merges[token_ids[a], token_ids[b]] = token_ids[a + b]
        return cls(vocab, merges)


def write_atomic(path, data):
    """Write `data` (str: UTF-8 text, or bytes) to `path` all at once: a reader, or a run killed midway,
    sees the old file or the new one, never half of one. The data goes to a temporary file in the same
    folder (so that the rename stays on one filesystem), reaches the disk, and is renamed over `path`."""
    path = os.fspath(path)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _progress(total, unit, enabled):
    from tqdm import tqdm
    return tqdm(total=total, unit=unit, disable=not enabled, dynamic_ncols=True)


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


# ---------------------------------------------------------------- command line
def main(argv=None):
    parser = argparse.ArgumentParser(description="Byte-level BPE (RoBERTa Section 4.4): train or encode.")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="learn a vocabulary from text files")
    t.add_argument("--input", nargs="+", required=True, help="UTF-8 text files")
    t.add_argument("--vocab-size", type=int, required=True)
    t.add_argument("--min-frequency", type=int, default=2)
    t.add_argument("--out", required=True, help="directory for vocab.json + merges.txt")
    t.add_argument("--errors", choices=["strict", "replace"], default="strict",
                   help="what to do with bytes that are not UTF-8")
    e = sub.add_parser("encode", help="print the token ids of a text")
    e.add_argument("--tokenizer", required=True, help="directory with vocab.json + merges.txt")
    e.add_argument("text")
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            for path in args.input:
                if not os.path.isfile(path):
                    raise FileNotFoundError(f"{path}: no such file")
            lines = (line for path in args.input for line in read_lines(path, args.errors))
            tok = Tokenizer.train(lines, args.vocab_size, args.min_frequency, verbose=True)
            tok.save(args.out)
            print(f"wrote {args.out}/vocab.json and merges.txt: {len(tok)} tokens, {len(tok.merges)} merges")
        else:
            tok = Tokenizer.load(args.tokenizer)
            ids = tok.encode(args.text)
            print(ids)
            print(" ".join(tok.id_to_token(i) for i in ids))
    except (OSError, ValueError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
