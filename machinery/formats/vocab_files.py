"""bpe.py's files: vocab.json + merges.txt (RoBERTa's and Hugging Face's names) or encoder.json + vocab.bpe (GPT-2's),
found, read and checked entry by entry, and written atomically; a character-level BPE's char_bpe.json."""
import json
import os

from machinery.basics.files import json_text, read_json, read_text, write_atomic

VOCAB_FILES = (("vocab.json", "merges.txt"),   # RoBERTa's and Hugging Face's names
               ("encoder.json", "vocab.bpe"))  # GPT-2's names


def find_vocab_files(directory):
    """(vocab file, merges file) in `directory`, under RoBERTa's names or GPT-2's."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{directory}: " + ("not a folder (a tokenizer is a folder with vocab.json + "
                                                    "merges.txt)" if os.path.exists(directory) else "no such folder"))
    found = {name: os.path.exists(os.path.join(directory, name)) for names in VOCAB_FILES for name in names}
    for names in VOCAB_FILES:
        if all(found[name] for name in names):
            return [os.path.join(directory, name) for name in names]
    for a, b in VOCAB_FILES:
        if found[a] != found[b]:
            raise FileNotFoundError(f"{directory}: has {a if found[a] else b} but no {b if found[a] else a}")
    raise FileNotFoundError(f"{directory}: no tokenizer files (vocab.json + merges.txt, or encoder.json + vocab.bpe)")


def read_vocab_json(path):
    """vocab.json / encoder.json: a JSON object mapping each token's printable spelling to its id,
    the ids 0..N-1 each once. Returns that object."""
    try:
        token_ids = json.loads(read_text(path))
    except (json.JSONDecodeError, RecursionError) as e:  # RecursionError: nested past reason
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(token_ids, dict) or not token_ids:
        raise ValueError(f"{path}: expected a JSON object mapping tokens to ids, got {json.dumps(token_ids)[:40]}")
    bad = next((t for t, i in token_ids.items() if type(i) is not int or i < 0 or not t), None)
    if bad is not None:
        raise ValueError(f"{path}: entry {json.dumps({bad: token_ids[bad]})[1:-1]}: expected a non-empty token "
                         f"and a whole-number id >= 0")
    ids = set(token_ids.values())
    if len(ids) < len(token_ids) or max(ids) != len(ids) - 1:
        reason = "an id is used twice" if len(ids) < len(token_ids) else f"id {min(set(range(len(ids))) - ids)} is missing"
        raise ValueError(f"{path}: the ids must be 0..{len(token_ids) - 1}, each once; {reason}")
    return token_ids


def read_merges(path, token_ids, vocab_name="vocab.json"):
    """merges.txt / vocab.bpe: a '#version' line, then one merge per line in rank order ('Ġt he').
    Returns {(id, id): id}. Errors name the file and line."""
    merges = {}
    for n, line in enumerate(read_text(path).split("\n"), 1):
        if line.startswith("#version") or not line.strip():
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise ValueError(f"{path}:{n}: expected two symbols, got {line.strip()!r}")
        a, b = parts
        for t in (a, b, a + b):
            if t not in token_ids:
                raise ValueError(f"{path}:{n}: merge {a!r} {b!r} names {t!r}, which is not in {vocab_name}")
        if (token_ids[a], token_ids[b]) in merges:  # a second rank for one merge: a damaged or crafted file
            raise ValueError(f"{path}:{n}: merge {a!r} {b!r} a second time")
        merges[token_ids[a], token_ids[b]] = token_ids[a + b]
    return merges


def write(directory, tokens, merges):
    """Write vocab.json + merges.txt (GPT-2/RoBERTa format). tokens: id -> printable spelling."""
    os.makedirs(directory, exist_ok=True)
    vocab = {tokens[i]: i for i in sorted(tokens)}
    lines = ["#version: 0.2"] + [f"{tokens[a]} {tokens[b]}" for a, b in merges]
    write_atomic(os.path.join(directory, "vocab.json"), json_text(vocab, ensure_ascii=False))
    write_atomic(os.path.join(directory, "merges.txt"), "\n".join(lines) + "\n")


CHAR_BPE_FILE = "char_bpe.json"  # Section 4.4's other arm, a character-level BPE: its tokens and merges


def is_char_bpe(directory):
    return os.path.isfile(os.path.join(os.fspath(directory), CHAR_BPE_FILE))


def read_chars(directory):
    """(vocab id -> UTF-8 bytes, merges) of a character-level BPE's char_bpe.json."""
    path = os.path.join(os.fspath(directory), CHAR_BPE_FILE)
    spec = read_json(path)
    try:
        vocab = {i: t.encode("utf-8", "surrogatepass") for i, t in enumerate(spec["tokens"])}
        if spec["tokens"][:4] != ["<s>", "<pad>", "</s>", "<unk>"] or spec["tokens"][-1] != "<mask>":
            raise ValueError("the tokens must begin with <s>, <pad>, </s>, <unk> and end with <mask>")
        return vocab, {(a, b): new for a, b, new in spec["merges"]}
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise ValueError(f"{path}: not a character-level BPE file ({e})") from None


def write_chars(directory, vocab, merges):
    """Write a character-level BPE as char_bpe.json: its tokens in id order, its merges in rank order."""
    spec = {"kind": "character-level BPE (RoBERTa Section 4.4; BERT's units)",
            "tokens": [vocab[i].decode("utf-8", "surrogatepass") for i in range(len(vocab))],
            "merges": [[a, b, new] for (a, b), new in merges.items()]}
    os.makedirs(directory, exist_ok=True)
    write_atomic(os.path.join(directory, CHAR_BPE_FILE), json_text(spec, ensure_ascii=False))


def read(directory):
    """(vocab file path, {printable token: id}, {(id, id): id} in rank order) of a tokenizer folder."""
    vocab_path, merges_path = find_vocab_files(directory)
    token_ids = read_vocab_json(vocab_path)
    return vocab_path, token_ids, read_merges(merges_path, token_ids, os.path.basename(vocab_path))
