"""Hugging Face interop: RoBERTa's parameter names and config.json as transformers spells them, the
safetensors format read and written without the library, and the export of a run folder that
transformers' Auto* classes and pipeline("fill-mask") load as they load roberta-base.

    state = to_hf_state(model)                 # our names -> transformers' (q/k/v split)
    save_pretrained(model, "out/")             # config.json + model.safetensors
    cfg, state, holder, num_labels = read_hf("roberta-base/")
    export("runs/demo", "hf/")                 # + vocab.json, merges.txt and the tokenizer configuration
"""
import json
import os
import struct
import sys

import torch

import roberta
from machinery import cli, files

# Parameter names: ours <-> Hugging Face's. A key takes the first prefix rename that fits, then every
# infix rename in order (attention before FFN, so 'attention.output.dense' is not read as the FFN's).
PREFIX_RENAMES = [
    ("roberta.layers.", "roberta.encoder.layer."),
    ("roberta.embeddings.tokens.", "roberta.embeddings.word_embeddings."),
    ("roberta.embeddings.positions.", "roberta.embeddings.position_embeddings."),
    ("roberta.embeddings.norm.", "roberta.embeddings.LayerNorm."),
    ("lm_head.norm.", "lm_head.layer_norm."),
    ("qa.", "qa_outputs."),
]
INFIX_RENAMES = [
    (".attn.qkv.", ".attention.self.qkv."),  # split into query/key/value by to_hf_state
    (".attn.proj.", ".attention.output.dense."),
    (".attn_norm.", ".attention.output.LayerNorm."),
    (".ffn_in.", ".intermediate.dense."),
    (".ffn_out.", ".output.dense."),
    (".ffn_norm.", ".output.LayerNorm."),
]
# HF's RobertaForMultipleChoice puts the dense+tanh in the pooler and the output layer in `classifier`
MULTIPLE_CHOICE_RENAMES = [("classifier.dense.", "roberta.pooler.dense."), ("classifier.out_proj.", "classifier.")]
TOKEN_TYPES = "roberta.embeddings.token_type_embeddings.weight"


def rename(key, model, to_hf=True):
    """One parameter name, ours -> Hugging Face's (to_hf=False: back)."""
    multiple_choice = isinstance(model, roberta.RobertaForMultipleChoice)
    prefixes = (MULTIPLE_CHOICE_RENAMES if multiple_choice else []) + PREFIX_RENAMES
    for ours, theirs in prefixes:
        a, b = (ours, theirs) if to_hf else (theirs, ours)
        if key.startswith(a):
            key = b + key[len(a):]
            break
    for ours, theirs in INFIX_RENAMES:
        a, b = (ours, theirs) if to_hf else (theirs, ours)
        key = key.replace(a, b)
    return key


def to_hf_state(model):
    """Our state dict in Hugging Face's names: q/k/v split, a zero token-type row (RoBERTa has none)."""
    out = {}
    for key, t in model.state_dict().items():
        key = rename(key, model)
        if ".attention.self.qkv." in key:
            for part, chunk in zip(("query", "key", "value"), t.chunk(3)):
                out[key.replace(".qkv.", f".{part}.")] = chunk
        else:
            out[key] = t
    dtype = out["roberta.embeddings.word_embeddings.weight"].dtype
    out[TOKEN_TYPES] = torch.zeros(1, model.cfg.hidden_size, dtype=dtype)
    return out


def from_hf_state(state, model):
    """A Hugging Face RoBERTa state dict in our names (the inverse of `to_hf_state`)."""
    state = {k.replace(".gamma", ".weight").replace(".beta", ".bias"): v for k, v in state.items()}
    if not any(k.startswith("roberta.") for k in state):  # saved from a bare RobertaModel
        state = {("roberta." + k if k.startswith(("embeddings.", "encoder.", "pooler.")) else k): v
                 for k, v in state.items()}
    if "lm_head.bias" not in state and "lm_head.decoder.bias" in state:
        state["lm_head.bias"] = state["lm_head.decoder.bias"]
    state.pop("lm_head.decoder.bias", None)
    state.pop("lm_head.decoder.weight", None)  # tied to the token embeddings
    state.pop("roberta.embeddings.position_ids", None)
    token_types = state.pop(TOKEN_TYPES, None)
    out = {}
    for key, t in state.items():
        if ".attention.self.query." in key:
            t = torch.cat([state[key.replace(".query.", f".{p}.")] for p in ("query", "key", "value")])
            key = key.replace(".query.", ".qkv.")
        elif ".attention.self." in key:
            continue  # key and value went in with the query
        out[rename(key, model, to_hf=False)] = t
    if token_types is not None:  # HF adds token-type row 0 to every position: fold it in, exactly
        out["roberta.embeddings.positions.weight"] = out["roberta.embeddings.positions.weight"] + token_types[0]
    return out


def hf_config(model, id2label=None):
    """config.json for `model`, as transformers' RobertaConfig spells it; a classifier's id2label names its
    outputs' labels (transformers' LABEL_0, LABEL_1, ... where none are given)."""
    cfg = model.cfg
    d = {"architectures": [type(model).__name__], "model_type": "roberta", "vocab_size": cfg.vocab_size,
         "hidden_size": cfg.hidden_size, "num_hidden_layers": cfg.num_layers,
         "num_attention_heads": cfg.num_heads, "intermediate_size": cfg.ffn_size, "hidden_act": "gelu",
         "hidden_dropout_prob": cfg.dropout, "attention_probs_dropout_prob": cfg.attention_dropout,
         "max_position_embeddings": cfg.max_positions + cfg.pad_id + 1, "type_vocab_size": 1,
         "initializer_range": cfg.init_std, "layer_norm_eps": cfg.layer_norm_eps, "pad_token_id": cfg.pad_id,
         "bos_token_id": 0, "eos_token_id": 2, "position_embedding_type": "absolute"}
    if isinstance(model, roberta.RobertaForSequenceClassification):
        names = list(id2label or [f"LABEL_{i}" for i in range(model.num_labels)])
        if len(names) != model.num_labels:
            raise ValueError(f"{len(names)} label names for a classifier with {model.num_labels} outputs")
        d["id2label"] = {str(i): name for i, name in enumerate(names)}
        d["label2id"] = {name: i for i, name in enumerate(names)}
        if model.num_labels == 1:
            d["problem_type"] = "regression"
    return d


def config_from_hf(d, source):
    """Our RobertaConfig from a Hugging Face config.json's dict `d` (read from `source`)."""
    if d.get("model_type") != "roberta":
        raise ValueError(f"{source}: not a RoBERTa config (model_type={d.get('model_type')!r})")
    if d.get("hidden_act", "gelu") != "gelu" or d.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{source}: only exact GELU and absolute positions are RoBERTa "
                         f"(hidden_act={d.get('hidden_act')!r})")
    pad = d.get("pad_token_id", 1)
    return roberta.RobertaConfig(
        vocab_size=d["vocab_size"], hidden_size=d["hidden_size"], num_layers=d["num_hidden_layers"],
        num_heads=d["num_attention_heads"], ffn_size=d["intermediate_size"],
        max_positions=d["max_position_embeddings"] - pad - 1, pad_id=pad, dropout=d.get("hidden_dropout_prob", 0.1),
        attention_dropout=d.get("attention_probs_dropout_prob", 0.1), layer_norm_eps=d.get("layer_norm_eps", 1e-5),
        init_std=d.get("initializer_range", 0.02))


SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                      "I64": torch.int64, "I32": torch.int32, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}


def load_safetensors(path):
    """Read a .safetensors file: 8 bytes of header length, a JSON header, then the raw tensors."""
    with open(path, "rb") as f:
        data = bytearray(f.read())
    try:
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + n])
    except (struct.error, ValueError, UnicodeDecodeError):
        raise ValueError(f"{path}: not a safetensors file") from None
    out, base = {}, 8 + n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = SAFETENSORS_DTYPES[info["dtype"]]
        start, end = info["data_offsets"]
        count = (end - start) // dtype.itemsize
        t = torch.frombuffer(data, dtype=dtype, count=count, offset=base + start) if count else \
            torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info["shape"])
    return out


def save_safetensors(tensors, path):
    """Write {name: tensor} as a .safetensors file (the header padded to 8 bytes), atomically."""
    names = {v: k for k, v in SAFETENSORS_DTYPES.items()}
    header, offset, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name, t in tensors.items():
        blob = t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    files.write_atomic(path, lambda f: [f.write(b) for b in [struct.pack("<Q", len(head)), head, *blobs]])


def save_pretrained(model, directory, id2label=None):
    """Write config.json + model.safetensors in the Hugging Face layout (transformers' Roberta* load it);
    id2label: a classifier's label names by output."""
    os.makedirs(directory, exist_ok=True)
    files.write_atomic(os.path.join(directory, "config.json"), json.dumps(hf_config(model, id2label), indent=2))
    save_safetensors(to_hf_state(model), os.path.join(directory, "model.safetensors"))


def read_hf(path):
    """(config, state, the class it holds, num_labels) of a Hugging Face RoBERTa folder (config.json +
    model.safetensors or pytorch_model.bin), the state still in Hugging Face's names."""
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"{path}: neither checkpoint.pt nor config.json found")
    hf = files.read_json(config_path)
    cfg = config_from_hf(hf, config_path)
    if os.path.isfile(os.path.join(path, "model.safetensors")):
        state = load_safetensors(os.path.join(path, "model.safetensors"))
    elif os.path.isfile(os.path.join(path, "pytorch_model.bin")):
        from machinery import checkpoints  # checkpoints imports this module: import it at call time
        state = checkpoints.read_checkpoint(os.path.join(path, "pytorch_model.bin"), ours=False)
    else:
        raise FileNotFoundError(f"{path}: config.json but no model.safetensors or pytorch_model.bin")
    labels = hf.get("id2label")
    return cfg, state, (hf.get("architectures") or ["RobertaModel"])[0], len(labels) if labels else None


# What transformers needs beside vocab.json and merges.txt to tokenize as roberta-base does: <mask> takes
# the space on its left (lstrip), so "is <mask>." reads " is" <mask> "." as fill_mask feeds it (without
# this, transformers keeps that space as a token of its own), and inputs are truncated at the model's
# positions. tokenizer_config.json spells <mask> as transformers' own save of roberta-base does;
# special_tokens_map.json as roberta-base's and distilroberta-base's files do.
SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
                  "pad_token": "<pad>", "cls_token": "<s>"}
MASK_TOKEN = {"content": "<mask>", "single_word": False, "lstrip": True, "rstrip": False, "normalized": False}
TOKENIZER_FILES = ("vocab.json", "merges.txt")


def tokenizer_configs(max_positions):
    """{file name: content} of the tokenizer configuration written beside vocab.json and merges.txt."""
    config = {"tokenizer_class": "RobertaTokenizer", "model_max_length": max_positions, "add_prefix_space": False,
              "errors": "replace", **SPECIAL_TOKENS, "mask_token": {"__type": "AddedToken", **MASK_TOKEN}}
    return {"tokenizer_config.json": config, "special_tokens_map.json": {**SPECIAL_TOKENS, "mask_token": MASK_TOKEN}}


def check_export(checkpoint, out, overwrite):
    """Before any work: the checkpoint folder exists; --out is another folder, or can become one, and
    holds no exported model unless --overwrite."""
    if not os.path.isdir(checkpoint):
        raise FileNotFoundError(f"{checkpoint}: no such checkpoint folder")
    if os.path.isdir(out) and os.path.samefile(out, checkpoint):
        raise ValueError(f"--out {out} is the checkpoint folder itself: export to another folder")
    cli.check_out(out, overwrite, finished=("config.json", "model.safetensors", *TOKENIZER_FILES,
                                            *tokenizer_configs(512)), what="an exported model")


def read_vocab(checkpoint, vocab_size):
    """The checkpoint's tokenizer files as bytes, checked against the model; None when it has none."""
    paths = [os.path.join(checkpoint, f) for f in TOKENIZER_FILES]
    if not all(os.path.isfile(p) for p in paths):
        return None
    blobs = []
    for p in paths:
        with open(p, "rb") as f:
            blobs.append(f.read())
    try:
        vocab = json.loads(blobs[0])
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{paths[0]}: not valid JSON ({e})") from None
    missing = [t for t in ("<s>", "<pad>", "</s>", "<unk>", "<mask>") if t not in vocab]
    if len(vocab) != vocab_size or missing:
        raise ValueError(f"{paths[0]}: " + (f"no {missing[0]} token" if missing else
                                            f"{len(vocab)} tokens, but the model's vocabulary is {vocab_size}"))
    return blobs


def export(checkpoint, out, overwrite=False):
    """Write a train.py/finetune.py folder (or a Hugging Face one) as a Hugging Face RoBERTa folder:
    config.json (a classifier's id2label: the labels it was finetuned on) + model.safetensors, and the
    tokenizer with the configuration transformers needs."""
    check_export(checkpoint, out, overwrite)
    from machinery import checkpoints  # checkpoints imports this module: import it at call time
    model = roberta.load_pretrained(checkpoint, cls=None)  # the class it holds; says so if a head is new
    blobs = read_vocab(checkpoint, model.cfg.vocab_size)
    classifier = isinstance(model, roberta.RobertaForSequenceClassification)
    save_pretrained(model, out, checkpoints.id2label(checkpoint) if classifier else None)  # not LABEL_i
    if blobs is None:
        print(f"warning: {checkpoint} has no {' and '.join(TOKENIZER_FILES)}: {out} has no tokenizer", file=sys.stderr)
        return model
    for name, blob in zip(TOKENIZER_FILES, blobs):
        files.write_atomic(os.path.join(out, name), blob)
    for name, content in tokenizer_configs(model.cfg.max_positions).items():
        files.write_atomic(os.path.join(out, name), json.dumps(content, indent=2))
    return model
