"""A run folder: its model and tokenizer, loaded together and checked; atomic saves.

A run folder is what train.py and finetune.py write (checkpoint.pt beside vocab.json + merges.txt), or
a Hugging Face RoBERTa folder (config.json + model.safetensors or pytorch_model.bin, beside the same
tokenizer files). A model is only as good as the tokenizer that feeds it, so the two are loaded
together and their vocabularies must agree.

    model, tok = checkpoints.load("out/demo")                                # the masked LM
    model, tok = checkpoints.load("runs/rte", roberta.RobertaForSequenceClassification)
    checkpoints.save("out/demo/checkpoint.pt", {"model": ..., "config": ...})  # atomic
    checkpoints.train_settings("out/demo")["seq_len"]                         # 128: what it trained at
"""
import os

import torch

import bpe
import roberta
from machinery import files

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
    has_tokenizer = any(os.path.isfile(os.path.join(path, name)) for names in bpe.VOCAB_FILES for name in names)
    if not has_weights and not has_tokenizer:
        raise FileNotFoundError(f"{path}: not a checkpoint folder: no weights (checkpoint.pt, or config.json and "
                                f"model.safetensors) and no tokenizer files (vocab.json + merges.txt)")
    bpe.find_vocab_files(path)  # which tokenizer file is missing, if one is
    model = roberta.load_pretrained(path, cls=cls, num_labels=num_labels, verbose=verbose,
                                    new_head_ok=not need_trained_head)
    tok = bpe.Tokenizer.load(path)
    if model.cfg.vocab_size != len(tok):
        raise ValueError(f"{path}: the tokenizer has {len(tok):,} tokens but the model's vocabulary is "
                         f"{model.cfg.vocab_size:,}")
    return model, tok


def train_settings(path):
    """The settings a train.py run recorded in its checkpoint.pt (TrainConfig as a dict: seq_len, masking,
    ...); {} for a folder without them (a Hugging Face folder, a finetuned model). Memory-mapped: the
    weights are not read."""
    ckpt_path = os.path.join(os.fspath(path), "checkpoint.pt")
    if not os.path.isfile(ckpt_path):
        return {}
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # an old-format file cannot be memory-mapped: read it whole
        ckpt = roberta.read_checkpoint(ckpt_path)
    settings = ckpt.get("train") if isinstance(ckpt, dict) else None
    return settings if isinstance(settings, dict) else {}


def save(path, ckpt):
    """torch.save `ckpt` to `path` atomically: into a temporary file in the same folder (one filesystem),
    flushed to the disk, then renamed over `path`. A reader, or a run killed midway, finds the previous
    file or the new one, never half of one."""
    files.write_atomic(path, lambda f: torch.save(ckpt, f))
