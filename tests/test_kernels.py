"""Both selection kernels give the same threshold, and select() builds the same masks with each."""

from __future__ import annotations

import pytest
import torch
from conftest import reference_select

from earlyprune.masks import mask as masking
from earlyprune.masks.kernels import kernel_for, kth_smallest


@pytest.mark.parametrize("levels", [0, 3])
def test_kernels_agree_on_every_rank(levels):
    gen = torch.Generator().manual_seed(levels)
    values = (
        torch.randint(levels, (301,), generator=gen).double() - 1
        if levels
        else torch.randn(301, generator=gen)
    )
    values[::50] = -0.0  # signed zeros tie with +0.0
    for k in range(1, 302, 7):
        a, b = kth_smallest(values, k, "kthvalue"), kth_smallest(values, k, "sort")
        assert a == b and a == torch.sort(values).values[k - 1]


def test_kernel_choice_per_device_and_errors():
    assert kernel_for("cpu") == "kthvalue" and kernel_for("cuda:0") == "sort"
    assert kernel_for(torch.device("cuda", 1)) == "sort"
    with pytest.raises(ValueError, match="unknown selection kernel"):
        kth_smallest(torch.ones(3), 1, "heap")
    with pytest.raises(ValueError, match="k must lie"):
        kth_smallest(torch.ones(3), 4)


@pytest.mark.parametrize("kernel", ["kthvalue", "sort"])
@pytest.mark.parametrize("removed_share", [0.01, 0.4, 0.9])
def test_select_builds_the_same_masks_with_either_kernel(monkeypatch, kernel, removed_share):
    # select() takes its order statistic from kth_smallest (sort on CUDA); forcing the sort
    # kernel on the CPU must build the same masks (and fails if select bypasses kth_smallest).
    if kernel == "sort":
        calls = []

        def routed(values, k):
            calls.append(k)
            return kth_smallest(values, k, "sort")

        monkeypatch.setattr(masking, "kth_smallest", routed)
    monkeypatch.setattr(masking, "_DIRECT", 64)
    monkeypatch.setattr(masking, "_SAMPLE", 2048)
    gen = torch.Generator().manual_seed(int(removed_share * 100))
    mask = {f"l{i}": torch.rand(sh, generator=gen) < 0.8 for i, sh in enumerate([(60, 50), (9,)])}
    scores = {n: torch.randint(5, m.shape, generator=gen).float() for n, m in mask.items()}
    alive = sum(int(m.sum()) for m in mask.values())
    n_keep = alive - round(removed_share * alive)
    out = masking.select(scores, n_keep, mask)
    expected = reference_select(scores, n_keep, mask)
    assert all(torch.equal(out[n], expected[n]) for n in mask)
    assert kernel == "kthvalue" or calls  # the sort kernel really decided the cut
