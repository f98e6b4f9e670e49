"""The micro-batch that fits (machinery/basics/memory.py): the estimate from the shapes, the choice of a power of
two or a one-line refusal, the free memory read, and an out-of-memory error told in one line."""
import pytest
import torch

import roberta
import train
from machinery.basics import memory, speed

GB = memory.GB


def base():
    cfg = roberta.RobertaConfig.preset("base", vocab_size=50265)
    with torch.device("meta"):
        return cfg, roberta.num_parameters(roberta.RobertaForMaskedLM(cfg))


def test_the_estimate_follows_the_shapes():
    cfg, _ = base()
    fp32, bf16 = (memory.activation_bytes(cfg, 512, e, 0.15, fused_attention=True) for e in (4, 2))
    assert 1.5 < fp32 / bf16 < 2  # the dropout masks stay 1 byte
    # Korthikanti et al.'s 34h bytes per token and layer in 16 bits, with fused attention (no T x T scores), and
    # 4h more: the LayerNorms' inputs stay float32 under autocast
    assert memory.activation_bytes(cfg, 512, 2, 0.0, True) == 512 * (12 * 38 * 768 + 5 * 768)
    unfused = memory.activation_bytes(cfg, 512, 4, 0.15, fused_attention=False)
    assert unfused - fp32 == 512 * 12 * (12 * 512 * 12 + 8 * 768)  # softmax, mask, dropout; scaled q and k
    assert memory.activation_bytes(cfg, 256, 4, 0.15, True) * 2 == pytest.approx(fp32, rel=1e-6)


def test_the_whole_share_when_it_fits_else_the_largest_power_of_two(capsys):
    cfg, n = base()
    per = int(1.25 * memory.activation_bytes(cfg, 512, 2, 0.15, fused_attention=True))
    fixed = memory.state_bytes(n, True)
    cuda = torch.device("cuda")
    pick = lambda share, free: memory.fitting_micro_batch(cfg, n, 512, True, 0.15, share, cuda, True, free=free)
    assert pick(24, (fixed + 24 * per) / 0.85 + 1) == 24 and capsys.readouterr().err == ""
    # the headline command on 8 x 80 GB: 1,024 sequences per GPU cannot fit; a power of two that does
    micro = pick(1024, 80 * GB)
    assert micro & (micro - 1) == 0 and 1024 % micro == 0
    assert fixed + micro * per <= 0.85 * 80 * GB < fixed + 2 * micro * per
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"micro-batches of {micro} sequences" in err and "--micro-batch-size" in err
    assert pick(24, (fixed + 5 * per) / 0.85) == 4  # a power of two that divides the share: 4, not 8
    with pytest.raises(ValueError, match=r"--micro-batch-size 1.*") as e:
        pick(8, fixed)
    assert "GB" in str(e.value) and "\n" not in str(e.value)


def test_free_memory_on_a_cpu_is_memavailable_shared_by_the_local_processes(tmp_path, monkeypatch):
    info = tmp_path / "meminfo"
    info.write_text("MemTotal:       32000000 kB\nMemFree:         1000000 kB\nMemAvailable:   16000000 kB\n")
    assert memory.free_bytes(torch.device("cpu"), str(info)) == 16000000 * 1024
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert memory.free_bytes(torch.device("cpu"), str(info)) == 8000000 * 1024
    assert memory.free_bytes(torch.device("cpu"), str(tmp_path / "none")) is None


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                                   RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to ...")])
def test_out_of_memory_is_one_line_naming_the_micro_batch(error):
    with pytest.raises(ValueError) as e, memory.named_out_of_memory(16, 512):
        raise error
    assert str(e.value).startswith("out of memory with micro-batches of 16 sequences of 512 tokens")
    with pytest.raises(RuntimeError, match="other"), memory.named_out_of_memory(16, 512):
        raise RuntimeError("other")


def test_out_of_memory_in_the_compile_warm_up_is_not_a_compile_failure(monkeypatch, capsys):
    def compile_(model, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")
    monkeypatch.setattr(torch, "compile", compile_)
    model = roberta.RobertaForMaskedLM(roberta.RobertaConfig.preset("tiny", vocab_size=100))
    tr = train.Trainer(train.TrainConfig(compile=True, seq_len=16), model, model, roberta.adamw(model, 1e-3, 0.01),
                       None, None, torch.device("cpu"), 0, 1, None)
    with pytest.raises(ValueError, match="out of memory with micro-batches of 4 sequences of 16 tokens"):
        speed.compile_trainer(tr, 4)
    assert "compile failed" not in capsys.readouterr().err
