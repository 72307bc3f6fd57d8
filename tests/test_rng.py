"""Independent random streams (earlyprune.core.rng): random pruning must not depend on the weights.

Statistical tolerances. Under independence, Spearman's ρ between n pairs has standard deviation
1/√(n−1). The issue asks for |ρ| < 0.02; layers of a few hundred weights (a stem, an output
layer) cannot meet that even when the streams are independent (σ ≈ 0.05), so a layer passes when
|ρ| < max(0.02, 5/√(n−1)): 0.02 wherever it is ≥ 5σ, and 5σ elsewhere. Big layers are read on a
fixed strided sample of at most 2¹⁶ entries (σ ≤ 0.004, so 0.02 is still ≥ 5σ). The seeds are
fixed, so the test is deterministic; a 5σ bound over the ~215 layer×seed cases would be crossed
by chance with probability ≈ 1e-4 for any other choice of seeds. The bug this guards against
gives ρ ≈ +0.3 in every LeNet layer and the first layer of every network.
"""

from __future__ import annotations

import math

import pytest
import torch

import earlyprune as ep
from earlyprune.core import rng
from earlyprune.masks.mask import prunable
from earlyprune.models import MODELS

SAMPLE = 1 << 16


def ranks(x: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(x, dtype=torch.float64)
    out[torch.argsort(x)] = torch.arange(len(x), dtype=torch.float64)
    return out


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / torch.sqrt((ra * ra).sum() * (rb * rb).sum()))


def strided(t: torch.Tensor) -> torch.Tensor:
    flat = t.detach().reshape(-1)
    return flat[:: max(1, flat.numel() // SAMPLE)]


@pytest.mark.parametrize("name", ["resnet20", "vgg16", "lenet_300_100", "smallcnn"])
def test_random_scores_are_independent_of_the_initial_weights(name: str) -> None:
    entry = MODELS.get(name)
    worst = []
    for seed in range(5):
        model = ep.create_model(name, 10, seed=seed)
        scores = ep.score(model, "random", seed=seed)
        for layer, w in prunable(model).items():
            a, b = strided(w).abs(), strided(scores[layer])
            rho, tol = spearman(a, b), max(0.02, 5 / math.sqrt(len(a) - 1))
            worst.append((abs(rho) / tol, seed, layer, rho, tol))
    ratio, seed, layer, rho, tol = max(worst)
    assert ratio < 1, (
        f"{name} {entry.input_shape} seed {seed} {layer}: ρ = {rho:+.3f}, tol {tol:.3f}"
    )


def test_inverted_random_keeps_the_same_layer_densities_and_typical_weights() -> None:
    """Random and inverted random are both uniform random choices: same per-layer densities and
    kept weights as large as the layer's average |w| (the bug: inverted kept ≈ 0.1σ, not 0.8σ)."""
    sparsity = 0.9
    for name, shape in (("lenet_300_100", (1, 28, 28)), ("smallcnn", (1, 28, 28))):
        for seed in range(3):
            model = ep.create_model(name, 10, seed=seed)
            batch = (torch.zeros(2, *shape), torch.zeros(2, dtype=torch.long))
            masks = {
                inv: ep.prune(model, "random", sparsity, batch=batch, invert=inv, seed=seed)
                for inv in (False, True)
            }
            for layer, w in prunable(model).items():
                n = w.numel()
                d = {inv: float(m[layer].float().mean()) for inv, m in masks.items()}
                # Kept counts of the two masks: independent, each with sd ≈ √(d(1−d)/n).
                sd = math.sqrt(2 * 0.1 * 0.9 / n)
                assert abs(d[True] - d[False]) < max(5 * sd, 1.5 / n), (name, seed, layer, d)
                absw = w.detach().abs().reshape(-1)
                for inv, m in masks.items():
                    kept = absw[m[layer].reshape(-1)]
                    k = len(kept)
                    if k < 30:
                        continue
                    # Mean of k of n values drawn without replacement: sd = s/√k · √(1 − k/n).
                    sd_mean = float(absw.std()) / math.sqrt(k) * math.sqrt(1 - k / n)
                    gap = float(kept.mean() - absw.mean())
                    assert abs(gap) < 5 * sd_mean, (name, seed, layer, inv, gap, sd_mean)


def test_streams_differ_by_purpose_and_seed_and_canonicalize_ints() -> None:
    import numpy as np

    def draw(*args: object) -> torch.Tensor:
        return torch.rand(8, generator=rng.generator(*args))  # type: ignore[arg-type]

    assert torch.equal(draw(3, "init"), draw(3, "init"))
    assert torch.equal(draw(np.int64(3), "init"), draw(3, "init"))
    assert not torch.equal(draw(3, "init"), draw(3, "random_scores"))
    assert not torch.equal(draw(3, "init"), draw(4, "init"))
    assert not torch.equal(draw(3, "order", 0), draw(3, "order", 1))
    # The data streams keep their historical seeds: (seed, epoch, purpose) in derive_seed.
    assert rng.stream_seed(3, "order", 1) == rng.derive_seed(3, 1, "order")
    with pytest.raises(ValueError, match="purpose"):
        rng.generator(3, "")


def test_reinit_and_shuffle_never_reuse_the_init_stream() -> None:
    model = ep.create_model("lenet_300_100", 10, seed=7)
    again = ep.create_model("lenet_300_100", 10, seed=7)
    ep.ablations.reinitialize(again, seed=7)
    for (n, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert not torch.equal(a, b), n
    mask = ep.prune(model, "magnitude", 0.5)
    shuffled = ep.ablations.shuffle(mask, seed=7)
    assert shuffled.keys() == mask.keys()
    assert all(int(shuffled[n].sum()) == int(mask[n].sum()) for n in mask)
