"""Datasets: readers for the official on-disk formats, batching and the paper's augmentation.

``load_dataset(name)`` returns a :class:`DataBundle`; ``list_datasets()`` names the choices. Each
format lives in its own module and registers itself in :data:`DATASETS`; importing this package
imports them all.
"""

from earlyprune.data import cifar, embedded, idx, imagenet, tinyimagenet  # noqa: F401 (register)
from earlyprune.data.api import (
    DATASETS,
    default_root,
    list_datasets,
    load_dataset,
    register_dataset,
    scoring_batch,
)
from earlyprune.data.bundle import DataBundle, TensorBundle, TensorSplit
from earlyprune.data.folder import FileSplit, FolderBundle

__all__ = [
    "DATASETS",
    "DataBundle",
    "FileSplit",
    "FolderBundle",
    "TensorBundle",
    "TensorSplit",
    "default_root",
    "list_datasets",
    "load_dataset",
    "register_dataset",
    "scoring_batch",
]
