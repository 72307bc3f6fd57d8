"""What a mask looks like: per-layer and overall density, neuron collapse (paper, Section 5)."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from earlyprune.masks.mask import check_mask


def layer_density(mask: Mapping[str, Tensor]) -> dict[str, float]:
    """Fraction of weights kept in each layer, in mask order."""
    return {n: float(m.sum()) / max(m.numel(), 1) for n, m in mask.items()}


def overall_density(mask: Mapping[str, Tensor]) -> float:
    """Fraction of all prunable weights kept."""
    total = sum(m.numel() for m in mask.values())
    return sum(int(m.sum()) for m in mask.values()) / max(total, 1)


def neuron_collapse(
    model: nn.Module, mask: Mapping[str, Tensor], threshold: float = 1.0
) -> dict[str, object]:
    """Share of convolutional output channels whose sparsity is at least ``threshold``.

    The paper's "neuron collapse" (Section 5) is the share pruned entirely (``threshold=1``).

    Args:
        model: The network the mask belongs to (identifies the convolutional layers).
        mask: A mask for ``model``.
        threshold: Sparsity in [0, 1] at or above which a channel counts as collapsed.

    Returns:
        ``{"per_layer": {name: share}, "overall": share over all conv channels}``.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    checked = check_mask(model, mask)
    per_layer: dict[str, float] = {}
    collapsed = channels = 0
    for name, m in checked.items():
        if m.dim() < 3:  # Linear weights are not channels of a convolution
            continue
        kept = m.reshape(m.shape[0], -1).float().mean(dim=1)
        hit = int(((1.0 - kept) >= threshold - 1e-12).sum())
        per_layer[name] = hit / m.shape[0]
        collapsed += hit
        channels += m.shape[0]
    return {"per_layer": per_layer, "overall": collapsed / channels if channels else 0.0}
