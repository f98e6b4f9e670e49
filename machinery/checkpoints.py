"""A run folder: its model and tokenizer, loaded together and checked; atomic saves.

A run folder is what train.py and finetune.py write (checkpoint.pt beside vocab.json + merges.txt), or
a Hugging Face RoBERTa folder (config.json + model.safetensors or pytorch_model.bin, beside the same
tokenizer files). A model is only as good as the tokenizer that feeds it, so the two are loaded
together and their vocabularies must agree.

    model, tok = checkpoints.load("out/demo")                                # the masked LM
    model, tok = checkpoints.load("runs/rte", roberta.RobertaForSequenceClassification)
    checkpoints.save("out/demo/checkpoint.pt", {"model": ..., "config": ...})  # atomic
    checkpoints.train_settings("out/demo")["seq_len"]                         # 128: what it trained at
    checkpoints.id2label("roberta-large-mnli/")      # ['CONTRADICTION', 'NEUTRAL', 'ENTAILMENT']: output i's label
    model = checkpoints.load_weights("out/demo")     # the model alone: what roberta.load_pretrained does
"""
import hashlib
import os
import sys

import torch

import bpe
import evaluate
import roberta
from machinery import char_bpe, files, hf, vocab_files

# the task models of roberta.py by the class name a checkpoint records (ours: "class"; HF: "architectures")
MODEL_CLASSES = {c.__name__: c for c in (roberta.RobertaForMaskedLM, roberta.RobertaForSequenceClassification,
                                         roberta.RobertaForQuestionAnswering, roberta.RobertaForMultipleChoice)}

WEIGHTS = ("checkpoint.pt", "config.json")   # ours (train.py, finetune.py), Hugging Face's


def load(path, cls=roberta.RobertaForMaskedLM, num_labels=None, need_trained_head=False, verbose=True):
    """(model, tokenizer) of a run folder, checked in this order: the folder; that it holds weights and
    tokenizer files (before the weights load, which takes a while); the weights; the tokenizer; and
    that the tokenizer's vocabulary is the model's.

    cls: the model class (None: the class the checkpoint holds). num_labels: a classifier's outputs.
    need_trained_head: refuse a checkpoint without a trained head of `cls` (a finetuned classifier's
    folder has no LM head to fill masks with); otherwise such a head is freshly initialised (the start
    of finetuning), and verbose says so."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: {'a file, not a' if os.path.exists(path) else 'no such'} checkpoint folder")
    has_weights = any(os.path.isfile(os.path.join(path, name)) for name in WEIGHTS)
    has_tokenizer = any(os.path.isfile(os.path.join(path, name)) for names in vocab_files.VOCAB_FILES for name in names)
    if not has_weights and not has_tokenizer:
        raise FileNotFoundError(f"{path}: not a checkpoint folder: no weights (checkpoint.pt, or config.json and "
                                f"model.safetensors) and no tokenizer files (vocab.json + merges.txt)")
    if not char_bpe.is_char_bpe(path):  # a character-level BPE (Section 4.4's other arm) is one file
        vocab_files.find_vocab_files(path)  # which tokenizer file is missing, if one is
    model = load_weights(path, cls=cls, num_labels=num_labels, verbose=verbose, new_head_ok=not need_trained_head)
    tok = bpe.Tokenizer.load(path)
    if model.cfg.vocab_size != len(tok):
        raise ValueError(f"{path}: the tokenizer has {len(tok):,} tokens but the model's vocabulary is "
                         f"{model.cfg.vocab_size:,}")
    return model, tok


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
    """The settings a train.py run recorded in its checkpoint.pt (TrainConfig as a dict: seq_len, masking,
    ...); {} for a folder without them (a Hugging Face folder, a finetuned model)."""
    settings = recorded(path).get("train")
    return settings if isinstance(settings, dict) else {}


# finetune.py's MNLI order until its checkpoints recorded id2label (the released heads' order since)
OLD_ORDER = {"mnli": ("contradiction", "entailment", "neutral")}


def id2label(path):
    """A classifier's label names by output index: finetune.py's checkpoint.pt records them (id2label; an older
    one only its task, whose order it trained in), a Hugging Face folder in config.json. None where the
    folder names none, or only transformers' defaults (LABEL_0, LABEL_1, ...)."""
    if os.path.isfile(os.path.join(os.fspath(path), "checkpoint.pt")):
        ckpt = recorded(path)
        task = ckpt.get("task")
        trained = OLD_ORDER.get(task) or (evaluate.GLUE[task].labels if task in evaluate.GLUE else None)
        names = ckpt.get("id2label", trained)
        return list(names) if names else None
    config = os.path.join(os.fspath(path), "config.json")
    labels = files.read_json(config).get("id2label") if os.path.isfile(config) else None
    if not labels:
        return None
    try:
        names = [labels[str(i)] for i in range(len(labels))]
    except (KeyError, TypeError):
        raise ValueError(f"{config}: id2label is not a map from 0..{len(labels) - 1} to label names") from None
    return None if names == [f"LABEL_{i}" for i in range(len(names))] else [str(n) for n in names]


def save(path, ckpt):
    """torch.save `ckpt` to `path` atomically: into a temporary file in the same folder (one filesystem),
    flushed to the disk, then renamed over `path`. A reader, or a run killed midway, finds the previous
    file or the new one, never half of one. The file carries a checksum of its contents (`checksum`),
    verified by read_checkpoint. A failed write (a full disk) is one line naming the folder."""
    ckpt = {**ckpt, "checksum": checksum(ckpt)}
    before = os.path.isfile(path)
    try:
        files.write_atomic(path, lambda f: torch.save(ckpt, f))
    except files.WriteFailed:  # a full disk, said in one line already
        raise
    except (OSError, RuntimeError) as e:  # torch's zip writer reports a full disk as a RuntimeError
        if isinstance(e, RuntimeError) and "writ" not in str(e).lower():
            raise
        why = e.strerror if isinstance(e, OSError) and e.strerror else (str(e).splitlines() or [""])[-1].strip()[:200]
        folder = os.path.dirname(os.path.abspath(path))
        name = os.path.basename(path)
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
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a torn or foreign file
        first = (str(e).splitlines() or [""])[0][:200]
        raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__}: {first})") from None
    if not ours:
        if not isinstance(ckpt, dict):
            raise ValueError(f"{path}: not a state dict")
        return ckpt
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ValueError(f"{path}: not a checkpoint of this project (no 'model' and 'config' entries)")
    if "checksum" in ckpt and ckpt["checksum"] != checksum(ckpt):  # older checkpoints have none
        raise ValueError(f"{path}: damaged: its contents do not match the checksum saved with them (use another "
                         f"copy, or an earlier checkpoint)")
    return ckpt


def load_weights(path, cls=roberta.RobertaForMaskedLM, num_labels=None, verbose=True, new_head_ok=True):
    """roberta.load_pretrained's work: weights into `cls` from a train.py/finetune.py folder (checkpoint.pt)
    or a Hugging Face RoBERTa folder (config.json + model.safetensors or pytorch_model.bin).

    cls=None: the class the checkpoint holds (RobertaForMaskedLM for a bare encoder). Encoder weights
    must all be present and of the right shapes. A head the checkpoint lacks (a classifier on top of a
    pretrained MLM) is freshly initialised, and this says so; with
    new_head_ok=False it is refused instead: a finetuned classifier's folder has no trained LM head to
    fill masks or measure perplexity with.
    """
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: no such checkpoint folder")
    ours = os.path.isfile(os.path.join(path, "checkpoint.pt"))
    cfg, state, holder, found_labels = read_ours(path) if ours else hf.read_hf(path)
    cls = cls or MODEL_CLASSES.get(holder, roberta.RobertaForMaskedLM)
    classifier = cls is roberta.RobertaForSequenceClassification
    model = cls(cfg, num_labels or found_labels or 2) if classifier else cls(cfg)
    if not ours:
        state = hf.from_hf_state(state, model)
    if not new_head_ok:
        check_heads(model, state, path, holder)
    load_state(model, state, path, verbose)
    return model


def read_ours(path):
    """(config, state, the class it holds, num_labels) of a train.py/finetune.py folder."""
    ckpt = read_checkpoint(os.path.join(path, "checkpoint.pt"))
    return (roberta.RobertaConfig.from_dict(ckpt["config"]), ckpt["model"], ckpt.get("class", "RobertaForMaskedLM"),
            ckpt.get("num_labels"))


HEAD_NAMES = {"lm_head": "LM head", "classifier": "classification head", "qa": "span head",
              "answerable": "answerability head", "nsp": "next-sentence head"}


def check_heads(model, state, path, holder):
    """Refuse to load a model whose task head the checkpoint does not hold (it would be random)."""
    missing = sorted({k.split(".")[0] for k in model.state_dict() if k not in state and not k.startswith("roberta.")})
    if missing:
        heads = " and ".join(HEAD_NAMES.get(h, h) for h in missing)
        raise ValueError(f"{path}: the checkpoint holds a {holder}; its {heads} {'is' if len(missing) == 1 else 'are'}"
                         f" untrained (not in the checkpoint), so it cannot serve as a {type(model).__name__}")


def load_state(model, state, source="checkpoint", verbose=True):
    """Copy `state` into `model`: shapes must match; a missing head is left at its initialisation."""
    own = model.state_dict()
    for key, t in state.items():
        if key in own and own[key].shape != t.shape:
            raise ValueError(f"{source}: {key} has shape {list(t.shape)} in the checkpoint but "
                             f"{list(own[key].shape)} in the model")
    missing = [k for k in own if k not in state]
    if any(k.startswith("roberta.") for k in missing):
        raise ValueError(f"{source}: encoder weights missing from the checkpoint, e.g. "
                         f"{next(k for k in missing if k.startswith('roberta.'))}")
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    unused = sorted({k.split(".")[0] for k in state if k not in own})
    if verbose and missing:
        heads = sorted({k.split(".")[0] for k in missing})
        print(f"{source}: newly initialised {', '.join(heads)} ({len(missing)} tensors not in the checkpoint)"
              + (f"; unused from the checkpoint: {', '.join(unused)}" if unused else ""), file=sys.stderr)
