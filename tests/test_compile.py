"""torch.compile: the LM head on a fixed number of target slots gives today's loss and gradients; train.py's
compiled step runs as one graph, compiles at its warm-up and never again, whatever the batches; bench.py gpu
refuses a machine without CUDA. The compiling tests use the aot_eager backend (dynamo's graph capture and
AOT autograd, without inductor's C++ build): the graph breaks and recompiles are dynamo's, the same."""
import itertools
import os

import pytest
import torch
import torch.nn.functional as F

import bench
import bpe
import data
import roberta
import train
from machinery.commands import corpora, train_cli
from machinery.basics import files, speed
from machinery.datafolder import preparation

V = 100  # vocabulary of the small models here


def tiny(pairs=False, seed=0):
    torch.manual_seed(seed)
    cfg = roberta.RobertaConfig.preset("tiny", vocab_size=V, dropout=0.0, attention_dropout=0.0,
                                       next_sentence_head=pairs)
    return roberta.RobertaForMaskedLM(cfg)


def masked(B, T, rate, seed, pad_from=None):
    """(ids, labels) of ordinary tokens, a `rate` share of them targets; rows padded from column pad_from[i]."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, V, (B, T), generator=g)
    labels = torch.where(torch.rand(B, T, generator=g) < rate, ids, -100)
    for i, start in enumerate(pad_from or []):
        ids[i, start:], labels[i, start:] = 1, -100
    return ids, labels


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def reference(model, ids, labels, nsp=None):
    """Today's loss with a plain full-vocabulary cross-entropy over every position (-100 ignored), summed,
    and its gradients."""
    model.zero_grad()
    x = model.roberta(ids)
    logits = model.lm_head(x, model.roberta.embeddings.tokens.weight)  # [B, T, V]
    loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="sum")  # [B*T, V], [B*T]
    if nsp is not None:
        loss = loss + F.cross_entropy(model.nsp(x[:, 0]), nsp, reduction="sum")
    loss.backward()
    return loss.detach(), grads(model)


def summed(model, ids, labels, nsp=None, **kw):
    model.zero_grad()
    out = model(ids, labels=labels, reduction="sum", nsp_labels=nsp, **kw)
    loss = sum(out) if isinstance(out, tuple) else out
    loss.backward()
    return loss.detach(), grads(model)


def assert_same(a, b, atol=1e-5):
    torch.testing.assert_close(a[0], b[0], atol=atol, rtol=1e-5)
    assert a[1].keys() == b[1].keys()
    for name in a[1]:
        torch.testing.assert_close(a[1][name], b[1][name], atol=atol, rtol=1e-4, msg=name)


# ---------------------------------------------------------------- the LM head on target slots (eager)
@pytest.mark.parametrize("pairs", [False, True])
def test_target_slots_give_the_full_vocabulary_loss_and_gradients(pairs):
    model = tiny(pairs)
    ids, labels = masked(3, 16, 0.2, seed=1)
    nsp = torch.tensor([0, 1, -100]) if pairs else None  # -100: a row added to fill a shape, no NSP label
    count = int(labels.ne(-100).sum())
    ref = reference(model, ids, labels, nsp)
    assert_same(summed(model, ids, labels, nsp), ref)  # the exact targets (eager's path)
    for slots in (count, count + 5, 3 * 16, 1000):  # targets first, then ignored positions; past B*T: all
        assert_same(summed(model, ids, labels, nsp, target_slots=slots), ref)
    if not pairs:  # the interface: the mean over the targets
        torch.testing.assert_close(model(ids, labels=labels, target_slots=count + 3), ref[0] / count)
        torch.testing.assert_close(model(ids, labels=labels), ref[0] / count)


def test_target_slots_with_no_targets_give_zero():
    model = tiny()
    ids, _ = masked(2, 8, 0.2, seed=2)
    none = torch.full_like(ids, -100)
    assert model(ids, labels=none, target_slots=8).item() == 0.0 == model(ids, labels=none).item()


def test_too_few_slots_would_drop_targets():
    """The slots must cover the targets (StaticShape.slots sees to it): fewer give another loss, so the
    equality above is not vacuous."""
    model = tiny()
    ids, labels = masked(2, 16, 0.3, seed=3)
    count = int(labels.ne(-100).sum())
    with torch.no_grad():
        assert model(ids, labels=labels, reduction="sum", target_slots=count - 2).item() != pytest.approx(
            model(ids, labels=labels, reduction="sum").item())


# ---------------------------------------------------------------- the one shape (speed.StaticShape)
def test_slots_cover_every_count_with_at_most_7_more():
    s = speed.StaticShape(rows=8, width=30, pad_id=1)
    for count in range(0, 241):
        slots = s.slots(count)
        assert count <= slots <= 240 and slots >= 8  # never 0 or 1: those sizes would get graphs of their own
        assert slots == 240 or (slots % 8 == 0 and slots - max(count, 1) < 8)  # the LM head's saving stays


def test_fit_fills_the_shape_without_changing_loss_or_gradients():
    model = tiny(pairs=True)
    s = speed.StaticShape(rows=5, width=16, pad_id=1)
    ids, labels = masked(3, 12, 0.2, seed=4, pad_from=[12, 9, 12])
    nsp = torch.tensor([1, 0, 1])
    inputs, fit_labels, fit_nsp, padded, slots = s.fit(ids, labels, nsp, True, "cpu")
    assert inputs.shape == fit_labels.shape == (5, 16) and padded and fit_nsp.tolist() == [1, 0, 1, -100, -100]
    assert torch.equal(inputs[3:, :12], ids[:1].expand(2, 12))  # the added rows: copies of the first, ...
    assert (fit_labels[3:] == -100).all() and (fit_labels[:, 12:] == -100).all()  # ... with no targets
    assert (inputs[:, 12:] == 1).all() and slots >= int(labels.ne(-100).sum())
    assert_same(summed(model, inputs, fit_labels, fit_nsp, padded=True, target_slots=slots),
                summed(model, ids, labels, nsp, padded=True))
    # a whole unpadded micro-batch goes through as it is
    ids, labels = masked(5, 16, 0.2, seed=5)
    inputs, fit_labels, _, padded, _ = s.fit(ids, labels, None, False, "cpu")
    assert torch.equal(inputs, ids) and torch.equal(fit_labels, labels) and padded is False


# ---------------------------------------------------------------- compiled (aot_eager)
@pytest.mark.slow
def test_the_compiled_model_has_no_graph_break_with_target_slots():
    import torch._dynamo
    model = tiny(pairs=True)
    ids, labels = masked(2, 16, 0.2, seed=6)
    nsp = torch.tensor([0, 1])
    for padded in (False, True):
        torch._dynamo.reset()
        e = torch._dynamo.explain(model)(ids, labels=labels, reduction="sum", nsp_labels=nsp, padded=padded,
                                         target_slots=16)
        assert e.graph_break_count == 0 and e.graph_count == 1, e.break_reasons
    torch._dynamo.reset()  # the exact targets: the breaks this test would catch
    e = torch._dynamo.explain(model)(ids, labels=labels, reduction="sum", padded=False)
    assert e.graph_break_count >= 1
    torch._dynamo.reset()


def trainer(model, micro, seq_len, rate, compiled, counter=None):
    cfg = train.TrainConfig(seq_len=seq_len, batch_size=2 * micro, micro_batch_size=micro, compile=compiled,
                            device="cpu", masking=data.Masking(rate=rate), dropout=0.0)
    opt = roberta.adamw(model, lr=1e-3, weight_decay=0.01)
    tr = train.Trainer(cfg, model, model, opt, None, None, torch.device("cpu"), 0, 1, None)
    return speed.compile_trainer(tr, micro, backend=counter) if compiled else tr


def varied_batches(micro, seq_len, rate, pairs):
    """~20 updates as training makes them: two micro-batches, a partial last one, one micro-batch, a single
    sequence, target counts from none to every position, padded rows, shorter rows, a weight-0 micro-batch."""
    out = []
    for step in range(20):
        sizes = [[micro, micro], [micro, micro - 1], [micro], [1], [micro, 2]][step % 5]
        mbs = []
        for j, B in enumerate(sizes):
            T = seq_len if step % 3 else seq_len - 8  # a batch whose longest row is shorter
            share = [rate, 0.0, 3 * rate, rate / 2, 1.0][(step + j) % 5]
            ids, labels = masked(B, T, share, seed=100 * step + j, pad_from=[T // 2] if step % 4 == 1 else None)
            nsp = torch.randint(0, 2, (B,)) if pairs else None
            weight = 0.0 if step == 7 else 1.0
            if weight == 0:
                labels = torch.full_like(labels, -100)
            mbs.append((ids, labels, nsp, bool(ids.eq(1).any()), weight))
        n_targets = sum(int(mb[1].ne(-100).sum()) for mb in mbs)
        out.append((train.Batch(mbs, [n_targets, 0], sum(sizes)), n_targets))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("pairs", [False, True])
def test_training_steps_compile_at_warm_up_and_never_again(pairs):
    """~20 varied updates through train.py's train_step, the held-out evaluation between them: after the
    warm-up no graph is compiled, every forward runs one graph, and the losses and weights follow the eager
    step's."""
    import torch._dynamo
    torch._dynamo.reset()
    micro, seq_len, rate = 4, 32, 0.15
    counter = speed.GraphCounter("aot_eager")
    compiled, eager = tiny(pairs, seed=7), tiny(pairs, seed=7)
    tc, te = trainer(compiled, micro, seq_len, rate, True, counter), trainer(eager, micro, seq_len, rate, False)
    assert tc.static is not None and te.static is None
    warm = list(counter.ids)
    assert len(warm) == 2 and counter.frames() == 1  # unpadded and padded, each one whole graph
    assert all(p.grad is None for p in compiled.parameters())  # the warm-up left no gradients
    heldout = [masked(3, 20, 0.15, seed=9)]
    forwards = counter.runs
    for i, (batch, n_targets) in enumerate(varied_batches(micro, seq_len, rate, pairs)):
        if n_targets == 0:
            continue  # train.py refuses an update without targets (_train)
        sums_c, finite_c = train.train_step(tc, batch, n_targets)
        sums_e, finite_e = train.train_step(te, batch, n_targets)
        forwards += len(batch.micro_batches)
        assert bool(finite_c) and bool(finite_e)
        torch.testing.assert_close(sums_c, sums_e, atol=1e-4, rtol=1e-5)
        if i % 6 == 5:  # evaluation runs the plain model, eagerly
            assert data.evaluate_mlm(tc.body, heldout) == pytest.approx(data.evaluate_mlm(te.body, heldout), rel=1e-5)
    assert counter.ids == warm, f"compiled after the warm-up: {counter.ids[len(warm):]}"
    assert counter.runs == forwards  # one graph per forward: no graph break
    for (name, a), b in zip(compiled.named_parameters(), eager.parameters()):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4, msg=name)
    torch._dynamo.reset()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The built-in corpus's reference documentation (79 documents, 430 KB), a 300-token BPE, 5% held out."""
    d = tmp_path_factory.mktemp("compile")
    corpus = str(d / "corpus.txt")
    files.write_atomic(corpus, "".join("\n".join(doc) + "\n\n" for doc in corpora.reference_topics()))
    bpe.Tokenizer.train(itertools.islice(files.read_lines(corpus), 3000), 300).save(d / "tok")
    preparation.prepare([corpus], str(d / "tok"), str(d / "data"), valid_fraction=0.05, workers=1, verbose=False)
    return d / "data"


@pytest.mark.slow
def test_train_py_compiled_run_compiles_only_at_warm_up(prepared, tmp_path, monkeypatch):
    """train.py itself, --compile on the CPU: doc-sentences (padded rows, a varying number of sequences per
    update), micro-batches of 3 out of 8 (a partial last one), evaluation every 4 steps."""
    import torch._dynamo
    torch._dynamo.reset()
    counter, compile_ = speed.GraphCounter("aot_eager"), torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, backend=None: compile_(model, backend=counter))
    train_cli.main(["--data", str(prepared), "--out", str(tmp_path / "run"), "--config", "tiny", "--seq-len", "32",
                "--batch-size", "8", "--micro-batch-size", "3", "--max-steps", "12", "--format", "doc-sentences",
                "--eval-interval", "4", "--eval-sequences", "8", "--log-interval", "4", "--device", "cpu",
                "--compile", "--dropout", "0"])
    assert len(counter.ids) == 2 and counter.frames() == 1 and counter.recompiles() == 1  # both at the warm-up
    assert counter.runs >= 2 + 12 * 3  # the warm-up's 2, then 3 or more micro-batches per update
    log = [line for line in files.read_text(os.path.join(tmp_path, "run", "log.jsonl")).splitlines()]
    assert sum('"valid_loss"' in line for line in log) == 3
    torch._dynamo.reset()


# ---------------------------------------------------------------- bench.py gpu without a GPU
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_bench_gpu_refuses_a_machine_without_cuda(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        bench.main(["gpu"])
    message = e.value.code
    assert isinstance(message, str) and message.count("\n") == 0 and "no CUDA device" in message
    assert os.listdir(tmp_path) == []  # nothing written



def gpu_args(**kw):
    from types import SimpleNamespace
    return SimpleNamespace(**{**dict(config="tiny", batch_size=4, seq_len=32, steps=3, windows=2, vocab_size=300,
                                     run_timeout=300, device="cpu", compile=False), **kw})


def test_the_batch_thread_rows_can_show_the_thread(prepared):
    """bench.py gpu's batch-thread rows on a CPU: with a slow preparation (sleep, which leaves the CPU free) the
    thread hides it, while the synchronous loop pays it whole; each row min <= median <= max."""
    from machinery.commands import bench_device
    args = gpu_args(steps=4, windows=2)
    updates, _, tok = bench_device.train_py_updates(str(prepared), args, args.steps)
    model = roberta.RobertaForMaskedLM(roberta.RobertaConfig.preset("tiny", vocab_size=len(tok), pad_id=tok.pad_id))
    tr, _ = bench_device.step_trainer(model, args.batch_size, args.seq_len, "none", False)
    step_ms = min(bench_device.windows(tr, updates, args)) / args.steps * 1000
    rows = bench_device.thread_rows(tr, updates, args, delay=step_ms / 1000)  # synchronous: 2 steps; thread: ~1
    assert all(x["min"] <= x["median"] <= x["max"] for x in rows.values())
    assert rows["thread (--prefetch 2)"]["median"] < 0.8 * rows["synchronous loop"]["median"]


@pytest.mark.slow
def test_bench_gpu_table_on_a_cpu_survives_a_row_out_of_memory(tmp_path, monkeypatch):
    """gpu_results and its markdown on a CPU (eager, bf16 autocast, tiny): every row in windows with their spread;
    a row that runs out of memory is one cell, the others measured."""
    from machinery.commands import bench_device

    def out_of_memory(*args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    monkeypatch.setattr(bench_device, "transformers_eager", out_of_memory)
    r = bench_device.gpu_results(gpu_args(), torch.device("cpu"))
    assert set(r["rows"]) == {"thread", "transformers", "train.py bf16"}
    assert r["rows"]["transformers"] == {"error": "OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB"}
    for x in [r["bare_bf16"]["tokens_per_s"], r["rows"]["train.py bf16"]["tokens_per_s"], *r["rows"]["thread"].values()]:
        assert 0 < x["min"] <= x["median"] <= x["max"]
    bench_device.write_gpu_table(r, str(tmp_path / "gpu.md"))
    text = files.read_text(tmp_path / "gpu.md")
    assert "2 timed windows of 3 updates" in text and "| train.py | bf16 |" in text and "synchronous loop" in text
    assert "OutOfMemoryError" in text and os.path.exists(tmp_path / "gpu.json")
