"""Device-resident batches: an in-memory training split kept on the training device.

A :class:`~earlyprune.data.bundle.TensorBundle` batch today is gathered on the host, copied to
the device (blocking, from pageable memory) and augmented there, with the shift/flip draws and
the normalization constants copied over as well: several host→device copies per step. Here the
uint8 split is copied once; each epoch the order and every batch's shift/flip draws are computed
on the host from the *same* seeded generators as the host path (seed, epoch, batch index) and
sent in one pinned, non-blocking copy; each batch is then gathered, shifted, flipped and
normalized on the device. The inputs are bit for bit those of the host path (a test compares
every batch of an epoch), so which path feeds a run never changes its numbers.

On the CPU nothing is copied (the "device" tensors are the host ones) and the pinned copies are
no-ops; the class still saves the per-batch constant tensors and draws.
"""

from __future__ import annotations

__registers__ = ()  # helper: keeps any in-memory dataset's batches on the training device

from collections.abc import Iterator

import torch
from torch import Tensor

from earlyprune.data.augment import shift_flip
from earlyprune.data.bundle import (
    Batch,
    DataBundle,
    TensorBundle,
    TensorSplit,
    check_batch_size,
    epoch_order,
)

__all__ = ["DeviceBundle", "on_device", "resident_bytes", "to_device"]

#: Share of the device's free memory the resident splits may take (the rest is the model's).
MEMORY_SHARE = 0.25


def to_device(tensor: Tensor, device: torch.device) -> Tensor:
    """``tensor`` on ``device``: a pinned, non-blocking copy for CUDA, the tensor itself on CPU.

    The copy is ordered on the current stream before any kernel that reads it, so nothing waits
    for it on the host.
    """
    if tensor.device == device:
        return tensor
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def resident_bytes(bundle: DataBundle, test: bool = True) -> int:
    """Bytes the resident splits of ``bundle`` take on the device (0 for a folder dataset)."""
    if not isinstance(bundle, TensorBundle):
        return 0
    splits = [bundle.train, bundle.test] if test else [bundle.train]
    return sum(s.images.nbytes + s.labels.nbytes for s in splits)  # type: ignore[attr-defined]


def on_device(bundle: DataBundle, device: torch.device | str, test: bool = True) -> DataBundle:
    """The bundle to train from on ``device``: resident when that fits, else ``bundle`` itself.

    Both give the same batches, so falling back (a folder dataset, or a split larger than
    ``MEMORY_SHARE`` of the free GPU memory) changes only the speed.
    """
    device = torch.device(device)
    if isinstance(bundle, DeviceBundle) or not isinstance(bundle, TensorBundle):
        return bundle
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if resident_bytes(bundle, test) > MEMORY_SHARE * free:
            return bundle
    return DeviceBundle(bundle, device, test=test)


class DeviceBundle(DataBundle):
    """A ``TensorBundle`` whose splits live on ``device``; same batches, fewer copies.

    ``train``/``test`` stay the host splits (lengths, labels and subsets work as before);
    ``train_batches``/``test_batches``/``train_examples`` have the bundle's signatures and read
    the resident copies. Asking for another device than the resident one is an error, not a
    silent copy.

    Args:
        bundle: The in-memory dataset.
        device: Where the splits live.
        test: Keep the test split resident as well (else it is copied per batch, pinned).
    """

    def __init__(self, bundle: TensorBundle, device: torch.device | str, test: bool = True):
        super().__init__(
            name=bundle.name,
            num_classes=bundle.num_classes,
            input_shape=bundle.input_shape,  # type: ignore[arg-type]
            mean=bundle.mean,
            std=bundle.std,
            train=bundle.train,
            test=bundle.test,
        )
        self.base = bundle
        self.device = torch.device(device)
        self.shift, self.flip = bundle.shift, bundle.flip
        train: TensorSplit = bundle.train  # type: ignore[assignment]
        self._train = (to_device(train.images, self.device), to_device(train.labels, self.device))
        held: TensorSplit = bundle.test  # type: ignore[assignment]
        self._test = (
            (to_device(held.images, self.device), to_device(held.labels, self.device))
            if test
            else None
        )
        # A subclass may normalize differently (float images): then its own rule is used.
        self._plain = type(bundle).normalize is TensorBundle.normalize
        scale = torch.tensor([1.0 / (255.0 * s) for s in self.std]).view(1, -1, 1, 1)
        shift = torch.tensor([m / s for m, s in zip(self.mean, self.std, strict=True)])
        self._scale = to_device(scale, self.device)
        self._shift = to_device(shift.view(1, -1, 1, 1), self.device)

    def subset(self, n_train: int | None, n_test: int | None, seed: int = 0) -> DataBundle:
        """The base bundle's subset, made resident on the same device."""
        sub = self.base.subset(n_train, n_test, seed)
        return DeviceBundle(sub, self.device, test=self._test is not None)  # type: ignore[arg-type]

    def normalize(self, images: Tensor) -> Tensor:
        """The bundle's normalization with constants made once (same arithmetic, same bits)."""
        if not self._plain or images.device != self.device:
            return self.base.normalize(images)
        return images.float().mul_(self._scale).sub_(self._shift)

    def _check(self, device: torch.device | str) -> None:
        if torch.device(device) != self.device:
            raise ValueError(f"these batches live on {self.device}, not {torch.device(device)}")

    def epoch_draws(
        self, batch_size: int, seed: int, epoch: int, start_step: int
    ) -> tuple[Tensor, Tensor]:
        """Every remaining batch's (dy, dx) offsets and flips, from the host path's generators.

        Each batch's generator is seeded by (seed, epoch, batch index, "augment") and draws the
        offsets, then the flips, exactly as ``TensorBundle`` does per batch.
        """
        n = len(self.train)
        offsets, flips = [], []
        for step, start in enumerate(range(0, n, batch_size)):
            if step < start_step:
                continue
            off, flip = self.base.augment_draws(seed, epoch, step, min(batch_size, n - start))
            offsets.append(off)
            flips.append(flip)
        if not offsets:
            return torch.zeros(0, 2, dtype=torch.long), torch.zeros(0, dtype=torch.bool)
        return torch.cat(offsets), torch.cat(flips)

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
        self._check(device)
        n = len(self.train)
        order = epoch_order(n, batch_size, seed, epoch, start_step)
        first = start_step * batch_size
        order = to_device(order[first:], self.device)  # one copy per epoch
        augmenting = augment and bool(self.shift or self.flip)
        if augmenting:
            offsets, flips = (
                to_device(t, self.device)
                for t in self.epoch_draws(batch_size, seed, epoch, start_step)
            )
        images, labels = self._train
        for start in range(0, n - first, batch_size):
            idx = order[start : start + batch_size]
            x = images[idx]
            if augmenting:
                end = start + len(idx)
                x = shift_flip(x, offsets[start:end], flips[start:end], self.shift)
            yield self.normalize(x), labels[idx]

    def test_batches(
        self, batch_size: int, *, device: torch.device | str = "cpu"
    ) -> Iterator[Batch]:
        self._check(device)
        check_batch_size(batch_size)
        if self._test is None:
            yield from self.base.test_batches(batch_size, device=device)
            return
        images, labels = self._test
        for start in range(0, len(labels), batch_size):
            x = images[start : start + batch_size]
            yield self.normalize(x), labels[start : start + batch_size]

    def train_examples(self, indices: Tensor, *, device: torch.device | str = "cpu") -> Batch:
        self._check(device)
        idx = to_device(indices, self.device)
        images, labels = self._train
        return self.normalize(images[idx]), labels[idx]
