"""The checks and defaults of ``ep.prune``'s arguments, before anything is scored."""

from __future__ import annotations

from earlyprune.core.scalars import plain_number
from earlyprune.masks.mask import SCOPES, check_sparsity
from earlyprune.methods.scoring import Method


def checked_numbers(
    m: Method, sparsity: object, seed: object, rounds: object, scope: str
) -> tuple[float, int, int]:
    """``(sparsity, seed, rounds)`` as plain numbers (``np.float64(0.9)``, ``torch.tensor(3)``), checked."""
    sparsity, seed, rounds = plain_number(sparsity), plain_number(seed), plain_number(rounds)
    sparsity = check_sparsity(sparsity)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; choose one of: {', '.join(SCOPES)}")
    n_rounds = m.rounds if rounds is None else rounds
    if isinstance(n_rounds, bool) or not isinstance(n_rounds, int) or n_rounds < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}")
    return sparsity, seed, n_rounds


def layout(
    m: Method, allocation: str | None, placement: str | None, scope: str
) -> tuple[str | None, str | None, str]:
    """``(allocation, placement, scope)``: a baseline's own rule unless given (``scope="layer"``: uniform)."""
    if allocation is None and m.allocation is not None:
        allocation = "uniform" if scope == "layer" else m.allocation
        scope = "global"
    placement = m.placement if placement is None else placement
    if allocation is not None and scope != "global":
        raise ValueError(
            f"scope {scope!r} and allocation {allocation!r} both set the layer "
            "counts: use allocation='uniform' for the same sparsity per layer"
        )
    return allocation, placement, scope
