"""The public entry points: the dataset registry, `load_dataset`, `list_datasets`, `scoring_batch`.

A dataset is one function registered under its name with a fixed signature::

    @register_dataset("my-data")
    def load_my_data(root: Path | None, download: bool) -> DataBundle: ...

``root`` is None when the user gave none; the loader then searches :func:`default_root` (and any
well-known system folder of its own). Loaders raise :class:`DatasetError` for every bad input.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from earlyprune.core.errors import DatasetError
from earlyprune.core.registry import Registry
from earlyprune.data.bundle import DataBundle
from earlyprune.data.sampling import derive_seed, per_class_pick

__registers__ = ()  # helper: the dataset registry, load_dataset and scoring_batch

DatasetLoader = Callable[[Path | None, bool], DataBundle]

DATASETS: Registry[DatasetLoader] = Registry("dataset")


def register_dataset(name: str) -> Callable[[DatasetLoader], DatasetLoader]:
    """Registers ``load(root, download) -> DataBundle`` as dataset ``name``; returns it unchanged.

    Raises:
        ValueError: If ``name`` is already registered.
    """
    return DATASETS.register(name)


ROOT_ENV = "EARLYPRUNE_DATA"  # overrides the default data folder, e.g. on a cluster


def default_root() -> Path:
    """The folder searched when no root is given: ``$EARLYPRUNE_DATA`` or ~/.cache/earlyprune/data."""
    return Path(os.environ.get(ROOT_ENV) or "~/.cache/earlyprune/data").expanduser()


def load_dataset(
    name: str, root: str | os.PathLike[str] | None = None, download: bool = False
) -> DataBundle:
    """Loads a registered dataset.

    Args:
        name: One of :func:`list_datasets`.
        root: Folder holding the dataset in its official layout (e.g. ``<root>/cifar-10-batches-py``);
            None searches :func:`default_root`.
        download: Fetch the official files into ``root`` (or the default root) if missing;
            supported for cifar10, cifar100, mnist and fashion-mnist.

    Returns:
        The dataset's :class:`DataBundle`.

    Raises:
        DatasetError: Unknown name, missing folder, corrupt or inconsistent files.
    """
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of: {', '.join(list_datasets())}")
    loader = DATASETS.get(name)
    return loader(Path(root).expanduser() if root is not None else None, bool(download))


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`, sorted."""
    return sorted(DATASETS.names())


def scoring_batch(
    bundle: DataBundle, per_class: int = 10, seed: int = 0, device: torch.device | str = "cpu"
) -> tuple[Tensor, Tensor]:
    """A class-balanced batch for SNIP/GraSP: ``per_class`` random training examples per class.

    Examples are unaugmented and normalized, grouped by class (class 0 first).

    Raises:
        DatasetError: If some class has fewer than ``per_class`` training examples.
    """
    if not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class must be a positive integer, got {per_class!r}")
    labels = bundle.train.labels
    counts = torch.bincount(labels, minlength=bundle.num_classes)
    short = [c for c in range(bundle.num_classes) if int(counts[c]) < per_class]
    if short:
        raise DatasetError(
            f"{bundle.name}: scoring needs {per_class} training examples of every class, but "
            f"class(es) {short[:10]} have only {[int(counts[c]) for c in short[:10]]}"
        )
    quota = torch.full((bundle.num_classes,), per_class, dtype=torch.long)
    indices = per_class_pick(labels, quota, derive_seed(seed, "scoring"))
    return bundle.train_examples(indices, device=device)


def search_roots(root: Path | None) -> list[Path]:
    """Folders to search for a dataset: the given root, else the default root."""
    return [root] if root is not None else [default_root()]


def missing_error(what: str, searched: list[Path], how: str) -> DatasetError:
    """The error for a dataset that is nowhere to be found, saying where we looked and what to do."""
    places = ", ".join(str(p) for p in searched)
    return DatasetError(f"{what} not found (looked in: {places}). {how}")
