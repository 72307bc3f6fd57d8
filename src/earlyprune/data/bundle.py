"""`DataBundle`: a dataset's two splits plus everything the training loop needs to batch them.

Two kinds of bundle share one interface:

* :class:`TensorBundle` — the whole dataset held as uint8 tensors (CIFAR, MNIST-like, embedded).
  Batches are gathered, moved to the device as uint8 and augmented there in one vectorized pass.
* ``FolderBundle`` (``folder.py``) — image files decoded by Pillow in DataLoader workers.

Randomness is never global: the epoch order comes from a generator seeded by ``(seed, epoch)`` and
each batch's augmentation from one seeded by ``(seed, epoch, batch index)``, so any batch can be
recomputed on its own. That is what lets a killed run resume bit-identically at ``start_step``.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from earlyprune.core.errors import DatasetError
from earlyprune.data.augment import shift_flip
from earlyprune.data.sampling import derive_seed, seeded_generator, stratified_indices

__registers__ = ()  # helper: the DataBundle types every dataset returns

Batch = tuple[Tensor, Tensor]


class Split(Protocol):
    """What a bundle's ``train`` / ``test`` split offers: a length, labels and index selection."""

    labels: Tensor

    def __len__(self) -> int: ...

    def select(self, indices: Tensor) -> Split: ...


@dataclass(frozen=True)
class TensorSplit:
    """An in-memory split.

    Attributes:
        images: uint8 tensor (N, C, H, W), pixels 0–255.
        labels: int64 tensor (N,).
    """

    images: Tensor
    labels: Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DatasetError(
                f"images must be a uint8 tensor (N, C, H, W), got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.dim() != 1 or len(self.labels) != len(self.images):
            raise DatasetError(
                f"{len(self.images)} images need {len(self.images)} labels, "
                f"got a label tensor of shape {tuple(self.labels.shape)}"
            )
        object.__setattr__(self, "labels", self.labels.long())

    def __len__(self) -> int:
        return len(self.labels)

    def select(self, indices: Tensor) -> TensorSplit:
        """The sub-split at ``indices`` (in that order)."""
        return TensorSplit(self.images[indices], self.labels[indices])


class DataBundle(ABC):
    """A dataset ready for training: both splits, class count, input shape and normalization.

    Attributes:
        name: Registry name of the dataset.
        num_classes: Number of classes; labels lie in ``[0, num_classes)``.
        input_shape: (C, H, W) of the images fed to the model.
        mean: Per-channel mean of the 0–1 scaled pixels.
        std: Per-channel standard deviation of the 0–1 scaled pixels.
        train: Training split (supports ``len()``; ``.labels`` holds its labels).
        test: Test split.
    """

    def __init__(
        self,
        *,
        name: str,
        num_classes: int,
        input_shape: tuple[int, int, int],
        mean: tuple[float, ...],
        std: tuple[float, ...],
        train: Split,
        test: Split,
    ) -> None:
        if len(mean) != input_shape[0] or len(std) != input_shape[0]:
            raise DatasetError(f"{name}: mean/std need one value per channel of {input_shape}")
        for split_name, split in (("train", train), ("test", test)):
            if len(split) and (
                int(split.labels.min()) < 0 or int(split.labels.max()) >= num_classes
            ):
                raise DatasetError(
                    f"{name}: {split_name} labels must lie in [0, {num_classes}), "
                    f"found {int(split.labels.min())}..{int(split.labels.max())}"
                )
        self.name = name
        self.num_classes = num_classes
        self.input_shape = tuple(input_shape)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.train = train
        self.test = test

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.name!r}, train={len(self.train)}, test={len(self.test)}, "
            f"classes={self.num_classes}, input_shape={self.input_shape})"
        )

    def steps_per_epoch(self, batch_size: int) -> int:
        """Number of batches in one training epoch; the last partial batch is kept."""
        check_batch_size(batch_size)
        return math.ceil(len(self.train) / batch_size)

    def subset(self, n_train: int | None, n_test: int | None, seed: int = 0) -> DataBundle:
        """A class-stratified random subset; ``None`` keeps that split whole.

        Raises:
            DatasetError: If a requested size exceeds the split.
        """
        out = copy.copy(self)
        for attr, n in (("train", n_train), ("test", n_test)):
            split = getattr(self, attr)
            if n is not None:
                if n > len(split) or n < 0:
                    raise DatasetError(
                        f"{self.name}: cannot take a {attr} subset of {n}; the split has "
                        f"{len(split)} examples"
                    )
                picked = stratified_indices(
                    split.labels, n, self.num_classes, derive_seed(seed, attr)
                )
                setattr(out, attr, split.select(picked))
        return out

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 (N, C, H, W) → float32 ``(x/255 − mean)/std`` on the images' device."""
        scale = torch.tensor([1.0 / (255.0 * s) for s in self.std], device=images.device)
        shift = torch.tensor([m / s for m, s in zip(self.mean, self.std, strict=True)])
        shift = shift.to(images.device)
        return images.float().mul_(scale.view(1, -1, 1, 1)).sub_(shift.view(1, -1, 1, 1))

    @abstractmethod
    def train_batches(
        self,
        batch_size: int,
        *,
        seed: int,
        epoch: int,
        device: torch.device | str = "cpu",
        augment: bool = True,
        start_step: int = 0,
    ) -> Iterator[Batch]:
        """Yields one epoch of normalized float32 images and int64 labels on ``device``.

        Order and augmentation are a pure function of (seed, epoch, batch index): iterating from
        ``start_step`` yields exactly the batches an uninterrupted iteration yields from there.
        """

    @abstractmethod
    def test_batches(
        self, batch_size: int, *, device: torch.device | str = "cpu"
    ) -> Iterator[Batch]:
        """Yields the test split in order, unaugmented and normalized."""

    @abstractmethod
    def train_examples(self, indices: Tensor, *, device: torch.device | str = "cpu") -> Batch:
        """The training examples at ``indices``, unaugmented and normalized (for scoring)."""


def check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def epoch_order(n: int, batch_size: int, seed: int, epoch: int, start_step: int) -> Tensor:
    """The epoch's permutation, after checking ``start_step`` lies in [0, steps per epoch]."""
    check_batch_size(batch_size)
    steps = math.ceil(n / batch_size)
    if not 0 <= start_step <= steps:
        raise ValueError(f"start_step must lie in [0, {steps}], got {start_step}")
    return torch.randperm(n, generator=seeded_generator(seed, epoch, "order"))


class TensorBundle(DataBundle):
    """An in-memory dataset with batched, on-device shift/flip augmentation.

    Args:
        shift: Largest random shift in pixels (zero padding, then a random crop); 0 disables it.
        flip: Whether to flip horizontally with probability 1/2.
        Other arguments: see :class:`DataBundle`.
    """

    def __init__(
        self,
        *,
        name: str,
        num_classes: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        train: TensorSplit,
        test: TensorSplit,
        shift: int = 0,
        flip: bool = False,
    ) -> None:
        shape = tuple(train.images.shape[1:])
        if len(test) and tuple(test.images.shape[1:]) != shape:
            raise DatasetError(
                f"{name}: test images are {tuple(test.images.shape[1:])}, train {shape}"
            )
        super().__init__(
            name=name,
            num_classes=num_classes,
            input_shape=shape,
            mean=mean,
            std=std,
            train=train,
            test=test,
        )
        self.shift = shift
        self.flip = flip

    def train_batches(
        self,
        batch_size: int,
        *,
        seed: int,
        epoch: int,
        device: torch.device | str = "cpu",
        augment: bool = True,
        start_step: int = 0,
    ) -> Iterator[Batch]:
        split: TensorSplit = self.train  # type: ignore[assignment]
        order = epoch_order(len(split), batch_size, seed, epoch, start_step)
        for start in range(start_step * batch_size, len(split), batch_size):
            idx = order[start : start + batch_size]
            images = split.images[idx].to(device)
            if augment and (self.shift or self.flip):
                images = self._augment(images, seed, epoch, start // batch_size)
            yield self.normalize(images), split.labels[idx].to(device)

    def _augment(self, images: Tensor, seed: int, epoch: int, step: int) -> Tensor:
        offsets, flips = self.augment_draws(seed, epoch, step, len(images))
        return shift_flip(images, offsets.to(images.device), flips.to(images.device), self.shift)

    def augment_draws(self, seed: int, epoch: int, step: int, rows: int) -> tuple[Tensor, Tensor]:
        """One batch's (dy, dx) offsets and flips, from its (seed, epoch, step) generator: the one
        definition the host path and the device-resident path (``data.device``) both draw from."""
        gen = seeded_generator(seed, epoch, step, "augment")
        offsets = torch.randint(0, 2 * self.shift + 1, (rows, 2), generator=gen)
        flips = (
            torch.rand(rows, generator=gen) < 0.5
            if self.flip
            else torch.zeros(rows, dtype=torch.bool)
        )
        return offsets, flips

    def test_batches(
        self, batch_size: int, *, device: torch.device | str = "cpu"
    ) -> Iterator[Batch]:
        check_batch_size(batch_size)
        split: TensorSplit = self.test  # type: ignore[assignment]
        for start in range(0, len(split), batch_size):
            images = split.images[start : start + batch_size].to(device)
            yield self.normalize(images), split.labels[start : start + batch_size].to(device)

    def train_examples(self, indices: Tensor, *, device: torch.device | str = "cpu") -> Batch:
        split: TensorSplit = self.train  # type: ignore[assignment]
        return self.normalize(split.images[indices].to(device)), split.labels[indices].to(device)
