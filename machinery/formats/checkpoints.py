"""A run folder: its model and tokenizer, loaded together and checked; atomic saves.

A run folder is what train.py and finetune.py write (checkpoint.pt beside vocab.json + merges.txt), or a Hugging
Face RoBERTa folder (config.json + model.safetensors or pytorch_model.bin, beside the same tokenizer files). A
model is only as good as the tokenizer that feeds it: the two are loaded together, their vocabularies agreeing.

    weights = checkpoints.read_weights("out/demo")   # config, state (our names), the class it holds, ...
    checkpoints.load_state(model, weights, "out/demo")  # into a model: shapes checked, missing heads named
    checkpoints.save("out/demo/checkpoint.pt", {"model": ..., "config": ...})  # atomic, checksummed
    checkpoints.train_settings("out/demo")["seq_len"]                         # 128: what it trained at
    checkpoints.id2label("roberta-large-mnli/")      # ['CONTRADICTION', 'NEUTRAL', 'ENTAILMENT']: output i's label

A leaf: it imports none of the core. roberta.load_pretrained builds the model from what read_weights returns,
and evaluate.load_checkpoint loads the model with its tokenizer.
"""
import hashlib
import os
import re
import sys
import warnings

from typing import NamedTuple

import torch

from machinery.basics import files
from machinery.formats import hf, vocab_files
from machinery.formats import prepared  # the tokenizer's fingerprint (tokenizer_hash), as data.py records it

WEIGHTS = ("checkpoint.pt", "config.json")   # ours (train.py, finetune.py), Hugging Face's


def check_folder(path):
    """Before the weights load (which takes a while): `path` is a folder holding weights and tokenizer files."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: {'a file, not a' if os.path.exists(path) else 'no such'} checkpoint folder")
    has_weights = any(os.path.isfile(os.path.join(path, name)) for name in WEIGHTS)
    has_tokenizer = any(os.path.isfile(os.path.join(path, name)) for names in vocab_files.VOCAB_FILES for name in names)
    if not has_weights and not has_tokenizer:
        raise FileNotFoundError(f"{path}: not a checkpoint folder: no weights (checkpoint.pt, or config.json and "
                                f"model.safetensors) and no tokenizer files (vocab.json + merges.txt)")
    if not vocab_files.is_char_bpe(path):  # a character-level BPE (Section 4.4's other arm) is one file
        vocab_files.find_vocab_files(path)  # which tokenizer file is missing, if one is


def check_pair(path, model, tok):
    """A loaded model and its tokenizer, fit to use together: weights all finite (every score of a NaN, every
    finetuning from it, would be NaN), one vocabulary size, the very tokenizer it trained with (check_tokenizer),
    and RoBERTa's special tokens (every input is framed, padded and masked with them), its <pad> the model's."""
    bad = next((name for name, w in model.named_parameters() if not torch.isfinite(w).all()), None)
    if bad is not None:
        raise ValueError(f"{path}: its weight {bad} holds NaN or infinity (a diverged or damaged model)")
    if model.cfg.vocab_size != len(tok):
        raise ValueError(f"{path}: the tokenizer has {len(tok):,} tokens but the model's vocabulary is "
                         f"{model.cfg.vocab_size:,}")
    check_tokenizer(path, tok)
    ids = {"<s>": tok.bos_id, "<pad>": tok.pad_id, "</s>": tok.eos_id, "<unk>": tok.unk_id, "<mask>": tok.mask_id}
    missing = next((t for t, i in ids.items() if i is None), None)
    if missing:
        raise ValueError(f"{tokenizer_files(path)}: no {missing} token (RoBERTa's tokenizer has {', '.join(ids)})")
    if tok.pad_id != model.cfg.pad_id:
        raise ValueError(f"{tokenizer_files(path)}: <pad> is id {tok.pad_id}, but the model pads with id "
                         f"{model.cfg.pad_id}")


def tokenizer_files(path):
    """The tokenizer files of a run folder, as errors name them: 'run/vocab.json + merges.txt'."""
    names = vocab_files.CHAR_BPE_FILE if vocab_files.is_char_bpe(path) else \
        " + ".join(os.path.basename(p) for p in vocab_files.find_vocab_files(path))
    return os.path.join(os.fspath(path), names)


def check_tokenizer(path, tok):
    """The folder's tokenizer files are the tokenizer its checkpoint.pt was trained with (prepared.tokenizer_hash,
    recorded as tokenizer_sha256): another of the same size, or two merges swapped, would feed the model ids it never
    learned. A Hugging Face folder, and an older checkpoint, record none: only their vocabulary size is checked."""
    then = recorded(path).get("tokenizer_sha256")
    if not isinstance(then, str):
        return
    now = prepared.tokenizer_hash(tok)
    if now != then:
        raise ValueError(f"{tokenizer_files(path)}: tokenizer {now[:12]}, but checkpoint.pt was trained with tokenizer "
                         f"{then[:12]}: these files were changed since (put back the run's own tokenizer files)")


def recorded(path):
    """What a train.py/finetune.py folder's checkpoint.pt records beside the weights ({} without one: a
    Hugging Face folder). Memory-mapped: the weights are not read."""
    ckpt_path = os.path.join(os.fspath(path), "checkpoint.pt")
    if not os.path.isfile(ckpt_path):
        return {}
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # an old-format file cannot be memory-mapped: read it whole
        ckpt = read_checkpoint(ckpt_path)
    return ckpt if isinstance(ckpt, dict) else {}


def train_settings(path):
    """A train.py run's TrainConfig as its checkpoint.pt records it (a dict); {} for a folder without one."""
    settings = recorded(path).get("train")
    return settings if isinstance(settings, dict) else {}


def id2label(path):
    """A classifier's label names by output index: finetune.py's checkpoint.pt records them (id2label), a Hugging
    Face folder in config.json. None where the folder names none, or only transformers' defaults (LABEL_0, ...)."""
    ckpt_path, config = (os.path.join(os.fspath(path), name) for name in ("checkpoint.pt", "config.json"))
    if os.path.isfile(ckpt_path):
        ckpt = recorded(path)
        if ckpt.get("task") and "id2label" not in ckpt:
            raise ValueError(f"{ckpt_path}: saved by an older finetune.py (no id2label: the order of its labels is not "
                             f"recorded); finetune it again")
        names = ckpt.get("id2label")
        if names is not None and (not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names)):
            raise ValueError(f"{ckpt_path}: id2label is not a list of label names")
        return list(names) if names else None
    hf_config = files.read_json(config) if os.path.isfile(config) else {}
    labels = hf_config.get("id2label") if isinstance(hf_config, dict) else None
    if not labels:
        return None
    try:
        names = [labels[str(i)] for i in range(len(labels))]
    except (KeyError, TypeError):
        raise ValueError(f"{config}: id2label is not a map from 0..{len(labels) - 1} to label names") from None
    return None if names == [f"LABEL_{i}" for i in range(len(names))] else [str(n) for n in names]


def save(path, ckpt):
    """torch.save `ckpt` to `path` atomically (files.write_atomic: a reader finds the previous file or the new
    one), with a checksum of its contents that read_checkpoint verifies. A failed write: one line naming the folder."""
    ckpt = {**ckpt, "checksum": checksum(ckpt)}
    before = os.path.isfile(path)
    try:
        files.write_atomic(path, lambda f: torch.save(ckpt, f))
    except (OSError, RuntimeError) as e:  # torch's zip writer reports a full disk as a RuntimeError
        if isinstance(e, files.WriteFailed) or isinstance(e, RuntimeError) and "writ" not in str(e).lower():
            raise  # a full disk said in one line already, or not a write that failed
        why = e.strerror if isinstance(e, OSError) and e.strerror else (str(e).splitlines() or [""])[-1].strip()[:200]
        folder, name = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
        raise OSError(f"{folder}: could not write {name} ({why}); "
                      + (f"the previous {name} is intact" if before else "nothing was written")) from None


def checksum(ckpt):
    """A sha256 over a checkpoint's contents: every tensor's bytes (with its name, dtype and shape) and every
    plain value, in a fixed order. Computed at save, stored in the file, recomputed on every load: a
    flipped byte inside a weight tensor (which torch.load would read without complaint) is caught."""
    h = hashlib.sha256()

    def add(name, value):
        if torch.is_tensor(value):
            h.update(f"{name}:{value.dtype}:{tuple(value.shape)};".encode())
            h.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data)
        elif isinstance(value, dict):
            for key in sorted(value, key=repr):
                add(f"{name}/{key!r}", value[key])
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                add(f"{name}/{i}", item)
        else:
            h.update(f"{name}={value!r};".encode())
    add("", {k: v for k, v in ckpt.items() if k != "checksum"})
    return h.hexdigest()


def read_checkpoint(path, ours=True):
    """Load this project's checkpoint file (weights only: no code runs from the file); ours=False: any
    torch.save'd dict of tensors (Hugging Face's pytorch_model.bin)."""
    try:
        with warnings.catch_warnings():  # torch's note on a plain pickle's protocol: the refusal below says it
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a torn or foreign file, or one that holds more than weights
        raise ValueError(unreadable(path, e)) from None
    if not ours:
        if not isinstance(ckpt, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in ckpt.items()):
            raise ValueError(f"{path}: not a state dict (names to tensors)")
        return ckpt
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ValueError(f"{path}: not a checkpoint of this project (no 'model' and 'config' entries)")
    if "checksum" in ckpt and ckpt["checksum"] != checksum(ckpt):  # older checkpoints have none
        raise ValueError(f"{path}: damaged: its contents do not match the checksum saved with them (use another "
                         f"copy, or an earlier checkpoint)")
    return ckpt


def unreadable(path, err):
    """One line for a file torch.load (weights only) refused: a file holding Python objects besides tensors and
    plain values is refused for safety (torch's own message goes on to advise turning that check off: not here)."""
    text = str(err)
    found = re.search(r"GLOBAL ([\w.]+)", text) if text.startswith("Weights only load failed") else None
    if found:
        return (f"{path}: refused for safety: it holds a Python object ({found.group(1)}) besides tensors and plain "
                f"values, and reading it could run code from the file; only weights are read")
    lines = [line.strip() for line in text.splitlines()[1:] if line.strip() and
             not line.startswith(("Check the documentation", "Please file an issue"))]
    first = lines[-1] if text.startswith("Weights only load failed") and lines else \
        (text.splitlines() or [""])[0].split(". ")[0]  # not torch's advice, nor its notes after the first sentence
    first = first or ("the file ends early" if isinstance(err, EOFError) else "")
    return f"{path}: not a readable checkpoint ({type(err).__name__}: {first[:200]})"


class Weights(NamedTuple):
    config: dict        # RobertaConfig's fields
    state: dict         # name -> tensor, in our names (layout "ours") or Hugging Face's (layout "hf")
    holder: str         # the class that saved it: RobertaForMaskedLM, RobertaForSequenceClassification, ...
    num_labels: object  # a classifier's outputs, or None
    layout: str         # "ours" (checkpoint.pt) or "hf" (config.json + model.safetensors / pytorch_model.bin)
    source: str         # the file the weights and config come from, as errors name it


def read_weights(path):
    """roberta.load_pretrained's reading: the Weights of a train.py/finetune.py folder (checkpoint.pt) or a
    Hugging Face RoBERTa folder (config.json + model.safetensors or pytorch_model.bin)."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: no such checkpoint folder")
    source = os.path.join(path, "checkpoint.pt")
    if not os.path.isfile(source):
        return read_hf(path)
    ckpt = read_checkpoint(source)  # each part checked to be of its kind (a crafted file whose checksum fits)
    state, config, holder, labels = ckpt["model"], ckpt["config"], ckpt.get("class", "RobertaForMaskedLM"), \
        ckpt.get("num_labels")
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise ValueError(f"{source}: its model is not a state dict (names to tensors)")
    if not isinstance(config, dict) or not isinstance(holder, str) or \
            not (labels is None or (type(labels) is int and labels >= 1)):
        raise ValueError(f"{source}: its config, class or num_labels is not of its kind (a dict, a class name, a "
                         f"whole number)")
    return Weights(config, state, holder, labels, "ours", source)


def read_hf(path):
    """The Weights of a Hugging Face RoBERTa folder (config.json + model.safetensors or pytorch_model.bin), the
    state still in Hugging Face's names."""
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"{path}: neither checkpoint.pt nor config.json found")
    config = files.read_json(config_path)
    cfg = hf.config_from_hf(config, config_path)  # checked: an object, the sizes whole numbers, ...
    if os.path.isfile(os.path.join(path, "model.safetensors")):
        state = hf.load_safetensors(os.path.join(path, "model.safetensors"))
    elif os.path.isfile(os.path.join(path, "pytorch_model.bin")):
        state = read_checkpoint(os.path.join(path, "pytorch_model.bin"), ours=False)
    else:
        raise FileNotFoundError(f"{path}: config.json but no model.safetensors or pytorch_model.bin")
    labels, holder = config.get("id2label"), (config.get("architectures") or ["RobertaModel"])[0]
    return Weights(cfg, state, holder, len(labels) if labels else None, "hf", config_path)


SIZES = {"vocab_size": 1, "hidden_size": 1, "num_layers": 1, "num_heads": 1, "ffn_size": 1, "max_positions": 1,
         "pad_id": 0}  # RobertaConfig's whole numbers, and the least each can be
RATES = {"dropout": (0, 1), "attention_dropout": (0, 1), "layer_norm_eps": (0, 1), "init_std": (0, 10)}


def check_config(cfg, state, source):
    """A RobertaConfig as a file gives it, checked before a model is built from it: whole numbers of at least
    SIZES, rates in [low, high), the hidden size a multiple of the heads, the padding id a token, and no larger a
    model than the weights beside it hold (a crafted size would otherwise allocate without end)."""
    bad = next((k for k, low in SIZES.items() if type(getattr(cfg, k)) is not int or getattr(cfg, k) < low), None) \
        or next((k for k, (low, high) in RATES.items() if isinstance(getattr(cfg, k), bool) or
                 not isinstance(getattr(cfg, k), (int, float)) or not low <= getattr(cfg, k) < high), None)
    if bad:
        raise ValueError(f"{source}: {bad} is {getattr(cfg, bad)!r}: not a value a RoBERTa config can have")
    if cfg.hidden_size % cfg.num_heads or cfg.pad_id >= cfg.vocab_size:
        raise ValueError(f"{source}: " + (f"hidden size {cfg.hidden_size} is not a multiple of {cfg.num_heads} heads"
                                          if cfg.hidden_size % cfg.num_heads else
                                          f"pad id {cfg.pad_id} is outside the vocabulary of {cfg.vocab_size}"))
    h = cfg.hidden_size
    needs = (cfg.vocab_size + cfg.max_positions) * h + cfg.num_layers * (4 * h * h + 2 * h * cfg.ffn_size)
    holds = sum(t.numel() for t in state.values())
    if needs > holds:
        raise ValueError(f"{source}: its configuration describes a model of at least {needs:,} weights, but the "
                         f"checkpoint holds {holds:,}")


HEAD_NAMES = {"lm_head": "LM head", "classifier": "classification head", "qa": "span head",
              "answerable": "answerability head", "nsp": "next-sentence head"}


def load_state(model, weights, source="checkpoint", verbose=True, new_head_ok=True):
    """Copy `weights` (read_weights) into `model`: Hugging Face's names mapped to ours, shapes must match; a
    missing head is left at its initialisation (new_head_ok=False: refused, as it would be random)."""
    state = weights.state if weights.layout == "ours" else hf.from_hf_state(weights.state, type(model).__name__, source)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    heads = sorted({k.split(".")[0] for k in missing if not k.startswith("roberta.")})  # the task heads it lacks
    if heads and not new_head_ok:
        names = " and ".join(HEAD_NAMES.get(h, h) for h in heads)
        raise ValueError(f"{source}: the checkpoint holds a {weights.holder}; its {names} "
                         f"{'is' if len(heads) == 1 else 'are'} untrained (not in the checkpoint), so it cannot serve "
                         f"as a {type(model).__name__}")
    for key, t in state.items():
        if key in own and own[key].shape != t.shape:
            raise ValueError(f"{source}: {key} has shape {list(t.shape)} in the checkpoint but "
                             f"{list(own[key].shape)} in the model")
    if any(k.startswith("roberta.") for k in missing):
        raise ValueError(f"{source}: encoder weights missing from the checkpoint, e.g. "
                         f"{next(k for k in missing if k.startswith('roberta.'))}")
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    unused = sorted({k.split(".")[0] for k in state if k not in own})
    if verbose and missing:
        print(f"{source}: newly initialised {', '.join(heads)} ({len(missing)} tensors not in the checkpoint)"
              + (f"; unused from the checkpoint: {', '.join(unused)}" if unused else ""), file=sys.stderr)
