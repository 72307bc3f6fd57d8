"""Datasets of image files (TinyImageNet, ImageNet), decoded by Pillow in DataLoader workers.

Such datasets do not fit in memory, so a split is a list of (path, label). The determinism
contract is the same as for in-memory bundles: the epoch order comes from (seed, epoch) and each
sample's crop and flip from (seed, epoch, position in the epoch), whatever the worker count.

Loading: one persistent DataLoader per split and use (its workers live across epochs instead of
being started again each epoch; each pass hands it that pass's sample keys through its batch
sampler), pinned memory when the target is CUDA, images and labels copied non-blocking, and as
many decoding workers as the machine has cores to spare (``default_workers``).
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
#: Most decoding workers by default: enough to feed one GPU with ResNet-50-size crops; more
#: only add memory and start-up time.
MAX_WORKERS = 16

#: A sample to decode: (index in the split, (seed, epoch, position in the epoch) or None for
#: the unaugmented test transform).
Key = tuple[int, tuple[int, int, int] | None]


def default_workers() -> int:
    """Decoding workers: the cores this process may use minus one for the training loop, at most
    ``MAX_WORKERS`` (0 on one core: decoding then runs in the calling process)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(0, min(MAX_WORKERS, cores - 1))


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
    """Decodes the sample a :data:`Key` names; an augmented one crops and flips at random from a
    generator seeded by (seed, epoch, position in the epoch)."""

    def __init__(self, split: FileSplit, spec: DecodeSpec) -> None:
        self.split, self.spec = split, spec

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, key: Key) -> tuple[Tensor, int, str]:  # type: ignore[override]
        index, draw = key
        path, label = self.split[index]
        spec = self.spec
        try:
            image = open_rgb(path, spec.expected_size, spec.hint)
        except DatasetError as exc:
            # Returned, not raised: a worker's exception reaches the user wrapped in a traceback.
            return torch.zeros(3, spec.size, spec.size, dtype=torch.uint8), -1, str(exc)
        if draw is None:
            image = resize_center_crop(image, spec.test_resize, spec.size)
        else:
            rng = random.Random(derive_seed(*draw, "augment"))
            image = random_resized_crop(image, spec.size, rng)
            if rng.random() < 0.5:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return to_chw_uint8(image), label, ""


class _Plan:
    """A persistent loader's batch sampler: the batches of keys of the pass about to start.

    The loader reads it in this process each time a pass starts, so setting ``batches`` before
    iterating is how one loader serves every epoch.
    """

    def __init__(self) -> None:
        self.batches: list[list[Key]] = []

    def __iter__(self) -> Iterator[list[Key]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _collate(samples: list[tuple[Tensor, int, str]]) -> tuple[Tensor, Tensor, str]:
    errors = [error for _, _, error in samples if error]
    images = torch.stack([image for image, _, _ in samples])
    labels = torch.tensor([label for _, label, _ in samples], dtype=torch.long)
    return images, labels, errors[0] if errors else ""


class FolderBundle(DataBundle):
    """A dataset of image files with the paper's random-resized-crop augmentation.

    Args:
        spec: Sizes, expected file size and help text (see :class:`DecodeSpec`).
        num_workers: DataLoader worker processes (default :func:`default_workers`; 0 decodes in
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
        self.num_workers = default_workers() if num_workers is None else num_workers
        # Idle loaders by (split, pinned, workers); a pass takes one or makes one, and gives it
        # back at its end (fused packs iterate several passes of one split at once).
        self._idle: dict[tuple[int, bool, int], list[tuple[DataLoader, _Plan]]] = {}

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_idle": {}}  # worker processes are not picklable

    def _take_loader(self, split: FileSplit, pin: bool) -> tuple[DataLoader, _Plan]:
        idle = self._idle.setdefault((id(split), pin, self.num_workers), [])
        if idle:
            return idle.pop()
        plan = _Plan()
        loader = DataLoader(
            _Decode(split, self.spec),  # holds ``split``: its id is not reused while cached
            batch_sampler=plan,
            num_workers=self.num_workers,
            collate_fn=_collate,
            pin_memory=pin,
            persistent_workers=self.num_workers > 0,
        )
        return loader, plan

    def _batches(
        self, split: FileSplit, keys: list[Key], batch_size: int, device: torch.device | str
    ) -> Iterator[Batch]:
        if not keys:
            return
        pin = torch.device(device).type == "cuda"
        loader, plan = self._take_loader(split, pin)
        plan.batches = [keys[i : i + batch_size] for i in range(0, len(keys), batch_size)]
        try:
            for images, labels, error in loader:
                if error:
                    raise DatasetError(error)
                images = images.to(device, non_blocking=True)
                yield self.normalize(images), labels.to(device, non_blocking=True)
        finally:  # also when the pass stops early: the loader drops what it prefetched
            self._idle[(id(split), pin, loader.num_workers)].append((loader, plan))

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
        indices = order[first:].tolist()
        keys: list[Key] = [
            (i, (seed, epoch, first + k) if augment else None) for k, i in enumerate(indices)
        ]
        yield from self._batches(split, keys, batch_size, device)

    def test_batches(
        self, batch_size: int, *, device: torch.device | str = "cpu"
    ) -> Iterator[Batch]:
        check_batch_size(batch_size)
        split: FileSplit = self.test  # type: ignore[assignment]
        yield from self._batches(split, [(i, None) for i in range(len(split))], batch_size, device)

    def train_examples(self, indices: Tensor, *, device: torch.device | str = "cpu") -> Batch:
        split: FileSplit = self.train  # type: ignore[assignment]
        parts = list(self._batches(split, [(i, None) for i in indices.tolist()], 256, device))
        if not parts:
            return torch.empty(0, *self.input_shape, device=device), torch.empty(
                0, dtype=torch.long
            )
        return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])
