"""The text-encoding experiment's figures (Section 4.4): bits per byte of the masked targets of held-out text (the
tokenizers compared on the same text) and the <unk> rates. An <unk> target costs the model's loss on it *plus* 8
bits per UTF-8 byte of the character it hides: else a tokenizer would look better for knowing less.
"""
import math
import os
import statistics

import numpy as np
import torch

import data

FOLDER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "heldout_text")
TEXTS = {"non_english": "non_english.txt", "code": "code.txt"}  # written for this project, in FOLDER
UNKNOWN_BITS_PER_BYTE = 8        # an unknown character, spelled out byte by byte with no model
MASK_VERSIONS = 8                # the small texts masked 8 times (seeds 1234..): each token a target about once


def text_lines(name):
    """The lines of one of the held-out texts in FOLDER (a blank line ends a document)."""
    with open(os.path.join(FOLDER, TEXTS[name]), encoding="utf-8") as f:
        return f.read().split("\n")


def unknown_bytes(tok, lines):
    """The UTF-8 length of every character of `lines` that `tok` encodes as <unk> (none for byte-level)."""
    if not tok.characters:
        return []
    return [len(ch.encode("utf-8", "surrogatepass")) for line in lines for ch in line if ch not in tok.char_ids]


def text_figures(model, tok, lines, seq_len, device, versions=MASK_VERSIONS):
    """Bits per byte of the masked targets of `lines` (the <unk> cost counted), the <unk> rates, targets."""
    tokens, lengths = data.encode_lines(lines, tok)
    unknown = unknown_bytes(tok, lines)
    unk_len = statistics.fmean(unknown) if unknown else 0.0  # an <unk> target spells this many bytes on average
    byte_len = np.array([len(tok.vocab[i]) for i in range(len(tok))], dtype=np.float64)
    byte_len[tok.unk_id] = unk_len
    nats = spelled = unk_targets = targets = 0.0
    for v in range(versions):
        batches = data.heldout_batches(tokens, np.cumsum(lengths), tok, seq_len, batch_size=32,
                                       masking=data.Masking(), seed=1234 + v)
        nats += data.evaluate_mlm(model, batches, device)["loss_sum"]
        labels = torch.cat([labels[labels != -100] for _, labels in batches]).numpy()
        spelled += byte_len[labels].sum()
        unk_targets += int((labels == tok.unk_id).sum())
        targets += len(labels)
    unknown_bits = UNKNOWN_BITS_PER_BYTE * unk_len * unk_targets
    bits = nats / math.log(2) + unknown_bits
    ordinary = int(np.isin(tokens, sorted(tok.special_ids - {tok.unk_id}), invert=True).sum())
    text_bytes = sum(len(line.encode("utf-8", "surrogatepass")) for line in lines)
    return {"bits_per_byte": bits / max(spelled, 1.0), "targets": int(targets),
            # a uniform guess over the vocabulary on the same targets, <unk> costed alike: the learning gate's
            "uniform_bits_per_byte": (targets * math.log2(len(tok)) + unknown_bits) / max(spelled, 1.0),
            "unk_share_of_tokens": 100 * int((tokens == tok.unk_id).sum()) / max(ordinary, 1),
            "unk_share_of_bytes": 100 * sum(unknown) / max(text_bytes, 1),
            "coverage": 100 * (1 - len(unknown) / max(sum(len(line) for line in lines), 1)),  # characters spelled
            "unk_cost_share": 100 * UNKNOWN_BITS_PER_BYTE * unk_len * unk_targets / max(bits, 1e-9),
            "bytes_per_token": text_bytes / max(ordinary, 1)}


def all_figures(model, tok, corpus, valid_fraction, seq_len, device):
    """{"english": the documents data.py holds out of the corpus, masked once; "non_english", "code": TEXTS}."""
    english = [line for split, lines in data.split_documents(data.read_documents([corpus]), valid_fraction)
               if split == "valid" for line in lines]
    out = {"english": text_figures(model, tok, english, seq_len, device, versions=1)}
    for name in TEXTS:
        out[name] = text_figures(model, tok, text_lines(name), seq_len, device)
    return out
