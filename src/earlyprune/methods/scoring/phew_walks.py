"""PHEW's biased random walks on the unit graph, many walkers at a time (numpy).

Layer k's weights are seen as (out units, local in units, kernel entries); a walker that enters
layer k at a unit draws the unit on the other side with probability ∝ Σ_kernel |w| and then the
kernel entry ∝ |w|. Draws are vectorized inverse-CDF look-ups in row-normalized cumulative tables.
"""

from __future__ import annotations

import numpy as np
import torch

from earlyprune.methods.scoring.phew_graph import Wiring

__registers__ = ()  # helper: PHEW's random walks, used by phew.py

#: Walkers per batch (half forward, half backward).
BATCH = 512


def _row_tables(strength: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalized cumulative sums of each row of ``strength`` (rows × cols), and live rows."""
    cum = np.cumsum(strength, axis=1)
    total = cum[:, -1:]
    live = total[:, 0] > 0
    # float32 tables: half the memory traffic of the look-ups; a probability off by 1e-7 is moot.
    norm = np.divide(cum, total, out=np.ones_like(cum), where=total > 0).astype(np.float32)
    norm[:, -1] = 1.0  # the last entry is exactly 1 after rounding too
    return norm, live


def _draw_rows(table: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Column drawn in each of ``rows`` (inverse CDF: the first entry above ``u``)."""
    # u < 1 must stay below 1 in float32, or a trailing zero-probability entry could be drawn.
    u32 = np.minimum(u.astype(np.float32), np.nextafter(np.float32(1), np.float32(0)))
    picked = (table[rows] <= u32[:, None]).sum(axis=1)
    return np.minimum(picked, table.shape[1] - 1)


class Layer:
    """Sampling tables of one prunable layer (weights |w| ⊙ mask)."""

    def __init__(self, weight: torch.Tensor, alive: torch.Tensor, groups: int) -> None:
        w = (weight.detach().abs() * alive).double().cpu().numpy()
        self.o, self.il = weight.shape[0], weight.shape[1]
        self.w = w.reshape(self.o, self.il, -1)
        self.k = self.w.shape[2]
        self.groups = groups
        self.per_group = self.o // groups
        self.i = self.il * groups
        strength = np.zeros((self.o, self.i))
        for g in range(groups):  # block-diagonal for grouped convolutions
            rows = slice(g * self.per_group, (g + 1) * self.per_group)
            strength[rows, g * self.il : (g + 1) * self.il] = self.w[rows].sum(axis=2)
        self.fwd, self.fwd_live = _row_tables(strength.T)  # per input unit, over output units
        self.bwd, self.bwd_live = _row_tables(strength)  # per output unit, over input units
        self.pos, _ = _row_tables(self.w.reshape(self.o * self.il, self.k))
        self.cols = {True: self.o, False: self.i}

    def weight_index(self, a: np.ndarray, b: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Flat weight indices: kernel entry drawn ∝ |w| for unit pairs (a, b)."""
        pair = a * self.il + (b - (a // self.per_group) * self.il)
        return pair * self.k + _draw_rows(self.pos, pair, u)

    def pairs(self, kept: np.ndarray) -> np.ndarray:
        """Unit pairs (out × in) joined by at least one kept weight."""
        out = np.zeros((self.o, self.i), dtype=bool)
        any_kept = kept.reshape(self.o, self.il, -1).any(axis=2)
        for g in range(self.groups):
            rows = slice(g * self.per_group, (g + 1) * self.per_group)
            out[rows, g * self.il : (g + 1) * self.il] = any_kept[rows]
        return out

    def expand(self, pairs: np.ndarray) -> np.ndarray:
        """A unit-pair matrix (out × in) as a weight-shaped bool array (o, il, k)."""
        local = np.zeros((self.o, self.il), dtype=bool)
        for g in range(self.groups):
            rows = slice(g * self.per_group, (g + 1) * self.per_group)
            local[rows] = pairs[rows, g * self.il : (g + 1) * self.il]
        return np.broadcast_to(local[:, :, None], self.w.shape)


class _CSR:
    """Neighbours of every unit of every node: ``(node, unit) -> [(other node, other unit)]``."""

    def __init__(self, sizes: dict[int, int]) -> None:
        self.pairs: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {
            n: [] for n in sizes
        }
        self.sizes = sizes

    def add(self, node: int, units: np.ndarray, other: int, other_units: np.ndarray) -> None:
        self.pairs[node].append((units, np.full(len(units), other), other_units))

    def freeze(self) -> None:
        self.off, self.node, self.unit = {}, {}, {}
        for n, size in self.sizes.items():
            parts = self.pairs[n]
            units = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, int)
            nodes = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, int)
            others = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, int)
            order = np.argsort(units, kind="stable")  # deterministic: edges in wiring order
            self.node[n], self.unit[n] = nodes[order], others[order]
            self.off[n] = np.concatenate([[0], np.cumsum(np.bincount(units, minlength=size))])

    def step(self, node: int, units: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, ...]:
        """A uniformly drawn neighbour of each unit: (ok, other node, other unit)."""
        start, count = self.off[node][units], np.diff(self.off[node])[units]
        j = np.minimum(start + (u * count).astype(np.int64), start + np.maximum(count, 1) - 1)
        ok = count > 0
        j = np.where(ok, j, 0)
        if len(self.node[node]) == 0:
            return ok, np.zeros_like(units), np.zeros_like(units)
        return ok, self.node[node][j], self.unit[node][j]


class Walks:
    """Forward and backward walkers over a wiring; ``batch()`` returns completed walks."""

    def __init__(self, wiring: Wiring, layers: list[Layer], rng: np.random.Generator) -> None:
        self.layers, self.rng = layers, rng
        n = len(layers)
        self.input, self.output = n, n + 1
        index = {name: i for i, name in enumerate(wiring.layers)}
        code = {"input": self.input, "output": self.output, **index}
        self.succ = _CSR({self.input: wiring.n_input} | {i: lay.o for i, lay in enumerate(layers)})
        self.pred = _CSR(
            {self.output: wiring.n_output} | {i: lay.i for i, lay in enumerate(layers)}
        )
        for src, dsts in wiring.edges.items():
            for dst, e in dsts.items():
                a, b = np.nonzero(e)
                self.succ.add(code[src], a, code[dst], b)
                self.pred.add(code[dst], b, code[src], a)
        self.succ.freeze()
        self.pred.freeze()
        # Walks start, round robin, at the units the network input feeds directly (the first
        # layer's input units, as the reference's ``mask[0].shape[1]``: 784 features of an MNIST
        # MLP, 3 channels of a CIFAR conv net) and at the network outputs (``mask[-1].shape[0]``).
        self.entry = {
            True: self._entries(self.succ, self.input),
            False: self._entries(self.pred, self.output),
        }
        self.next = {True: 0, False: 0}

    @staticmethod
    def _entries(graph: _CSR, end: int) -> tuple[np.ndarray, np.ndarray]:
        """(node, unit) of every unit one edge from the network's input (or output) node."""
        return graph.node[end], graph.unit[end]

    def batch(self, size: int = BATCH) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``size`` walks, forward and backward alternating (walk 2i forward, 2i + 1 backward).

        Returns:
            (walk, layer, flat weight index) of every weight crossed by a walk that completed;
            dead-ended walks are dropped.
        """
        half = max(size // 2, 1)
        parts = []
        for parity, forward in enumerate((True, False)):
            nodes, units = self.entry[forward]
            if len(nodes) == 0:
                continue  # the input (output) reaches no layer: no walk can start
            pick = (self.next[forward] + np.arange(half)) % len(nodes)
            self.next[forward] = int(pick[-1] + 1)
            owner, layer, flat = self._walk(nodes[pick], units[pick], forward)
            parts.append((2 * owner + parity, layer, flat))
        if not parts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))  # type: ignore[return-value]

    def _walk(self, nodes: np.ndarray, units: np.ndarray, forward: bool) -> tuple[np.ndarray, ...]:
        """Walks that start at the input (output) units ``units`` of layers ``nodes``."""
        m = len(nodes)
        graph = self.succ if forward else self.pred
        node, unit = nodes.astype(np.int64), units.astype(np.int64)
        active = np.ones(m, dtype=bool)
        done = np.zeros(m, dtype=bool)
        owners, layers, flats = [], [], []
        end = self.output if forward else self.input
        for step in range(2 * len(self.layers) + 2):  # a feedforward walk crosses a layer once
            if not active.any():
                break
            nxt_node, nxt_unit = node.copy(), unit.copy()
            for n in np.unique(node[active]) if step else ():  # the first edge is the start's
                who = np.flatnonzero(active & (node == n))
                ok, other, other_unit = graph.step(int(n), unit[who], self.rng.random(len(who)))
                active[who[~ok]] = False
                nxt_node[who], nxt_unit[who] = other, other_unit
            finished = active & (nxt_node == end)
            done |= finished
            active &= ~finished
            for k in np.unique(nxt_node[active]):
                who = np.flatnonzero(active & (nxt_node == k))
                layer, b = self.layers[int(k)], nxt_unit[who]
                live = (layer.fwd_live if forward else layer.bwd_live)[b]
                active[who[~live]] = False
                who, b = who[live], b[live]
                a = _draw_rows(layer.fwd if forward else layer.bwd, b, self.rng.random(len(who)))
                out_u, in_u = (a, b) if forward else (b, a)
                owners.append(who)
                layers.append(np.full(len(who), int(k)))
                flats.append(layer.weight_index(out_u, in_u, self.rng.random(len(who))))
                nxt_unit[who] = a  # forward: on to the output unit; backward: the input unit
            node, unit = nxt_node, nxt_unit
        if not owners:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        owner, layer, flat = (np.concatenate(x) for x in (owners, layers, flats))
        keep = done[owner]
        return owner[keep], layer[keep], flat[keep]
