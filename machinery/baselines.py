"""What a model learns first, measured on the held-out masks: the baselines of the demo's report."""
import numpy as np
import torch


def unigram_baselines(train_tokens, batches, tok):
    """Two baselines on the same held-out masks (what a model learns first): the unigram distribution of
    the training tokens (add-one smoothed), and always guessing the most frequent ordinary token.
    Returns {"unigram_loss", "most_frequent_accuracy", "most_frequent"}."""
    counts = np.bincount(np.asarray(train_tokens), minlength=len(tok)).astype(np.float64) + 1.0
    counts[sorted(tok.special_ids - {tok.unk_id})] = 0.0  # a target is never a special token (but <unk>)
    with np.errstate(divide="ignore"):  # log 0 = -inf for the specials, never looked up
        log_p = torch.from_numpy(np.log(counts / counts.sum()))
    best = int(counts.argmax())
    loss, correct, n = 0.0, 0, 0
    for _, labels in batches:
        targets = labels[labels != -100]
        loss -= float(log_p[targets].sum())
        correct += int((targets == best).sum())
        n += targets.numel()
    return {"unigram_loss": loss / max(n, 1), "most_frequent_accuracy": correct / max(n, 1), "most_frequent": best}


UNIGRAM_TOKENS = 100_000_000  # the summary's unigram counts read at most this many training tokens


def run_summary(model, tok, cfg):
    """What every `train.py --data` run ends with (the first process): held-out perplexity on the run's own
    evaluation masks (log.jsonl's last valid_ppl) beside the unigram baseline's on the same masks."""
    import math
    import os

    import data
    if int(os.environ.get("RANK", 0)) != 0:
        return
    valid, ends, _ = data.load_split(cfg.data, "valid")
    if valid.size == 0:
        print(f"{cfg.out}: no held-out data in {cfg.data}, so no held-out perplexity to compare")
        return
    batches = data.heldout_batches(valid, ends, tok, cfg.seq_len, masking=cfg.masking,
                                   max_sequences=cfg.eval_sequences)
    out = data.evaluate_mlm(model, batches, next(model.parameters()).device)
    train_tokens = data.load_split(cfg.data, "train")[0]
    base = unigram_baselines(train_tokens[:UNIGRAM_TOKENS], batches, tok)
    if not out["targets"]:
        return
    loss = out["loss_sum"] / out["targets"]
    first = f" (counted on its first {UNIGRAM_TOKENS:,} tokens)" if train_tokens.size > UNIGRAM_TOKENS else ""
    print(f"{cfg.out}: held-out perplexity {math.exp(min(loss, 709)):.1f} on {out['targets']:,} masked tokens "
          f"({cfg.masking.rate:.0%} of the held-out tokens, log.jsonl's valid_ppl), beside the unigram "
          f"distribution's {math.exp(min(base['unigram_loss'], 709)):.1f} on the same masks "
          f"({math.exp(min(loss - base['unigram_loss'], 709)):.2f}x; the training tokens' frequencies{first})")
