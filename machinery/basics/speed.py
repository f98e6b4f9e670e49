"""Speed: MFU (model FLOPs utilisation, as PaLM and nanoGPT define it), and torch.compile for train.py's step:
one shape for every micro-batch (StaticShape), a warm-up that compiles it at the start, a graph counter.

MFU = model FLOPs per second (flops_per_token) / the device's peak FLOP/s for the dtype (NVIDIA's datasheets for
known GPUs, else a measured matmul). train.py logs tokens/s and MFU through a Meter.
"""
import contextlib
import math
import os
import pathlib
import re
import sys
import time
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F

from machinery.basics import memory


def cpus_allowed():
    """The CPUs this process may run on (its affinity mask: a container's or taskset's share), not the machine's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows: no affinity mask
        return os.cpu_count() or 1


def idle_cpus(seconds=0.2, read_stat=None):
    """The allowed CPUs that other work leaves free now (at least 1): each allowed CPU's busy share over
    `seconds`, from two readings of /proc/stat (`read_stat`: its text; unreadable: all allowed CPUs). On 2 cores
    with one busy, 1 thread trains this project's tiny model 2.4x faster than 2 (13.2K against 5.4K tokens/s)."""
    read = read_stat or pathlib.Path("/proc/stat").read_text

    def times(text):  # {cpu id: (idle jiffies, all jiffies)}; idle counts iowait too
        out = {}
        for line in text.splitlines():
            name, *fields = line.split()
            if re.fullmatch(r"cpu\d+", name or "") and len(fields) >= 4:
                values = [int(v) for v in fields[:8]]
                out[int(name[3:])] = (values[3] + (values[4] if len(values) > 4 else 0), sum(values))
        return out
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None  # macOS, Windows: none
    try:
        before = times(read())
        time.sleep(seconds)
        after = times(read())
    except (OSError, ValueError):
        return cpus_allowed()
    ids = [c for c in after if c in before and (allowed is None or c in allowed)]
    if not ids:
        return cpus_allowed()
    busy = sum(1 - (after[c][0] - before[c][0]) / (after[c][1] - before[c][1]) for c in ids
               if after[c][1] > before[c][1])  # a CPU whose counters did not move in the interval: idle
    return max(1, min(cpus_allowed(), len(ids)) - round(busy))


def threads_for(jobs=1):
    """OpenMP threads for one of `jobs` processes side by side: the allowed CPUs shared out, at least one.
    OMP_NUM_THREADS, when set, wins (on a shared machine: OMP_NUM_THREADS=1)."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return int(os.environ["OMP_NUM_THREADS"])
    return max(1, cpus_allowed() // max(1, jobs))


def matmul_peak(device="cpu", dtype=torch.float32, n=1024, repeat=8):
    """The measured matmul throughput of a device in FLOP/s: the best of `repeat` timed products after one
    untimed. MFU's denominator where no spec is known (CPUs). On a 2-core CPU a product of 1,024 reaches what one
    of 2,048 does (101 against 100 GFLOP/s on one core) in a fifth of the time."""
    a = torch.full((n, n), 0.5, device=device, dtype=dtype)  # no random draws: training's RNG stays put
    b = torch.full((n, n), 0.25, device=device, dtype=dtype)
    best, sync = float("inf"), torch.cuda.synchronize if a.is_cuda else (lambda: None)
    for _ in range(repeat + 1):
        sync()
        t = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


# Dense peak TFLOP/s of known GPUs, WITHOUT 2:4 structured sparsity (the datasheets' starred figures are twice
# these), from NVIDIA's datasheets (H100, H200, A100, L4, L40S, L40, A10, T4, V100) and, for the RTX 4090, the Ada
# Lovelace whitepaper (fp32 accumulation). "tf32": float32 matmuls on the tensor cores (float32 matmul precision
# "high" or "medium"). A dtype a GPU lacks, an unlisted GPU, or AWS's A10G (no datasheet) get the measured peak.
GPU_PEAKS = [  # (regular expression on torch.cuda.get_device_name(), name, dense TFLOP/s); first match wins
    (r"H100.*PCIe", "H100 PCIe", dict(bf16=756.5, fp16=756.5, tf32=378, fp32=51)),
    (r"H[12]00.*NVL", "H100/H200 NVL", dict(bf16=835.5, fp16=835.5, tf32=417.5, fp32=60)),
    (r"H100|H200", "H100/H200 SXM", dict(bf16=989.5, fp16=989.5, tf32=494.5, fp32=67)),
    (r"A100", "A100", dict(bf16=312, fp16=312, tf32=156, fp32=19.5)),
    (r"L40S", "L40S", dict(bf16=362, fp16=362, tf32=183, fp32=91.6)),
    (r"\bL40\b", "L40", dict(bf16=181, fp16=181, tf32=90.5, fp32=90.5)),
    (r"\bL4\b", "L4", dict(bf16=121, fp16=121, tf32=60, fp32=30.3)),
    (r"RTX 4090", "GeForce RTX 4090", dict(bf16=165.2, fp16=165.2, tf32=82.6, fp32=82.6)),
    (r"\bA10\b", "A10", dict(bf16=125, fp16=125, tf32=62.5, fp32=31.2)),
    (r"V100S", "V100S PCIe", dict(fp16=130, fp32=16.4)),
    (r"V100.*PCIe", "V100 PCIe", dict(fp16=112, fp32=14)),
    (r"V100", "V100 SXM2", dict(fp16=125, fp32=15.7)),
    (r"\bT4\b", "T4", dict(fp16=65, fp32=8.1)),
]


def spec_peak(device_name, dtype):
    """(FLOP/s, label) of a known GPU's dense datasheet peak for `dtype`, or None when not in GPU_PEAKS or when
    the device is a MIG slice (its name says "MIG"): a slice has a share of the GPU's compute, not all of it."""
    if "MIG" in device_name:
        return None
    kinds = {torch.bfloat16: ["bf16"], torch.float16: ["fp16"]}.get(dtype, [])
    if dtype == torch.float32:
        kinds = ["fp32"] if torch.get_float32_matmul_precision() == "highest" else ["tf32", "fp32"]
    for pattern, name, peaks in GPU_PEAKS:
        if re.search(pattern, device_name, re.IGNORECASE):
            kind = next((k for k in kinds if k in peaks), None)
            return None if kind is None else (peaks[kind] * 1e12, f"{name} dense {kind} spec peak")
    return None


def peak_flops(device, dtype=torch.float32):
    """The denominator of MFU, model FLOPs utilisation as PaLM and nanoGPT define it: the hardware's peak
    FLOP/s for `dtype` matmuls. Returns (flop/s, label): a known GPU's dense datasheet figure, else the measured
    matmul throughput, labelled "measured peak": on a CPU a 1,024 product; on an unlisted GPU or a MIG slice one
    of 8,192 (1.1 TFLOP each: long enough that launch overhead does not lower it, as it would a small one)."""
    device = torch.device(device)
    if device.type == "cuda":
        spec = spec_peak(torch.cuda.get_device_name(device), dtype)
        return spec or (matmul_peak(device, dtype, n=8192, repeat=4), "measured peak")
    return matmul_peak(device, dtype), "measured peak"


def flops_per_token(cfg, seq_len, lm_positions_fraction=1.0):
    """Model FLOPs of one forward pass per token (multiply-add = 2 FLOPs), attention scores included.
    Training (forward + backward) is 3x this. `lm_positions_fraction`: share of tokens the LM head sees."""
    H, L = cfg.hidden_size, cfg.num_layers
    per_layer = 2 * (4 * H * H + 2 * H * cfg.ffn_size) + 2 * 2 * seq_len * H
    lm_head = 2 * (H * H + H * cfg.vocab_size) * lm_positions_fraction
    return L * per_layer + lm_head


class Meter:
    """Tokens/s and MFU between two logged steps: model FLOPs per token (3x the forward, the LM head on the
    masked share) over the device's peak for the dtype (peak_flops), for every process together."""

    def __init__(self, model_cfg, seq_len, mask_rate, device, dtype, world):
        self.peak, self.label = peak_flops(device, dtype)
        self.device, self.dtype, self.remeasured = torch.device(device), dtype, False
        self.flops_per_token = 3 * flops_per_token(model_cfg, seq_len, mask_rate)
        self.world, self.t0, self.tokens = world, time.perf_counter(), 0

    def count(self, tokens):
        self.tokens += tokens

    @contextlib.contextmanager
    def paused(self):
        """Time spent inside (evaluation, saving) is left out of the next read, after the device's queued work."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t = time.perf_counter()
        try:
            yield
        finally:
            self.t0 += time.perf_counter() - t

    def read(self):
        """(tokens/s, MFU) since the last read; MFU None (unknown) where it would exceed 1 against a measured peak."""
        elapsed, tokens = time.perf_counter() - self.t0, self.tokens
        self.t0, self.tokens = time.perf_counter(), 0
        tps = tokens / elapsed
        mfu = tps * self.flops_per_token / (self.peak * self.world)
        if mfu > 1 and self.label == "measured peak" and not self.remeasured:
            # above 100%: the peak was measured under other load. Measure once more, keep the larger peak
            self.remeasured = True
            self.peak = max(self.peak, peak_flops(self.device, self.dtype)[0])
            mfu = tps * self.flops_per_token / (self.peak * self.world)
        return tps, mfu if mfu <= 1 or self.label != "measured peak" else None


# ---------------------------------------------------------------------------------------- numerics
def pick_device(name, local_rank):
    """--device: "" is cuda when available (this process's GPU: cuda:LOCAL_RANK), else cpu; a CUDA device is
    checked to exist and made the current one (NCCL needs it before the process group starts)."""
    name = name or ("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA device is available (use --device cpu)")
    device = torch.device(name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank if device.index is None else device.index)
        if device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
        torch.cuda.set_device(device)
    return device


def numerics(device, amp, deterministic, master):
    """TF32, an explicit choice: with --amp none on CUDA, float32 matmuls run on the tensor cores as TF32 (a 10-bit
    mantissa), said in one line, and MFU takes the TF32 peak. --deterministic: torch's deterministic algorithms,
    the cuBLAS workspace setting they need, and inductor's deterministic mode (no kernel choice by timing). On a
    CPU the runs are exact without it; on a GPU see docs/scale.md."""
    if device.type == "cuda" and amp == "none":
        torch.set_float32_matmul_precision("high")
        if master:
            print("note: --amp none on CUDA: float32 matmuls run as TF32 (tensor cores); --amp bf16 for mixed "
                  "precision", file=sys.stderr)
    if deterministic:
        import torch._inductor.config
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch._inductor.config.deterministic = True


# ---------------------------------------------------------------------------------------- torch.compile
class StaticShape(NamedTuple):
    """The one shape every compiled micro-batch is given, so that torch.compile compiles train.py's step at the
    start and never again: [rows, width] tokens, and the LM head on `slots(count)` positions (RobertaForMaskedLM's
    target_slots), a dynamic shape of the graphs, so that any number of targets runs them.

    A micro-batch with fewer rows gets copies of its first row with no targets (label -100, no next-sentence
    label): they change neither the loss nor the gradients, and need no attention mask. Fewer columns get padding.
    The cost: the partial last micro-batch of an update runs whole, and short formats run at --seq-len."""
    rows: int
    width: int
    pad_id: int

    def slots(self, count):
        """LM-head positions for `count` targets: rounded up to a multiple of 8 (aligned matrices), at least 8 (a
        size of 0 or 1 would get a graph of its own), at most every position."""
        return min(self.rows * self.width, 8 * max(1, math.ceil(count / 8)))

    def fit(self, inputs, labels, nsp, padded, device):
        """A micro-batch of CPU tensors (as train.py's batch thread makes them) on `device`, in this shape:
        (inputs, labels, nsp, padded, target slots). Its targets are counted on the CPU (no device sync); the
        rows and columns are added on the device (the copies stay asynchronous from pinned memory)."""
        slots = self.slots(int(labels.ne(-100).sum()))
        inputs, labels, nsp = (t if t is None else t.to(device, non_blocking=True) for t in (inputs, labels, nsp))
        B, T = inputs.shape
        if B < self.rows:  # copies of the first row, without targets
            inputs = torch.cat([inputs, inputs[:1].expand(self.rows - B, T)])  # [B, T] -> [rows, T]
            labels = F.pad(labels, (0, 0, 0, self.rows - B), value=-100)  # [B, T] -> [rows, T]
            nsp = None if nsp is None else F.pad(nsp, (0, self.rows - B), value=-100)  # [B] -> [rows]
        if T < self.width:  # padding on the right
            inputs = F.pad(inputs, (0, self.width - T), value=self.pad_id)  # [rows, T] -> [rows, width]
            labels = F.pad(labels, (0, self.width - T), value=-100)  # [rows, T] -> [rows, width]
            padded = True
        return inputs, labels, nsp, padded, slots

    def example(self, vocab_size, pairs, padded, targets):
        """A micro-batch of this shape for the warm-up, as train.py's batches come (CPU tensors): one token
        repeated, `targets` of them targets, a next-sentence label per row when `pairs`."""
        ids = torch.full((self.rows, self.width), vocab_size - 1)
        labels = torch.full_like(ids, -100)
        labels.view(-1)[:targets] = 0  # [rows * width] view
        nsp = torch.zeros(self.rows, dtype=torch.long) if pairs else None
        return ids, labels, nsp, padded, 1.0


def to_device(static, inputs, labels, nsp, padded, device):
    """A micro-batch of CPU tensors on `device`: (inputs, labels, nsp, padded, target slots). Eager (static None):
    as it is, the LM head on exactly its targets (counted on the CPU: no wait); compiled: in the StaticShape."""
    if static is None:
        slots = int(labels.ne(-100).sum())
        return (*(t if t is None else t.to(device, non_blocking=True) for t in (inputs, labels, nsp)), padded, slots)
    return static.fit(inputs, labels, nsp, padded, device)


def compile_trainer(tr, micro, backend="inductor"):
    """train.py's Trainer with its model compiled and its micro-batches given one StaticShape of `micro` rows of
    --seq-len, compiled now by a warm-up (the random state put back, the gradients dropped). The processes then
    agree (agree_on_compiling): the Trainer unchanged when not compiling, or where compiling failed everywhere."""
    if not (tr.cfg.compile if tr.cfg.compile is not None else tr.device.type == "cuda"):  # default: on CUDA
        return tr
    static = StaticShape(micro, tr.cfg.seq_len, tr.body.cfg.pad_id)
    compiled, error = None, None
    try:
        compiled = torch.compile(tr.model, backend=backend)
        with torch.random.fork_rng(devices=[tr.device] if tr.device.type == "cuda" else []):
            warm_up(compiled, tr, static)
    except Exception as e:  # noqa: BLE001 (no compiler toolchain, an unsupported platform, out of memory: agreed on)
        error = e
    finally:
        tr.body.zero_grad(set_to_none=True)
    return tr if agree_on_compiling(tr, error, micro) else tr._replace(model=compiled, static=static)


def warm_up(compiled, tr, static):
    """Compile train.py's two graphs now: the forward, called as train_step calls it, and the backward, on an
    example of the StaticShape with as many targets as usual, unpadded and padded; the number of target slots a
    dynamic shape in both. Under DDP's no_sync (no collective): a process that fails here leaves none waiting."""
    cfg = tr.body.cfg
    targets = static.slots(round(static.rows * static.width * tr.cfg.masking.rate))
    no_sync = compiled.no_sync() if tr.world > 1 else contextlib.nullcontext()
    with torch.compiler.config.patch(dynamic_sources="L['target_slots']"), no_sync:  # RobertaForMaskedLM.forward's
        for padded in (False, True):
            example = static.example(cfg.vocab_size, cfg.next_sentence_head, padded, targets)
            inputs, labels, nsp, padded, slots = static.fit(*example[:4], tr.device)
            with torch.autocast(tr.device.type, dtype=tr.amp_dtype or torch.float32, enabled=tr.amp_dtype is not None):
                out = compiled(inputs, labels=labels, reduction="sum", nsp_labels=nsp, padded=padded, target_slots=slots)
                sum(out if isinstance(out, tuple) else (out,)).backward()


def agree_on_compiling(tr, error, micro):
    """Whether to train eagerly, the same answer on every process (the warm-ups' errors gathered over a gloo group).
    None failed: compiled. Out of memory anywhere: every process stops, the first saying so in one line naming the
    micro-batch. Compiling failed everywhere (no toolchain): all eager, with a warning. On some processes only: all
    stop, the first saying which failed in one line, the others exiting quietly once it has left."""
    mine = error and (f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:160]}",
                      memory.is_out_of_memory(error))
    everyone = [mine]
    if tr.world > 1:
        everyone = [None] * tr.world
        dist.all_gather_object(everyone, mine, group=tr.cpu_group)
    failed = [rank for rank, said in enumerate(everyone) if said]
    out_of_memory = any(everyone[rank][1] for rank in failed)
    if not failed:
        return False
    if len(failed) == tr.world and not out_of_memory:
        if tr.rank == 0:
            print(f"warning: torch.compile failed ({everyone[0][0]}); training eagerly", file=sys.stderr)
        return True
    if tr.rank != 0:  # wait for the first process to say why and exit (torchrun then stops this one)
        with contextlib.suppress(Exception):
            dist.barrier(group=tr.cpu_group)
        raise SystemExit(1)
    if out_of_memory:
        raise ValueError(memory.out_of_memory_message(micro, tr.cfg.seq_len) + " (in the compile warm-up)")
    raise ValueError(f"torch.compile failed on process {failed[0]} of {tr.world} ({everyone[failed[0]][0]}) and not "
                     f"on the others: stopping them all; pass --no-compile to train eagerly")


class GraphCounter:
    """A torch.compile backend that counts: the graphs compiled (`ids`, torch's compile ids "frame/compile"),
    graph breaks (each break starts another frame), recompiles (a frame compiled again: its guards failed),
    and graph calls (`runs`: a step of k graphs calls k). `backend`: the compiler that does the work."""

    def __init__(self, backend="inductor"):
        self.backend, self.ids, self.runs = backend, [], 0

    def __call__(self, gm, example_inputs):
        self.ids.append(torch._guards.CompileContext.current_compile_id())
        compiled = torch._dynamo.lookup_backend(self.backend)(gm, example_inputs)

        def run(*args):
            self.runs += 1
            return compiled(*args)
        return run

    def frames(self):
        return len({i.frame_id for i in self.ids})

    def recompiles(self):
        return sum(i.frame_compile_id > 0 for i in self.ids)
