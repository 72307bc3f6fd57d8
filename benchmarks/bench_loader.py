"""Loader throughput of the in-memory path next to ResNet-20 training throughput, in one run.

Synthetic CIFAR-shaped uint8 data (10,000 images, 3×32×32) goes through ``train_batches`` with
the paper's CIFAR augmentation (shift ≤ 4 px, flip) at batch 128; ResNet-20 trains on the same
batches with SGD. The data path must be far faster than training so that it never limits a run
(target: ``loader_over_train`` ≥ 3). Prints one JSON object.

Usage: ``python benchmarks/bench_loader.py [--device cpu|cuda] [--train-steps N]``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch import nn

from earlyprune.data import TensorBundle, TensorSplit

N_IMAGES, BATCH = 10_000, 128


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = nn.Sequential()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.short(x))


def _fallback_resnet20(num_classes: int = 10) -> nn.Module:
    """ResNet-20 for CIFAR (He et al. 2016): 3 stages of 3 blocks, 16/32/64 channels."""
    layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    cin = 16
    for cout, stride in ((16, 1), (32, 2), (64, 2)):
        for i in range(3):
            layers.append(_Block(cin, cout, stride if i == 0 else 1))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes)]
    return nn.Sequential(*layers)


def resnet20() -> tuple[nn.Module, str]:
    """The project's ResNet-20 when the models package is there, else the local copy."""
    try:
        from earlyprune import create_model

        return create_model("resnet20", 10), "earlyprune.create_model"
    except (ImportError, ValueError):
        return _fallback_resnet20(), "fallback"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loader_throughput(bundle: TensorBundle, device: torch.device, epochs: int) -> float:
    """Images per second through ``train_batches`` with augmentation (best of ``epochs``)."""
    best = 0.0
    for epoch in range(epochs + 1):
        _sync(device)
        start, seen = time.perf_counter(), 0
        for x, _ in bundle.train_batches(BATCH, seed=0, epoch=epoch, device=device):
            seen += len(x)
        _sync(device)
        if epoch:  # epoch 0 warms up allocators and kernels
            best = max(best, seen / (time.perf_counter() - start))
    return best


def train_throughput(bundle: TensorBundle, device: torch.device, steps: int) -> tuple[float, str]:
    """Images per second of ResNet-20 SGD steps (forward, backward, update) on real batches."""
    model, source = resnet20()
    model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    batches = list(bundle.train_batches(BATCH, seed=1, epoch=0, device=device))[: steps + 2]
    elapsed, seen = 0.0, 0
    for i, (x, y) in enumerate(batches):
        _sync(device)
        start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _sync(device)
        if i >= 2:  # the first two steps warm up
            elapsed += time.perf_counter() - start
            seen += len(x)
    return seen / elapsed, source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = "cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument("--device", default=default)
    parser.add_argument("--train-steps", type=int, default=8)
    parser.add_argument("--loader-epochs", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (N_IMAGES, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (N_IMAGES,), generator=generator)
    split = TensorSplit(images, labels)
    bundle = TensorBundle(
        name="synthetic-cifar",
        num_classes=10,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        train=split,
        test=split,
        shift=4,
        flip=True,
    )
    loader = loader_throughput(bundle, device, args.loader_epochs)
    train, source = train_throughput(bundle, device, args.train_steps)
    print(
        json.dumps(
            {
                "loader_images_per_s": round(loader, 1),
                "train_images_per_s": round(train, 1),
                "loader_over_train": round(loader / train, 2),
                "device": str(device),
                "model": source,
                "torch_threads": torch.get_num_threads(),
                "batch_size": BATCH,
            }
        )
    )


if __name__ == "__main__":
    main()
