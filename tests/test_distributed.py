"""The fused optimizers under DDP and FSDP2 (fully_shard, DTensor params), two CPU processes on
gloo: each run equals single-process training on the same global batch, and a run that stops,
saves through torch.distributed.checkpoint, reloads into a fresh model and optimizer and goes on
equals one that never stopped."""
import sys
from pathlib import Path

import pytest
import torch

dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch without distributed/gloo", allow_module_level=True)

from tricks_ext.optim import FusedAdam, FusedAdamW, FusedRAdam, Ranger  # noqa: E402

WORLD = 2
STEPS = 20
BATCH = 8  # global; each rank takes BATCH // WORLD
OPTIMIZERS = {
    "ranger": lambda ps: Ranger(ps, lr=1e-2, weight_decay=0.01),
    "adam": lambda ps: FusedAdam(ps, lr=1e-2, weight_decay=0.01),
    "adamw": lambda ps: FusedAdamW(ps, lr=1e-2, gc=True),
    "radam": lambda ps: FusedRAdam(ps, lr=1e-2, lookahead_k=5),
    # the total norm over the shards: all-reduced under FSDP2 (a rank's own shards alone would
    # clip by a smaller norm, and every rank by a different one)
    "ranger-clip": lambda ps: Ranger(ps, lr=1e-2, max_grad_norm=0.2),
    # AGC: rows of the weights whole on a rank (Shard(0)), the 1-D biases' norms all-reduced;
    # the EMA's shards compared too
    "ranger-agc-ema": lambda ps: Ranger(ps, lr=1e-2, agc_clip_factor=0.02, ema_decay=0.9, ema_warmup=True),
}
# The single-process run reduces the gradients as the ranks do (train_as_ranks), so every run
# whose step reads nothing across ranks is bit-identical to it, under DDP and FSDP2 alike.
# Under FSDP2 two runs read a norm across ranks: the total grad norm (max_grad_norm) and the AGC
# norm of a 1-D bias split between the ranks. Each rank sums its shard's squares and the sums
# are all-reduced: another order than one process's. Bound: a sum of n squares in fp32 is within
# (n - 1) u of exact (u = 2^-24) whatever its order, so the two norms differ by at most n u
# relative after the square root, n = every gradient element (1747 here): delta = 1.0e-4. A
# scale error delta on a step's grads changes its Adam/RAdam update by at most delta relative
# (the normalization cancels a common scale; the SGD-like first RAdam steps pass it through),
# so after STEPS steps each param (and its EMA, an average of the params) is within
# STEPS * delta = 2.1e-3 of its displacement, to first order. Measured: 4.3e-6. AGC of a bias by
# its own shard on each rank, not the whole bias, scores 0.92; clipping by a rank's own norm
# scores more.
CROSS_RANK_NORM = {"ranger-clip", "ranger-agc-ema"}
def make_model() -> torch.nn.Module:
    """Uneven shards on two ranks: 8, 6 and 5 rows (conv, conv, linear), 5-element bias."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 6, 3),
                               torch.nn.Flatten(), torch.nn.Linear(6 * 6 * 6, 5))


def batch(step: int):
    gen = torch.Generator().manual_seed(100 + step)
    return torch.randn(BATCH, 3, 8, 8, generator=gen), torch.randint(0, 5, (BATCH,), generator=gen)


def train(model, opt, steps, rank=0, world=1, start=0):
    for i in range(start, start + steps):
        x, y = batch(i)
        n = BATCH // world
        loss = torch.nn.functional.cross_entropy(model(x[rank * n:(rank + 1) * n]), y[rank * n:(rank + 1) * n])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)


def full(t: torch.Tensor) -> torch.Tensor:
    from torch.distributed.tensor import DTensor
    return (t.full_tensor() if isinstance(t, DTensor) else t).detach().clone()


def trained(model, opt):
    """The params, then their EMAs where the optimizer keeps one."""
    params = list(model.parameters())
    return [full(p) for p in params] + [full(opt.state[p]["ema"]) for p in params if "ema" in opt.state[p]]


def _worker(rank: int, store: str, wrap: str, out: str) -> None:
    # a file store: no port to pick, so no race with other processes for one
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    try:
        results = {}
        for name, make_opt in OPTIMIZERS.items():
            model = _wrapped(wrap)
            opt = make_opt(model.parameters())
            train(model, opt, STEPS, rank, WORLD)
            results[name] = trained(model, opt)
        if wrap == "fsdp":
            results["resumed"] = _stop_save_resume(rank, out)
            results["row_split_error"] = _row_split_error()
        if rank == 0:
            torch.save(results, out)
    finally:
        dist.destroy_process_group()


def _wrapped(wrap: str) -> torch.nn.Module:
    model = make_model()
    if wrap == "ddp":
        return torch.nn.parallel.DistributedDataParallel(model)
    from torch.distributed.fsdp import fully_shard
    for layer in (model[0], model[2], model[4]):
        fully_shard(layer)
    return fully_shard(model)


def _stop_save_resume(rank: int, out: str):
    """Ranger with an EMA: 20 steps straight against 11, save (model and optimizer, sharded), a
    fresh model and optimizer load it, 9 more. Returns (straight, resumed) params, slow weights
    and EMAs."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (get_model_state_dict, get_optimizer_state_dict,
                                                         set_model_state_dict, set_optimizer_state_dict)

    def snapshot(model, opt):
        params = list(model.parameters())
        return [full(opt.state[p][key]) for key in ("slow_buffer", "ema") for p in params] + trained(model, opt)

    def make_opt(model):
        return Ranger(model.parameters(), lr=1e-2, weight_decay=0.01, k=4, ema_decay=0.9)

    model = _wrapped("fsdp")
    opt = make_opt(model)
    train(model, opt, STEPS, rank, WORLD)
    straight = snapshot(model, opt)

    model = _wrapped("fsdp")
    opt = make_opt(model)
    train(model, opt, STEPS // 2 + 1, rank, WORLD)  # 11 steps: not at a Lookahead sync (k = 4)
    ckpt = str(Path(out).with_suffix(".ckpt"))
    dcp.save({"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, opt)},
             checkpoint_id=ckpt)

    model = _wrapped("fsdp")
    with torch.no_grad():  # the fresh model starts elsewhere: everything must come from the checkpoint
        for p in model.parameters():
            p.add_(1.0)
    opt = make_opt(model)
    state = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, opt)}
    dcp.load(state, checkpoint_id=ckpt)
    set_model_state_dict(model, state["model"])
    set_optimizer_state_dict(model, opt, state["optim"])
    train(model, opt, STEPS - STEPS // 2 - 1, rank, WORLD, start=STEPS // 2 + 1)
    return straight, snapshot(model, opt)


def _row_split_error() -> str:
    """A DTensor param sharded along dim 1 (its rows split across ranks) under GC: refused."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor
    mesh = init_device_mesh("cpu", (WORLD,))
    p = torch.nn.Parameter(distribute_tensor(torch.randn(4, 6), mesh, [Shard(1)]))
    p.grad = distribute_tensor(torch.randn(4, 6), mesh, [Shard(1)])
    opt = Ranger([p])
    before = p.full_tensor()
    try:
        opt.step()
    except ValueError as e:
        assert torch.equal(p.full_tensor(), before) and not opt.state
        return str(e)
    return ""


def train_as_ranks(model, opt, steps):
    """One process, the ranks' arithmetic: each rank's half-batch gradient computed alone (one
    thread, as in the workers), then reduced as DDP and FSDP2 reduce two ranks: each halved
    (exact: a power of two) and summed (two addends: no order to differ in)."""
    params = list(model.parameters())
    n = BATCH // WORLD
    for i in range(steps):
        x, y = batch(i)
        halves = [torch.autograd.grad(torch.nn.functional.cross_entropy(model(x[r * n:(r + 1) * n]),
                                                                        y[r * n:(r + 1) * n]), params)
                  for r in range(WORLD)]
        for p, g0, g1 in zip(params, *halves):
            p.grad = g0 * 0.5 + g1 * 0.5
        opt.step()
        opt.zero_grad(set_to_none=True)


@pytest.fixture(scope="module")
def single_process():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = {}
        for name, make_opt in OPTIMIZERS.items():
            model = make_model()
            opt = make_opt(model.parameters())
            init = [p.detach().clone() for p in model.parameters()]
            train_as_ranks(model, opt, STEPS)
            out[name] = (init, trained(model, opt))
        return out
    finally:
        torch.set_num_threads(threads)


def _spawn(wrap: str, tmp_path):
    import torch.multiprocessing as mp
    out = str(tmp_path / f"{wrap}.pt")
    mp.start_processes(_worker, args=(str(tmp_path / f"{wrap}.store"), wrap, out), nprocs=WORLD, start_method="spawn")
    return torch.load(out, weights_only=False)


def _update_err(ours, ref, init):
    return max(((a.double() - r.double()).abs().max() / (r.double() - i.double()).abs().max()).item()
               for a, r, i in zip(ours, ref, init))


def test_agc_clips_in_the_single_process_run(single_process):
    """AGC (factor 0.02) moved the run away from plain Ranger's: the distributed runs clip too."""
    init, agc = single_process["ranger-agc-ema"]
    _, plain = single_process["ranger"]
    assert _update_err(agc[:len(init)], plain, init) > 1e-2


@pytest.mark.skipif(sys.platform != "linux", reason="spawned gloo processes are tested on Linux")
@pytest.mark.parametrize("wrap", ["ddp", "fsdp"])
def test_equals_single_process_training(wrap, single_process, tmp_path):
    results = _spawn(wrap, tmp_path)
    terms = sum(p.numel() for p in make_model().parameters())
    bound = STEPS * terms * 2.0 ** -24
    for name, (init, ref) in single_process.items():
        ours = results[name]
        assert len(ours) == len(ref)
        if wrap == "fsdp" and name in CROSS_RANK_NORM:
            # params, then EMAs, each against its param's displacement
            scale = [(r.double() - i.double()).abs().max() for r, i in zip(ref, init)]
            scale += scale[:len(ref) - len(init)]
            err = max(((a.double() - r.double()).abs().max() / d).item() for a, r, d in zip(ours, ref, scale))
            assert err <= bound, (name, err, bound)
        else:
            assert all(torch.equal(a, r) for a, r in zip(ours, ref)), name
    if wrap == "fsdp":
        straight, resumed = results["resumed"]
        for a, b in zip(straight, resumed):
            torch.testing.assert_close(b, a, rtol=0, atol=0)
        assert "splits its rows" in results["row_split_error"]
