"""Mixed precision as torch users run it: autocast around every module, fp32 residual streams
beside low-precision branches, GradScaler with the fused optimizers.

The policy (docs/DESIGN.md, "Autocast"): EvoNorm and the losses run in fp32 inside an autocast
region (torch's rule for group_norm, cross_entropy, binary_cross_entropy_with_logits); weight
standardization, dropout and the masks run in their input's dtype (not on autocast's lists);
``residual + branch`` promotes and broadcasts as torch's ``+``."""
import pytest
import torch

import tricks_ext
import tricks_ext.functional as F
import tricks_ext.nn as tnn
from tricks_ext.optim import FusedAdamW, Ranger

from helpers import backend_params

SEED = torch.tensor([3, 9])
DTYPES = [(torch.float32, torch.bfloat16), (torch.bfloat16, torch.float32), (torch.float16, torch.float32),
          (torch.float64, torch.float32)]


@pytest.mark.parametrize("backend_device", backend_params("dropout_apply", torch_backend=True))
@pytest.mark.parametrize("x_dtype,r_dtype", DTYPES, ids=str)
@pytest.mark.parametrize("r_shape", [(4, 6, 5), (6, 5), (1, 5), (4, 1, 1), (6, 1), (2, 4, 6, 5)], ids=str)
def test_dropout_add_follows_torch_add(backend_device, x_dtype, r_dtype, r_shape):
    """dropout_add(x, r, p, gate) == r + gate * dropout(x) with torch's promotion and
    broadcasting: the mask covers x's own elements, the result has the common dtype and the
    broadcast shape, and the gradients reach x, r and the gate in their own shapes and dtypes."""
    backend, device = backend_device
    x = torch.randn(4, 6, 5, device=device).to(x_dtype).requires_grad_()
    r = torch.randn(r_shape, device=device).to(r_dtype).requires_grad_()
    gate = torch.tensor([0.7], device=device, requires_grad=True)
    out = F.dropout_add(x, r, 0.3, gate=gate, seed_offset=SEED.to(device), backend=backend)
    common = torch.promote_types(x_dtype, r_dtype)
    expected = r.to(common) + gate.to(common) * F.dropout(x.to(common), 0.3, seed_offset=SEED.to(device),
                                                          backend="torch")
    assert out.dtype == common and out.shape == torch.broadcast_shapes(x.shape, r.shape)
    torch.testing.assert_close(out, expected.detach(), rtol=1e-6, atol=1e-6)
    cot = torch.randn_like(out)
    got = torch.autograd.grad(out, (x, r, gate), cot)
    want = torch.autograd.grad(expected, (x, r, gate), cot)
    for a, b, t in zip(got, want, (x, r, gate)):
        assert a.shape == t.shape and a.dtype == t.dtype
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend_device", backend_params("dropout_apply", torch_backend=True))
def test_drop_path_residual_follows_torch_add(backend_device):
    backend, device = backend_device
    x = torch.randn(4, 3, 5, device=device, dtype=torch.bfloat16)
    r = torch.randn(3, 5, device=device)
    out = F.drop_path(x, 0.5, residual=r, seed_offset=SEED.to(device), backend=backend)
    expected = r + F.drop_path(x.float(), 0.5, seed_offset=SEED.to(device), backend="torch")
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)


class _Block(torch.nn.Module):
    """A residual block of every layer of ours: WS conv, EvoNorm, ReZero with dropout, drop
    path, dropout, and a linear head."""

    def __init__(self):
        super().__init__()
        self.stem = tnn.ScaledWSConv2d(3, 8, 3, padding=1)
        self.norm = tnn.EvoNormS0(8, groups=4)
        self.rezero = tnn.ReZeroResidual(tnn.WSConv2d(8, 8, 3, padding=1), p=0.2)
        self.path = tnn.DropPath(0.3)
        self.drop = tnn.Dropout(0.1)
        self.head = torch.nn.Linear(8, 5)

    def forward(self, x):
        h = self.norm(self.stem(x))
        h = self.rezero(h)
        h = h + self.path(self.norm(h))
        return self.head(self.drop(h.mean((2, 3))))


def _run(block, x, targets, loss, backend, device):
    torch.manual_seed(5)
    with torch.autocast(device, dtype=torch.bfloat16 if device == "cpu" else torch.float16), \
            tricks_ext.use_backend(backend):
        logits = block(x)
        value = loss(logits, targets)
    value.backward()
    grads = [p.grad.detach().clone() for p in block.parameters()]
    block.zero_grad(set_to_none=True)
    return logits, value, grads


@pytest.mark.parametrize("backend_device", backend_params("evonorm_s0"))
@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_modules_under_autocast_match_the_torch_backend(backend_device, loss):
    """Each module inside autocast against the same module on the torch backend inside the same
    autocast: outputs, loss and every parameter's gradient; dtypes as torch's policy gives."""
    backend, device = backend_device
    torch.manual_seed(0)
    block = _Block().to(device)
    with torch.no_grad():
        block.rezero.alpha.fill_(0.5)
    x = torch.randn(4, 3, 6, 6, device=device)
    targets = torch.tensor([1, 0, 4, 2], device=device)
    fn = tnn.SoftTargetCrossEntropy() if loss == "ce" else tnn.SoftTargetBCE()
    logits, value, grads = _run(block, x, targets, fn, backend, device)
    ref_logits, ref_value, ref_grads = _run(block, x, targets, fn, "torch", device)
    assert logits.dtype == ref_logits.dtype
    assert value.dtype == ref_value.dtype == torch.float32  # losses run in fp32 under autocast
    # The convolutions run in bf16 (8 significant bits): where the kernels and the reference round
    # an fp32 intermediate to opposite sides, the next bf16 layer carries a 2^-8 difference on;
    # a few such ulps bound the outputs and gradients.
    torch.testing.assert_close(logits, ref_logits, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(value, ref_value, rtol=1e-2, atol=1e-3)
    for g, r in zip(grads, ref_grads):
        assert g.dtype == r.dtype == torch.float32
        torch.testing.assert_close(g, r, rtol=5e-2, atol=5e-3)


@pytest.mark.parametrize("backend_device", backend_params("evonorm_s0", torch_backend=True))
def test_autocast_dtypes_per_op(backend_device):
    """The per-op policy: EvoNorm and the losses upcast a bf16 input to fp32 inside autocast (and
    only there); weight standardization and dropout keep their input's dtype."""
    backend, device = backend_device
    x = torch.randn(2, 4, 3, 3, device=device, dtype=torch.bfloat16)
    c = torch.ones(4, device=device)
    logits = torch.randn(3, 5, device=device, dtype=torch.bfloat16)
    labels = torch.tensor([0, 4, 2], device=device)
    w = torch.randn(4, 3, 3, 3, device=device, dtype=torch.bfloat16)
    ops = {"evonorm": lambda: F.evonorm_s0(x, c, c, c, groups=2, backend=backend),
           "ce": lambda: F.soft_target_cross_entropy(logits, labels, backend=backend),
           "bce": lambda: F.soft_target_binary_cross_entropy(logits, labels, backend=backend),
           "ws": lambda: F.weight_standardize(w, backend=backend),
           "dropout": lambda: F.dropout(x, 0.2, backend=backend)}
    upcast = {"evonorm", "ce", "bce"}
    for name, op in ops.items():
        assert op().dtype == torch.bfloat16, name
        with torch.autocast(device, dtype=torch.bfloat16):
            assert op().dtype == (torch.float32 if name in upcast else torch.bfloat16), name


@pytest.mark.parametrize("backend_device", backend_params("optim_step"))
@pytest.mark.parametrize("make_opt", [lambda ps, b: Ranger(ps, lr=1e-2, backend=b),
                                      lambda ps, b: FusedAdamW(ps, lr=1e-2, max_grad_norm=1.0, backend=b)],
                         ids=["ranger", "adamw-clip"])
def test_autocast_with_grad_scaler(backend_device, make_opt):
    """A training loop under autocast with GradScaler: the fused step takes the scale and the
    inf flag from the scaler, and the run equals the same loop on the torch backend."""
    backend, device = backend_device

    def train(be):
        torch.manual_seed(0)
        block = _Block().to(device)
        opt = make_opt(list(block.parameters()), be)
        scaler = torch.amp.GradScaler(device, init_scale=2.0 ** 10)
        for step in range(3):
            loss = _run_loss(block, step, be, device)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
        return [p.detach() for p in block.parameters()]

    for a, b in zip(train(backend), train("torch")):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-3)


def _run_loss(block, step, backend, device):
    gen = torch.Generator().manual_seed(step)
    x = torch.randn(4, 3, 6, 6, generator=gen).to(device)
    targets = torch.randint(0, 5, (4,), generator=gen).to(device)
    torch.manual_seed(100 + step)
    with torch.autocast(device, dtype=torch.bfloat16 if device == "cpu" else torch.float16), \
            tricks_ext.use_backend(backend):
        return F.soft_target_cross_entropy(block(x), targets, label_smoothing=0.1)


def test_half_inputs_on_a_device_without_autocast():
    """EvoNorm and the losses ask whether autocast is on for their input's device; on a device
    that has no autocast (meta: shape inference, a model built without memory) the answer is no,
    not torch's "unknown device type for autocast" error."""
    meta = torch.device("meta")
    x = torch.empty(2, 64, 5, 5, device=meta, dtype=torch.bfloat16)
    ones = torch.ones(64, device=meta)
    assert F.evonorm_s0(x, ones, ones, ones, 32).shape == x.shape
    logits = torch.empty(8, 10, device=meta, dtype=torch.float16)
    labels = torch.empty(8, dtype=torch.long, device=meta)
    assert F.soft_target_cross_entropy(logits, labels).shape == ()
    assert F.soft_target_binary_cross_entropy(logits, labels).shape == ()
