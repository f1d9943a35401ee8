"""The fused step under CUDA graph capture: no host reads, counters on the device, so one
captured step replayed N times equals N eager steps (clipping and the EMA included)."""
import pytest
import torch

from tricks_ext.optim import FusedAdamW, Ranger

SHAPES = [(8, 4, 3, 3), (6, 5), (6,), (1,)]
DEVICE_BACKENDS = [pytest.param(b, marks=pytest.mark.gpu, id=b) for b in ("cuda", "triton")]
WARMUP, REPLAYS = 3, 9  # 12 steps: two Ranger Lookahead syncs (k = 6) and RAdam's rectification


def _grads(step, params):
    gen = torch.Generator().manual_seed(step)
    return [torch.randn(p.shape, generator=gen).mul_(1e-3 * (1 + step % 3)).to(p.device) for p in params]


@pytest.mark.parametrize("backend", DEVICE_BACKENDS)
@pytest.mark.parametrize("make", [
    lambda ps, be: Ranger(ps, max_grad_norm=0.05, ema_decay=0.9, ema_warmup=True, backend=be),
    lambda ps, be: FusedAdamW(ps, gc=True, agc_clip_factor=0.01, ema_decay=0.99, backend=be)],
    ids=["ranger-clip-ema", "adamw-gc-agc-ema"])
def test_captured_step_replays_like_eager(backend, make):
    if backend == "triton":
        pytest.importorskip("triton")
    torch.manual_seed(0)
    ps = [torch.randn(s, device="cuda").requires_grad_(True) for s in SHAPES]
    ref = [p.detach().clone().requires_grad_(True) for p in ps]
    static = [torch.zeros_like(p) for p in ps]  # the graph reads the grads from these tensors
    for p, g in zip(ps, static):
        p.grad = g
    opt, opt_ref = make(ps, backend), make(ref, backend)

    def load(step, params):
        for g, new in zip([p.grad for p in params], _grads(step, params)):
            g.copy_(new)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up: state, plans and launch caches are built eagerly
        for i in range(WARMUP):
            load(i, ps)
            opt.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        opt.step()
    for i in range(WARMUP, WARMUP + REPLAYS):
        load(i, ps)
        graph.replay()

    for i in range(WARMUP + REPLAYS):
        for p, g in zip(ref, _grads(i, ref)):
            p.grad = g
        opt_ref.step()
    torch.cuda.synchronize()
    for a, b in zip(ps, ref):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=0, atol=0)
    for p, q in zip(ps, ref):
        assert torch.equal(opt.state[p]["step"], opt_ref.state[q]["step"])
        assert torch.equal(opt.state[p]["ema"], opt_ref.state[q]["ema"])
