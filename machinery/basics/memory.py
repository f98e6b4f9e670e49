"""Memory: how many sequences a micro-batch may hold (fitting_micro_batch, for train.py without
--micro-batch-size), estimated from the model's shapes before anything is allocated, and an out-of-memory error
told in one line that names the micro-batch. The estimate is deliberately generous: a guard against a kill or an
OOM an hour in, not a prediction of the peak.
"""
import contextlib
import os
import sys

import torch
import torch.distributed as dist

GB = 1024 ** 3


def activation_bytes(model_cfg, seq_len, value_bytes, mask_rate, fused_attention):
    """Bytes one sequence's activations keep for the backward pass, after Korthikanti et al. 2022 ("Reducing
    Activation Recomputation in Large Transformer Models", Section 4.1: 34h + 5as bytes per token and layer in
    16 bits), with `value_bytes` per value (4: fp32, 2: bf16/fp16) and 1 per dropout mask:
      per layer and token: attention 5 values of h (input, q, k, v, output projection's input) + a mask of h;
      feed-forward h + 2 x ffn (its input, the pre- and post-GELU activations) + a mask of h; 2 LayerNorm inputs
      of h, in float32 always (autocast runs LayerNorm in float32: 38h bytes in 16 bits, not 34h); and, unless
      attention is fused (flash or memory-efficient kernels, CUDA), the heads' T x T softmax, dropout mask and
      dropout output (3 values each: PyTorch's math path) and the scaled queries and keys (2 of h);
      the embeddings' sum and mask; the LM head on the masked share: 3 values of h, and per target the logits,
      their fp32 copy and log-softmax (value_bytes + 8 per vocabulary entry)."""
    h, f, a, e = model_cfg.hidden_size, model_cfg.ffn_size, model_cfg.num_heads, value_bytes
    layer = h * (6 * e + 4 * 2 + 2) + 2 * e * f + (0 if fused_attention else 3 * e * a * seq_len + 2 * e * h)
    embeddings = h * (2 * e + 1)
    lm_head = mask_rate * (3 * e * h + model_cfg.vocab_size * (e + 8))
    return int(seq_len * (model_cfg.num_layers * layer + embeddings + lm_head))


def state_bytes(n_params, mixed):
    """Bytes of the weights, their gradients and Adam's two moments (fp32: 16 per parameter), and under autocast
    the 16-bit copies of the weights it caches (2 more)."""
    return n_params * (16 + 2 * mixed)


def free_bytes(device, meminfo="/proc/meminfo"):
    """The memory a run on `device` may take: the GPU's free memory, or on a CPU the RAM the kernel reports available
    (MemAvailable), shared by the processes of this machine (LOCAL_WORLD_SIZE); None where it cannot be read."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open(meminfo) as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    return kb * 1024 // int(os.environ.get("LOCAL_WORLD_SIZE", 1))


# The share of the free memory a run plans to fill: on a GPU, what the allocator's caching, cuBLAS's workspaces
# and NCCL's buffers leave; on a CPU 40%, since other programs share the RAM and the kernel kills, not refuses
# (at a half, base at 512 on this project's 23 GB machine took micro-batches of 8 and peaked at 8.9 GB; at 40%, 4
# and 5.4 GB: /usr/bin/time -v of docs/scale.md's command).
USABLE = {"cuda": 0.85, "cpu": 0.4}


def fitting_micro_batch(model_cfg, n_params, seq_len, mixed, mask_rate, share, device, master, free=None, group=None):
    """Sequences per micro-batch for a process whose share of an update is `share` sequences: `share` when it
    fits in the device's usable free memory, else the largest power of two dividing it that does, the smallest
    over all processes (so that they agree), said in one line on stderr (by the `master` process). `mixed`:
    16-bit activations (--amp). Refuses in one line when not even one sequence fits."""
    value_bytes = 2 if mixed else 4
    # 25% over the formula, for the allocator and temporaries: `base` at 512 tokens in fp32 on a CPU took 0.84 GB per
    # sequence (peak RSS of a forward and backward of 1 and of 4 sequences), the formula says 0.75
    per_sequence = int(1.25 * activation_bytes(model_cfg, seq_len, value_bytes, mask_rate, device.type == "cuda"))
    fixed = state_bytes(n_params, mixed)
    free = free_bytes(device) if free is None else free
    budget = float("inf") if free is None else free * USABLE.get(device.type, 0.4)  # None: nothing to compare with
    micro = share
    if fixed + share * per_sequence > budget:
        micro = share & -share  # the largest power of two that divides the share
        while micro > 1 and fixed + micro * per_sequence > budget:
            micro //= 2
    if dist.is_initialized():
        agreed = torch.tensor([micro])
        dist.all_reduce(agreed, op=dist.ReduceOp.MIN, group=group)
        micro = int(agreed)
    need = fixed + micro * per_sequence
    if need > budget:
        raise ValueError(f"one sequence of {seq_len} tokens needs about {need / GB:.1f} GB to train ({fixed / GB:.1f} GB "
                         f"of weights, gradients and Adam's moments, {per_sequence / GB:.2f} GB of activations) but "
                         f"{device.type} has {free / GB:.1f} GB free, {budget / GB:.1f} GB usable: a smaller --config or "
                         f"--seq-len, or --micro-batch-size 1 to try anyway")
    if micro < share and master:
        print(f"note: micro-batches of {micro} sequences ({share // micro} accumulated per update): about "
              f"{need / GB:.1f} GB with {per_sequence / GB:.2f} GB of activations each, of {free / GB:.1f} GB free "
              f"on {device.type}; --micro-batch-size sets it", file=sys.stderr)
    return micro


def is_out_of_memory(err):
    """A GPU's torch.OutOfMemoryError, or the CPU allocator's refusal (a RuntimeError saying so)."""
    return isinstance(err, torch.OutOfMemoryError) or \
        isinstance(err, RuntimeError) and "can't allocate memory" in str(err)


def out_of_memory_message(micro, seq_len):
    return (f"out of memory with micro-batches of {micro} sequences of {seq_len} tokens: pass a smaller "
            f"--micro-batch-size (gradient accumulation keeps --batch-size)")


@contextlib.contextmanager
def named_out_of_memory(micro, seq_len):
    """An out-of-memory error inside becomes one line (a ValueError) naming the micro-batch."""
    try:
        yield
    except (torch.OutOfMemoryError, RuntimeError) as err:
        if not is_out_of_memory(err):
            raise
        raise ValueError(out_of_memory_message(micro, seq_len)) from None
