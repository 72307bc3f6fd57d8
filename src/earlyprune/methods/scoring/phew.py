"""PHEW (Patil & Dovrolis, ICML 2021, "Paths with Higher Edge-Weights"): data-free random walks.

Walks alternate: a forward walk starts at a unit the network input feeds directly (round robin
over the first layer's input units, as the reference: the 784 features of an MNIST MLP, the 3
channels of a CIFAR conv net) and follows the unit graph (:mod:`earlyprune.methods.scoring.phew_graph`) to an output; a backward walk
starts at a network output (round robin) and goes back to the input. Inside a layer the next
unit is drawn with probability ∝ Σ_kernel |w| over the connecting weights and the kernel entry
∝ |w| (the reference's ``prob``/``kernel_prob``); between layers, where a unit feeds several
layers (a residual block's output feeds the next block and its skip path), the successor is
drawn uniformly. Every weight a walk crosses is kept; walks continue until the budget is met.

Exact count: a walk that would overshoot the budget is not taken; the remainder is filled with
single weights drawn ∝ |w| without replacement among those joining a unit reachable from the
input to a unit that reaches the output (so each is on an input→output path). The reference
instead keeps the overshooting walk (its count is approximate). The same fill takes over when
walks stall (at low sparsity new walks mostly repeat kept weights: more than 20 steps per
kept weight). Scores are visit counts (unvisited weights score 0), so the global selection keeps
exactly the walked set; with ``scope="layer"`` or an allocation the selection trims or pads it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from earlyprune.core.rng import stream_seed
from earlyprune.masks.mask import Mask, Scores, prunable
from earlyprune.methods.base import Batch, register_method
from earlyprune.methods.scoring.phew_graph import Wiring, probe_wiring
from earlyprune.methods.scoring.phew_walks import Layer, Walks

#: The budget of :func:`earlyprune.score` (which has no sparsity): 10 % of the surviving weights.
DEFAULT_DENSITY = 0.1
#: Walk steps allowed per weight of the budget before the fill takes over.
STEPS_PER_WEIGHT = 20


class _Walker:
    """Walks and fills one mask; ``counts[k]`` are the visits of layer k's weights."""

    def __init__(self, model: nn.Module, wiring: Wiring, mask: Mask, seed: int) -> None:
        self.wiring = wiring
        params = prunable(model)
        modules = {f"{n}.weight" if n else "weight": m for n, m in model.named_modules()}
        self.names = wiring.layers
        self.index = {n: i for i, n in enumerate(self.names)}
        self.layers = [
            Layer(params[n], mask[n], int(getattr(modules[n], "groups", 1))) for n in self.names
        ]
        self.rng = np.random.default_rng(stream_seed(seed, "phew"))
        self.walks = Walks(wiring, self.layers, self.rng)
        sizes = [layer.w.size for layer in self.layers]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.flat = np.zeros(int(self.offsets[-1]), dtype=np.int64)
        self.counts = [
            self.flat[self.offsets[k] : self.offsets[k + 1]].reshape(layer.w.shape)
            for k, layer in enumerate(self.layers)
        ]

    def run(self, budget: int) -> int:
        """Walks until ``budget`` distinct weights are kept (or walks stall); returns the count."""
        kept, steps, empty = 0, 0, 0
        limit = STEPS_PER_WEIGHT * budget + 1000
        while kept < budget and steps < limit:
            owner, layer, flat = self.walks.batch()
            if len(owner) == 0:
                empty += 1
                if empty > 3:
                    break  # no walk completes: leave it to the fill
                continue
            ids = self.offsets[layer] + flat
            steps += len(ids)
            new = np.unique(ids[self.flat[ids] == 0])
            if kept + len(new) <= budget:  # the whole batch fits
                np.add.at(self.flat, ids, 1)
                kept += len(new)
                continue
            order = np.argsort(owner, kind="stable")  # the last batch: walk by walk, in order
            owner, ids = owner[order], ids[order]
            for walk in np.split(ids, np.flatnonzero(np.diff(owner)) + 1):
                fresh = len(np.unique(walk[self.flat[walk] == 0]))
                if kept + fresh > budget:
                    return kept  # stop before an overshoot: the fill completes the budget
                np.add.at(self.flat, walk, 1)
                kept += fresh
        return kept

    def fill(self, missing: int) -> None:
        """Adds ``missing`` weights ∝ |w|, each joining an input-reachable to an output-reaching unit."""
        while missing > 0:
            cand = self._candidates()
            flat = [np.flatnonzero(c) for c in cand]
            total = sum(len(f) for f in flat)
            if total == 0:
                return
            take = min(missing, total)
            keys = np.concatenate(
                [np.log(self.layers[k].w.reshape(-1)[f]) for k, f in enumerate(flat)]
            ) + self.rng.gumbel(size=total)  # Gumbel top-k: sampling ∝ |w| without replacement
            chosen = np.argpartition(-keys, take - 1)[:take] if take < total else np.arange(total)
            starts = np.cumsum([0] + [len(f) for f in flat])
            for k, f in enumerate(flat):
                mine = chosen[(chosen >= starts[k]) & (chosen < starts[k + 1])] - starts[k]
                self.counts[k].reshape(-1)[f[mine]] += 1
            missing -= take

    def _candidates(self) -> list[np.ndarray]:
        pairs = [layer.pairs(c > 0) for layer, c in zip(self.layers, self.counts, strict=True)]
        n = len(self.layers)
        in_f = [np.zeros(layer.i, dtype=bool) for layer in self.layers]
        out_f = [np.zeros(layer.o, dtype=bool) for layer in self.layers]
        for k, name in enumerate(self.names):  # execution order: sources come first
            for src, dsts in self.wiring.edges.items():
                if name in dsts:
                    e = dsts[name]
                    rows = slice(None) if src == "input" else out_f[self.index[src]]
                    in_f[k] |= e[rows].any(axis=0)
            out_f[k] = (pairs[k] & in_f[k][None, :]).any(axis=1)
        in_b = [np.zeros(layer.i, dtype=bool) for layer in self.layers]
        out_b = [np.zeros(layer.o, dtype=bool) for layer in self.layers]
        for k in reversed(range(n)):
            for dst, e in self.wiring.edges.get(self.names[k], {}).items():
                cols = slice(None) if dst == "output" else in_b[self.index[dst]]
                out_b[k] |= e[:, cols].any(axis=1)
            in_b[k] = (pairs[k] & out_b[k][:, None]).any(axis=0)
        return [
            layer.expand(out_b[k][:, None] & in_f[k][None, :])
            & (self.counts[k] == 0)
            & (layer.w > 0)
            for k, layer in enumerate(self.layers)
        ]


@register_method(
    "phew",
    needs_batch=False,
    budgeted=True,
    summary="visits of |w|-biased random walks input<->output until the budget; data-free",
    prepared=True,
)
def prepare_phew(model: nn.Module, batch: Batch | None, seed: int) -> Callable[..., Scores]:
    """Probes the unit graph once; each call walks a fresh mask for its budget."""
    if batch is None or not isinstance(batch[0], torch.Tensor):
        raise ValueError("method 'phew' needs the input shape: pass batch=(inputs, labels)")
    wiring = probe_wiring(model, tuple(batch[0].shape[1:]))
    params = prunable(model)

    def score(mask: Mask, n_keep: int | None) -> Scores:
        alive = sum(int(torch.count_nonzero(m)) for m in mask.values())
        budget = math.ceil(DEFAULT_DENSITY * alive) if n_keep is None else n_keep
        walker = _Walker(model, wiring, mask, seed)
        walker.fill(budget - walker.run(budget))
        counts = dict(zip(walker.names, walker.counts, strict=True))
        out = {}
        for n, p in params.items():
            c = counts.get(n)  # a layer the forward pass never reached is never walked
            t = torch.zeros(p.shape, dtype=torch.float32) if c is None else torch.from_numpy(c)
            out[n] = t.reshape(p.shape).to(device=p.device, dtype=torch.float32)
        return out

    return score
