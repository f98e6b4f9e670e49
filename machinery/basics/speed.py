"""Speed: MFU (model FLOPs utilisation, as PaLM and nanoGPT define it), and torch.compile for train.py's step:
one shape for every micro-batch (StaticShape), a warm-up that compiles it at the start, a graph counter.

MFU = model FLOPs per second / the device's peak FLOP/s for the dtype. The model FLOPs come from the
shapes (flops_per_token); the peak from NVIDIA's datasheets for known GPUs, else a measured matmul.
train.py logs tokens/s and MFU through a Meter; bench.py prints them for the bare step.
"""
import math
import os
import re
import sys
import time
from types import SimpleNamespace
from typing import NamedTuple

import torch
import torch.nn.functional as F


def cpus_allowed():
    """The CPUs this process may run on (its affinity mask: a container's or taskset's share), not the machine's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows: no affinity mask
        return os.cpu_count() or 1


def idle_cpus(seconds=0.2, read_stat=None):
    """The allowed CPUs that other work leaves free now (at least 1): each allowed CPU's busy share over
    `seconds`, from two readings of /proc/stat (`read_stat`: its text), summed and rounded. Not the load
    average, which trails by a minute. Where /proc/stat cannot be read (macOS, Windows), all allowed CPUs.
    On 2 cores with one busy, 1 thread trains this project's tiny model 2.4x faster than 2 (13.2K against
    5.4K tokens/s)."""
    def read():
        if read_stat is not None:
            return read_stat()
        with open("/proc/stat") as f:
            return f.read()

    def times(text):  # {cpu id: (idle jiffies, all jiffies)}; idle counts iowait too
        out = {}
        for line in text.splitlines():
            name, *fields = line.split()
            if re.fullmatch(r"cpu\d+", name or "") and len(fields) >= 4:
                values = [int(v) for v in fields[:8]]
                out[int(name[3:])] = (values[3] + (values[4] if len(values) > 4 else 0), sum(values))
        return out
    try:
        allowed = os.sched_getaffinity(0)
    except AttributeError:
        allowed = None
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
    """The measured matmul throughput of a device in FLOP/s, on the threads this process uses (torch's
    setting): the best of `repeat` timed products after one untimed, so that a moment of other load does
    not lower it. MFU's denominator where no spec is known (CPUs have none). On a 2-core CPU a product of
    1,024 reaches what one of 2,048 does (101 against 100 GFLOP/s on one core) in a fifth of the time,
    which every run pays at its start."""
    a = torch.full((n, n), 0.5, device=device, dtype=dtype)  # no random draws: training's RNG stays put
    b = torch.full((n, n), 0.25, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeat + 1):
        if a.is_cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        if a.is_cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best


# Dense peak TFLOP/s of known GPUs, from NVIDIA's datasheets: the figures WITHOUT 2:4 structured sparsity
# (the datasheets' starred ones are twice these), which is what dense training can reach. Sources: the
# H100 and H200 Tensor Core GPU datasheets (SXM, PCIe, NVL), the A100 datasheet (SXM and PCIe, 40 and
# 80 GB: the same compute), the L4, L40S, L40, A10, T4 and V100 datasheets, and for the RTX 4090 the Ada
# Lovelace architecture whitepaper's appendix (bf16/fp16 with fp32 accumulation, as PyTorch's matmuls
# accumulate). "tf32": float32 matmuls on the tensor cores, which PyTorch does when
# torch.get_float32_matmul_precision() is "high" or "medium"; "fp32": plain float32. A dtype a GPU lacks
# (bf16 on V100 and T4), an unlisted GPU, or AWS's A10G (NVIDIA publishes no datasheet for it, and its
# tensor throughput differs from the A10's) fall back to the measured matmul peak.
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
    """(FLOP/s, label) of a known GPU's dense datasheet peak for `dtype`, or None when not in GPU_PEAKS."""
    if dtype == torch.float32:
        kinds = ["fp32"] if torch.get_float32_matmul_precision() == "highest" else ["tf32", "fp32"]
    else:
        kinds = {torch.bfloat16: ["bf16"], torch.float16: ["fp16"]}.get(dtype, [])
    for pattern, name, peaks in GPU_PEAKS:
        if re.search(pattern, device_name, re.IGNORECASE):
            kind = next((k for k in kinds if k in peaks), None)
            return None if kind is None else (peaks[kind] * 1e12, f"{name} dense {kind} spec peak")
    return None


def peak_flops(device, dtype=torch.float32):
    """The denominator of MFU, model FLOPs utilisation as PaLM and nanoGPT define it: the hardware's peak
    FLOP/s for `dtype` matmuls. Returns (flop/s, label): a known GPU's dense datasheet figure, else (CPU,
    unlisted GPUs) the measured matmul throughput, labelled "measured peak"."""
    device = torch.device(device)
    if device.type == "cuda":
        spec = spec_peak(torch.cuda.get_device_name(device), dtype)
        if spec is not None:
            return spec
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
        self.device, self.dtype, self.remeasured = device, dtype, False
        self.flops_per_token = 3 * flops_per_token(model_cfg, seq_len, mask_rate)
        self.world, self.t0, self.tokens = world, time.perf_counter(), 0

    def count(self, tokens):
        self.tokens += tokens

    def read(self):
        """(tokens/s, MFU) since the last read."""
        elapsed, tokens = time.perf_counter() - self.t0, self.tokens
        self.t0, self.tokens = time.perf_counter(), 0
        tps = tokens / elapsed
        mfu = tps * self.flops_per_token / (self.peak * self.world)
        if mfu > 1 and self.label == "measured peak" and not self.remeasured:
            # above 100%: the peak was measured under other load. Measure once more, keep the larger peak
            self.remeasured = True
            self.peak = max(self.peak, matmul_peak(self.device, self.dtype))
            mfu = tps * self.flops_per_token / (self.peak * self.world)
        return tps, min(mfu, 1.0)  # never above 1: a measured peak can still be low; MFU is then a lower bound


# ---------------------------------------------------------------------------------------- torch.compile
def wants_compile(cfg, device):
    """--compile: on by default on CUDA (--compile/--no-compile decide)."""
    return cfg.compile if cfg.compile is not None else device.type == "cuda"


def maybe_compile(model, cfg, device, master, warm_up=None, backend="inductor"):
    """torch.compile (on by default on CUDA). Compiling happens at a model's first call: `warm_up(compiled)`
    makes those calls now, on the shapes training will use, with the random state put back and the gradients
    dropped, so that a failure shows here (no compiler toolchain, an unsupported platform): the run then goes
    on eagerly, with a warning. Without warm_up, compiling waits for the first step."""
    if not wants_compile(cfg, device):
        return model
    try:
        compiled = torch.compile(model, backend=backend)
        if warm_up is not None:
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                warm_up(compiled)
        return compiled
    except Exception as e:
        if master:
            print(f"warning: torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}); "
                  f"training eagerly", file=sys.stderr)
        return model
    finally:
        model.zero_grad(set_to_none=True)


class StaticShape(NamedTuple):
    """The one shape every compiled micro-batch is given, so that torch.compile compiles train.py's step at the
    start (two graphs, see compile_trainer) and never again, whatever the batch: [rows, width] tokens, and the
    LM head on `slots(count)` positions (roberta.RobertaForMaskedLM's target_slots), a size the graphs take as
    a variable (a dynamic shape), so that any number of targets runs them.

    A micro-batch with fewer rows gets copies of its first row with no targets (label -100, no next-sentence
    label): they change neither the loss nor the gradients, and need no attention mask, as padding rows would.
    Fewer columns get padding (then the batch is padded). The cost: the partial last micro-batch of an update
    runs whole, and formats of short sequences (sentence-pair) run at --seq-len, not at their longest row."""
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
    as it is, no slots; compiled: in the StaticShape."""
    if static is None:
        return (*(t if t is None else t.to(device, non_blocking=True) for t in (inputs, labels, nsp)), padded, None)
    return static.fit(inputs, labels, nsp, padded, device)


class _NoStep:
    """An optimizer that does not step, for the warm-up: the weights and Adam's moments stay as they are."""

    def __init__(self, model):
        self.model = model

    def step(self):
        pass

    def zero_grad(self, set_to_none=True):
        self.model.zero_grad(set_to_none=set_to_none)


def compile_trainer(tr, micro, train_step, backend="inductor"):
    """train.py's Trainer with its model compiled and its micro-batches given one StaticShape of `micro` rows of
    --seq-len, compiled now by `train_step` (train.py's, without its optimizer step or loss scaler) on an example
    of that shape, unpadded and padded: two graphs, the number of target slots a variable in both (a dynamic
    shape, by dynamo's dynamic_sources). The Trainer unchanged when not compiling, or where compiling fails (with
    a warning)."""
    if not wants_compile(tr.cfg, tr.device):
        return tr
    body = tr.body.cfg
    static = StaticShape(micro, tr.cfg.seq_len, body.pad_id)
    targets = static.slots(round(micro * tr.cfg.seq_len * tr.cfg.masking.rate))  # as many as usual

    def warm_up(compiled):
        warm = tr._replace(model=compiled, static=static, opt=_NoStep(tr.body), scaler=None)
        with torch.compiler.config.patch(dynamic_sources="L['target_slots']"):  # RobertaForMaskedLM.forward's
            for padded in (False, True):
                example = static.example(body.vocab_size, body.next_sentence_head, padded, targets)
                train_step(warm, SimpleNamespace(micro_batches=[example], n_sequences=micro), targets)
    compiled = maybe_compile(tr.model, tr.cfg, tr.device, tr.rank == 0, warm_up, backend)
    return tr if compiled is tr.model else tr._replace(model=compiled, static=static)


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
