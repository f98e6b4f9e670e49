"""Section 4.4's other arm: a character-level BPE, as BERT's original vocabulary (30K) was built, against
which RoBERTa chose GPT-2's byte-level BPE (50K).

Its units are Unicode characters, not bytes: the alphabet is the characters of the training text, and a
character outside it becomes <unk> (one <unk> per character). Merges are learned as bpe.py learns them
(bpe.count_pretokens, bpe.PairCounts, bpe.learn_merges), on the same pre-tokens, so the two arms differ
only in their units. A byte-level BPE needs no <unk>: every text is some bytes.

    python bpe.py train --input corpus.txt --vocab-size 2458 --out char-tok/ --characters
    tok = bpe.Tokenizer.load("char-tok/")        # a CharTokenizer: the folder holds char_bpe.json

It keeps bpe.Tokenizer's interface (encode, decode, vocab as id -> UTF-8 bytes, merges, the special ids,
save, load), so that data.py, train.py and finetune.py use it unchanged.
"""
import json
import os

import bpe
from machinery import files

FILE = "char_bpe.json"


def train_char_bpe(texts, vocab_size, min_frequency=2, verbose=False):
    """(vocab id -> bytes, merges, note): <s> <pad> </s> <unk>, the characters of `texts` (most frequent
    first, as many as fit), merges of the most frequent pairs, <mask>."""
    counts = bpe.count_pretokens(texts)
    if not counts:
        raise ValueError("no text to train on: the input is empty")
    chars = {}
    for word, n in counts.items():
        for ch in word:
            chars[ch] = chars.get(ch, 0) + n
    room = vocab_size - len(bpe.SPECIALS) - 1
    if room < 1:
        raise ValueError(f"vocab size {vocab_size} is too small: the 5 special tokens need 5, and one character")
    alphabet = sorted(chars, key=lambda ch: (-chars[ch], ch))[:room]
    vocab = {i: s.encode() for i, s in enumerate(bpe.SPECIALS)}
    vocab.update({len(bpe.SPECIALS) + k: ch.encode("utf-8", "surrogatepass") for k, ch in enumerate(alphabet)})
    char_ids = {ch: len(bpe.SPECIALS) + k for k, ch in enumerate(alphabet)}
    words, freqs = [], []
    for w, n in counts.items():  # a character outside the alphabet (<unk>) splits its word: never merged
        for part in "".join(ch if ch in char_ids else "\0" for ch in w).split("\0"):
            if len(part) > 1:
                words.append([char_ids[ch] for ch in part])
                freqs.append(n)
    pairs = bpe.PairCounts(words, freqs)
    merges, next_count = bpe.learn_merges(pairs, vocab, room - len(alphabet), min_frequency, verbose)
    vocab[len(vocab)] = bpe.MASK.encode()
    return vocab, merges, bpe.shortfall(vocab_size, len(vocab), len(merges), min_frequency, next_count)


class CharTokenizer(bpe.Tokenizer):
    """A character-level BPE with bpe.Tokenizer's interface. Characters outside its alphabet are <unk>."""

    def __init__(self, vocab, merges):
        self.vocab, self.merges = dict(vocab), dict(merges)
        self.ranks = {pair: rank for rank, pair in enumerate(self.merges)}
        self.pattern = bpe.regex.compile(bpe.PATTERN)
        bpe.check_merges(self.vocab, self.merges)
        self.bos_id, self.pad_id, self.eos_id, self.unk_id = range(len(bpe.SPECIALS))
        self.mask_id = max(self.vocab)
        self.special_ids = {self.bos_id, self.pad_id, self.eos_id, self.unk_id, self.mask_id}
        first_merge = min(self.merges.values(), default=self.mask_id)
        self.char_ids = {self.vocab[i].decode("utf-8", "surrogatepass"): i
                         for i in range(len(bpe.SPECIALS), first_merge)}
        self.cache, self.training_note = {}, None

    def encode_piece(self, piece):
        """BPE on one pre-token from its characters (<unk> for those outside the alphabet): merge the
        lowest-ranked adjacent pair everywhere it occurs, until no pair has a merge (minbpe's loop)."""
        ids = [self.char_ids.get(ch, self.unk_id) for ch in piece]
        while len(ids) > 1:
            pair = min(zip(ids, ids[1:]), key=lambda p: self.ranks.get(p, bpe.INF))
            if pair not in self.ranks:
                break
            ids = bpe.merge_word(ids, pair, self.merges[pair])[0]
        return ids

    def unknown_bytes(self, text):
        """The UTF-8 length of each character of `text` that encodes as <unk>, in order."""
        return [len(ch.encode("utf-8", "surrogatepass")) for ch in text if ch not in self.char_ids]

    def id_to_token(self, i):
        return self.vocab[i].decode("utf-8", "replace")

    @classmethod
    def train(cls, texts, vocab_size, min_frequency=2, verbose=False):
        vocab, merges, note = train_char_bpe(texts, vocab_size, min_frequency, verbose)
        tok = cls(vocab, merges)
        tok.training_note = note
        return tok

    @classmethod
    def load(cls, directory):
        path = os.path.join(os.fspath(directory), FILE)
        spec = files.read_json(path)
        try:
            vocab = {i: t.encode("utf-8", "surrogatepass") for i, t in enumerate(spec["tokens"])}
            if spec["tokens"][:len(bpe.SPECIALS)] != list(bpe.SPECIALS) or spec["tokens"][-1] != bpe.MASK:
                raise ValueError(f"the tokens must begin with {', '.join(bpe.SPECIALS)} and end with {bpe.MASK}")
            return cls(vocab, {(a, b): new for a, b, new in spec["merges"]})
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            raise ValueError(f"{path}: not a character-level BPE file ({e})") from None

    def save(self, directory):
        spec = {"kind": "character-level BPE (RoBERTa Section 4.4; BERT's units)",
                "tokens": [self.vocab[i].decode("utf-8", "surrogatepass") for i in range(len(self.vocab))],
                "merges": [[a, b, new] for (a, b), new in self.merges.items()]}
        os.makedirs(directory, exist_ok=True)
        files.write_atomic(os.path.join(directory, FILE), json.dumps(spec, ensure_ascii=False))


def is_char_bpe(directory):
    return os.path.isfile(os.path.join(os.fspath(directory), FILE))
