"""Section 4.4's other arm: a character-level BPE, as BERT's vocabulary (30K) was built, against which RoBERTa
chose GPT-2's byte-level BPE (50K). Its units are the training text's characters (any other character is <unk>);
its merges are learned as bpe.py learns them, on the same pre-tokens, so the two arms differ only in their units.
The tokenizer is bpe.Tokenizer with characters=True; this module only trains one (`python bpe.py train
--characters`).
"""
import bpe


def train(texts, vocab_size, min_frequency=2, verbose=False):
    """A character-level bpe.Tokenizer trained on `texts`: <s> <pad> </s> <unk>, the characters of `texts` (most
    frequent first, as many as fit), merges of the most frequent pairs, <mask> (its training_note: why it came out
    smaller than asked)."""
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
    tok = bpe.Tokenizer(vocab, merges, characters=True)
    tok.training_note = bpe.shortfall(vocab_size, len(vocab), len(merges), min_frequency, next_count)
    return tok
