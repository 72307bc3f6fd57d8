"""Folder datasets: one persistent loader per split, workers from the machine, and batches
identical to decoding each sample by hand (same order and augmentation draws)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from PIL import Image
from test_data import make_tiny
from torch.utils.data import DataLoader

from earlyprune.data import folder, load_dataset
from earlyprune.data.augment import random_resized_crop, resize_center_crop, to_chw_uint8
from earlyprune.data.bundle import epoch_order
from earlyprune.data.sampling import derive_seed


def by_hand(bundle, seed: int, epoch: int, batch: int, start: int = 0) -> list[torch.Tensor]:
    """The epoch's augmented batches, decoded one sample at a time from the contract."""
    split, spec = bundle.train, bundle.spec
    order = epoch_order(len(split), batch, seed, epoch, start).tolist()[start * batch :]
    images = []
    for k, index in enumerate(order):
        image = folder.open_rgb(split.paths[index], spec.expected_size, spec.hint)
        rng = random.Random(derive_seed(seed, epoch, start * batch + k, "augment"))
        image = random_resized_crop(image, spec.size, rng)
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        images.append(to_chw_uint8(image))
    stacked = bundle.normalize(torch.stack(images))
    return list(stacked.split(batch))


@pytest.mark.parametrize("workers", [0, 1])
def test_batches_equal_the_contract_and_loaders_persist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    made = []
    real_init = DataLoader.__init__

    def counting_init(self, *args, **kwargs) -> None:
        made.append(kwargs.get("persistent_workers"))
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(DataLoader, "__init__", counting_init)
    make_tiny(tmp_path)
    bundle = load_dataset("tinyimagenet", root=tmp_path)
    bundle.num_workers = workers
    for epoch in range(3):
        got = [x for x, _ in bundle.train_batches(4, seed=5, epoch=epoch)]
        want = by_hand(bundle, 5, epoch, 4)
        assert len(got) == len(want) and all(
            torch.equal(a, b) for a, b in zip(got, want, strict=True)
        )
    resumed = [x for x, _ in bundle.train_batches(4, seed=5, epoch=1, start_step=1)]
    assert all(torch.equal(a, b) for a, b in zip(resumed, by_hand(bundle, 5, 1, 4, 1), strict=True))
    partial = bundle.train_batches(4, seed=5, epoch=2)
    next(partial)
    partial.close()  # a pass stopped early: the loader serves the next pass from its start
    again = [x for x, _ in bundle.train_batches(4, seed=5, epoch=2)]
    assert all(torch.equal(a, b) for a, b in zip(again, by_hand(bundle, 5, 2, 4), strict=True))
    for _ in range(2):
        x, y = next(bundle.test_batches(8))
        spec = bundle.spec
        first = folder.open_rgb(bundle.test.paths[0], spec.expected_size, spec.hint)
        first = to_chw_uint8(resize_center_crop(first, spec.test_resize, spec.size))
        assert torch.equal(x[0], bundle.normalize(first[None])[0]) and torch.equal(
            y, bundle.test.labels[:8]
        )
    # One loader for the train split and one for the test split, kept across every epoch.
    assert made == [workers > 0] * 2


def test_fused_passes_of_one_split_at_once(tmp_path: Path) -> None:
    make_tiny(tmp_path)
    bundle = load_dataset("tinyimagenet", root=tmp_path)
    bundle.num_workers = 0
    a, b = bundle.train_batches(4, seed=1, epoch=0), bundle.train_batches(4, seed=2, epoch=0)
    pairs = list(zip(a, b, strict=True))  # two passes interleaved, as a fused pack's members do
    assert all(
        torch.equal(x, w)
        for (x, _), w in zip((p[0] for p in pairs), by_hand(bundle, 1, 0, 4), strict=True)
    )
    assert all(
        torch.equal(x, w)
        for (x, _), w in zip((p[1] for p in pairs), by_hand(bundle, 2, 0, 4), strict=True)
    )


def test_worker_count_comes_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(folder.os, "sched_getaffinity", lambda _: set(range(12)), raising=False)
    assert folder.default_workers() == 11  # one core left for the training loop
    monkeypatch.setattr(folder.os, "sched_getaffinity", lambda _: set(range(64)), raising=False)
    assert folder.default_workers() == folder.MAX_WORKERS
    monkeypatch.setattr(folder.os, "sched_getaffinity", lambda _: {0}, raising=False)
    assert folder.default_workers() == 0
