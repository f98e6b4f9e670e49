"""Shared test helpers. Tests that read ../shared/data skip cleanly when it is absent (a fresh clone)."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
sys.path.insert(0, ROOT)


def shared_path(*parts):
    """A path under ../shared/data, or skip the test when that copy of the data is not there."""
    path = os.path.join(SHARED, *parts)
    if not os.path.exists(path):
        pytest.skip(f"needs ../shared/data/{'/'.join(parts)}")
    return path


@pytest.fixture(scope="session")
def roberta_tok():
    import bpe
    return bpe.Tokenizer.load(shared_path("roberta"))


@pytest.fixture(scope="session")
def gpt2_tok():
    import bpe
    return bpe.Tokenizer.load(shared_path("gpt2"))


MICRO_TEXT = ["A man plays the guitar.", "Someone plays music.", "The quick brown fox jumps over the lazy dog.",
              "Is it raining in Paris today?", "What is the capital of France?"] * 20


@pytest.fixture(scope="module")
def micro_roberta(tmp_path_factory):
    """A tiny "pretrained" model (seed 0) with a 300-token vocabulary and 64 positions, in the Hugging Face layout
    (small checkpoints, quick runs)."""
    import bpe
    import roberta
    import torch
    d = tmp_path_factory.mktemp("micro")
    tok = bpe.Tokenizer.train(MICRO_TEXT, 300, min_frequency=1)
    torch.manual_seed(0)
    cfg = roberta.RobertaConfig.preset("tiny", vocab_size=len(tok), max_positions=64)
    roberta.save_pretrained(roberta.RobertaForMaskedLM(cfg), d)
    tok.save(d)
    return d


@pytest.fixture(scope="module")
def one_torch_thread():
    """One thread: tiny models gain nothing from a second, and on a loaded machine threads wait for each other."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
