"""PHEW (Patil & Dovrolis, ICML 2021, "Paths with Higher Edge-Weights"): data-free random walks.

Walks alternate: a forward walk starts at a channel of the network input (round robin) and
follows the unit graph (:mod:`earlyprune.scoring.phew_graph`) to an output; a backward walk
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

from earlyprune.masking import Mask, Scores, prunable
from earlyprune.scoring.base import METHODS, Batch, Method
from earlyprune.scoring.phew_graph import Wiring, probe_wiring
from earlyprune.scoring.streams import stream_seed

#: The budget of :func:`earlyprune.score` (which has no sparsity): 10 % of the surviving weights.
DEFAULT_DENSITY = 0.1
#: Walk steps allowed per weight of the budget before the fill takes over.
STEPS_PER_WEIGHT = 20
_INPUT = -1


class _Layer:
    """One prunable layer's weights as (out units, local in units, kernel) and its sampling tables."""

    def __init__(self, weight: torch.Tensor, alive: torch.Tensor, groups: int) -> None:
        w = (weight.detach().abs() * alive).double().cpu().numpy()
        self.shape = tuple(weight.shape)
        self.o, self.il = weight.shape[0], weight.shape[1]
        self.w = w.reshape(self.o, self.il, -1)
        self.groups = groups
        self.i = self.il * groups
        strength = np.zeros((self.o, self.i))
        for a0 in range(0, self.o, self.o // groups):  # block-diagonal for grouped convolutions
            g = a0 // (self.o // groups)
            rows = slice(a0, a0 + self.o // groups)
            strength[rows, g * self.il : (g + 1) * self.il] = self.w[rows].sum(axis=2)
        self.fwd = np.cumsum(strength.T, axis=1)  # per input unit, over output units
        self.bwd = np.cumsum(strength, axis=1)  # per output unit, over input units

    def local(self, a: int, b: int) -> int:
        return b - (a // (self.o // self.groups)) * self.il

    def pairs(self, kept: np.ndarray) -> np.ndarray:
        """Channel pairs (out × in units) with at least one kept weight."""
        out = np.zeros((self.o, self.i), dtype=bool)
        any_kept = kept.reshape(self.o, self.il, -1).any(axis=2)
        for a0 in range(0, self.o, self.o // self.groups):
            g = a0 // (self.o // self.groups)
            rows = slice(a0, a0 + self.o // self.groups)
            out[rows, g * self.il : (g + 1) * self.il] = any_kept[rows]
        return out

    def expand(self, pairs: np.ndarray) -> np.ndarray:
        """A pair matrix (out × in units) as a weight-shaped bool array (o, il, k)."""
        local = np.zeros((self.o, self.il), dtype=bool)
        for a0 in range(0, self.o, self.o // self.groups):
            g = a0 // (self.o // self.groups)
            rows = slice(a0, a0 + self.o // self.groups)
            local[rows] = pairs[rows, g * self.il : (g + 1) * self.il]
        return np.broadcast_to(local[:, :, None], self.w.shape)


def _draw(cum: np.ndarray, rng: np.random.Generator) -> int:
    """An index drawn with probability ∝ the increments of the cumulative sums ``cum``."""
    return int(np.searchsorted(cum, rng.random() * cum[-1], side="right").clip(0, len(cum) - 1))


class _Walker:
    def __init__(self, model: nn.Module, wiring: Wiring, mask: Mask, seed: int) -> None:
        self.wiring = wiring
        params = prunable(model)
        modules = {f"{n}.weight" if n else "weight": m for n, m in model.named_modules()}
        self.names = wiring.layers
        self.index = {n: i for i, n in enumerate(self.names)}
        self.layers = [
            _Layer(params[n], mask[n], int(getattr(modules[n], "groups", 1))) for n in self.names
        ]
        self.rng = np.random.default_rng(stream_seed(seed, "phew"))
        out_code = len(self.names)
        # succ[src][unit]: (layer code or out_code, unit); pred[dst][unit]: (layer code or _INPUT, unit)
        self.succ: dict[int, list[list[tuple[int, int]]]] = {}
        self.pred: dict[int, list[list[tuple[int, int]]]] = {}
        sizes_out = {_INPUT: wiring.n_input} | {self.index[n]: wiring.n_out[n] for n in self.names}
        sizes_in = {out_code: wiring.n_output} | {self.index[n]: wiring.n_in[n] for n in self.names}
        for code, size in sizes_out.items():
            self.succ[code] = [[] for _ in range(size)]
        for code, size in sizes_in.items():
            self.pred[code] = [[] for _ in range(size)]
        for src, dsts in wiring.edges.items():
            s = _INPUT if src == "input" else self.index[src]
            for dst, e in dsts.items():
                d = out_code if dst == "output" else self.index[dst]
                for a, b in zip(*np.nonzero(e), strict=True):
                    self.succ[s][int(a)].append((d, int(b)))
                    self.pred[d][int(b)].append((s, int(a)))
        self.out_code = out_code
        self.counts = [np.zeros(layer.w.shape, dtype=np.int64) for layer in self.layers]
        self.steps = 0

    def _cross(self, k: int, a: int, b: int) -> tuple[int, tuple[int, int, int]]:
        layer = self.layers[k]
        bl = layer.local(a, b)
        pos = _draw(np.cumsum(layer.w[a, bl]), self.rng)
        return k, (a, bl, pos)

    def forward(self, unit: int) -> list[tuple[int, tuple[int, int, int]]] | None:
        walk, src, a = [], _INPUT, unit
        for _ in range(2 * len(self.layers) + 2):  # a feedforward walk crosses each layer once
            options = self.succ[src][a]
            if not options:
                return None
            dst, b = options[int(self.rng.integers(len(options)))]
            if dst == self.out_code:
                return walk
            cum = self.layers[dst].fwd[b]
            if cum[-1] <= 0:
                return None
            a = _draw(cum, self.rng)
            walk.append(self._cross(dst, a, b))
            src = dst
        return None

    def backward(self, unit: int) -> list[tuple[int, tuple[int, int, int]]] | None:
        walk, dst, b = [], self.out_code, unit
        for _ in range(2 * len(self.layers) + 2):
            options = self.pred[dst][b]
            if not options:
                return None
            src, a = options[int(self.rng.integers(len(options)))]
            if src == _INPUT:
                return walk
            cum = self.layers[src].bwd[a]
            if cum[-1] <= 0:
                return None
            b = _draw(cum, self.rng)
            walk.append(self._cross(src, a, b))
            dst = src
        return None

    def run(self, budget: int) -> int:
        """Walks until ``budget`` distinct weights are kept (or walks stall); returns the count."""
        kept, i, failures = 0, 0, 0
        n_in, n_out = max(self.wiring.n_input, 1), max(self.wiring.n_output, 1)
        limit = STEPS_PER_WEIGHT * budget + 1000
        while kept < budget and self.steps < limit:
            walk = self.forward(i // 2 % n_in) if i % 2 == 0 else self.backward(i // 2 % n_out)
            i += 1
            if not walk:
                failures += 1
                if failures > 1000 and kept == 0:
                    break  # no complete walk exists: leave it to the fill
                continue
            self.steps += len(walk)
            new = {(k, idx) for k, idx in walk if self.counts[k][idx] == 0}
            if kept + len(new) > budget:
                break  # would overshoot: the fill completes the budget exactly
            for k, idx in walk:
                self.counts[k][idx] += 1
            kept += len(new)
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


METHODS.add(
    "phew",
    Method(
        "phew",
        prepare_phew,
        needs_batch=False,
        budgeted=True,
        summary="visits of |w|-biased random walks input<->output until the budget; data-free",
    ),
)
