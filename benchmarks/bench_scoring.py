"""Scoring cost: wall time and pass counts of every method on ResNet-20 and VGG-16.

Each registered method (the layer-wise baselines erk, er, uniform, uniform_plus and smart_ratio
included: their allocation with random placement) prunes to 90 % sparsity through ``ep.prune`` on a CIFAR-shaped batch of
10 examples per class (SynFlow: 100 rounds in float64, input shape only). Forward passes are
counted by a forward pre-hook on the network (it survives SynFlow's deep copy), backward passes
by wrapping ``torch.autograd.grad``/``backward`` (a call with ``create_graph=True`` is a backward
that keeps its graph; a second one through it is the double backward). Scorer and mask-selection
time are split by wrapping the method's scorer and ``earlyprune.methods.api.select``; a bare float64
forward/backward of the SynFlow network is timed on its own to show what the pass itself costs.

The selection part compares, on VGG-16-sized scores (14.7 M float64), a full sort with the
selection primitives (kthvalue, topk) and our ``select`` with a straightforward one (gather the
survivors, kthvalue over all of them, scatter back). At the full size (or with ``--baseline``)
a straightforward SynFlow -- the code path earlyprune had before it was optimized: re-multiply
the mask, score, straightforward selection -- runs on each model for a same-run before/after.

Allocation costs: each allocation rule alone (milliseconds, on the model's layer shapes) and a
few composed masks (``ep.prune(..., allocation=A, placement=P)``).

Targets: SynFlow ≤ 1.5 s on ResNet-20 and ≤ 10 s on VGG-16 (2 CPU cores).

On VGG-16 only the paper's methods are timed unless ``--every-method`` (ResNet-20: all).

Usage: ``python benchmarks/bench_scoring.py [--device cpu|cuda] [--quick|--tiny] [--baseline]
[--every-method]``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from _common import base_parser, context, emit, median, size_of, sync, timed
from torch import Tensor, nn
from torch.func import functional_call

import earlyprune as ep
import earlyprune.methods.api as api
from earlyprune.masks.mask import Mask, density_schedule, full_mask, prunable, select, select_counts
from earlyprune.methods.allocation import ALLOCATIONS, allocate
from earlyprune.methods.scoring import METHODS
from earlyprune.methods.scoring.synflow import linearized_copy

SPARSITY = 0.9
#: The paper's methods: the only ones timed on VGG-16 unless ``--every-method`` (each modern
#: scorer on VGG-16 adds minutes on a CPU; ResNet-20 still times every registered method).
PAPER_METHODS = ("random", "magnitude", "snip", "grasp", "grasp_magnitude", "synflow")
#: size → (models, repetitions of one-shot methods, SynFlow rounds, examples per class)
SIZES = {
    "full": (("resnet20", "vgg16"), 3, 100, 10),
    "quick": (("resnet20", "vgg16"), 1, 100, 10),
    "tiny": (("resnet20",), 1, 3, 1),
}


class Counter:
    """Counts forward passes of one network and backward passes anywhere in the process."""

    def __init__(self) -> None:
        self.forward = self.backward = self.backward_with_graph = 0

    @contextlib.contextmanager
    def counting(self, model: nn.Module) -> Iterator[None]:
        def hook(_module: nn.Module, _inputs: Any) -> None:
            self.forward += 1

        # A plain function, not a bound method: deepcopy (SynFlow's copy) shares functions but
        # would copy a bound method's object, and the copy's passes would go uncounted.
        handle = model.register_forward_pre_hook(hook)
        grad, backward = torch.autograd.grad, torch.autograd.backward

        def counted(fn: Callable[..., Any]) -> Callable[..., Any]:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                self.backward += 1
                self.backward_with_graph += bool(kwargs.get("create_graph", False))
                return fn(*args, **kwargs)

            return wrapper

        torch.autograd.grad, torch.autograd.backward = counted(grad), counted(backward)
        try:
            yield
        finally:
            torch.autograd.grad, torch.autograd.backward = grad, backward
            handle.remove()


def timed_prune(
    model: nn.Module, name: str, batch: tuple[Tensor, Tensor], rounds: int, device: torch.device
) -> dict[str, Any]:
    """One ``ep.prune`` with its scorer and selection time split out, and pass counts."""
    method = METHODS.get(name)
    spent = {"score": 0.0, "select": 0.0}

    def prepare(m: nn.Module, b: Any, seed: int) -> Callable[..., Any]:
        scorer = method.prepare(m, b, seed)

        def score(mask: Mask, *budget: int | None) -> Any:  # PHEW's scorer also takes a budget
            seconds, out = timed(device, lambda: scorer(mask, *budget))
            spent["score"] += seconds
            return out

        return score

    def timed_select(*args: Any, **kwargs: Any) -> Mask:
        seconds, out = timed(device, lambda: select(*args, **kwargs))
        spent["select"] += seconds
        return out

    def timed_select_counts(*args: Any, **kwargs: Any) -> Mask:
        seconds, out = timed(device, lambda: select_counts(*args, **kwargs))
        spent["select"] += seconds
        return out

    # A baseline (erk, uniform, ...) keeps its allocation and placement: only ``prepare`` changes.
    wrapped = dataclasses.replace(method, prepare=prepare)
    n_rounds = min(rounds, method.rounds)
    counter = Counter()
    api.select, api.select_counts = timed_select, timed_select_counts  # type: ignore[assignment]
    try:
        with counter.counting(model):
            total, mask = timed(
                device, lambda: ep.prune(model, wrapped, SPARSITY, batch=batch, rounds=n_rounds)
            )
    finally:
        api.select, api.select_counts = select, select_counts  # type: ignore[assignment]
    kept = sum(int(m.sum()) for m in mask.values())
    return {
        "seconds": round(total, 3),
        "score_s": round(spent["score"], 3),
        "select_s": round(spent["select"], 3),
        "forward_passes": counter.forward,
        "backward_passes": counter.backward,
        "backward_with_graph": counter.backward_with_graph,
        "density": round(kept / sum(m.numel() for m in mask.values()), 6),
    }


def allocation_costs(model: nn.Module, batch: tuple[Tensor, Tensor], device: torch.device) -> dict:
    """Milliseconds of each allocation rule alone, and of composed masks (allocation × placement)."""
    shapes = [tuple(p.shape) for p in prunable(model).values()]
    total = sum(p.numel() for p in prunable(model).values())
    n_keep = total - round(SPARSITY * total)
    rules = {
        name: round(
            1000
            * median(
                [timed(device, lambda n=name: allocate(n, shapes, n_keep))[0] for _ in range(5)]
            ),
            3,
        )
        for name in ALLOCATIONS.names()
    }
    composed = {}
    for alloc, place in (("erk", "magnitude"), ("snip", "random"), ("erk", "snip")):
        seconds, _ = timed(
            device,
            lambda a=alloc, p=place: ep.prune(
                model, "random", SPARSITY, batch=batch, allocation=a, placement=p
            ),
        )
        composed[f"{alloc}+{place}"] = round(seconds, 3)
    return {"rule_ms": rules, "composed_s": composed}


def synflow_pass_ms(model: nn.Module, device: torch.device, reps: int) -> float:
    """Median milliseconds of one bare float64 forward/backward of the SynFlow network."""
    net = linearized_copy(model)
    weights = {n: p.detach().clone().requires_grad_(True) for n, p in prunable(net).items()}
    ones = torch.ones((1, 3, 32, 32), dtype=torch.float64, device=device)

    def once() -> None:
        flow = functional_call(net, weights, (ones,)).sum()
        torch.autograd.grad(flow, list(weights.values()))

    once()
    return 1000 * median([timed(device, once)[0] for _ in range(reps)])


def straightforward_synflow(model: nn.Module, rounds: int, device: torch.device) -> float:
    """Seconds of a plain SynFlow: mask, score, gather survivors, kthvalue, scatter back."""
    start = time.perf_counter()
    net = linearized_copy(model)
    absw = {n: p.detach() for n, p in prunable(net).items()}
    ones = torch.ones((1, 3, 32, 32), dtype=torch.float64, device=device)
    mask = full_mask(model)
    total = sum(m.numel() for m in mask.values())
    for n_keep in density_schedule(SPARSITY, rounds, total):
        weights = {n: (w * mask[n].to(w.dtype)).requires_grad_(True) for n, w in absw.items()}
        grads = torch.autograd.grad(
            functional_call(net, weights, (ones,)).sum(), list(weights.values())
        )
        scores = [
            (g * w).detach().reshape(-1) for g, w in zip(grads, weights.values(), strict=True)
        ]
        alive = [mask[n].reshape(-1) for n in mask]
        flat = torch.cat([s[a] for s, a in zip(scores, alive, strict=True)])
        n_remove = flat.numel() - n_keep
        if n_remove > 0:  # the selection earlyprune used before it was optimized
            threshold = torch.kthvalue(flat, n_remove).values
            removed = flat < threshold
            need = n_remove - int(removed.sum())
            if need > 0:
                removed[torch.nonzero(flat == threshold).flatten()[:need]] = True
            parts = removed.split([int(a.sum()) for a in alive])
            for (n, m), a, rem in zip(mask.items(), alive, parts, strict=True):
                new = a.clone()
                new[a] = ~rem
                mask[n] = new.reshape(m.shape)
    sync(device)
    return time.perf_counter() - start


def selection(device: torch.device, size: str) -> dict[str, Any]:
    """Sort vs selection primitives, and our select vs a straightforward one, on 14.7 M scores."""
    n = 14_728_266 if size != "tiny" else 100_000  # VGG-16's prunable weights
    gen = torch.Generator().manual_seed(0)
    flat = torch.rand(n, generator=gen, dtype=torch.float64).to(device)
    k = round(0.023 * n)  # what one of 100 rounds to 90 % sparsity removes

    def t(fn: Callable[[], Any], reps: int = 3) -> float:
        return round(1000 * median([timed(device, fn)[0] for _ in range(reps)]), 1)

    out = {
        "n_scores": n,
        "sort_ms": t(lambda: torch.sort(flat), 1),
        "kthvalue_ms": t(lambda: torch.kthvalue(flat, k)),
        "topk_ms": t(lambda: torch.topk(flat, k, largest=False, sorted=False)),
    }
    out["sort_over_kthvalue"] = round(out["sort_ms"] / out["kthvalue_ms"], 2)
    chunks = list(flat.split([n // 2, n - n // 2]))
    scores = {f"l{i}": c for i, c in enumerate(chunks)}
    mask = {
        f"l{i}": torch.rand(c.shape, generator=gen).to(device) < 0.5 for i, c in enumerate(chunks)
    }
    alive = sum(int(m.sum()) for m in mask.values())
    n_keep = alive - round(0.023 * alive)

    def plain() -> None:
        live = torch.cat([scores[m][mask[m]] for m in mask])
        torch.kthvalue(live, alive - n_keep)

    out["select_ms"] = t(lambda: select(scores, n_keep, mask))
    out["straightforward_select_ms"] = t(plain)
    return out


def measure(
    device: torch.device,
    size: str,
    baseline: bool,
    only: list[str] | None = None,
    only_models: list[str] | None = None,
    every_method: bool = False,
) -> dict[str, Any]:
    models, reps, rounds, per_class = SIZES[size]
    models = tuple(only_models or models)
    gen = torch.Generator().manual_seed(0)
    batch = (
        torch.randn(10 * per_class, 3, 32, 32, generator=gen).to(device),
        torch.arange(10).repeat(per_class).to(device),
    )
    out: dict[str, Any] = {"benchmark": "scoring", "sparsity": SPARSITY, "models": {}}
    for name in models:
        model = ep.create_model(name, 10, seed=0).to(device)
        n_weights = sum(p.numel() for p in prunable(model).values())
        per: dict[str, Any] = {"prunable_weights": n_weights, "methods": {}}
        chosen = only or [
            m for m in METHODS.names() if every_method or name == "resnet20" or m in PAPER_METHODS
        ]
        for method in chosen:
            n = 1 if METHODS.get(method).rounds > 1 and name != "resnet20" else reps
            runs = [
                timed_prune(copy.deepcopy(model), method, batch, rounds, device) for _ in range(n)
            ]
            best = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
            per["methods"][method] = best
        out["models"][name] = per
        if only is None:
            per["allocations"] = allocation_costs(model, batch, device)
        if "synflow" not in per["methods"]:
            continue
        sf = per["methods"]["synflow"]
        per["synflow_fwd_bwd_ms"] = round(
            synflow_pass_ms(model, device, 3 if size != "tiny" else 1), 1
        )
        per["synflow_share"] = {
            "select": round(sf["select_s"] / sf["seconds"], 3),
            "score": round(sf["score_s"] / sf["seconds"], 3),
            "bare_fwd_bwd": round(per["synflow_fwd_bwd_ms"] * rounds / 1000 / sf["seconds"], 3),
        }
        if baseline or size == "full":
            per["straightforward_synflow_s"] = round(
                straightforward_synflow(model, rounds, device), 2
            )
        out[f"synflow_{name}_s"] = sf["seconds"]
    if only is None:
        out["selection"] = selection(device, size)
    out["synflow_rounds"] = rounds
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="time a straightforward SynFlow at any size (VGG-16: ~30 s)",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        metavar="NAME",
        help="only these registered methods (no SynFlow breakdown or selection part unless named)",
    )
    parser.add_argument("--models", nargs="+", metavar="NAME", help="only these networks")
    parser.add_argument(
        "--every-method",
        action="store_true",
        help="time every registered method on VGG-16 too (default: the paper's; adds ~15 min)",
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    ctx = context(device)
    measured = measure(
        device, size_of(args), args.baseline, args.methods, args.models, args.every_method
    )
    result = {**measured, **ctx, "size": size_of(args)}
    emit(result)
    return result


if __name__ == "__main__":
    main()
