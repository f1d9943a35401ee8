"""The dropout family's counter-based stream: the same bits on every backend."""
import pytest
import torch

import tricks_ext
from tricks_ext import _backend
from tricks_ext.reference import philox

CASES = [(0, 0), (1234, 5), (2 ** 40 + 7, 2 ** 33 + 3), (2 ** 63 - 1, 17)]


def test_known_answers():
    """Random123's known-answer vectors for philox4x32-10 (the Triton rounds are the same)."""
    vectors = [
        ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
        ((0xFFFFFFFF,) * 4, (0xFFFFFFFF, 0xFFFFFFFF), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
        ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
         (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
    ]
    for ctr, key, expected in vectors:
        out = philox.philox_rounds([torch.tensor([c]) for c in ctr], *key)
        assert tuple(int(w) for w in out) == expected


def test_stream_layout():
    """Element i uses counter offset + i // 4 and word i % 4."""
    seed, offset = 99, 10
    words = philox.philox4x32_10(seed, torch.arange(offset, offset + 3))
    expected = torch.stack([philox.to_uniform(w) for w in words], dim=1).flatten()
    assert torch.equal(philox.uniform(seed, offset, 12), expected)


def test_uniform_statistics():
    u = philox.uniform(7, 0, 200_000)
    assert 0.0 <= u.min() and u.max() <= 1.0
    assert abs(u.mean().item() - 0.5) < 0.005  # sd of the mean: 0.29 / sqrt(2e5) = 6.5e-4
    keep = philox.keep_mask(7, 0, 200_000, 0.1).float().mean().item()
    assert abs(keep - 0.9) < 0.004  # 6 sd of a Binomial(2e5, 0.9) rate


@pytest.mark.skipif(not tricks_ext.HAS_C, reason="C++ extension not built")
@pytest.mark.parametrize("seed,offset", CASES)
def test_cpu_kernel_bit_identical(seed, offset):
    out = torch.empty(1001)
    torch.ops.tricks_ext.philox_uniform_(out, seed, offset)
    assert torch.equal(out, philox.uniform(seed, offset, 1001))


@pytest.mark.parametrize("seed,offset", CASES)
def test_triton_bit_identical(seed, offset):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    reason = _backend.unavailable_reason("triton", torch.device(device))
    if reason is not None:
        pytest.skip(reason)
    from tricks_ext.triton_kernels.philox import philox_uniform_
    out = torch.empty(1001, device=device)
    philox_uniform_(out, seed, offset)
    assert torch.equal(out.cpu(), philox.uniform(seed, offset, 1001))


@pytest.mark.gpu
@pytest.mark.skipif(not tricks_ext.HAS_CUDA_KERNELS, reason="built without CUDA kernels")
@pytest.mark.parametrize("seed,offset", CASES)
def test_cuda_kernel_bit_identical(seed, offset):
    out = torch.empty(1001, device="cuda")
    torch.ops.tricks_ext.philox_uniform_(out, seed, offset)
    assert torch.equal(out.cpu(), philox.uniform(seed, offset, 1001))
