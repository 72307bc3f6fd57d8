"""Calling a user's scoring function once, on the demo network, before any run is started.

A mistake in the function (wrong keys, shapes or dtypes, NaN, weights changed, an exception)
becomes one ``SpecError`` line naming the problem and, where it raised, the user's own file and
line; nothing is trained or stored.
"""

from __future__ import annotations

from typing import Any

from earlyprune.apps.demo import Grid
from earlyprune.core.errors import SpecError
from earlyprune.core.user_functions import UserCodeError, arity, where_in_user_code
from earlyprune.core.user_functions import one_line as _one_line
from earlyprune.methods.user import Target
from earlyprune.run.environment import RunInterrupted


def probe(target: Target, grid: Grid) -> None:
    """Calls the method once on the demo network and checks what it returns, before any run.

    The function gets a freshly initialized ``smallcnn`` and the scoring batch a run would pass
    (10 training images per class). It must return one real-valued, NaN-free score tensor per
    prunable weight (``ep.prunable(model)``: names and shapes), leave the weights unchanged, and
    its scores must give a mask at every sparsity of ``grid``.
    """
    import torch

    from earlyprune.data import scoring_batch
    from earlyprune.masks.mask import full_mask, prunable
    from earlyprune.methods.api import prune
    from earlyprune.methods.scoring import preserved_state
    from earlyprune.run.spec import RunSpec
    from earlyprune.run.stages import fresh_model, prepare

    setup = prepare(RunSpec(**grid.base()))
    model = fresh_model(setup)
    batch = scoring_batch(setup.bundle, per_class=10, seed=0, device=setup.device)
    label = target.label
    if target.function is not None:
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        try:
            with preserved_state(model):
                fn = target.function
                raw = fn(model, batch, full_mask(model), 0) if arity(fn) == 4 else fn(model, batch)
        except (UserCodeError, RunInterrupted) as exc:  # sys.exit, Ctrl-C or a hang in user code
            raise SpecError(f"{exc} when called on the demo network") from exc
        except Exception as exc:
            raise SpecError(
                f"{label} raised {_one_line(exc)}{_at(exc, target)} when called on the "
                "demo network (smallcnn, a batch of 100 Fashion-MNIST images)"
            ) from exc
        check_scores(raw, {n: tuple(p.shape) for n, p in prunable(model).items()}, label)
        if any(not torch.equal(before[n], p) for n, p in model.named_parameters()):
            raise SpecError(
                f"{label} changed the model's weights; scoring must leave them as "
                "they are (work on a copy or under torch.no_grad())"
            )
    for s in grid.sparsities:
        try:
            prune(model, target.method, s, batch=batch, seed=0)
        except Exception as exc:  # e.g. scores of a dtype torch cannot rank
            raise SpecError(
                f"{label}: pruning to {100 * s:.1f} % failed: {_one_line(exc)}{_at(exc, target)}"
            ) from exc


def _at(exc: BaseException, target: Target) -> str:
    """`` at FILE, line N`` where the user's own code raised (empty if not in their file)."""
    where = where_in_user_code(exc, target.function)
    return f" at {where}" if where else ""


def check_scores(raw: Any, shapes: dict[str, tuple[int, ...]], label: str) -> None:
    """One clear ``SpecError`` for the first problem with a returned score dict."""
    import torch

    if not isinstance(raw, dict):
        raise SpecError(
            f"{label} must return a dict of parameter name → Tensor, got {type(raw).__name__}"
        )
    missing = [n for n in shapes if n not in raw]
    extra = [str(k) for k in raw if k not in shapes]
    if missing or extra:
        what = f"no scores for {', '.join(missing)}" if missing else ""
        what += ("; " if missing and extra else "") + (
            f"scores for {', '.join(extra)}, which are not prunable" if extra else ""
        )
        raise SpecError(
            f"{label} returned {what}; the keys must be the prunable weights "
            f"(ep.prunable(model)): {', '.join(shapes)}"
        )
    for name, shape in shapes.items():
        value = raw[name]
        if not isinstance(value, torch.Tensor):
            raise SpecError(
                f"{label}: scores[{name!r}] is a {type(value).__name__}, expected a torch.Tensor"
            )
        if tuple(value.shape) != shape:
            raise SpecError(
                f"{label}: scores[{name!r}] has shape {tuple(value.shape)}, expected "
                f"{shape} (one score per weight)"
            )
        if value.dtype == torch.bool or value.is_complex():
            raise SpecError(f"{label}: scores[{name!r}] must hold real numbers, got {value.dtype}")
        if value.is_floating_point() and torch.isnan(value).any():
            raise SpecError(f"{label}: scores[{name!r}] contains NaN")
