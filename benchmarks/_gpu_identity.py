"""gpu_check's ``identity`` part: a run's device kind, and exact fp32 on the device.

* the kind a spec made here records is this device's kind (``cuda-sm90-...`` on an H100), and a
  spec planned on a machine without a GPU (``auto``, kind ``cpu``) computes on the CPU here;
* under a run's fp32 settings (``deterministic``), a forward and backward pass of each paper
  network (ResNet-20 and VGG-16 on CIFAR-sized input, ResNet-50 at 64²) raises nothing (no
  operation without a deterministic kernel) and gives bit-identical gradients when repeated.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

import earlyprune as ep
from earlyprune.core.device_identity import deterministic, device_kind
from earlyprune.run.device_kinds import run_device
from earlyprune.run.spec import RunSpec

NETWORKS = (
    ("resnet20", 10, (3, 32, 32)),
    ("vgg16", 10, (3, 32, 32)),
    ("resnet50", 1000, (3, 64, 64)),
)


def _grads(
    name: str, classes: int, shape: tuple[int, ...], device: torch.device
) -> list[torch.Tensor]:
    model = ep.create_model(name, classes, input_shape=shape, seed=0).to(device)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, *shape, generator=gen).to(device)
    y = (torch.arange(8) % classes).to(device)
    F.cross_entropy(model(x), y).backward()
    return [p.grad.detach().clone() for p in model.parameters()]


def identity_part(device: torch.device) -> dict[str, Any]:
    kind = device_kind(device)
    spec = RunSpec(method="snip", sparsity=0.9, device=str(device))
    if spec.device_kind != kind:
        raise AssertionError(f"a spec made here records {spec.device_kind}, not {kind}")
    planned_on_cpu = RunSpec(method="snip", sparsity=0.9, device_kind="cpu")
    if run_device(planned_on_cpu, "auto").type != "cpu":
        raise AssertionError("a CPU-planned run would compute on the GPU")
    out: dict[str, Any] = {"device_kind": kind}
    with deterministic(device):
        for name, classes, shape in NETWORKS:
            first = _grads(name, classes, shape, device)
            again = _grads(name, classes, shape, device)
            same = all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
            if not same:
                raise AssertionError(f"{name}: repeated fp32 gradients differ under the settings")
            out[name] = "bit-identical gradients"
    return out
