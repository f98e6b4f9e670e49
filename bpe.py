"""Byte-level BPE, written from scratch, exact to GPT-2's and RoBERTa's tokenizer.

Section 4.4: "byte-level BPE uses bytes instead of unicode characters as the base subword units", so any
text is encoded without an unknown token (Radford et al., 2019). GPT-2's regex splits text into words, numbers,
punctuation runs and spaces (a word keeps its leading space, " world": merges never cross words); each piece
becomes its UTF-8 bytes, one id per byte; then the learned merges apply, lowest rank (earliest learned) first.
Inside, everything is ids and bytes: the printable spelling of vocab.json and merges.txt ("Ġ" for a space,
`bytes_to_unicode`) exists only at the file boundary (machinery/formats/vocab_files.py).

    tok = Tokenizer.load("path/to/roberta")   # vocab.json + merges.txt (or encoder.json + vocab.bpe)
    ids = tok.encode("Hello world!")          # [31414, 232, 328]
    tok.decode(ids)                           # "Hello world!"
    tok = Tokenizer.train(lines, vocab_size=8000)
    tok.save("out/")
"""
import contextlib
import gc
import heapq
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
MIN_VOCAB = len(SPECIALS) + 256 + 1            # the specials, one token per byte, <mask>: 261
INF = float("inf")
LONG_PIECE = 100  # bytes: a longer pre-token is merged by machinery/fast/fast_bpe.py (the same ids, faster)


# ---------------------------------------------------------------- bytes and their printable spelling
def bytes_to_unicode():
    """GPT-2's reversible map from the 256 bytes to printable characters: printable Latin-1 bytes map to
    themselves, the others (controls, space) to chr(256 + n), so vocab files hold no whitespace: 0x20 -> 'Ġ'."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    shifted = iter(range(256, 512))  # the n-th byte not kept -> chr(256 + n)
    return {b: chr(b) if b in keep else chr(next(shifted)) for b in range(256)}


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


def token_to_bytes(token):
    """A vocab-file string ('Ġworld') to its bytes (b' world'). Special tokens are their own text."""
    if all(c in CHAR_TO_BYTE for c in token):
        return bytes(CHAR_TO_BYTE[c] for c in token)
    return token.encode("utf-8")


# ---------------------------------------------------------------- training
def count_pretokens(texts):
    """Each distinct pre-token and how often it occurs: training works on these, never on the running text."""
    pattern = regex.compile(PATTERN)
    counts = Counter()
    for text in texts:
        counts.update(pattern.findall(text))
    return counts


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


def learn_merges_naive(words, freqs, vocab, n_merges, min_frequency):
    """The spec of training (Sennrich et al., 2016): count every adjacent pair, each word weighted by its frequency;
    merge the most frequent (ties: the smallest ids) everywhere; repeat. Hours for 8 MB: PairCounts is its twin."""
    merges, count = {}, 0
    while len(merges) < n_merges:
        counts = Counter()
        for word, f in zip(words, freqs):
            for pair in zip(word, word[1:]):
                counts[pair] += f
        pair = min(counts, key=lambda p: (-counts[p], p), default=None)
        count = counts[pair]  # 0 when no pair is left (pair None)
        if count < min_frequency:
            break
        new_id = len(vocab)
        vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
        merges[pair] = new_id
        words = [merge_word(word, pair, new_id)[0] for word in words]
    return merges, count


class PairCounts:
    """learn_merges_naive's counts, updated after each merge instead of recounted (~14,500x faster on 8 MB,
    bench.py bpe). counts: pair -> occurrences, each word weighted by its frequency; where: pair -> the words
    that hold it (or once did); heap: (-count, pair), the most frequent first, ties to the smallest ids. A count
    that goes down leaves a stale entry, refreshed when popped (lazy deletion: heapq cannot lower one in place)."""

    def __init__(self, words, freqs):
        self.words, self.freqs = words, freqs  # words: lists of token ids, changed in place by merge()
        self.counts, self.where = counts, where = Counter(), {}
        for wi, (word, f) in enumerate(zip(words, freqs)):
            for pair in zip(word, word[1:]):
                counts[pair] += f
                where.setdefault(pair, set()).add(wi)
        self.heap = [(-c, pair) for pair, c in counts.items()]
        heapq.heapify(self.heap)

    def most_frequent(self):
        """(pair, count) of the most frequent pair; (None, 0) when no pair is left."""
        heap, counts = self.heap, self.counts
        while heap:
            neg, pair = heapq.heappop(heap)
            count = counts.get(pair, 0)
            if -neg == count:
                return pair, count
            if count > 0:  # stale entry: the count went down since it was pushed
                heapq.heappush(heap, (-count, pair))
        return None, 0

    def merge(self, pair, new_id):
        """Replace `pair` by `new_id` in the words that hold it, updating only the counts that change."""
        words, freqs, counts, where = self.words, self.freqs, self.counts, self.where
        changed = set()
        for wi in where.pop(pair):  # the words that hold (or once held) the pair
            words[wi], changes = merge_word(words[wi], pair, new_id)
            for p, sign in changes:
                counts[p] += sign * freqs[wi]
                if sign > 0:
                    where.setdefault(p, set()).add(wi)
                    changed.add(p)
        del counts[pair]
        for p in changed:  # only pairs with the new token can have grown
            heapq.heappush(self.heap, (-counts[p], p))


@contextlib.contextmanager
def gc_paused():
    """Training's millions of small lists and sets (no cycles), rescanned by the cyclic GC again and again: ~30%."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@gc_paused()  # until the trainer's millions of small lists are freed
def train_bpe(texts, vocab_size, min_frequency=2, verbose=False):
    """A vocabulary of `vocab_size` tokens: <s> <pad> </s> <unk>, 256 bytes, merges of the most frequent pair
    until it is full or no pair occurs `min_frequency` times, <mask>. Returns (vocab: id -> bytes, merges:
    (id, id) -> id in rank order, note: None, or why the vocabulary is smaller than asked)."""
    if vocab_size < MIN_VOCAB:
        raise ValueError(f"vocab size {vocab_size} is too small: the 256 bytes and 5 special tokens need {MIN_VOCAB}")
    if min_frequency < 1:
        raise ValueError(f"min_frequency must be at least 1, got {min_frequency}")
    counts = count_pretokens(texts)
    if not counts:
        raise ValueError("no text to train on: the input is empty")
    vocab = {i: s.encode() for i, s in enumerate(SPECIALS)}
    first = len(vocab)
    vocab.update({first + b: bytes([b]) for b in range(256)})
    words = [[first + b for b in w.encode("utf-8", "surrogatepass")] for w in counts]
    pairs = PairCounts(words, list(counts.values()))
    merges, next_count = learn_merges(pairs, vocab, vocab_size - MIN_VOCAB, min_frequency, verbose)
    vocab[len(vocab)] = MASK.encode()
    return vocab, merges, shortfall(vocab_size, len(vocab), len(merges), min_frequency, next_count)


def learn_merges(pairs, vocab, n_merges, min_frequency, verbose):
    """Up to `n_merges` merges, each added to `vocab` as a new id. Returns the merges and the count of
    the most frequent pair left unmerged (0 when none is left). learn_merges_naive is the spec."""
    from tqdm import tqdm
    merges, count = {}, 0
    progress = tqdm(total=n_merges, unit="merges", disable=not verbose, dynamic_ncols=True)
    while len(merges) < n_merges:
        pair, count = pairs.most_frequent()
        if count < min_frequency:
            break
        new_id = len(vocab)
        vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
        merges[pair] = new_id
        pairs.merge(pair, new_id)
        progress.update(1)
    progress.close()
    return merges, count


def shortfall(asked, got, n_merges, min_frequency, next_count):
    """None when the vocabulary has the size asked; else one line saying what was obtained, and why."""
    if got >= asked:
        return None
    head = f"vocabulary {got:,} of the {asked:,} asked"
    if next_count == 0:
        return f"{head}: after {n_merges:,} merges every pre-token is a single token; add text"
    return (f"{head}: after {n_merges:,} merges no pair occurs {min_frequency:,} times or more; "
            f"lower --min-frequency or add text")


# ---------------------------------------------------------------- the tokenizer
def byte_ids(vocab):
    """The id of each of the 256 single-byte tokens (the first id where a special token spells one)."""
    by_bytes = {}
    for i, bs in vocab.items():
        by_bytes.setdefault(bs, i)
    missing = [b for b in range(256) if bytes([b]) not in by_bytes]
    if missing:
        raise ValueError(f"vocabulary lacks {len(missing)} of the 256 byte tokens (e.g. byte {missing[0]})")
    return [by_bytes[bytes([b])] for b in range(256)]


class Tokenizer:
    """A byte-level BPE vocabulary: `vocab` (id -> bytes) and `merges` (pair of ids -> new id, in rank order).
    characters=True: Section 4.4's other arm, a character-level BPE (BERT's): its units are the tokens before the
    first merge, a character outside them is <unk> (machinery/commands/char_bpe.py: `bpe.py train --characters`)."""

    def __init__(self, vocab, merges, characters=False):
        self.vocab = dict(vocab)    # id -> bytes
        self.merges = dict(merges)  # (id, id) -> id, insertion order = rank
        self.ranks = {pair: rank for rank, pair in enumerate(self.merges)}
        self.pattern = regex.compile(PATTERN)
        bad = next(((pair, new) for pair, new in self.merges.items() if not {*pair, new} <= self.vocab.keys()), None)
        if bad:
            raise ValueError(f"merge {bad[0]} -> {bad[1]} names an id that is not in the vocabulary")
        names = {bs: i for i, bs in self.vocab.items()}
        self.bos_id, self.pad_id, self.eos_id, self.unk_id, self.mask_id = (
            names.get(s.encode()) for s in SPECIALS + (MASK,))
        self.characters = characters
        if characters:  # the alphabet: every token after the specials and before the first merge's
            last = min(self.merges.values(), default=self.mask_id)
            self.char_ids = {self.vocab[i].decode("utf-8", "surrogatepass"): i for i in range(len(SPECIALS), last)}
        else:
            self.byte_ids = byte_ids(self.vocab)
        self.special_ids = {self.bos_id, self.pad_id, self.eos_id, self.unk_id, self.mask_id} - {None}
        self.cache = {}  # pre-token -> ids; GPT-2's encoder.py caches the same way
        self.training_note = None  # set by train(): why the vocabulary came out smaller than asked

    def __len__(self):
        return len(self.vocab)

    # ---------------------------------------------------------------- encoding and decoding
    def encode_piece(self, piece):
        """BPE on one pre-token: start from its bytes (or characters), then apply the merges (apply_merges)."""
        if self.characters:  # Section 4.4's other arm: a character outside the alphabet is <unk>
            ids = [self.char_ids.get(ch, self.unk_id) for ch in piece]
        else:
            ids = [self.byte_ids[b] for b in piece.encode("utf-8", "surrogatepass")]
        if len(ids) > LONG_PIECE:  # a long word (a base64 blob, a minified line): the plain loop is quadratic
            from machinery.fast import fast_bpe
            fast = fast_bpe.apply_merges(ids, self.ranks, self.merges)  # machinery: the same merges, indexed
            if fast is not None:  # None: merges not learned in rank order, left to the plain loop
                return fast
        return self.apply_merges(ids)

    def apply_merges(self, ids):
        """Apply the lowest-ranked merge (the leftmost of equal ones) until none applies: GPT-2's result (it merges
        every occurrence at once), as a pair made by a merge ranks after it. O(n^2): fine for words (LONG_PIECE)."""
        ids = list(ids)
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
        """(ids, offsets): offsets[i] = (start, end) of token i as character positions in `text` (SQuAD's spans);
        a token holding part of a multi-byte character spans that whole character."""
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
        special = i in self.special_ids or self.characters
        return bs.decode("utf-8", "replace") if special else "".join(BYTE_TO_CHAR[b] for b in bs)

    # ---------------------------------------------------------------- training and files
    @classmethod
    def train(cls, texts, vocab_size, min_frequency=2, verbose=False):
        """Learn a vocabulary from `texts` (train_bpe). verbose: a progress bar, and a warning on stderr when it
        comes out smaller than asked (also kept in `training_note`)."""
        vocab, merges, note = train_bpe(texts, vocab_size, min_frequency, verbose)
        tok = cls(vocab, merges)
        tok.training_note = note
        if note and verbose:
            print(f"warning: {note}", file=sys.stderr, flush=True)
        return tok

    @classmethod
    def load(cls, directory):
        """Read vocab.json + merges.txt (RoBERTa / Hugging Face names) or encoder.json + vocab.bpe (GPT-2):
        each token's printable spelling (bytes_to_unicode) with its id, and the merges in rank order."""
        from machinery.formats import vocab_files  # machinery: finding the two files, every entry checked
        if vocab_files.is_char_bpe(directory):  # Section 4.4's other arm: a character-level BPE, in one file
            return cls(*vocab_files.read_chars(directory), characters=True)
        vocab_path, token_ids, merges = vocab_files.read(os.fspath(directory))  # machinery: every entry checked
        try:
            return cls({i: token_to_bytes(t) for t, i in token_ids.items()}, merges)
        except ValueError as e:
            raise ValueError(f"{vocab_path}: {e}") from None

    def save(self, directory):
        """Write vocab.json + merges.txt in the GPT-2/RoBERTa format (loadable by other BPE libraries)."""
        from machinery.formats import vocab_files  # machinery: written atomically
        if self.characters:  # Section 4.4's other arm: char_bpe.json
            return vocab_files.write_chars(directory, self.vocab, self.merges)
        vocab_files.write(directory, {i: self.id_to_token(i) for i in self.vocab}, self.merges)


if __name__ == "__main__":  # machinery: the command line (bpe.py train / encode), its checks, one-line errors
    from machinery.commands import bpe_cli
    bpe_cli.main()
