"""RoBERTa: the encoder and its task heads, numerically identical to the released models.

RoBERTa keeps BERT's architecture (Section 2.2; Devlin et al. 2019): a stack of post-LayerNorm
transformer layers over token + learned position embeddings. What changes is the training recipe,
not the network: no next-sentence prediction and no segment embeddings (Section 4.2), a 50K byte-level
BPE vocabulary (Section 4.4). Numerics as fairseq releases them: positions start at pad_id + 1,
LayerNorm eps 1e-5, exact (erf) GELU, LM head tied to the token embeddings with its own bias.

    cfg = RobertaConfig.preset("base")                  # Table 9: 12 layers, 768 hidden, 12 heads
    model = RobertaForMaskedLM(cfg)
    loss = model(input_ids, labels=labels)              # labels: -100 where not a target
    logits = model(input_ids, padded=False)             # no padding: attention without a mask (flash kernel)
    opt = adamw(model, lr=6e-4, weight_decay=0.01)      # Section 3.1: betas (0.9, 0.98), eps 1e-6
    model = load_pretrained("roberta-base/")            # a Hugging Face folder or a train.py output
    save_pretrained(model, "out/")                      # config.json + model.safetensors (HF layout)
    python roberta.py export --checkpoint out/ --out hf/  # + tokenizer files: transformers loads it as roberta-base
"""
import argparse
import json
import os
import re
import struct
import sys
from dataclasses import dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

# Table 9 gives base and large (BERT's sizes); tiny and small are for classroom CPUs.
PRESETS = {
    "tiny": dict(num_layers=2, hidden_size=128, num_heads=2, ffn_size=512),
    "small": dict(num_layers=4, hidden_size=256, num_heads=4, ffn_size=1024),
    "base": dict(num_layers=12, hidden_size=768, num_heads=12, ffn_size=3072),
    "large": dict(num_layers=24, hidden_size=1024, num_heads=16, ffn_size=4096),
}


@dataclass
class RobertaConfig:
    vocab_size: int = 50265
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    ffn_size: int = 3072
    max_positions: int = 512      # tokens per sequence; the table has pad_id + 1 more rows (514)
    pad_id: int = 1
    dropout: float = 0.1
    attention_dropout: float = 0.1
    layer_norm_eps: float = 1e-5
    init_std: float = 0.02
    next_sentence_head: bool = False  # BERT's NSP objective, for the pair formats of Section 4.2

    @classmethod
    def preset(cls, name, **overrides):
        if name not in PRESETS:
            raise ValueError(f"unknown config {name!r}: choose one of {', '.join(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    @classmethod
    def from_dict(cls, d):
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# ---------------------------------------------------------------------------------------- the encoder
class Embeddings(nn.Module):
    """Token + learned absolute position embeddings, then LayerNorm and dropout (no segment embeddings)."""

    def __init__(self, cfg):
        super().__init__()
        self.pad_id, self.max_positions = cfg.pad_id, cfg.max_positions
        self.tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_id)
        self.positions = nn.Embedding(cfg.max_positions + cfg.pad_id + 1, cfg.hidden_size, padding_idx=cfg.pad_id)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, input_ids):
        if input_ids.size(1) > self.max_positions:
            raise ValueError(f"sequence of {input_ids.size(1)} tokens is longer than the model's "
                             f"{self.max_positions} positions")
        # fairseq's make_positions: real tokens count pad_id+1, pad_id+2, ...; padding stays at pad_id
        not_pad = input_ids.ne(self.pad_id)
        positions = torch.cumsum(not_pad, dim=1) * not_pad + self.pad_id
        return self.dropout(self.norm(self.tokens(input_ids) + self.positions(positions)))


class SelfAttention(nn.Module):
    """Multi-head self-attention: one fused q/k/v projection and PyTorch's fused attention kernel."""

    def __init__(self, cfg):
        super().__init__()
        if cfg.hidden_size % cfg.num_heads:
            raise ValueError(f"hidden size {cfg.hidden_size} is not divisible by {cfg.num_heads} heads")
        self.num_heads, self.dropout = cfg.num_heads, cfg.attention_dropout
        self.qkv = nn.Linear(cfg.hidden_size, 3 * cfg.hidden_size)
        self.proj = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, x, mask):
        B, T, H = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.num_heads, H // self.num_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, T, H))


class Layer(nn.Module):
    """A post-LN transformer layer, as BERT and the released RoBERTa: x = LN(x + attention(x));
    x = LN(x + FFN(x)). Pre-LN (GPT-2's order) is an exercise: see `forward`."""

    def __init__(self, cfg):
        super().__init__()
        self.attn = SelfAttention(cfg)
        self.attn_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.ffn_in = nn.Linear(cfg.hidden_size, cfg.ffn_size)
        self.ffn_out = nn.Linear(cfg.ffn_size, cfg.hidden_size)
        self.ffn_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, mask):
        """Post-LN: each sublayer's output is added to x, then the sum normalised. For pre-LN, normalise
        each sublayer's input instead and leave the residual stream alone; these two lines become

            x = x + self.dropout(self.attn(self.attn_norm(x), mask))
            return x + self.dropout(self.ffn_out(F.gelu(self.ffn_in(self.ffn_norm(x)))))

        and the stack's output is then unnormalised, so RobertaModel needs a final LayerNorm (its two
        lines marked "pre-LN"). Released checkpoints are post-LN: they do not load into a pre-LN model.
        """
        x = self.attn_norm(x + self.dropout(self.attn(x, mask)))
        return self.ffn_norm(x + self.dropout(self.ffn_out(F.gelu(self.ffn_in(x)))))  # exact erf GELU


class RobertaModel(nn.Module):
    """The encoder: input ids [B, T] -> hidden states [B, T, H]."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embeddings = Embeddings(cfg)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.num_layers))
        # pre-LN: self.final_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, input_ids, attention_mask=None, padded=None):
        """`padded`: False = the caller knows no position is padding, so attention gets no mask and
        PyTorch may use its flash kernel; True = mask the padding; None = find out (see `key_mask`)."""
        mask = key_mask(input_ids, attention_mask, padded, self.cfg.pad_id)
        x = self.embeddings(input_ids)
        for layer in self.layers:
            x = layer(x, mask)
        return x  # pre-LN: return self.final_norm(x)


def key_mask(input_ids, attention_mask, padded, pad_id):
    """The keys each query may attend to, [B, 1, 1, T] bool, or None when nothing is padding.

    Without `attention_mask`, padding is known from the pad id alone, as in fairseq. With padded=None,
    whether a batch is padded is checked only on the CPU, where reading a tensor is free; on an
    accelerator the check would stall the host every forward, and under torch.compile it would break
    the graph, so there the mask is built (it gives the same result, only without the flash kernel).
    """
    if padded is False:
        return None
    keep = input_ids.ne(pad_id) if attention_mask is None else attention_mask.bool()
    if padded is None and keep.device.type == "cpu" and not torch.compiler.is_compiling() and bool(keep.all()):
        return None
    return keep[:, None, None, :]


def init_weights(module, std):
    """BERT's initialisation: normal(0, 0.02) weights, zero biases, unit LayerNorms, zero padding rows."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=std)
            if m.padding_idx is not None:
                nn.init.zeros_(m.weight[m.padding_idx])
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------------------- heads
class LMHead(nn.Module):
    """dense -> GELU -> LayerNorm -> decoder; the decoder is the token embedding matrix, with its own bias."""

    def __init__(self, cfg):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab_size))

    def forward(self, x, embedding_weight):
        return F.linear(self.norm(F.gelu(self.dense(x))), embedding_weight, self.bias)


class ClassificationHead(nn.Module):
    """On the <s> token: dropout -> dense -> tanh -> dropout -> out_proj (fairseq's and HF's layout)."""

    def __init__(self, cfg, num_outputs):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.out_proj = nn.Linear(cfg.hidden_size, num_outputs)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, first_token):
        return self.out_proj(self.dropout(torch.tanh(self.dense(self.dropout(first_token)))))


class RobertaForMaskedLM(nn.Module):
    """Masked language modelling (Section 2.1 and 4.1), the pretraining objective."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.roberta = RobertaModel(cfg)
        self.lm_head = LMHead(cfg)
        self.nsp = ClassificationHead(cfg, 2) if cfg.next_sentence_head else None
        init_weights(self, cfg.init_std)

    def forward(self, input_ids, attention_mask=None, labels=None, reduction="mean", nsp_labels=None, padded=None):
        """Logits [B, T, V]; or, with labels (-100 = not a target), the cross-entropy over the targets.

        The LM head runs on the target positions only, as fairseq's masked_tokens: with 15% masking,
        85% of the vocabulary projection is never computed. reduction="sum" returns the summed loss
        (train.py divides by the number of targets in the whole update); with `nsp_labels` (the pair
        formats) the next-sentence loss is added, or returned beside the MLM sum when summing.
        `padded` as in RobertaModel.forward.
        """
        x = self.roberta(input_ids, attention_mask, padded)
        weight = self.roberta.embeddings.tokens.weight
        if labels is None:
            return self.lm_head(x, weight)
        targets = labels.ne(-100)
        logits = self.lm_head(x[targets], weight)
        loss = F.cross_entropy(logits.float(), labels[targets], reduction="sum")
        nsp = None if nsp_labels is None else \
            F.cross_entropy(self.nsp(x[:, 0]).float(), nsp_labels, reduction="sum")
        if reduction == "sum":
            return loss if nsp is None else (loss, nsp)
        loss = loss / targets.sum().clamp(min=1)
        return loss if nsp is None else loss + nsp / len(nsp_labels)


class RobertaForSequenceClassification(nn.Module):
    """GLUE (Section 5.1): a classification head on <s>; num_labels=1 is regression (STS-B)."""

    def __init__(self, cfg, num_labels=2):
        super().__init__()
        self.cfg, self.num_labels = cfg, num_labels
        self.roberta = RobertaModel(cfg)
        self.classifier = ClassificationHead(cfg, num_labels)
        init_weights(self, cfg.init_std)

    def forward(self, input_ids, attention_mask=None, labels=None, padded=None):
        logits = self.classifier(self.roberta(input_ids, attention_mask, padded)[:, 0])
        if labels is None:
            return logits
        if self.num_labels == 1:
            return F.mse_loss(logits.squeeze(-1).float(), labels.float())
        return F.cross_entropy(logits.float(), labels)


class RobertaForQuestionAnswering(nn.Module):
    """SQuAD (Section 5.2): start/end logits per token, plus an answerability score on <s> for v2.0,
    "trained jointly with the span predictor by summing the classification and span loss terms"."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.roberta = RobertaModel(cfg)
        self.qa = nn.Linear(cfg.hidden_size, 2)
        self.answerable = ClassificationHead(cfg, 1)
        init_weights(self, cfg.init_std)

    def forward(self, input_ids, attention_mask=None, start_positions=None, end_positions=None, answerable=None,
                padded=None):
        """(start_logits [B, T], end_logits [B, T], answerable_logit [B]); or, with targets, the loss.

        Span targets of unanswerable examples are -100 (ignored); `answerable` (0/1, float) adds the
        binary answerability loss (SQuAD 2.0).
        """
        x = self.roberta(input_ids, attention_mask, padded)
        start, end = self.qa(x).float().unbind(-1)
        score = self.answerable(x[:, 0]).squeeze(-1).float()
        if start_positions is None:
            return start, end, score
        n_spans = start_positions.ne(-100).sum().clamp(min=1)
        loss = (F.cross_entropy(start, start_positions, reduction="sum")
                + F.cross_entropy(end, end_positions, reduction="sum")) / (2 * n_spans)
        if answerable is not None:
            loss = loss + F.binary_cross_entropy_with_logits(score, answerable.float())
        return loss


class RobertaForMultipleChoice(nn.Module):
    """RACE (Section 5.3): each option encoded with passage and question, one score per option from a
    one-output classification head, softmax across the options."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.roberta = RobertaModel(cfg)
        self.classifier = ClassificationHead(cfg, 1)
        init_weights(self, cfg.init_std)

    def forward(self, input_ids, attention_mask=None, labels=None, padded=None):
        B, C, T = input_ids.shape
        flat_mask = None if attention_mask is None else attention_mask.reshape(B * C, T)
        scores = self.classifier(self.roberta(input_ids.reshape(B * C, T), flat_mask, padded)[:, 0]).view(B, C)
        return scores if labels is None else F.cross_entropy(scores.float(), labels)


MODEL_CLASSES = {c.__name__: c for c in (RobertaForMaskedLM, RobertaForSequenceClassification,
                                         RobertaForQuestionAnswering, RobertaForMultipleChoice)}


def num_parameters(model):
    return sum(p.numel() for p in model.parameters())


def make_model(cls, cfg, num_labels=None):
    return cls(cfg, num_labels or 2) if cls is RobertaForSequenceClassification else cls(cfg)


# ---------------------------------------------------------------------------------------- checkpoints
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
    prefixes = (MULTIPLE_CHOICE_RENAMES if isinstance(model, RobertaForMultipleChoice) else []) + PREFIX_RENAMES
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
    out[TOKEN_TYPES] = torch.zeros(1, model.cfg.hidden_size, dtype=out["roberta.embeddings.word_embeddings.weight"].dtype)
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



def hf_config(model):
    cfg = model.cfg
    d = {"architectures": [type(model).__name__], "model_type": "roberta", "vocab_size": cfg.vocab_size,
         "hidden_size": cfg.hidden_size, "num_hidden_layers": cfg.num_layers,
         "num_attention_heads": cfg.num_heads, "intermediate_size": cfg.ffn_size, "hidden_act": "gelu",
         "hidden_dropout_prob": cfg.dropout, "attention_probs_dropout_prob": cfg.attention_dropout,
         "max_position_embeddings": cfg.max_positions + cfg.pad_id + 1, "type_vocab_size": 1,
         "initializer_range": cfg.init_std, "layer_norm_eps": cfg.layer_norm_eps, "pad_token_id": cfg.pad_id,
         "bos_token_id": 0, "eos_token_id": 2, "position_embedding_type": "absolute"}
    if isinstance(model, RobertaForSequenceClassification):
        d["id2label"] = {str(i): f"LABEL_{i}" for i in range(model.num_labels)}
        d["label2id"] = {f"LABEL_{i}": i for i in range(model.num_labels)}
        if model.num_labels == 1:
            d["problem_type"] = "regression"
    return d


def config_from_hf(d, source):
    if d.get("model_type") != "roberta":
        raise ValueError(f"{source}: not a RoBERTa config (model_type={d.get('model_type')!r})")
    if d.get("hidden_act", "gelu") != "gelu" or d.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{source}: only exact GELU and absolute positions are RoBERTa "
                         f"(hidden_act={d.get('hidden_act')!r})")
    pad = d.get("pad_token_id", 1)
    return RobertaConfig(vocab_size=d["vocab_size"], hidden_size=d["hidden_size"],
                         num_layers=d["num_hidden_layers"], num_heads=d["num_attention_heads"],
                         ffn_size=d["intermediate_size"], max_positions=d["max_position_embeddings"] - pad - 1,
                         pad_id=pad, dropout=d.get("hidden_dropout_prob", 0.1),
                         attention_dropout=d.get("attention_probs_dropout_prob", 0.1),
                         layer_norm_eps=d.get("layer_norm_eps", 1e-5), init_std=d.get("initializer_range", 0.02))


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
    names = {v: k for k, v in SAFETENSORS_DTYPES.items()}
    header, offset, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name, t in tensors.items():
        blob = t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    _atomic_write(path, lambda f: [f.write(b) for b in [struct.pack("<Q", len(head)), head, *blobs]])


def _atomic_write(path, write):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def save_pretrained(model, directory):
    """Write config.json + model.safetensors in the Hugging Face layout (transformers' Roberta* load it)."""
    os.makedirs(directory, exist_ok=True)
    _atomic_write(os.path.join(directory, "config.json"),
                  lambda f: f.write(json.dumps(hf_config(model), indent=2).encode()))
    save_safetensors(to_hf_state(model), os.path.join(directory, "model.safetensors"))


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
    return ckpt


def load_pretrained(path, cls=RobertaForMaskedLM, num_labels=None, verbose=True, new_head_ok=True):
    """Load weights into `cls` from a train.py/finetune.py folder (checkpoint.pt) or a Hugging Face
    RoBERTa folder (config.json + model.safetensors or pytorch_model.bin).

    cls=None: the class the checkpoint holds (RobertaForMaskedLM for a bare encoder). Encoder weights
    must all be present and of the right shapes. A head the checkpoint lacks (a
    classifier on top of a pretrained MLM) is freshly initialised, and this says so; with
    new_head_ok=False it is refused instead: a finetuned classifier's folder has no trained LM head to
    fill masks or measure perplexity with.
    """
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: no such checkpoint folder")
    ours = os.path.isfile(os.path.join(path, "checkpoint.pt"))
    cfg, state, holder, found_labels = read_ours(path) if ours else read_hf(path)
    model = make_model(cls or MODEL_CLASSES.get(holder, RobertaForMaskedLM), cfg, num_labels or found_labels)
    if not ours:
        state = from_hf_state(state, model)
    if not new_head_ok:
        check_heads(model, state, path, holder)
    load_state(model, state, path, verbose)
    return model


def read_ours(path):
    """(config, state, the class it holds, num_labels) of a train.py/finetune.py folder."""
    ckpt = read_checkpoint(os.path.join(path, "checkpoint.pt"))
    return (RobertaConfig.from_dict(ckpt["config"]), ckpt["model"], ckpt.get("class", "RobertaForMaskedLM"),
            ckpt.get("num_labels"))


def read_hf(path):
    """The same for a Hugging Face folder, the state still in Hugging Face's names."""
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"{path}: neither checkpoint.pt nor config.json found")
    try:
        with open(config_path, encoding="utf-8") as f:
            hf = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{config_path}: not valid JSON ({e})") from None
    cfg = config_from_hf(hf, config_path)
    if os.path.isfile(os.path.join(path, "model.safetensors")):
        state = load_safetensors(os.path.join(path, "model.safetensors"))
    elif os.path.isfile(os.path.join(path, "pytorch_model.bin")):
        state = read_checkpoint(os.path.join(path, "pytorch_model.bin"), ours=False)
    else:
        raise FileNotFoundError(f"{path}: config.json but no model.safetensors or pytorch_model.bin")
    labels = hf.get("id2label")
    return cfg, state, (hf.get("architectures") or ["RobertaModel"])[0], len(labels) if labels else None


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


# ---------------------------------------------------------------------------------------- training helpers
def param_groups(model, weight_decay):
    """AdamW groups: weight decay on matrices, none on biases and LayerNorm parameters (BERT's convention)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# Section 3.1: "we found setting beta2 = 0.98 to improve stability when training with large batch sizes",
# and training "very sensitive to the Adam epsilon term"; Table 9 (pretraining) and Table 10 (finetuning)
# both use beta1 0.9, beta2 0.98, eps 1e-6.
ADAM_BETAS = (0.9, 0.98)
ADAM_EPS = 1e-6


def adamw(model, lr, weight_decay, fused=None):
    """AdamW with RoBERTa's betas and eps (Section 3.1; Tables 9 and 10) over `param_groups`, for both
    pretraining and finetuning. fused=None: PyTorch's single-kernel update wherever the parameters'
    device has one (CPU and CUDA do), else the default implementation."""
    groups = param_groups(model, weight_decay)
    if fused is None:
        try:
            return torch.optim.AdamW(groups, lr=lr, betas=ADAM_BETAS, eps=ADAM_EPS, fused=True)
        except RuntimeError:  # "`fused=True` requires all the params to be ... of supported devices"
            fused = False
    return torch.optim.AdamW(groups, lr=lr, betas=ADAM_BETAS, eps=ADAM_EPS, fused=fused)


def linear_lr(step, peak, warmup_steps, total_steps):
    """Linear warmup to `peak` over warmup_steps, then linear decay to zero at total_steps (Section 3.1)."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    return peak * max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


# ---------------------------------------------------------------------------------------- fill-mask
def mask_inputs(tok, text):
    """The ids fill_mask feeds the model for a text with one <mask>: <s> text </s>, the space before
    <mask> dropped (the predicted token carries its own), as fairseq's fill_mask and roberta-base's
    tokenizer files (<mask> declared with lstrip) do."""
    if text.count("<mask>") != 1:
        raise ValueError(f"the text must hold exactly one <mask>: {text!r}")
    before, after = text.split("<mask>")
    return [tok.bos_id] + tok.encode(before.rstrip()) + [tok.mask_id] + tok.encode(after.rstrip()) + [tok.eos_id]


@torch.no_grad()
def mask_probabilities(model, tok, text):
    """The model's distribution over the vocabulary for the one <mask> in `text`: a [V] float tensor."""
    ids = mask_inputs(tok, text)
    if len(ids) > model.cfg.max_positions:
        raise ValueError(f"the text is {len(ids)} tokens long; the model takes {model.cfg.max_positions}")
    model.eval()
    x = torch.tensor([ids], device=next(model.parameters()).device)
    return model(x)[0, ids.index(tok.mask_id)].float().softmax(-1)


def fill_mask(model, tok, text, k=5):
    """The k most likely tokens for the <mask> in `text`: [(token text, probability)], as fairseq's
    fill_mask: the text around the mask is encoded as it stands, so "is <mask>." asks for a token
    that carries its own leading space (" Paris")."""
    V = model.cfg.vocab_size
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= V:
        raise ValueError(f"top-k must be an integer from 1 to the vocabulary size, {V}: got {k!r}")
    top = mask_probabilities(model, tok, text).topk(k)
    return [(tok.decode([i]), p) for i, p in zip(top.indices.tolist(), top.values.tolist())]


# ---------------------------------------------------------------------------------------- export
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
    """Before any work: the checkpoint folder exists; --out is, or can become, a folder of its own that
    holds no exported model, unless --overwrite."""
    if not os.path.isdir(checkpoint):
        raise FileNotFoundError(f"{checkpoint}: no such checkpoint folder")
    if os.path.exists(out) and not os.path.isdir(out):
        raise FileExistsError(f"--out {out} is a file, not a folder")
    if os.path.isdir(out) and os.path.samefile(out, checkpoint):
        raise ValueError(f"--out {out} is the checkpoint folder itself: export to another folder")
    parent = os.path.dirname(os.path.abspath(out))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"--out {out}: {parent} is not a writable folder")
    held = [f for f in ("config.json", "model.safetensors") if os.path.exists(os.path.join(out, f))]
    if held and not overwrite:
        raise FileExistsError(f"--out {out} already holds an exported model ({held[0]}); "
                              "pass --overwrite to replace it")


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
    config.json + model.safetensors, and the tokenizer with the configuration transformers needs."""
    check_export(checkpoint, out, overwrite)
    model = load_pretrained(checkpoint, cls=None)  # the class it holds; says so if a head is new
    blobs = read_vocab(checkpoint, model.cfg.vocab_size)
    save_pretrained(model, out)
    if blobs is None:
        print(f"warning: {checkpoint} has no {' and '.join(TOKENIZER_FILES)}: {out} has no tokenizer", file=sys.stderr)
        return model
    for name, blob in zip(TOKENIZER_FILES, blobs):
        _atomic_write(os.path.join(out, name), lambda f, blob=blob: f.write(blob))
    for name, content in tokenizer_configs(model.cfg.max_positions).items():
        _atomic_write(os.path.join(out, name), lambda f, c=content: f.write(json.dumps(c, indent=2).encode()))
    return model


# ---------------------------------------------------------------------------------------- command line
class ArgumentParser(argparse.ArgumentParser):
    """argparse, with its errors on one line ("roberta.py export: error: the following arguments ...")."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv=None):
    p = ArgumentParser(description="Export a checkpoint (train.py / finetune.py output) to the Hugging Face "
                                   "layout: config.json + model.safetensors + tokenizer files.")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="write a Hugging Face RoBERTa folder",
                       description="Write a checkpoint as a Hugging Face RoBERTa folder that transformers' "
                                   "Auto* classes and pipeline('fill-mask') load as they load roberta-base.")
    e.add_argument("--checkpoint", required=True,
                   help="a folder with checkpoint.pt (train.py/finetune.py output) or a Hugging Face RoBERTa folder; "
                        "its vocab.json and merges.txt are exported too")
    e.add_argument("--out", required=True, help="the folder to write (created if needed)")
    e.add_argument("--overwrite", action="store_true",
                   help="replace an exported model already in --out (default: refuse)")
    args = p.parse_args(argv)
    try:
        model = export(args.checkpoint, args.out, args.overwrite)
    except (OSError, ValueError) as err:
        sys.exit(f"error: {err.filename}: {err.strerror}" if isinstance(err, OSError) and err.strerror
                 and err.filename else f"error: {err}")
    print(f"{args.out}: {type(model).__name__}, {num_parameters(model):,} parameters")


if __name__ == "__main__":
    main()
