"""Box masking (cutout, SpecAugment) on every backend: equal to the reference, boxes from the
Philox stream (same on every backend), gradients masked, layouts kept."""
import pytest
import torch

from helpers import backend_op, backend_params, expect_error, run_compiled, run_gradcheck, run_opcheck
from tricks_ext import functional as F
from tricks_ext._sampling import cutout_boxes, spec_augment_boxes
from tricks_ext.reference.mask_boxes import mask_boxes as reference

OP = "mask_boxes"
BACKENDS = backend_params(OP)
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
SO = (2 ** 35 + 9, 21)


def so(device):
    return torch.tensor(SO, device=device)


def random_boxes(batch, k, h, w, gen):
    y = torch.randint(-2, h + 3, (batch, k, 2), generator=gen).sort(-1).values
    x = torch.randint(-2, w + 3, (batch, k, 2), generator=gen).sort(-1).values
    return torch.cat([y, x], -1).int()


@pytest.mark.parametrize("backend_device", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(4, 3, 9, 11), (1, 1, 1, 1), (3, 2, 2, 5, 7), (5, 13, 17)], ids=str)
def test_bit_identical_to_reference(backend_device, dtype, shape):
    backend, device = backend_device
    gen = torch.Generator().manual_seed(sum(shape))
    box = random_boxes(shape[0], 3, shape[-2], shape[-1], gen)
    x = torch.randn(shape, generator=gen).to(device, dtype)
    variants = [x]
    if len(shape) == 4:
        variants += [x.to(memory_format=torch.channels_last), x.transpose(2, 3).contiguous().transpose(2, 3)]
    for v in variants:
        expected = reference(v, box, -1.1)
        out = F.mask_boxes(v, box, -1.1, backend=backend)
        assert torch.equal(out, expected)
        y = v.clone()
        assert F.mask_boxes(y, box, -1.1, inplace=True, backend=backend) is y and torch.equal(y, expected)


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_cutout_and_spec_augment_same_on_every_backend(backend_device):
    backend, device = backend_device
    x = torch.randn(6, 3, 32, 32, device=device)
    out = F.cutout(x, holes=2, length=8, seed_offset=so(device), backend=backend)
    box = cutout_boxes(SO[0], SO[1], 6, 2, 8, 32, 32, torch.device(device))
    assert torch.equal(out, reference(x, box, 0.0))
    assert ((box[..., 1] - box[..., 0]) <= 8).all() and ((box[..., 3] - box[..., 2]) <= 8).all()
    spec = torch.randn(5, 1, 80, 300, device=device)
    out = F.spec_augment(spec, 27, 100, 2, 2, seed_offset=so(device), backend=backend)
    box = spec_augment_boxes(SO[0], SO[1], 5, 80, 300, 27, 100, 2, 2, torch.device(device))
    assert torch.equal(out, reference(spec, box, 0.0))
    freq, time = box[:, :2], box[:, 2:]
    assert (freq[..., 2] == 0).all() and (freq[..., 3] == 300).all() and ((freq[..., 1] - freq[..., 0]) <= 27).all()
    assert (time[..., 0] == 0).all() and (time[..., 1] == 80).all() and ((time[..., 3] - time[..., 2]) <= 100).all()


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_gradient_masked(backend_device):
    backend, device = backend_device
    gen = torch.Generator().manual_seed(0)
    box = random_boxes(3, 2, 5, 6, gen).to(device)
    x = torch.randn(3, 2, 5, 6, device=device, dtype=torch.float64, requires_grad=True)
    run_gradcheck(lambda t: F.mask_boxes(t, box, 3.0, backend=backend), (x,))
    out = F.mask_boxes(x, box, 3.0, backend=backend)
    out.backward(torch.ones_like(out))
    assert torch.equal(x.grad, reference(torch.ones_like(x), box, 0.0))


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_seeds(backend_device):
    backend, device = backend_device
    x = torch.randn(4, 3, 16, 16, device=device)
    torch.manual_seed(3)
    a = F.cutout(x, backend=backend)
    torch.manual_seed(3)
    b = F.cutout(x, backend=backend)
    c = F.cutout(x, backend=backend)
    assert torch.equal(a, b) and not torch.equal(b, c)


@pytest.mark.parametrize("backend_device", BACKENDS)
def test_opcheck_and_compile(backend_device):
    backend, device = backend_device
    ops = backend_op("mask_boxes", backend), backend_op("mask_boxes_", backend)
    box = random_boxes(3, 2, 5, 6, torch.Generator().manual_seed(1)).to(device)
    x = torch.randn(3, 2, 5, 6, device=device, requires_grad=True)
    run_opcheck(ops[0], (x, box, 0.5, 5, 6, 1))
    run_opcheck(ops[1], (x.detach().clone(), box, 0.5, 5, 6, 1))
    eager, compiled = run_compiled(lambda t: F.mask_boxes(t * 2.0, box, 0.5, backend=backend), x)
    for e, c in zip(eager, compiled):
        assert torch.equal(e, c)


class TestBadInput:
    def test_errors(self):
        x = torch.randn(2, 3, 4, 4)
        expect_error(ValueError, lambda: F.mask_boxes(torch.randn(2, 3), torch.zeros(2, 1, 4, dtype=torch.int32)),
                     "(N, ..., H, W)")
        expect_error(ValueError, lambda: F.mask_boxes(x, torch.zeros(3, 1, 4, dtype=torch.int32)), "box", "(2, K, 4)")
        expect_error(ValueError, lambda: F.mask_boxes(x, torch.zeros(2, 1, 4)), "box", "integer")
        expect_error(RuntimeError, lambda: F.mask_boxes(x.requires_grad_(), torch.zeros(2, 1, 4, dtype=torch.int32),
                                                        inplace=True), "inplace")
        expect_error(ValueError, lambda: F.cutout(torch.randn(2, 3, 4, 4), holes=0), "holes")
        expect_error(ValueError, lambda: F.spec_augment(torch.randn(2, 8, 8), freq_masks=-1), "freq_masks", "-1")
