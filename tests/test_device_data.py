"""Device-resident batches equal the host path's, batch for batch and bit for bit (on CPU)."""

from __future__ import annotations

import pytest
import torch

from earlyprune.data.bundle import TensorBundle, TensorSplit
from earlyprune.data.device import DeviceBundle, on_device, resident_bytes
from earlyprune.data.user import FloatBundle, FloatSplit


def _bundle(shape, n_train, shift, flip, floats=False):
    gen = torch.Generator().manual_seed(sum(shape) + n_train)
    splits = []
    for n in (n_train, 70):
        if floats:
            images = torch.randn(n, *shape, generator=gen)
            splits.append(FloatSplit(images, torch.randint(0, 10, (n,), generator=gen)))
        else:
            images = torch.randint(0, 256, (n, *shape), generator=gen, dtype=torch.uint8)
            splits.append(TensorSplit(images, torch.randint(0, 10, (n,), generator=gen)))
    channels = shape[0]
    cls = FloatBundle if floats else TensorBundle
    return cls(
        name="t",
        num_classes=10,
        mean=(0.3,) * channels,
        std=(0.2,) * channels,
        train=splits[0],
        test=splits[1],
        shift=shift,
        flip=flip,
    )


SHAPES = {
    "cifar": ((3, 32, 32), 4, True, False),
    "mnist": ((1, 28, 28), 0, False, False),
    "mnist_shift": ((1, 28, 28), 2, False, False),
    "flip_only": ((3, 8, 8), 0, True, False),
    "floats": ((2, 6, 6), 1, True, True),
}


@pytest.mark.parametrize("kind", list(SHAPES))
@pytest.mark.parametrize("augment", [True, False])
@pytest.mark.parametrize("start_step", [0, 2])
def test_every_batch_of_an_epoch_equals_the_host_path(kind, augment, start_step):
    shape, shift, flip, floats = SHAPES[kind]
    host = _bundle(shape, 203, shift, flip, floats)  # 203: a partial last batch
    resident = DeviceBundle(host, "cpu")
    for epoch in (0, 3):
        kwargs = dict(seed=7, epoch=epoch, augment=augment, start_step=start_step)
        expected = list(host.train_batches(32, **kwargs))
        got = list(resident.train_batches(32, **kwargs))
        assert len(got) == len(expected) == 7 - start_step
        for (x, y), (ex, ey) in zip(got, expected, strict=True):
            assert x.dtype == ex.dtype and torch.equal(x, ex) and torch.equal(y, ey)
    # Augmentation really happened where asked (else the comparison above proves little).
    plain = list(host.train_batches(32, seed=7, epoch=0, augment=False))
    augmented = list(resident.train_batches(32, seed=7, epoch=0, augment=True))
    assert (not augment_on(shift, flip)) or not torch.equal(plain[0][0], augmented[0][0])


def augment_on(shift, flip):
    return bool(shift or flip)


def test_test_batches_examples_and_subsets_match():
    host = _bundle((3, 32, 32), 120, 4, True)
    resident = on_device(host, "cpu")
    assert isinstance(resident, DeviceBundle)
    for keep_test in (True, False):
        r = DeviceBundle(host, "cpu", test=keep_test)
        for (x, y), (ex, ey) in zip(r.test_batches(50), host.test_batches(50), strict=True):
            assert torch.equal(x, ex) and torch.equal(y, ey)
    idx = torch.tensor([5, 0, 119, 5])
    for a, b in zip(resident.train_examples(idx), host.train_examples(idx), strict=True):
        assert torch.equal(a, b)
    sub, host_sub = resident.subset(40, 20, seed=1), host.subset(40, 20, seed=1)
    assert isinstance(sub, DeviceBundle) and len(sub.train) == 40
    for (x, y), (ex, ey) in zip(
        sub.train_batches(16, seed=2, epoch=1),
        host_sub.train_batches(16, seed=2, epoch=1),
        strict=True,
    ):
        assert torch.equal(x, ex) and torch.equal(y, ey)
    assert resident.steps_per_epoch(32) == host.steps_per_epoch(32)
    assert resident_bytes(host) == 190 * 3 * 32 * 32 + 190 * 8


def test_other_devices_are_refused_and_start_step_checked():
    resident = DeviceBundle(_bundle((1, 4, 4), 10, 0, False), "cpu")
    with pytest.raises(ValueError, match="live on cpu"):
        next(resident.train_batches(4, seed=0, epoch=0, device="meta"))
    with pytest.raises(ValueError, match="start_step"):
        next(resident.train_batches(4, seed=0, epoch=0, start_step=4))
    assert list(resident.train_batches(4, seed=0, epoch=0, start_step=3)) == []
