"""Datasets of image files (TinyImageNet, ImageNet), decoded by Pillow in DataLoader workers.

Such datasets do not fit in memory, so a split is a list of (path, label). The determinism
contract is the same as for in-memory bundles: the epoch order comes from (seed, epoch) and each
sample's crop and flip from (seed, epoch, position in the epoch), whatever the worker count.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from earlyprune.core.errors import DatasetError
from earlyprune.data.augment import random_resized_crop, resize_center_crop, to_chw_uint8
from earlyprune.data.bundle import Batch, DataBundle, check_batch_size, epoch_order
from earlyprune.data.sampling import derive_seed

__registers__ = ()  # helper: class-per-folder image reading (ImageNet, Tiny ImageNet)

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FileSplit(Sequence[tuple[str, int]]):
    """A split as a list of (path, label); ``labels`` holds the labels as an int64 tensor."""

    def __init__(self, paths: Sequence[str], labels: Tensor) -> None:
        if len(paths) != len(labels):
            raise DatasetError(f"{len(paths)} image paths but {len(labels)} labels")
        self.paths = list(paths)
        self.labels = labels.long()
        self._label_list = self.labels.tolist()  # plain ints: cheap per-sample access in workers

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[str, int]:  # type: ignore[override]
        return self.paths[index], self._label_list[index]

    def select(self, indices: Tensor) -> FileSplit:
        """The sub-split at ``indices`` (in that order)."""
        return FileSplit([self.paths[i] for i in indices.tolist()], self.labels[indices])


def list_images(folder: Path) -> list[str]:
    """Paths of the image files (JPEG/PNG, any case) directly inside ``folder``, sorted by name."""
    with os.scandir(folder) as entries:  # scandir: no stat call per file on million-file trees
        return sorted(
            e.path for e in entries if e.name.lower().endswith(IMAGE_SUFFIXES) and e.is_file()
        )


def open_rgb(path: str, expected_size: tuple[int, int] | None, hint: str) -> Image.Image:
    """Decodes an image file to RGB; a broken file or a wrong size raises :class:`DatasetError`."""
    try:
        with Image.open(path) as image:
            image.load()
            rgb = image.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"{path}: cannot decode the image ({exc}). {hint}") from None
    if expected_size is not None and rgb.size != expected_size:
        raise DatasetError(
            f"{path}: expected a {expected_size[0]}×{expected_size[1]} image, found "
            f"{rgb.size[0]}×{rgb.size[1]}. {hint}"
        )
    return rgb


@dataclass(frozen=True)
class DecodeSpec:
    """How a folder dataset's images become tensors.

    Attributes:
        size: Side of the square fed to the model (64 TinyImageNet, 224 ImageNet).
        test_resize: Shorter side before the centred test crop (64 TinyImageNet, 256 ImageNet).
        expected_size: (width, height) every file must have, or None for any size.
        hint: How to obtain the data, appended to error messages.
    """

    size: int
    test_resize: int
    expected_size: tuple[int, int] | None
    hint: str


class _Decode(Dataset):
    """Decodes ``split[order[k]]``; with ``augment_seed`` = (seed, epoch, first position), crops
    and flips at random from a generator seeded by the sample's position in the epoch."""

    def __init__(
        self,
        split: FileSplit,
        order: list[int],
        spec: DecodeSpec,
        augment_seed: tuple[int, int, int] | None,
    ) -> None:
        self.split, self.order, self.spec, self.augment_seed = split, order, spec, augment_seed

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, k: int) -> tuple[Tensor, int, str]:
        path, label = self.split[self.order[k]]
        spec = self.spec
        try:
            image = open_rgb(path, spec.expected_size, spec.hint)
        except DatasetError as exc:
            # Returned, not raised: a worker's exception reaches the user wrapped in a traceback.
            return torch.zeros(3, spec.size, spec.size, dtype=torch.uint8), -1, str(exc)
        if self.augment_seed is None:
            image = resize_center_crop(image, spec.test_resize, spec.size)
        else:
            seed, epoch, first = self.augment_seed
            rng = random.Random(derive_seed(seed, epoch, first + k, "augment"))
            image = random_resized_crop(image, spec.size, rng)
            if rng.random() < 0.5:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return to_chw_uint8(image), label, ""


def _collate(samples: list[tuple[Tensor, int, str]]) -> tuple[Tensor, Tensor, str]:
    errors = [error for _, _, error in samples if error]
    images = torch.stack([image for image, _, _ in samples])
    labels = torch.tensor([label for _, label, _ in samples], dtype=torch.long)
    return images, labels, errors[0] if errors else ""


class FolderBundle(DataBundle):
    """A dataset of image files with the paper's random-resized-crop augmentation.

    Args:
        spec: Sizes, expected file size and help text (see :class:`DecodeSpec`).
        num_workers: DataLoader worker processes (default ``min(4, cpu count)``; 0 decodes in
            the calling process). Also settable later as the ``num_workers`` attribute.
        Other arguments: see :class:`DataBundle`.
    """

    def __init__(
        self,
        *,
        name: str,
        num_classes: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        train: FileSplit,
        test: FileSplit,
        spec: DecodeSpec,
        num_workers: int | None = None,
    ) -> None:
        super().__init__(
            name=name,
            num_classes=num_classes,
            input_shape=(3, spec.size, spec.size),
            mean=mean,
            std=std,
            train=train,
            test=test,
        )
        self.spec = spec
        self.num_workers = min(4, os.cpu_count() or 1) if num_workers is None else num_workers

    def _batches(
        self,
        split: FileSplit,
        order: list[int],
        batch_size: int,
        augment_seed: tuple[int, int, int] | None,
        device: torch.device | str,
    ) -> Iterator[Batch]:
        loader = DataLoader(
            _Decode(split, order, self.spec, augment_seed),
            batch_size=batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=_collate,
            pin_memory=torch.device(device).type == "cuda",
        )
        for images, labels, error in loader:
            if error:
                raise DatasetError(error)
            yield self.normalize(images.to(device, non_blocking=True)), labels.to(device)

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
        split: FileSplit = self.train  # type: ignore[assignment]
        order = epoch_order(len(split), batch_size, seed, epoch, start_step)
        first = start_step * batch_size
        augment_seed = (seed, epoch, first) if augment else None
        yield from self._batches(split, order[first:].tolist(), batch_size, augment_seed, device)

    def test_batches(
        self, batch_size: int, *, device: torch.device | str = "cpu"
    ) -> Iterator[Batch]:
        check_batch_size(batch_size)
        split: FileSplit = self.test  # type: ignore[assignment]
        yield from self._batches(split, list(range(len(split))), batch_size, None, device)

    def train_examples(self, indices: Tensor, *, device: torch.device | str = "cpu") -> Batch:
        split: FileSplit = self.train  # type: ignore[assignment]
        parts = list(self._batches(split, indices.tolist(), 256, None, device))
        if not parts:
            return torch.empty(0, *self.input_shape, device=device), torch.empty(
                0, dtype=torch.long
            )
        return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])
