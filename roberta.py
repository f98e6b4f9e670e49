"""RoBERTa: the encoder and its task heads, numerically identical to the released models.

RoBERTa keeps BERT's architecture (Section 2.2): post-LayerNorm transformer layers over token + learned position
embeddings, without segment embeddings (no next-sentence prediction, Section 4.2). Numerics as fairseq releases
them: positions start at pad_id + 1, LayerNorm eps 1e-5, exact (erf) GELU, LM head tied to the token embeddings
with its own bias.

    cfg = RobertaConfig.preset("base")                  # Table 9: 12 layers, 768 hidden, 12 heads
    model = RobertaForMaskedLM(cfg)
    loss = model(input_ids, labels=labels)              # labels: -100 where not a target
    logits = model(input_ids, padded=False)             # no padding: attention without a mask (flash kernel)
    opt = adamw(model, lr=6e-4, weight_decay=0.01)      # Section 3.1: betas (0.9, 0.98), eps 1e-6
    model = load_pretrained("roberta-base/")            # a Hugging Face folder or a train.py output
    save_pretrained(model, "out/")                      # config.json + model.safetensors (HF layout)
    python roberta.py export --checkpoint out/ --out hf/  # + tokenizer files: transformers loads it as roberta-base
"""
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
        """Each head: softmax(q k^T / sqrt(d) + mask) v, d = H / heads; a key where `mask` ([B, 1, 1, T]) is
        False (padding) gets -inf. PyTorch's fused kernel computes exactly this, without the [T, T] matrix."""
        B, T, H = x.shape
        # [B, T, 3H] -> [B, T, 3, heads, d] -> [3, B, heads, T, d]: q, k and v, each [B, heads, T, d]
        q, k, v = self.qkv(x).view(B, T, 3, self.num_heads, H // self.num_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)  # [B, heads, T, d]
        return self.proj(y.transpose(1, 2).reshape(B, T, H))  # the heads side by side again: [B, T, H]


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
        """Post-LN: each sublayer's output is added to x, then the sum normalised. Pre-LN normalises each
        sublayer's input instead, leaving the residual stream alone; these two lines become

            x = x + self.dropout(self.attn(self.attn_norm(x), mask))
            return x + self.dropout(self.ffn_out(F.gelu(self.ffn_in(self.ffn_norm(x)))))

        and RobertaModel needs a final LayerNorm (its lines marked "pre-LN"). Released checkpoints are post-LN."""
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
    """The keys each query may attend to, [B, 1, 1, T] bool, or None when nothing is padding (by default the
    pad id, as fairseq). padded=None looks for padding only on the CPU: on an accelerator reading a tensor would
    stall the host every forward (and break a compiled graph), so there the mask is built: the same result."""
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
    """Masked language modelling (Section 2.3; dynamic masking, Section 4.1), the pretraining objective."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.roberta = RobertaModel(cfg)
        self.lm_head = LMHead(cfg)
        self.nsp = ClassificationHead(cfg, 2) if cfg.next_sentence_head else None
        init_weights(self, cfg.init_std)

    def forward(self, input_ids, attention_mask=None, labels=None, reduction="mean", nsp_labels=None, padded=None,
                target_slots=None):
        """Logits [B, T, V]; or, with labels (-100 = not a target), the cross-entropy over the targets, the LM head
        run on the targets only (fairseq's masked_tokens: 85% of the vocabulary projection never computed).
        reduction="sum": the summed loss (train.py divides by the update's targets). `nsp_labels` (pair formats) add
        the next-sentence loss, or return it beside the sum. `target_slots`: that many positions, the targets first."""
        x = self.roberta(input_ids, attention_mask, padded)
        weight = self.roberta.embeddings.tokens.weight
        if labels is None:
            return self.lm_head(x, weight)
        targets = labels.ne(-100)
        at = targets.view(-1) if target_slots is None else labels.flatten().eq(-100).argsort(stable=True)[:target_slots]
        logits = self.lm_head(x.flatten(0, 1)[at], weight)  # [B, T, H] -> [B*T, H] -> [targets or slots, H]
        loss = F.cross_entropy(logits.float(), labels.flatten()[at], reduction="sum")  # label -100: ignored
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
        """(start_logits [B, T], end_logits [B, T], answerable_logit [B]); or, with targets, the loss. Span
        targets of unanswerable examples are -100 (ignored); `answerable` (0/1) adds SQuAD 2.0's loss."""
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
    """RACE (Section 5.3): each option encoded with passage and question, one score on its <s>, softmax across them."""

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


# the models by the class name a checkpoint records (ours: "class"; Hugging Face's: "architectures")
CLASSES = {c.__name__: c for c in (RobertaForMaskedLM, RobertaForSequenceClassification, RobertaForQuestionAnswering,
                                   RobertaForMultipleChoice)}


def num_parameters(model):
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------- checkpoints
def load_pretrained(path, cls=RobertaForMaskedLM, num_labels=None, verbose=True, new_head_ok=True):
    """`cls` (None: the checkpoint's class) with the weights of a train.py/finetune.py or Hugging Face RoBERTa folder.
    A head the checkpoint lacks starts fresh (verbose says so); new_head_ok=False refuses it."""
    from machinery.formats import checkpoints  # machinery: both folder layouts, their names, shapes and errors
    weights = checkpoints.read_weights(path)
    cls = cls or CLASSES.get(weights.holder, RobertaForMaskedLM)
    cfg = RobertaConfig.from_dict(weights.config)
    checkpoints.check_config(cfg, weights.state, weights.source)  # machinery: sizes a damaged file could lie about
    classifier = cls is RobertaForSequenceClassification
    model = cls(cfg, num_labels or weights.num_labels or 2) if classifier else cls(cfg)
    checkpoints.load_state(model, weights, path, verbose, new_head_ok)  # machinery: names mapped, shapes checked
    return model


def save_pretrained(model, directory):
    """Write config.json + model.safetensors in the Hugging Face layout (transformers' Roberta* load it)."""
    from machinery.formats import hf  # machinery: Hugging Face's parameter names, config.json and safetensors
    hf.save_pretrained(model, directory)


# ---------------------------------------------------------------------------------------- training helpers
def param_groups(model, weight_decay):
    """AdamW groups: weight decay on matrices, none on biases and LayerNorm parameters (BERT's convention)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# Section 3.1: "setting beta2 = 0.98 to improve stability when training with large batch sizes", training "very
# sensitive to the Adam epsilon term"; Tables 9 and 10: beta1 0.9, beta2 0.98, eps 1e-6.
ADAM_BETAS, ADAM_EPS = (0.9, 0.98), 1e-6


def adamw(model, lr, weight_decay, fused=None):
    """AdamW with RoBERTa's betas and eps over `param_groups`, for pretraining and finetuning. fused=None:
    PyTorch's single-kernel update wherever the parameters' device has one (CPU and CUDA do)."""
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


if __name__ == "__main__":  # machinery: the command line (roberta.py export), its checks, one-line errors
    from machinery.commands import roberta_cli
    roberta_cli.main()
