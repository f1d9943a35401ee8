"""The SIMT emulator (csrc/simt/) against CUDA's rules, and the simt backend's reach: warp
exchanges with their mask and width semantics, dynamic shared memory, the launch limits a GPU
enforces, barrier misuse, race and poison detection, and every CUDA kernel instance executed."""
from __future__ import annotations

import math
import re
import subprocess

import pytest
import torch

from tricks_ext import _ext
from tricks_ext.ops._simt import SimtOrderError, orders, simt_call

pytestmark = pytest.mark.skipif(not _ext.HAS_SIMT_KERNELS, reason="tricks_ext._C was built without the simt backend")

MASKS = (0xFFFFFFFF, 0x0000FFFF, 0x55555555, 0x80000001)


def _expected_shuffle(op: int, mask: int, arg: int, width: int) -> list:
    """CUDA's documented results for lanes of two warps holding 100 * warp + lane; -1 for lanes
    outside the mask (they do not call), NaN where the source lane is outside the mask."""
    out = []
    for t in range(64):
        warp, lane = divmod(t, 32)
        if not mask >> lane & 1:
            out.append(-1.0)
            continue
        start = lane // width * width
        if op == 0:
            src = start + arg % width
        elif op == 1:
            src = lane - arg if lane - start >= arg else lane
        elif op == 2:
            src = lane + arg if lane - start + arg < width else lane
        else:
            src = lane ^ arg if (lane ^ arg) < start + width else lane  # later groups: own value
        out.append(float(100 * warp + src) if mask >> src & 1 else math.nan)
    return out


@pytest.mark.parametrize("op", [0, 1, 2, 3], ids=["shfl", "shfl_up", "shfl_down", "shfl_xor"])
def test_shuffles_follow_cuda_mask_and_width_rules(op):
    for mask in MASKS:
        for width in (32, 16, 8, 4, 1):
            for arg in (0, 1, 3, 5, 16, 31):
                got = torch.ops.tricks_simt.selftest_shuffle(op, mask, arg, width).tolist()
                want = _expected_shuffle(op, mask, arg, width)
                assert all((math.isnan(g) and math.isnan(w)) or g == w for g, w in zip(got, want)), \
                    (op, hex(mask), arg, width, got, want)


def test_votes_and_syncwarp():
    for mask in MASKS:
        lanes = [i for i in range(32) if mask >> i & 1]
        for t, v in enumerate(torch.ops.tricks_simt.selftest_shuffle(4, mask, 0, 32).tolist()):
            assert v == (sum(1 << i for i in lanes if i % 3 == 0) if mask >> (t % 32) & 1 else -1)
        for arg in (0, 4, 31):
            anys = torch.ops.tricks_simt.selftest_shuffle(5, mask, arg, 32).tolist()
            alls = torch.ops.tricks_simt.selftest_shuffle(6, mask, arg, 32).tolist()
            for t in range(64):
                if mask >> (t % 32) & 1:
                    assert anys[t] == float(arg in lanes) and alls[t] == float(arg not in lanes)
        sync = torch.ops.tricks_simt.selftest_shuffle(7, mask, 0, 32).tolist()
        assert sync == [100 * (t // 32) + t % 32 if mask >> (t % 32) & 1 else -1 for t in range(64)]


@pytest.mark.parametrize("block", [32, 96, 256, 1024])
def test_dynamic_shared_memory(block):
    x = torch.randn(3 * block, dtype=torch.float32)
    got = torch.ops.tricks_simt.selftest_dynamic_sum(x, block)
    want = x.view(3, block).cumsum(1)[:, -1:].expand(3, block).reshape(-1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_launch_limits():
    launch = torch.ops.tricks_simt.selftest_launch
    assert launch([2, 3, 4], [32, 8, 4], 0, 0) == ""
    assert launch([1, 65535, 1], [1, 1, 1], 0, 0) == "" and launch([1, 1, 1], [1024, 1, 1], 0, 0) == ""
    for grid, block in (([1, 1, 1], [1025, 1, 1]), ([1, 1, 1], [32, 32, 2]), ([1, 1, 1], [1, 1, 65]),
                        ([1, 65536, 1], [32, 1, 1]), ([1, 1, 65536], [32, 1, 1]), ([2 ** 31, 1, 1], [32, 1, 1]),
                        ([0, 1, 1], [32, 1, 1])):
        assert "over the GPU's limits" in launch(grid, block, 0, 0), (grid, block)
    assert launch([1, 1, 1], [32, 1, 1], 48 << 10, 0) == ""
    assert "dynamic shared memory" in launch([1, 1, 1], [32, 1, 1], (48 << 10) + 1, 0)
    assert launch([1, 1, 1], [32, 1, 1], 100 << 10, 100 << 10) == ""
    assert "227 KiB" in launch([1, 1, 1], [32, 1, 1], 0, (227 << 10) + 1)


@pytest.mark.parametrize("mode, words", [
    (0, ("__syncthreads", "not reached by every thread", "exited")),
    (1, ("different __syncthreads",)),
    (2, ("__shfl_xor_sync", "lane 5", "exited")),
    (3, ("width 12",)),
    (4, ("does not include the calling lane",)),
])
def test_barrier_and_warp_misuse_is_an_error(mode, words):
    msg = torch.ops.tricks_simt.selftest_misuse(mode)
    assert msg.startswith("simt: ") and all(w in msg for w in words), msg


@pytest.mark.skipif(len(orders()) < 2, reason="TRICKS_EXT_SIMT_ORDERS runs one thread order")
def test_race_between_barriers_is_caught():
    with pytest.raises(SimtOrderError, match="differs between the forward and reverse thread orders"):
        simt_call("selftest_race", (1, 0))
    assert simt_call("selftest_race", (0, 0)).tolist() == [float(t + 1) for t in range(63)] + [0.0]


def test_unwritten_shared_memory_reads_poison():
    out = simt_call("selftest_race", (0, 1))
    assert out[:63].tolist() == [float(t + 1) for t in range(63)] and math.isnan(out[63].item())


def _kernel_names() -> dict:
    """Host address -> demangled name of every emulated CUDA kernel instance in _C."""
    so = _ext.LIBRARY_PATH
    base = None
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) >= 6 and fields[5] == so and int(fields[2], 16) == 0:
                base = int(fields[0].split("-")[0], 16)
                break
    assert base is not None, f"{so} is not mapped"
    out = subprocess.run(["nm", "-C", "--defined-only", so], capture_output=True, text=True, check=True).stdout
    names = {}
    for line in out.splitlines():
        m = re.match(r"([0-9a-f]+) [tT] (?:void )?(tricks_simt::\w+::\(anonymous namespace\)::\w+_kernel<[^()]*>\([^()]*\))$",
                     line)
        if m:
            names[base + int(m.group(1), 16)] = m.group(2)
    return names


def test_every_cuda_kernel_instance_is_executed():
    """Runs every kernel x dtype x path through the simt backend and checks, against the symbol
    table, that no emulated kernel instance is left unlaunched."""
    import tricks_ext.functional as F
    from tricks_ext import _backend, optim

    cpu = torch.device("cpu")
    evonorm = _backend.implementation("evonorm_s0", cpu, "simt")
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        g = torch.Generator().manual_seed(0)
        sd = torch.float64 if dtype == torch.float64 else torch.float32
        x = torch.randn(4, 8, 6, 5, generator=g).to(dtype).requires_grad_(True)
        gate = torch.tensor(0.5, dtype=sd, requires_grad=True)
        F.dropout_add(x, x.detach(), 0.3, gate=gate, backend="simt").sum().backward()
        F.drop_path(x, 0.3, backend="simt").sum().backward()
        v, w, b = (torch.randn(8, dtype=sd, generator=g).requires_grad_(True) for _ in range(3))
        for split in (1, 3):  # one block per group; the split reduction
            evonorm(x, v, w, b, 2, 1e-5, split).sum().backward()
        for memory_format in (torch.contiguous_format, torch.channels_last):  # both mixup layouts
            xb = torch.randn(4, 3, 5, 6, generator=g).to(dtype).to(memory_format=memory_format)
            F.mixup(xb, torch.rand(4, 2, generator=g), torch.tensor([[0, 2, 1, 4]] * 4), backend="simt")
            F.cutout(xb, holes=2, length=2, backend="simt")
        for classes in (11, 3000):
            z = torch.randn(3, classes, generator=g).to(dtype).requires_grad_(True)
            t = torch.softmax(torch.randn(3, classes, generator=g), 1).to(dtype)
            F.soft_target_cross_entropy(z, t, backend="simt").backward()
            F.soft_target_cross_entropy(z, torch.tensor([1, 2, 0]), label_smoothing=0.1, backend="simt").backward()
            F.soft_target_binary_cross_entropy(z, t, backend="simt").backward()
            for multi_label in (False, True):  # the softmax stats kernel, the column sums, the backward
                F.soft_f1_loss(z, torch.tensor([1, 2, 0]), multi_label=multi_label, backend="simt").backward()
        for shape in ((6, 3, 3, 3), (5, 1100)):  # a warp per row; a block per row
            wt = torch.randn(shape, generator=g).to(dtype).requires_grad_(True)
            F.weight_standardize(wt, backend="simt").sum().backward()
        for make in (lambda ps: optim.FusedAdam(ps, gc=True, backend="simt"),
                     lambda ps: optim.Ranger(ps, k=2, backend="simt"),
                     lambda ps: optim.Ranger(ps, k=2, slow_in_param_dtype=True, backend="simt")):
            ps = [torch.randn(3, 4, 5, generator=g).to(dtype).requires_grad_(True), torch.randn(7).to(dtype)]
            opt = make(ps)
            for _ in range(2):
                for p in ps:
                    p.grad = torch.randn(p.shape, generator=g).to(dtype)
                opt.step()
        for momentum, qhm_nu in ((0.0, 1.0), (0.9, 1.0), (0.9, 0.7)):  # SASA+'s three direction forms
            ps = [torch.randn(3, 4, 5, generator=g).to(dtype).requires_grad_(True)]
            ps[0].grad = torch.randn(ps[0].shape, generator=g).to(dtype)
            optim.SASA(ps, lr=0.1, momentum=momentum, qhm_nu=qhm_nu, backend="simt").step()
    names = _kernel_names()
    flat = torch.ops.tricks_simt.launch_counts()
    launched = {flat[i] for i in range(0, len(flat), 2)}
    missing = sorted(name for addr, name in names.items() if addr not in launched)
    assert names and not missing, "emulated kernels never launched:\n" + "\n".join(missing)
    # the count the README and docs/DESIGN.md state is this one
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    for doc in ("README.md", "docs/DESIGN.md"):
        stated = {int(n) for n in re.findall(r"all (\d+) CUDA kernel instances|every one of the (\d+) CUDA kernel "
                                             r"instances", (root / doc).read_text()) for n in n if n}
        assert stated == {len(names)}, (doc, stated, len(names))
