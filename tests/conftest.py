"""Tiny hand-written networks and helpers shared by the tests of the core pruning library.

The networks are deliberately small (a few hundred weights) so that exact and finite-difference
checks run in milliseconds. They cover every kind of prunable layer and the things that make
scoring subtle: BatchNorm (train vs eval statistics), biases (never pruned), a 1×1 shortcut
convolution and a residual sum.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, settings
from torch import Tensor, nn

# Fast by default; HYPOTHESIS_PROFILE=thorough searches much harder (minutes).
settings.register_profile(
    "earlyprune", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", deadline=None, max_examples=2000, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "earlyprune"))

NUM_CLASSES = 5


class TinyCNN(nn.Module):
    """Conv-BN-ReLU → Conv(bias)-BN-ReLU → pool → Linear: every ordinary prunable layer kind."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=True)
        self.bn2 = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


class TinyResNet(nn.Module):
    """Stem, one residual block with a 1×1 projection shortcut, linear head."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.conv1 = nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(6)
        self.shortcut = nn.Sequential(nn.Conv2d(4, 6, 1, stride=2, bias=False), nn.BatchNorm2d(6))
        self.fc = nn.Linear(6, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn(self.stem(x)))
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = F.relu(out + self.shortcut(x))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


class LinearChain(nn.Module):
    """Bias-free ``d → h → o`` linear layers, optionally with a ReLU between them."""

    def __init__(self, d: int = 4, h: int = 3, o: int = 2, relu: bool = False) -> None:
        super().__init__()
        self.l1 = nn.Linear(d, h, bias=False)
        self.l2 = nn.Linear(h, o, bias=False)
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        out = self.l1(x)
        return self.l2(F.relu(out) if self.relu else out)


def randomize_bn(model: nn.Module, generator: torch.Generator) -> None:
    """Gives every BatchNorm non-trivial γ, β and running statistics (some γ, β negative)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.weight.copy_(torch.randn(n, generator=generator))
                m.bias.copy_(torch.randn(n, generator=generator))
                m.running_mean.copy_(torch.randn(n, generator=generator))
                m.running_var.copy_(torch.rand(n, generator=generator) + 0.5)


def make_model(
    cls: type[nn.Module], seed: int = 0, dtype: torch.dtype = torch.float32
) -> nn.Module:
    """Builds ``cls`` deterministically with randomized BatchNorm, in the requested dtype."""
    torch.manual_seed(seed)
    model = cls()
    randomize_bn(model, torch.Generator().manual_seed(seed + 1))
    return model.to(dtype)


def image_batch(
    n: int = 10, seed: int = 0, dtype: torch.dtype = torch.float32, num_classes: int = NUM_CLASSES
) -> tuple[Tensor, Tensor]:
    """A batch of 8×8 RGB inputs (not standardized, so batch and running stats differ)."""
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(n, 3, 8, 8, generator=gen) * 2 + 0.5).to(dtype)
    y = torch.arange(n) % num_classes
    return x, y


def snapshot(model: nn.Module) -> dict[str, object]:
    """Everything a scorer must leave alone: values, buffers, grads, requires_grad, modes."""
    return {
        "params": {n: p.detach().clone() for n, p in model.named_parameters()},
        "buffers": {n: b.detach().clone() for n, b in model.named_buffers()},
        "grads": {
            n: (None if p.grad is None else p.grad.detach().clone())
            for n, p in model.named_parameters()
        },
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "modes": {n: m.training for n, m in model.named_modules()},
        "dtypes": {n: p.dtype for n, p in model.named_parameters()},
        "ids": {n: id(p) for n, p in model.named_parameters()},
    }


def assert_same_state(before: dict[str, object], after: dict[str, object]) -> None:
    """Asserts two :func:`snapshot` results are identical (bitwise for tensors)."""
    assert before.keys() == after.keys()
    for key in ("requires_grad", "modes", "dtypes", "ids"):
        assert before[key] == after[key], key
    for key in ("params", "buffers", "grads"):
        b, a = before[key], after[key]
        assert b.keys() == a.keys(), key
        for name in b:
            if b[name] is None or a[name] is None:
                assert b[name] is None and a[name] is None, f"{key}[{name}]"
            else:
                assert torch.equal(b[name], a[name]), f"{key}[{name}] changed"


def messy_state(model: nn.Module) -> nn.Module:
    """Puts ``model`` in an unusual state a scorer might disturb: mixed modes, grads, frozen bits.

    The top module is in eval mode but one child is in train mode; some parameters carry a
    ``.grad``; one bias is frozen.
    """
    model.eval()
    children = [m for m in model.modules() if m is not model]
    children[0].train()
    params = list(model.named_parameters())
    for i, (_, p) in enumerate(params):
        if i % 2 == 0:
            p.grad = torch.full_like(p, 0.25)
    for name, p in params:
        if name.endswith("bias"):
            p.requires_grad_(False)
            break
    return model


@pytest.fixture
def tiny_cnn() -> nn.Module:
    return make_model(TinyCNN)


@pytest.fixture
def tiny_resnet() -> nn.Module:
    return make_model(TinyResNet)


@pytest.fixture
def batch() -> tuple[Tensor, Tensor]:
    return image_batch()


def reference_select(scores: dict, n_keep: int, mask: dict) -> dict:
    """Global selection by hand: stable ascending sort of alive scores, remove the first ones."""
    names = list(mask)
    s = torch.cat([scores[n].reshape(-1) for n in names])
    alive = torch.cat([mask[n].reshape(-1) for n in names])
    idx = torch.nonzero(alive).flatten()
    order = torch.sort(s[idx], stable=True).indices
    new = alive.clone()
    new[idx[order[: idx.numel() - n_keep]]] = False
    out, start = {}, 0
    for n in names:
        k = mask[n].numel()
        out[n] = new[start : start + k].reshape(mask[n].shape)
        start += k
    return out


#: Every Tensor method that copies a value to the host (the read-back counters below).
READ_BACKS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__")


@pytest.fixture
def count_reads(monkeypatch):
    """Counts every call that copies a tensor's value to the host, however the code asks."""
    counter = {"n": 0}
    for name in READ_BACKS:
        original = getattr(torch.Tensor, name)

        def wrapped(self, *args, _original=original, **kwargs):
            counter["n"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapped)
    return counter


@pytest.fixture
def one_thread():
    """Torch on one thread for the test (numbers compared bit for bit depend on the count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


#: The device kind of the (mocked) H100 of ``fake_h100s``.
H100_KIND = "cuda-sm90-nvidia-h100-80gb-hbm3"


def fake_h100s(monkeypatch, count: int = 2) -> None:
    """``count`` (mocked) H100s: CUDA's queries answer as on such a machine; CUDA never starts."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (9, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "NVIDIA H100 80GB HBM3")
