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
