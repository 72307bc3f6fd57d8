"""Gradient accumulation (``--accumulate k``, issue 22): the same batches in k micro-batches.

Without batch statistics the weights equal those of whole batches up to float summation order;
with BatchNorm they equal a hand-written loop that runs the micro-batches itself. Both
comparisons are against loops written out here, not against the code under test.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from earlyprune.data.bundle import TensorBundle, TensorSplit, epoch_order
from earlyprune.models import create_model
from earlyprune.train.accumulate import micro_batches
from earlyprune.train.loop import Schedule, make_optimizer, train
from earlyprune.train.modes import Modes

N_TRAIN, BATCH, SEED = 104, 24, 1  # 5 steps an epoch, the last one a short batch of 8
SPE = 5


pytestmark = pytest.mark.usefixtures("one_thread")


def _bundle(poison: int | None = None) -> TensorBundle:
    gen = torch.Generator().manual_seed(5)
    splits = []
    for n in (N_TRAIN, 32):
        images = torch.randint(0, 200, (n, 1, 12, 12), generator=gen, dtype=torch.uint8)
        splits.append(TensorSplit(images, torch.randint(0, 10, (n,), generator=gen)))
    if poison is not None:
        splits[0].images[poison] = 255  # an all-white image: see _WhiteIsInfinite
    return TensorBundle(
        name="t",
        num_classes=10,
        mean=(0.3,),
        std=(0.2,),
        train=splits[0],
        test=splits[1],
        shift=0 if poison is not None else 2,
        flip=True,
    )


def _sched(epochs: int = 2, smoothing: float = 0.1) -> Schedule:
    return Schedule(
        epochs * SPE, SPE, BATCH, 0.05, (SPE,), weight_decay=5e-4, label_smoothing=smoothing
    )


def _lenet() -> nn.Module:  # no batch statistics
    return create_model("lenet_300_100", 10, input_shape=(1, 12, 12), seed=0)


def _smallcnn() -> nn.Module:  # BatchNorm after each convolution
    return create_model("smallcnn", 10, input_shape=(1, 12, 12), seed=0)


def _train(model: nn.Module, k: int, bundle=None, sched=None, **kwargs):
    sched = sched or _sched()
    state = train(
        model,
        bundle or _bundle(),
        sched,
        seed=SEED,
        modes=Modes(accumulate=k),
        progress=False,
        **kwargs,
    )
    return state, model


def _by_hand(model: nn.Module, k: int, sched: Schedule, channels_last: bool = False):
    """SGD over the same batches, each as k chunks whose summed losses are divided by the
    batch size: (weights, each epoch's mean of the per-step full-batch losses)."""
    bundle, opt, step, means = _bundle(), make_optimizer(model, sched), 0, []
    if channels_last:
        model.to(memory_format=torch.channels_last)
    for epoch in range(sched.total_steps // SPE):
        losses = []
        for x, y in bundle.train_batches(BATCH, seed=SEED, epoch=epoch):
            for group in opt.param_groups:
                group["lr"] = sched.lr_at(step)
            opt.zero_grad()
            total = 0.0
            for xm, ym in zip(x.chunk(k), y.chunk(k), strict=True):
                if channels_last:
                    xm = xm.contiguous(memory_format=torch.channels_last)
                out = model(xm)
                summed = F.cross_entropy(
                    out, ym, reduction="sum", label_smoothing=sched.label_smoothing
                )
                (summed / len(y)).backward()
                total += float(summed.detach()) / len(y)
            opt.step()
            step, losses = step + 1, [*losses, total]
        means.append(sum(losses) / len(losses))
    return model.state_dict(), means


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[n].double() - b[n].double()).abs().max()) for n in a)


def test_micro_batches_slice_a_batch_in_order_evenly():
    x, y = torch.arange(30).reshape(10, 3), torch.arange(10)
    parts = micro_batches(x, y, 4)
    assert [len(b) for _, b in parts] == [3, 3, 2, 2]
    assert torch.equal(torch.cat([a for a, _ in parts]), x)
    assert torch.equal(torch.cat([b for _, b in parts]), y)
    assert [len(b) for _, b in micro_batches(x[:2], y[:2], 4)] == [1, 1]  # no empty ones


@pytest.mark.parametrize("k", [2, 4])
def test_without_batch_statistics_k_micro_batches_give_the_weights_of_whole_batches(k):
    sched = _sched()
    whole, _ = _by_hand(_lenet(), 1, sched)
    state1, m1 = _train(_lenet(), 1)
    statek, mk = _train(_lenet(), k)
    assert state1.step == statek.step == 2 * SPE
    assert _max_diff(m1.state_dict(), whole) < 1e-6  # the loop as written out here
    assert _max_diff(mk.state_dict(), whole) < 1e-6  # summation order only
    moved = _max_diff(mk.state_dict(), _lenet().state_dict())
    assert moved > 1e-2  # it trained: the comparison above can tell a wrong scale apart
    for a, b in zip(state1.curve, statek.curve, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)


@pytest.mark.parametrize("channels_last", [False, True])
def test_with_batchnorm_the_statistics_are_per_micro_batch(channels_last):
    sched = _sched()
    chunked, means = _by_hand(_smallcnn(), 2, sched, channels_last)
    state, model = _train(_smallcnn(), 2, channels_last=channels_last)
    assert _max_diff(model.state_dict(), chunked) < 1e-6  # running statistics included
    assert [p["train_loss"] for p in state.curve] == pytest.approx(means, rel=1e-5)
    _, whole = _train(_smallcnn(), 1, channels_last=channels_last)
    assert _max_diff(whole.state_dict(), chunked) > 1e-3  # the statistics do differ


def test_masks_hold_and_grad_hooks_see_the_summed_gradient_once_per_step():
    model = _lenet()
    gen = torch.Generator().manual_seed(0)
    mask = {
        n: torch.rand(p.shape, generator=gen) > 0.5
        for n, p in model.named_parameters()
        if n.endswith("weight")
    }
    seen: list[tuple[int, dict]] = []

    def hook(step, net, _opt, _live) -> bool:
        seen.append((step, {n: p.grad.clone() for n, p in net.named_parameters()}))
        return False

    first = copy.deepcopy(model)
    with torch.no_grad():  # training starts from the masked weights
        for n, p in first.named_parameters():
            p.mul_(mask.get(n, True))
    x, y = next(_bundle().train_batches(BATCH, seed=SEED, epoch=0))
    F.cross_entropy(first(x), y, label_smoothing=0.1).backward()  # the whole first batch
    _train(model, 4, mask=mask, on_grad=[hook])
    assert [s for s, _ in seen] == list(range(2 * SPE))
    for n, p in first.named_parameters():
        assert torch.allclose(seen[0][1][n], p.grad, atol=1e-6), n
    _, whole = _train(_lenet(), 1, mask=mask)
    assert _max_diff(model.state_dict(), whole.state_dict()) < 1e-6
    trained = dict(model.named_parameters())
    for n, m in mask.items():
        assert torch.count_nonzero(trained[n][~m]) == 0, f"pruned weights of {n} revived"


class _WhiteIsInfinite(nn.Module):
    """LeNet whose loss is infinite on the all-white image."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _lenet()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        white = (x > 3.4).flatten(1).all(1, keepdim=True)
        return self.net(x) + torch.where(white, float("inf"), 0.0)


def _poison_early_in_a_batch() -> tuple[int, int]:
    """An image that lands in the first micro-batch (k = 2) of a batch of epoch 0 after its
    first step: (its index, the steps done before its batch)."""
    order = epoch_order(N_TRAIN, BATCH, SEED, 0, 0).tolist()
    pos = next(p for p in range(BATCH, N_TRAIN) if p % BATCH < BATCH // 2)
    return order[pos], pos // BATCH


@pytest.mark.parametrize("exact", [False, True])
def test_a_non_finite_micro_batch_stops_the_run_at_the_step_of_whole_batches(exact):
    index, bad_step = _poison_early_in_a_batch()
    bundle = _bundle(poison=index)
    hooks = [lambda *_: False] if exact else []  # a grad hook reads every step's loss
    runs = [_train(_WhiteIsInfinite(), k, bundle, _sched(3), on_grad=hooks) for k in (1, 2)]
    (s1, m1), (s2, m2) = runs
    assert s1.diverged and s2.diverged and s1.step == s2.step == bad_step
    assert _max_diff(m1.state_dict(), m2.state_dict()) < 1e-6  # stopped before the bad update


def test_bf16_autocast_accumulates_too():
    sched = _sched()
    _, m1 = _train(_lenet(), 1, precision="bf16")
    _, m2 = _train(_lenet(), 2, precision="bf16")
    fp32, _ = _by_hand(_lenet(), 1, sched)
    moved = _max_diff(fp32, _lenet().state_dict())
    assert _max_diff(m1.state_dict(), m2.state_dict()) < 0.05 * moved


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    """One rank: trains with k = 2 and with k = 1, counting DDP's gradient all-reduces."""
    import os

    import torch.distributed as dist
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    from earlyprune.train.distributed import Distributed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    job = Distributed(rank, world, rank)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    reduces: list[int] = []
    plain_wrap = Distributed.wrap

    def counting(state, bucket):  # DDP checks the parameter names
        reduces.append(1)
        return allreduce_hook(state, bucket)

    def counting_wrap(self, model):
        ddp = plain_wrap(self, model)
        ddp.register_comm_hook(None, counting)
        return ddp

    Distributed.wrap = counting_wrap
    out = {}
    for k in (2, 1):
        reduces.clear()
        _, model = _train(_lenet(), k, job=job)
        out[k] = (model.state_dict(), len(reduces))
    torch.save(out, f"{out_dir}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_ranks_accumulate_to_single_process_whole_batches_reducing_once_a_step(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, start_method="spawn")
    whole, _ = _by_hand(_lenet(), 1, _sched())
    for rank in range(2):
        out = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        (weights, reduces), (_, reduces_whole) = out[2], out[1]
        assert _max_diff(weights, whole) < 1e-5
        assert reduces == reduces_whole > 0  # no_sync: one all-reduce per step, as for k = 1


@pytest.mark.parametrize("net", [_lenet, _smallcnn])
def test_one_micro_batch_is_the_plain_loop_bit_for_bit(net):
    # k = 1 (every run made before --accumulate) must compute exactly what the loop always did:
    # the mean loss of the whole batch, one backward, one step. Stored results depend on it.
    sched = _sched()
    model, bundle = net(), _bundle()
    opt, step = make_optimizer(model, sched), 0
    for epoch in range(sched.total_steps // SPE):
        for x, y in bundle.train_batches(BATCH, seed=SEED, epoch=epoch):
            for group in opt.param_groups:
                group["lr"] = sched.lr_at(step)
            loss = F.cross_entropy(model(x), y, label_smoothing=sched.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    _, trained = _train(net(), 1, bundle=_bundle(), sched=sched)
    mine, theirs = trained.state_dict(), model.state_dict()
    assert all(torch.equal(mine[n], theirs[n]) for n in theirs)
