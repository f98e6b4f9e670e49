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
