"""The real peers the tests compare against (benchmarks/peers.py loads them); a test that
needs one skips with the reason where it is missing."""
import pytest

from benchmarks.peers import load_pytorch_optimizer, load_timm


def timm():
    module, why = load_timm()
    if module is None:
        pytest.skip(why)
    return module


def pytorch_optimizer():
    module, why = load_pytorch_optimizer()
    if module is None:
        pytest.skip(why)
    return module
