"""scripts/peer_model.py: the bytes it records for known aten chains, the CUDA paths it makes meta
tensors take, and its table of torch's kernels against the representatives it names."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as TF

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import gpu_model  # noqa: E402
import peer_model  # noqa: E402

META = torch.device("meta")
MB = 1000 * 1000 * 4  # bytes of a 1000 x 1000 float32 tensor


def _t(*shape, dtype=torch.float32):
    return torch.empty(*shape, device=META, dtype=dtype)


def test_elementwise_chain_bytes():
    """x * 2 + y: the mul reads x and writes a temporary, the add reads both and writes z."""
    x, y = _t(1000, 1000), _t(1000, 1000)
    calls = peer_model.record(lambda: x * 2 + y)
    assert [c.name for c in calls] == ["aten.mul.Tensor", "aten.add.Tensor"]
    assert [(c.read, c.written) for c in calls] == [(MB, MB), (2 * MB, MB)]
    assert {c.family for c in calls} == {"elementwise"}


def test_views_broadcasts_and_in_place():
    """Views move nothing; an expanded operand is read once per distinct element; an in-place op
    reads and writes its argument; a copy_ writes without reading its destination."""
    x, bias = _t(1000, 1000), _t(1000)
    calls = peer_model.record(lambda: (x.t(), x.view(-1), x.add_(bias.expand(1000, 1000)), x.copy_(x.t())))
    assert [c.name for c in calls] == ["aten.add_.Tensor", "aten.copy_.default"]
    add, copy = calls
    assert (add.read, add.written) == (MB + 4000, MB)
    assert (copy.read, copy.written) == (MB, MB)


def test_reduction_and_softmax_families():
    x = _t(256, 1000, dtype=torch.bfloat16)
    calls = peer_model.record(lambda: (x.float().sum(1), TF.log_softmax(x, 1)))
    assert [(c.name, c.family, c.dtype) for c in calls] == [
        ("aten._to_copy.default", "elementwise", "bfloat16"), ("aten.sum.dim_IntList", "reduce", "float32"),
        ("aten._log_softmax.default", "softmax", "bfloat16")]


def test_dropout_takes_the_fused_cuda_kernel():
    """On meta F.dropout decomposes (bernoulli_, div_, mul); on CUDA it is one native_dropout
    that writes the output and a bool mask."""
    x = _t(1000, 1000)
    with peer_model._as_on_cuda():
        calls = peer_model.record(lambda: TF.dropout(x, 0.1, training=True))
    assert [(c.name, c.family) for c in calls] == [("aten.native_dropout.default", "dropout")]
    assert (calls[0].read, calls[0].written) == (MB, MB + MB // 4)
    decomposed = peer_model.record(lambda: TF.dropout(x, 0.1, training=True))
    assert len(decomposed) > 1  # what the patch undoes


@pytest.mark.parametrize("make", [lambda ps: torch.optim.Adam(ps, fused=True),
                                  lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, fused=True)],
                         ids=["adam", "sgd"])
def test_fused_optimizers_take_their_cuda_path(make):
    """A fused optimizer refuses meta tensors unless they take CUDA's path; torch's fused SGD has
    no meta kernel and is counted without running. Adam reads p, g, m, v and writes p, m, v."""
    params = [_t(1000, 1000).requires_grad_(True) for _ in range(3)]
    for p in params:
        p.grad = torch.empty_like(p)
    with pytest.raises(RuntimeError):
        make(params).step()
    with peer_model._as_on_cuda():
        opt = make(params)
        peer_model.record(opt.step)  # creates the state
        calls = peer_model.record(opt.step)
    fused = [c for c in calls if c.family.startswith("fused_")]
    assert len(fused) == 1
    if fused[0].family == "fused_adam":
        assert fused[0].read >= 4 * 3 * MB and fused[0].written >= 3 * 3 * MB


def test_table_holds_every_representative():
    """The committed table has one row per family and dtype, named as the code names them, with
    readings the model can use."""
    table = peer_model.load_table()
    wanted = {(fam, dtype): name for dtype in peer_model._T for fam, name in peer_model._representatives(dtype).items()}
    assert set(table) == set(wanted)
    h100 = gpu_model.fit_memory("H100")
    for key, k in table.items():
        assert k.name == wanted[key]
        assert k.regs > 0 and k.threads in (128, 256, 512) and k.load_bytes > 0 and k.round_trips > 0
        assert 0 < k.kernel().bandwidth_tbps(h100) <= h100.ceiling_tbps
    header = (ROOT / "docs" / "calibration" / "torch_kernels_sm90.csv").read_text().splitlines()[0]
    assert header.startswith("# torch's kernels on sm_90") and "sha256" in header


def test_peer_time_sums_families_at_their_rates():
    """A record's time is each family's bytes at its representative's rate; a family without one
    moves at the ceiling."""
    table = peer_model.load_table()
    h100 = gpu_model.fit_memory("H100")
    record = peer_model.PeerRecord("op", "case", "float32", "fwd", "peer",
                                   {("elementwise", "float32"): [10 ** 9, 2], ("unmodelled", "float32"): [10 ** 9, 1]})
    rate = table[("elementwise", "float32")].kernel().bandwidth_tbps(h100)
    assert record.ms(table, h100) == pytest.approx(1e3 / (rate * 1e3) + 1e3 / (h100.ceiling_tbps * 1e3))
    assert record.kernels == 3 and record.bytes == 2 * 10 ** 9 and record.unmodelled_bytes(table) == 10 ** 9
