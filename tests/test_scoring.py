"""Scorers checked against independent formulations: the paper's definitions, written out by hand.

Each check recomputes a method's scores without the library (a multiplicative mask variable for
SNIP, finite-difference Hessian-vector products for GraSP, closed-form path products for SynFlow)
so that an error shared by the scorer and a test's reference is unlikely.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import (
    LinearChain,
    TinyCNN,
    TinyResNet,
    assert_same_state,
    image_batch,
    make_model,
    messy_state,
    snapshot,
)
from torch import Tensor, nn
from torch.func import functional_call

import earlyprune as ep
from earlyprune.masks.mask import density_schedule

F64 = torch.float64
GRASP_T = 200.0


def conv_linear_weights(model: nn.Module) -> dict[str, Tensor]:
    """Conv/Linear weights found independently of ``ep.prunable``."""
    return {
        f"{name}.weight": m.weight
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    }


def train_loss(model: nn.Module, batch, temperature: float = 1.0):
    """``weights -> loss`` on a private train-mode copy (batch statistics, grads not stored)."""
    net = copy.deepcopy(model).train()
    x, y = batch

    def loss(weights: dict[str, Tensor]) -> Tensor:
        return F.cross_entropy(functional_call(net, weights, (x,)) / temperature, y)

    return loss


def random_mask(model: nn.Module, density: float, seed: int) -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {n: torch.rand(w.shape, generator=gen) < density for n, w in ep.prunable(model).items()}


# ----------------------------------------------------------------------------------------- SNIP


@pytest.mark.parametrize("cls", [TinyCNN, TinyResNet])
@pytest.mark.parametrize("masked", [False, True])
def test_snip_equals_gradient_wrt_multiplicative_mask(cls, masked):
    """SNIP's definition: |∂L/∂c| for weights w ⊙ c at c = 1, train-mode BatchNorm."""
    model = make_model(cls, dtype=F64)
    model.eval()  # SNIP must still use batch statistics
    batch = image_batch(dtype=F64)
    weights = conv_linear_weights(model)
    mask = random_mask(model, 0.6, seed=1) if masked else None
    loss = train_loss(model, batch)
    cs = {n: torch.ones_like(w, requires_grad=True) for n, w in weights.items()}
    m = mask or {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
    value = loss({n: w.detach() * m[n].to(F64) * cs[n] for n, w in weights.items()})
    grads = dict(zip(cs, torch.autograd.grad(value, list(cs.values())), strict=True))

    scores = ep.score(model, "snip", batch, mask=mask)

    assert list(scores) == list(weights)
    for name in weights:
        torch.testing.assert_close(scores[name], grads[name].abs(), rtol=1e-10, atol=1e-14)
        if masked:
            assert (scores[name][~m[name]] == 0).all()


def test_snip_uses_batch_statistics_not_running_statistics():
    """Eval-mode BatchNorm (running stats) would give different scores: SNIP scores in train mode."""
    model = make_model(TinyCNN, dtype=F64)
    batch = image_batch(dtype=F64)
    eval_net = copy.deepcopy(model).eval()
    weights = {n: w.detach().requires_grad_(True) for n, w in conv_linear_weights(model).items()}
    value = F.cross_entropy(functional_call(eval_net, weights, (batch[0],)), batch[1])
    grads = torch.autograd.grad(value, list(weights.values()))
    eval_scores = [(g * w).abs() for g, w in zip(grads, weights.values(), strict=True)]
    scores = ep.score(model.eval(), "snip", batch)
    assert not all(torch.allclose(a, b) for a, b in zip(scores.values(), eval_scores, strict=True))


def test_snip_matches_central_finite_differences():
    """∂L/∂w by central differences in float64 (train-mode BN), a few entries per layer."""
    model = make_model(TinyResNet, dtype=F64)
    batch = image_batch(dtype=F64)
    loss = train_loss(model, batch)
    base = {n: w.detach().clone() for n, w in conv_linear_weights(model).items()}
    scores = ep.score(model, "snip", batch)
    gen = torch.Generator().manual_seed(0)
    h = 1e-6
    for name, w in base.items():
        for flat_index in torch.randint(w.numel(), (3,), generator=gen).tolist():
            idx = torch.unravel_index(torch.tensor(flat_index), w.shape)
            plus = {k: v.clone() for k, v in base.items()}
            minus = {k: v.clone() for k, v in base.items()}
            plus[name][idx] += h
            minus[name][idx] -= h
            with torch.no_grad():
                fd = (loss(plus) - loss(minus)) / (2 * h)
            expected = (fd * w[idx]).abs()
            torch.testing.assert_close(scores[name][idx], expected, rtol=1e-5, atol=1e-10)


def test_snip_leaves_model_untouched():
    model = messy_state(make_model(TinyResNet))
    before = snapshot(model)
    ep.score(model, "snip", image_batch())
    assert_same_state(before, snapshot(model))


# ---------------------------------------------------------------------------------------- GraSP


def grasp_reference(model: nn.Module, batch) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(w, Hg) with Hg from torch's own Hessian-vector product (not the library's)."""
    weights = {n: w.detach().clone() for n, w in conv_linear_weights(model).items()}
    names = list(weights)
    loss = train_loss(model, batch, temperature=GRASP_T)

    def f(*ws: Tensor) -> Tensor:
        return loss(dict(zip(names, ws, strict=True)))

    w = tuple(weights.values())
    g = torch.autograd.grad(f(*[t.requires_grad_(True) for t in w]), w)
    w = tuple(t.detach() for t in w)
    _, hg = torch.autograd.functional.hvp(f, w, g)
    return weights, dict(zip(names, hg, strict=True))


@pytest.mark.parametrize("cls", [TinyCNN, TinyResNet])
def test_grasp_hg_matches_finite_difference_hvp(cls):
    """Hg ≈ (∇L(w + εg) − ∇L(w − εg)) / 2ε with T = 200, train mode, float64."""
    model = make_model(cls, dtype=F64)
    model.eval()
    batch = image_batch(dtype=F64)
    weights = {n: w.detach().clone() for n, w in conv_linear_weights(model).items()}
    loss = train_loss(model, batch, temperature=GRASP_T)

    def grad_at(ws: dict[str, Tensor]) -> dict[str, Tensor]:
        leaves = {n: t.clone().requires_grad_(True) for n, t in ws.items()}
        gs = torch.autograd.grad(loss(leaves), list(leaves.values()))
        return dict(zip(leaves, gs, strict=True))

    g = grad_at(weights)
    g_norm = torch.sqrt(sum((t**2).sum() for t in g.values()))
    eps = 1e-4 / float(g_norm)  # a step of length 1e-4 along g
    plus = grad_at({n: w + eps * g[n] for n, w in weights.items()})
    minus = grad_at({n: w - eps * g[n] for n, w in weights.items()})
    hg = {n: (plus[n] - minus[n]) / (2 * eps) for n in weights}

    scores = ep.score(model, "grasp", batch)
    magnitude = ep.score(model, "grasp_magnitude", batch)

    flat = torch.cat([(weights[n] * hg[n]).flatten() for n in weights])
    got = torch.cat([scores[n].flatten() for n in weights])
    assert flat.abs().max() > 0
    torch.testing.assert_close(got, flat, rtol=1e-5, atol=1e-7 * float(flat.abs().max()))
    got_mag = torch.cat([magnitude[n].flatten() for n in weights])
    torch.testing.assert_close(got_mag, flat.abs(), rtol=1e-5, atol=1e-7 * float(flat.abs().max()))


def test_grasp_scores_equal_w_times_hvp_exactly():
    model = make_model(TinyResNet, dtype=F64)
    batch = image_batch(dtype=F64)
    weights, hg = grasp_reference(model, batch)
    scores = ep.score(model, "grasp", batch)
    for n in weights:
        torch.testing.assert_close(scores[n], weights[n] * hg[n], rtol=1e-9, atol=1e-16)


@pytest.mark.parametrize("sparsity", [0.3, 0.7])
def test_grasp_prune_removes_highest_negative_w_hg(sparsity):
    """The original GraSP removes the weights with the highest −w ⊙ Hg."""
    model = make_model(TinyCNN, dtype=F64)
    batch = image_batch(dtype=F64)
    weights, hg = grasp_reference(model, batch)
    names = list(weights)
    grasp_score = torch.cat([(-weights[n] * hg[n]).flatten() for n in names]).detach()
    n_remove = round(sparsity * grasp_score.numel())
    # Highest −w⊙Hg first; equal scores (dead units score exactly 0) in network order.
    order = torch.sort(-grasp_score, stable=True).indices
    top, rest = grasp_score[order[n_remove - 1]], grasp_score[order[n_remove]]
    assert top == rest or top - rest > 1e-9 * grasp_score.abs().max()  # no near-tie

    mask = ep.prune(model, "grasp", sparsity, batch)

    removed = torch.cat([(~mask[n]).flatten() for n in names])
    expected = torch.zeros_like(removed)
    expected[order[:n_remove]] = True
    assert torch.equal(removed, expected)


def test_grasp_leaves_model_untouched():
    model = messy_state(make_model(TinyResNet))
    before = snapshot(model)
    ep.score(model, "grasp", image_batch())
    ep.score(model, "grasp_magnitude", image_batch())
    assert_same_state(before, snapshot(model))


# -------------------------------------------------------------------------------------- SynFlow


def synflow_closed_form(w1: Tensor, w2: Tensor, m1=None, m2=None) -> tuple[Tensor, Tensor]:
    """Scores of a bias-free two-layer chain with R = 1ᵀ|W2||W1|1 (float64)."""
    a1 = w1.detach().to(F64).abs() * (1 if m1 is None else m1)
    a2 = w2.detach().to(F64).abs() * (1 if m2 is None else m2)
    s1 = a1 * a2.sum(dim=0)[:, None]  # |W1_ij| · Σ_k |W2_ki| · 1
    s2 = a2 * a1.sum(dim=1)[None, :]  # |W2_ki| · Σ_j |W1_ij|
    return s1, s2


def chain_batch(d: int) -> tuple[Tensor, Tensor]:
    return torch.randn(3, d), torch.zeros(3, dtype=torch.long)


@pytest.mark.parametrize("relu", [False, True])
def test_synflow_matches_path_products(relu):
    torch.manual_seed(0)
    model = LinearChain(d=4, h=3, o=2, relu=relu)
    model.train()
    before = snapshot(model)
    scores = ep.score(model, "synflow", chain_batch(4))
    s1, s2 = synflow_closed_form(model.l1.weight, model.l2.weight)
    assert scores["l1.weight"].dtype == F64 and scores["l2.weight"].dtype == F64
    torch.testing.assert_close(scores["l1.weight"], s1, rtol=1e-12, atol=0)
    torch.testing.assert_close(scores["l2.weight"], s2, rtol=1e-12, atol=0)
    assert_same_state(before, snapshot(model))


def test_synflow_uses_float64_where_float32_overflows():
    """|W| ≈ 1e20 per layer: R ≈ 1e41 overflows float32 (max 3.4e38), not float64."""
    torch.manual_seed(1)
    model = LinearChain(d=4, h=3, o=2)
    with torch.no_grad():
        model.l1.weight.mul_(1e20)
        model.l2.weight.mul_(1e20)
    scores = ep.score(model, "synflow", chain_batch(4))
    s1, s2 = synflow_closed_form(model.l1.weight, model.l2.weight)
    assert torch.isfinite(s1).all() and s1.max() > torch.finfo(torch.float32).max
    torch.testing.assert_close(scores["l1.weight"], s1, rtol=1e-12, atol=0)
    torch.testing.assert_close(scores["l2.weight"], s2, rtol=1e-12, atol=0)


class ChainWithBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l1 = nn.Linear(4, 3, bias=False)
        self.bn = nn.BatchNorm1d(3)
        self.l2 = nn.Linear(3, 2, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.l2(self.bn(self.l1(x)))


def test_synflow_eval_mode_abs_parameters_not_buffers():
    """Eval-mode BN with |γ|, |β| but the signed running mean (the authors' convention, not
    Synaptic-Flow's |running_mean|); |bias|; all-ones input."""
    model = make_model(ChainWithBN)
    with torch.no_grad():
        model.l2.bias.copy_(torch.tensor([-0.5, 0.25]))
    model.train()
    before = snapshot(model)

    scores = ep.score(model, "synflow", chain_batch(4))

    bn = model.bn
    a1 = model.l1.weight.detach().to(F64).abs().requires_grad_(True)
    a2 = model.l2.weight.detach().to(F64).abs().requires_grad_(True)
    z = a1 @ torch.ones(4, dtype=F64)
    std = torch.sqrt(bn.running_var.to(F64).abs() + bn.eps)
    assert (bn.running_mean < 0).any()  # else |·| of the buffers would go unnoticed
    z = bn.weight.detach().to(F64).abs() * (z - bn.running_mean.to(F64)) / std
    z = z + bn.bias.detach().to(F64).abs()
    out = a2 @ z + model.l2.bias.detach().to(F64).abs()
    g1, g2 = torch.autograd.grad(out.sum(), [a1, a2])
    torch.testing.assert_close(scores["l1.weight"], (g1 * a1).detach(), rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(scores["l2.weight"], (g2 * a2).detach(), rtol=1e-12, atol=1e-15)
    assert_same_state(before, snapshot(model))


def test_synflow_matches_reference_linearization_on_a_resnet():
    """The authors' recipe: |·| of every parameter (not the buffers), double, eval, ones(1, C, H, W)."""
    model = make_model(TinyResNet)
    model.train()
    ref = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for t in ref.parameters():
            t.abs_()
    ref.zero_grad()
    ref(torch.ones(1, 3, 8, 8, dtype=F64)).sum().backward()
    expected = {n: (w.grad * w).detach() for n, w in conv_linear_weights(ref).items()}

    scores = ep.score(model, "synflow", image_batch())

    assert list(scores) == list(expected)
    for n in expected:
        torch.testing.assert_close(scores[n], expected[n], rtol=1e-10, atol=1e-300)


def stable_remove_lowest(scores: Tensor, alive: Tensor, n_keep: int) -> Tensor:
    """Keeps the ``n_keep`` highest alive scores; ties removed lower index first (by hand)."""
    idx = torch.nonzero(alive).flatten()
    order = torch.sort(scores[idx], stable=True).indices  # ascending; ties keep index order
    new = alive.clone()
    new[idx[order[: idx.numel() - n_keep]]] = False
    return new


@pytest.mark.parametrize("rounds", [1, 4, 10])
def test_iterative_synflow_matches_hand_written_loop(rounds):
    torch.manual_seed(2)
    model = LinearChain(d=6, h=5, o=4)
    sparsity = 0.8
    w1, w2 = model.l1.weight, model.l2.weight
    total = w1.numel() + w2.numel()
    m1 = torch.ones_like(w1, dtype=torch.bool)
    m2 = torch.ones_like(w2, dtype=torch.bool)
    for n_keep in density_schedule(sparsity, rounds, total):
        s1, s2 = synflow_closed_form(w1, w2, m1, m2)
        alive = stable_remove_lowest(
            torch.cat([s1.flatten(), s2.flatten()]), torch.cat([m1.flatten(), m2.flatten()]), n_keep
        )
        m1, m2 = alive[: w1.numel()].reshape(w1.shape), alive[w1.numel() :].reshape(w2.shape)

    mask = ep.prune(model, "synflow", sparsity, chain_batch(6), rounds=rounds)

    assert torch.equal(mask["l1.weight"], m1)
    assert torch.equal(mask["l2.weight"], m2)
    assert int(m1.sum() + m2.sum()) == total - round(sparsity * total)


def test_iterative_synflow_differs_from_one_shot():
    """Rescoring matters: otherwise the rounds test above could not tell the two apart."""
    torch.manual_seed(2)
    model = LinearChain(d=6, h=5, o=4)
    one = ep.prune(model, "synflow", 0.8, chain_batch(6), rounds=1)
    many = ep.prune(model, "synflow", 0.8, chain_batch(6), rounds=10)
    assert any(not torch.equal(one[n], many[n]) for n in one)


def test_synflow_default_is_100_rounds():
    from earlyprune.methods.scoring import METHODS

    assert METHODS.get("synflow").rounds == 100


# ------------------------------------------------------------------------- magnitude and random


def test_magnitude_scores_are_absolute_weights(tiny_resnet):
    scores = ep.score(tiny_resnet, "magnitude")
    weights = conv_linear_weights(tiny_resnet)
    assert list(scores) == list(weights)
    for n, w in weights.items():
        assert torch.equal(scores[n], w.detach().abs())


def test_magnitude_prune_keeps_largest_weights(tiny_resnet):
    weights = conv_linear_weights(tiny_resnet)
    flat = torch.cat([w.detach().abs().flatten() for w in weights.values()])
    n_keep = flat.numel() - round(0.75 * flat.numel())
    threshold = torch.sort(flat, descending=True).values[n_keep - 1]
    mask = ep.prune(tiny_resnet, "magnitude", 0.75)
    for n, w in weights.items():
        assert torch.equal(mask[n], w.detach().abs() >= threshold)


def big_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(16, 32, 3),  # 4608
        nn.Conv2d(32, 64, 3),  # 18432
        nn.Linear(100, 60),  # 6000
        nn.Linear(60, 10),  # 600
    )


def test_random_is_seeded():
    model = big_model()
    a = ep.prune(model, "random", 0.5, seed=3)
    b = ep.prune(model, "random", 0.5, seed=3)
    c = ep.prune(model, "random", 0.5, seed=4)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert any(not torch.equal(a[n], c[n]) for n in a)


def test_random_scores_ignore_weight_values():
    torch.manual_seed(0)
    a = ep.prune(big_model(), "random", 0.6, seed=7)
    b = ep.prune(big_model(), "random", 0.6, seed=7)
    assert all(torch.equal(a[n], b[n]) for n in a)


@pytest.mark.parametrize("sparsity", [0.2, 0.9])
def test_random_gives_about_uniform_layer_sparsity(sparsity):
    mask = ep.prune(big_model(), "random", sparsity, seed=0)
    for name, density in ep.layer_density(mask).items():
        n = mask[name].numel()
        # Binomial standard error with a generous margin (≥ 5 σ).
        margin = 5 * (sparsity * (1 - sparsity) / n) ** 0.5 + 1 / n
        assert abs(density - (1 - sparsity)) < margin, name
