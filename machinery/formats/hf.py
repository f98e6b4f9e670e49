"""Hugging Face interop: RoBERTa's parameter names and config.json as transformers spells them, and the
safetensors format read and written without the library, so that transformers loads an export as it loads
roberta-base. A leaf: a model is read by its state_dict(), its cfg and its class name.

    save_pretrained(model, "out/")             # config.json + model.safetensors
    state = from_hf_state(load_safetensors("roberta-base/model.safetensors"), "RobertaForMaskedLM")
"""
import json
import math
import os
import struct

import torch

from machinery.basics import files

# Parameter names: ours <-> Hugging Face's. A key takes the first prefix rename that fits, then every
# infix rename in order (attention before FFN, so 'attention.output.dense' is not read as the FFN's).
PREFIX_RENAMES = [
    ("roberta.layers.", "roberta.encoder.layer."), ("roberta.embeddings.norm.", "roberta.embeddings.LayerNorm."),
    ("roberta.embeddings.tokens.", "roberta.embeddings.word_embeddings."), ("qa.", "qa_outputs."),
    ("roberta.embeddings.positions.", "roberta.embeddings.position_embeddings."),
    ("lm_head.norm.", "lm_head.layer_norm."),
]
INFIX_RENAMES = [
    (".attn.qkv.", ".attention.self.qkv."),  # split into query/key/value by to_hf_state
    (".attn.proj.", ".attention.output.dense."), (".attn_norm.", ".attention.output.LayerNorm."),
    (".ffn_in.", ".intermediate.dense."), (".ffn_out.", ".output.dense."), (".ffn_norm.", ".output.LayerNorm."),
]
# HF's RobertaForMultipleChoice puts the dense+tanh in the pooler and the output layer in `classifier`
MULTIPLE_CHOICE_RENAMES = [("classifier.dense.", "roberta.pooler.dense."), ("classifier.out_proj.", "classifier.")]
TOKEN_TYPES = "roberta.embeddings.token_type_embeddings.weight"


def rename(key, class_name, to_hf=True):
    """One parameter name, ours -> Hugging Face's (to_hf=False: back), for a model of class `class_name`."""
    multiple_choice = class_name == "RobertaForMultipleChoice"
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
        key = rename(key, type(model).__name__)
        if ".attention.self.qkv." in key:
            for part, chunk in zip(("query", "key", "value"), t.chunk(3)):
                out[key.replace(".qkv.", f".{part}.")] = chunk
        else:
            out[key] = t
    dtype = out["roberta.embeddings.word_embeddings.weight"].dtype
    out[TOKEN_TYPES] = torch.zeros(1, model.cfg.hidden_size, dtype=dtype)
    return out


def from_hf_state(state, class_name, source="checkpoint"):
    """A Hugging Face RoBERTa state dict in our names for our class `class_name` (the inverse of `to_hf_state`);
    `source` names the file in the errors."""
    state = {k.replace(".gamma", ".weight").replace(".beta", ".bias"): v for k, v in state.items()}
    if not any(k.startswith("roberta.") for k in state):  # saved from a bare RobertaModel
        state = {("roberta." + k if k.startswith(("embeddings.", "encoder.", "pooler.")) else k): v
                 for k, v in state.items()}
    if "lm_head.bias" not in state and "lm_head.decoder.bias" in state:
        state["lm_head.bias"] = state["lm_head.decoder.bias"]
    for key in ("lm_head.decoder.bias", "lm_head.decoder.weight", "roberta.embeddings.position_ids"):
        state.pop(key, None)  # the decoder's weight is tied to the token embeddings
    token_types = state.pop(TOKEN_TYPES, None)
    out = {}
    for key, t in state.items():
        if ".attention.self.query." in key:
            parts = [state.get(key.replace(".query.", f".{p}.")) for p in ("query", "key", "value")]
            if any(p is None or p.shape != t.shape for p in parts):
                raise ValueError(f"{source}: {key} has no {key.replace('.query.', '.key.')} and "
                                 f"{key.replace('.query.', '.value.')} of its shape {list(t.shape)}")
            t = torch.cat(parts)
            key = key.replace(".query.", ".qkv.")
        elif ".attention.self." in key:
            continue  # key and value went in with the query
        out[rename(key, class_name, to_hf=False)] = t
    if token_types is not None:  # HF adds token-type row 0 to every position: fold it in, exactly
        positions = out.get("roberta.embeddings.positions.weight")
        if positions is None or token_types.dim() != 2 or not len(token_types) or \
                token_types.shape[1:] != positions.shape[1:]:
            raise ValueError(f"{source}: {TOKEN_TYPES} of shape {list(token_types.shape)} does not fit the position "
                             f"embeddings" + ("" if positions is not None else " (there are none)"))
        out["roberta.embeddings.positions.weight"] = positions + token_types[0]
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
    if type(model).__name__ == "RobertaForSequenceClassification":
        names = list(id2label or [f"LABEL_{i}" for i in range(model.num_labels)])
        if len(names) != model.num_labels:
            raise ValueError(f"{len(names)} label names for a classifier with {model.num_labels} outputs")
        d["id2label"] = {str(i): name for i, name in enumerate(names)}
        d["label2id"] = {name: i for i, name in enumerate(names)}
        if model.num_labels == 1:
            d["problem_type"] = "regression"
    return d


HF_SIZES = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "max_position_embeddings")  # what a RoBERTa config.json must give; the rest has defaults
HF_RATES = ("hidden_dropout_prob", "attention_probs_dropout_prob", "layer_norm_eps", "initializer_range")


def json_kind(value):
    """A JSON value's kind, in words: 'a list', 'a string', ..."""
    return {dict: "an object", list: "a list", str: "a string", bool: "true or false", type(None): "null",
            int: "a whole number", float: "a number"}.get(type(value), type(value).__name__)


def config_from_hf(d, source):
    """Our RobertaConfig's fields from a Hugging Face config.json's dict `d` (read from `source`), checked: an
    object, the sizes whole numbers, the rates numbers, architectures a list of names, id2label an object."""
    if not isinstance(d, dict):
        raise ValueError(f"{source}: expected a JSON object (a model's configuration), got {json_kind(d)}")
    if d.get("model_type") != "roberta":
        raise ValueError(f"{source}: not a RoBERTa config (model_type={d.get('model_type')!r})")
    missing = [k for k in HF_SIZES if k not in d]
    if missing:
        raise ValueError(f"{source}: no {missing[0]} (a RoBERTa config.json gives {', '.join(HF_SIZES)})")
    for keys, kinds, what in ((HF_SIZES + ("pad_token_id",), (int,), "a whole number"),
                              (HF_RATES, (int, float), "a number")):
        bad = next((k for k in keys if k in d and (isinstance(d[k], bool) or not isinstance(d[k], kinds))), None)
        if bad:
            raise ValueError(f"{source}: {bad} is {json_kind(d[bad])} ({json.dumps(d[bad])[:30]}), expected {what}")
    names = d.get("architectures", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{source}: architectures is {json_kind(names)}, expected a list of class names")
    if not isinstance(d.get("id2label", {}), dict):
        raise ValueError(f"{source}: id2label is {json_kind(d['id2label'])}, expected an object (output -> label)")
    if d.get("hidden_act", "gelu") != "gelu" or d.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{source}: only exact GELU and absolute positions are RoBERTa "
                         f"(hidden_act={d.get('hidden_act')!r})")
    pad = d.get("pad_token_id", 1)
    return dict(
        vocab_size=d["vocab_size"], hidden_size=d["hidden_size"], num_layers=d["num_hidden_layers"],
        num_heads=d["num_attention_heads"], ffn_size=d["intermediate_size"],
        max_positions=d["max_position_embeddings"] - pad - 1, pad_id=pad, dropout=d.get("hidden_dropout_prob", 0.1),
        attention_dropout=d.get("attention_probs_dropout_prob", 0.1), layer_norm_eps=d.get("layer_norm_eps", 1e-5),
        init_std=d.get("initializer_range", 0.02))


SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                      "I64": torch.int64, "I32": torch.int32, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}


def load_safetensors(path):
    """Read a .safetensors file: 8 bytes of header length, a JSON header, then the raw tensors. Every header
    entry is checked against the file (a known dtype, a shape, offsets inside the file that fit the shape):
    a truncated or crafted file is one line naming it."""
    with open(path, "rb") as f:
        data = bytearray(f.read())
    (n,) = struct.unpack("<Q", data[:8]) if len(data) >= 8 else (None,)
    if n is None or 8 + n > len(data):
        raise ValueError(f"{path}: not a safetensors file, or a truncated one (" + (
            f"{len(data)} bytes)" if n is None else f"its header's length, {n:,} bytes, runs past its end)"))
    try:
        header = json.loads(data[8:8 + n])
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ValueError(f"{path}: not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: not a safetensors file (its header is {json_kind(header)}, not an object)")
    return {name: safetensor(path, data, 8 + n, name, info) for name, info in header.items() if name != "__metadata__"}


def safetensor(path, data, base, name, info):
    """One tensor of a safetensors file's `data` (its bytes from `base`), its header entry `info` checked."""
    where = f"{path}: tensor {name!r}"
    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= info.keys():
        raise ValueError(f"{where}: its header entry has no dtype, shape and data_offsets")
    dtype, shape, offsets = SAFETENSORS_DTYPES.get(info["dtype"]), info["shape"], info["data_offsets"]
    if dtype is None:
        raise ValueError(f"{where}: dtype {json.dumps(info['dtype'])[:20]} is not one this reader knows "
                         f"({', '.join(SAFETENSORS_DTYPES)})")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise ValueError(f"{where}: shape {json.dumps(shape)[:40]} is not a list of sizes")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets) \
            or not 0 <= offsets[0] <= offsets[1]:
        raise ValueError(f"{where}: data_offsets {json.dumps(offsets)[:40]} are not [start, end]")
    start, end = offsets
    if base + end > len(data):
        raise ValueError(f"{where}: its bytes {start:,}..{end:,} run past the end of the file ({len(data) - base:,} "
                         f"bytes of tensors): a truncated or damaged file")
    count = math.prod(shape)
    if end - start != count * dtype.itemsize:
        raise ValueError(f"{where}: shape {shape} of {info['dtype']} takes {count * dtype.itemsize:,} bytes, its "
                         f"data_offsets {end - start:,}")
    t = torch.frombuffer(data, dtype=dtype, count=count, offset=base + start) if count else torch.empty(0, dtype=dtype)
    return t.reshape(shape)


def save_pretrained(model, directory, id2label=None):
    """Write config.json + model.safetensors in the Hugging Face layout (transformers' Roberta* load it);
    id2label: a classifier's label names by output. The safetensors header is padded to 8 bytes."""
    os.makedirs(directory, exist_ok=True)
    files.write_atomic(os.path.join(directory, "config.json"), files.json_text(hf_config(model, id2label), indent=2))
    names = {v: k for k, v in SAFETENSORS_DTYPES.items()}
    header, offset, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name, t in to_hf_state(model).items():
        blob = t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    head = files.json_text(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    files.write_atomic(os.path.join(directory, "model.safetensors"),
                       lambda f: [f.write(b) for b in [struct.pack("<Q", len(head)), head, *blobs]])
