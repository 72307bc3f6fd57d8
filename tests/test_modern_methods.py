"""The modern baselines checked against independent computations (issue 15).

Iterative SNIP and FORCE against SNIP and a hand-written loop; ProsPr against SNIP and finite
differences of the unrolled loss; SynFlow-L2 against its closed form on a linear chain; NTK-SAP's
proxy gradient against finite differences; PHEW's masks for exact counts and path membership.
Direction and inversion are covered for every registered method by tests/test_api.py.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import LinearChain, TinyCNN, TinyResNet, image_batch, make_model, reference_select
from torch import Tensor, nn
from torch.func import functional_call

import earlyprune as ep
from earlyprune.core.rng import generator
from earlyprune.methods.scoring import METHODS, Method
from earlyprune.methods.scoring.ntk_sap import ntk_sap_method, proxy_gradient, resample
from earlyprune.methods.scoring.prospr import prospr_method

F64 = torch.float64


def weights_of(model: nn.Module) -> dict[str, Tensor]:
    """Conv/Linear weights found without ``ep.prunable``."""
    return {
        f"{n}.weight": m.weight
        for n, m in model.named_modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    }


def kept(mask: dict[str, Tensor]) -> int:
    return sum(int(m.sum()) for m in mask.values())


def hand_snip_gradient(model: nn.Module, batch, mask) -> dict[str, Tensor]:
    """∂L/∂c at c = 1 for weights θ ⊙ m ⊙ c, train-mode copy (SNIP's definition, by hand)."""
    net = copy.deepcopy(model).train()
    ws = {n: w.detach() for n, w in weights_of(model).items()}
    cs = {n: torch.ones_like(w, requires_grad=True) for n, w in ws.items()}
    logits = functional_call(
        net, {n: ws[n] * mask[n].to(ws[n].dtype) * cs[n] for n in ws}, (batch[0],)
    )
    grads = torch.autograd.grad(F.cross_entropy(logits, batch[1]), list(cs.values()))
    return dict(zip(ws, grads, strict=True))


def geometric_counts(sparsity: float, rounds: int, total: int) -> list[int]:
    """Survivors after each round for densities d^(t/T), the last exactly total − round(s·N)."""
    d = 1 - sparsity
    counts = [total - round((1 - d ** (t / rounds)) * total) for t in range(1, rounds)]
    return [max(c, total - round(sparsity * total)) for c in counts] + [
        total - round(sparsity * total)
    ]


# ----------------------------------------------------------------------- iter_snip and force


@pytest.mark.parametrize("method", ["iter_snip", "force"])
@pytest.mark.parametrize("cls", [TinyCNN, TinyResNet])
def test_one_round_equals_snip_exactly(method, cls):
    model, batch = make_model(cls), image_batch()
    snip_scores = ep.score(model, "snip", batch)
    scores = ep.score(model, method, batch)
    assert all(torch.equal(scores[n], snip_scores[n]) for n in snip_scores)
    for s in (0.5, 0.9):
        snip = ep.prune(model, "snip", s, batch)
        mask = ep.prune(model, method, s, batch, rounds=1)
        assert all(torch.equal(mask[n], snip[n]) for n in snip)


@pytest.mark.parametrize("method", ["iter_snip", "force"])
@pytest.mark.parametrize("rounds", [3, 6])
def test_rounds_equal_a_hand_written_loop(method, rounds):
    """Iterative SNIP: |θ⊙m ⊙ g(θ⊙m)| among survivors. FORCE: |θ ⊙ g(θ⊙m)| among all weights."""
    model, batch = make_model(TinyResNet, dtype=F64), image_batch(dtype=F64)
    ws = {n: w.detach() for n, w in weights_of(model).items()}
    total = sum(w.numel() for w in ws.values())
    everything = {n: torch.ones_like(w, dtype=torch.bool) for n, w in ws.items()}
    mask = everything
    for n_keep in geometric_counts(0.9, rounds, total):
        g = hand_snip_gradient(model, batch, mask)
        # ∂L/∂c = g_w ⊙ θ⊙m, so SNIP's |θ⊙m ⊙ g_w| is |∂L/∂c|; FORCE uses θ, not θ⊙m.
        if method == "iter_snip":
            scores, pool = {n: g[n].abs() for n in ws}, mask
        else:
            scores = {n: (ws[n] * _weight_grad(model, batch, mask)[n]).abs() for n in ws}
            pool = everything
        mask = reference_select(scores, n_keep, pool)

    got = ep.prune(model, method, 0.9, batch, rounds=rounds)

    assert all(torch.equal(got[n], mask[n]) for n in mask)
    assert total - kept(got) == round(0.9 * total)


def _weight_grad(model: nn.Module, batch, mask) -> dict[str, Tensor]:
    """∂L/∂w at w = θ⊙m (train-mode copy)."""
    net = copy.deepcopy(model).train()
    ws = {n: (w.detach() * mask[n]).requires_grad_(True) for n, w in weights_of(model).items()}
    loss = F.cross_entropy(functional_call(net, ws, (batch[0],)), batch[1])
    return dict(zip(ws, torch.autograd.grad(loss, list(ws.values())), strict=True))


def recording(name: str) -> tuple[Method, list[dict[str, Tensor]]]:
    """The registered method ``name``, recording the mask each round scores."""
    base = METHODS.get(name)
    seen: list[dict[str, Tensor]] = []

    def prepare(model, batch, seed):
        scorer = base.prepare(model, batch, seed)

        def score(mask):
            seen.append({n: m.clone() for n, m in mask.items()})
            return scorer(mask)

        return score

    return Method(name, prepare, base.rounds, base.needs_batch, base.summary, base.revive), seen


def revived(masks: list[dict[str, Tensor]]) -> int:
    return sum(
        int((after[n] & ~before[n]).sum())
        for before, after in zip(masks, masks[1:], strict=False)
        for n in before
    )


def test_force_can_revive_a_weight_and_iter_snip_cannot():
    """A pinned case (TinyCNN, seed 0, 90 % in 8 rounds) in which FORCE brings weights back."""
    model, batch = make_model(TinyCNN, dtype=F64), image_batch(dtype=F64)
    force, force_seen = recording("force")
    final = ep.prune(model, force, 0.9, batch, rounds=8)
    assert revived([*force_seen[1:], final]) > 0
    snip, snip_seen = recording("iter_snip")
    final = ep.prune(model, snip, 0.9, batch, rounds=8)
    assert revived([*snip_seen, final]) == 0


# ------------------------------------------------------------------------------------ prospr


@pytest.mark.parametrize("cls", [TinyCNN, TinyResNet])
def test_prospr_with_no_steps_is_snip(cls):
    model, batch = make_model(cls), image_batch()
    scores = ep.score(model, prospr_method(steps=0), batch)
    snip = ep.score(model, "snip", batch)
    assert all(torch.equal(scores[n], snip[n]) for n in snip)


def chain_loss_after_steps(w1, w2, c1, c2, x, y, lr, steps):
    """Loss after ``steps`` SGD steps from (c1⊙w1, c2⊙w2) on a bias-free linear chain, by hand."""
    a, b = c1 * w1, c2 * w2
    for _ in range(steps):
        a, b = a.detach().requires_grad_(True), b.detach().requires_grad_(True)
        loss = F.cross_entropy(x @ a.T @ b.T, y)
        ga, gb = torch.autograd.grad(loss, [a, b])
        a, b = a - lr * ga, b - lr * gb
    return F.cross_entropy(x @ a.T @ b.T, y)


def test_prospr_one_step_matches_finite_differences_of_the_mask():
    torch.manual_seed(3)
    model = LinearChain(d=4, h=3, o=3).double()
    x = torch.randn(6, 4, dtype=F64)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    lr, h = 0.5, 1e-6
    w1, w2 = model.l1.weight.detach(), model.l2.weight.detach()
    scores = ep.score(model, prospr_method(steps=1, lr=lr), (x, y))
    first = ep.score(model, prospr_method(steps=1, lr=lr, first_order=True), (x, y))
    for name, shape in (("l1.weight", w1.shape), ("l2.weight", w2.shape)):
        fd = torch.zeros(shape, dtype=F64)
        for idx in torch.cartesian_prod(*[torch.arange(k) for k in shape]).tolist():
            cs = {s: [torch.ones_like(w1), torch.ones_like(w2)] for s in (1, -1)}
            for sign in (1, -1):
                cs[sign][0 if name == "l1.weight" else 1][tuple(idx)] += sign * h
            plus = chain_loss_after_steps(w1, w2, *cs[1], x, y, lr, 1)
            minus = chain_loss_after_steps(w1, w2, *cs[-1], x, y, lr, 1)
            fd[tuple(idx)] = (plus - minus) / (2 * h)
        torch.testing.assert_close(scores[name], fd.abs(), rtol=1e-5, atol=1e-9)
    # The second-order terms matter here, so this test tells the two variants apart.
    assert not all(torch.allclose(scores[n], first[n], rtol=1e-3) for n in scores)


# -------------------------------------------------------------------------------- synflow_l2


@pytest.mark.parametrize("masked", [False, True])
def test_synflow_l2_matches_the_closed_form_on_a_linear_chain(masked):
    """R = 1ᵀ (W2∘W2)(W1∘W1) 1: score(W1)[j,i] = |W1[j,i]| Σ_o W2[o,j]², likewise for W2 (the
    authors' |θ| · ∂R/∂θ², see tests/test_conventions.py)."""
    torch.manual_seed(4)
    model = LinearChain(d=5, h=4, o=3)
    gen = torch.Generator().manual_seed(1)
    mask = {
        n: torch.rand(w.shape, generator=gen) < (0.6 if masked else 2.0)
        for n, w in weights_of(model).items()
    }
    v1 = (model.l1.weight.detach().double() * mask["l1.weight"]) ** 2
    v2 = (model.l2.weight.detach().double() * mask["l2.weight"]) ** 2
    expected = {
        "l1.weight": v1.sqrt() * v2.sum(0)[:, None],
        "l2.weight": v2.sqrt() * v1.sum(1)[None, :],
    }
    scores = ep.score(model, "synflow_l2", (torch.zeros(2, 5), torch.zeros(2)), mask=mask)
    for n, e in expected.items():
        torch.testing.assert_close(scores[n].double(), e, rtol=1e-10, atol=1e-300)
    assert METHODS.get("synflow_l2").rounds == 100


# ----------------------------------------------------------------------------------- ntk_sap


def test_ntk_sap_is_reproducible_and_data_free():
    model = make_model(TinyResNet)
    x, y = image_batch()
    a = ep.prune(model, "ntk_sap", 0.9, (x, y), rounds=2)
    b = ep.prune(model, "ntk_sap", 0.9, (torch.zeros_like(x), torch.zeros_like(y)), rounds=2)
    c = ep.prune(model, "ntk_sap", 0.9, (x, y), rounds=2, seed=1)
    assert all(torch.equal(a[n], b[n]) for n in a), "the inputs' values or labels were used"
    assert any(not torch.equal(a[n], c[n]) for n in a), "the seed is not used"
    assert not METHODS.get("ntk_sap").needs_batch
    # Fresh initializations: the model's own weights do not matter, only its architecture.
    other = make_model(TinyResNet, seed=7)
    d = ep.prune(other, "ntk_sap", 0.9, (x, y), rounds=2)
    assert all(torch.equal(a[n], d[n]) for n in a)


def chain_proxy(w1, w2, c1, c2, d1, d2, x, eps):
    """Σ_i ‖f(x_i; c⊙θ) − f(x_i; c⊙(θ + εδ))‖² for f = W2 relu(W1 x), by hand."""

    def f(a, b):
        return torch.relu(x @ a.T) @ b.T

    return (f(c1 * w1, c2 * w2) - f(c1 * (w1 + eps * d1), c2 * (w2 + eps * d2))).pow(2).sum()


def test_ntk_sap_proxy_gradient_matches_finite_differences():
    model = LinearChain(d=4, h=3, o=2, relu=True).double()
    net = copy.deepcopy(model)
    x, deltas = resample(net, (5, 4), generator(0, "ntk_sap", 0, 0))
    w1, w2 = net.l1.weight.detach(), net.l2.weight.detach()
    d1, d2 = deltas["l1.weight"], deltas["l2.weight"]
    eps, h = 0.01, 1e-6
    ones = {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights_of(net).items()}
    grads = proxy_gradient(net, ones, x, deltas, eps)
    for name, shape in (("l1.weight", w1.shape), ("l2.weight", w2.shape)):
        fd = torch.zeros(shape, dtype=F64)
        for idx in torch.cartesian_prod(*[torch.arange(k) for k in shape]).tolist():
            vals = []
            for sign in (1, -1):
                c1, c2 = torch.ones_like(w1), torch.ones_like(w2)
                (c1 if name == "l1.weight" else c2)[tuple(idx)] += sign * h
                vals.append(chain_proxy(w1, w2, c1, c2, d1, d2, x, eps))
            fd[tuple(idx)] = (vals[0] - vals[1]) / (2 * h)
        torch.testing.assert_close(grads[name], fd, rtol=1e-5, atol=1e-12)
    # One resample, one round: the method's scores are |that gradient|.
    scores = ep.score(model, ntk_sap_method(resamples=1), (torch.zeros(5, 4), torch.zeros(5)))
    for n in grads:
        torch.testing.assert_close(scores[n], grads[n].abs(), rtol=1e-12, atol=1e-15)


# -------------------------------------------------------------------------------------- phew


class PathNet(nn.Module):
    """Conv → Conv with a residual sum (the skip feeds the head directly) → pool → Linear.

    PHEW's paths run between channels, as in the reference; global pooling makes a channel one
    feature, so the spatially exact flow check applies. (After a flatten of a larger map, a
    channel-level path can miss the spatial features the next layer keeps.)
    """

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(2, 3, 3, padding=1, bias=False)
        self.c2 = nn.Conv2d(3, 3, 3, padding=1, bias=False)
        self.fc = nn.Linear(3, 4)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.c1(x))
        h = torch.relu(self.c2(h) + h)
        return self.fc(F.adaptive_avg_pool2d(h, 1).flatten(1))


class WideChain(LinearChain):
    """8 → 6 → 4 with a ReLU: at 97 % two weights survive, one path's worth."""

    def __init__(self) -> None:
        super().__init__(d=8, h=6, o=4, relu=True)


def on_a_path(model: nn.Module, mask, input_shape) -> dict[str, Tensor]:
    """Kept weights through which some input→output path of kept weights runs (by path flow).

    Every kept weight set to 1, everything else 0, BatchNorm the identity, an all-ones input:
    ∂(Σ outputs)/∂w > 0 exactly where a path of kept weights runs through w.
    """
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                (
                    m.weight.fill_(1.0),
                    m.bias.zero_(),
                    m.running_mean.zero_(),
                    m.running_var.fill_(1.0),
                )
            elif isinstance(m, nn.Conv2d | nn.Linear) and m.bias is not None:
                m.bias.zero_()
    ws = {n: mask[n].double().requires_grad_(True) for n in weights_of(net)}
    flow = functional_call(net, ws, (torch.ones((1, *input_shape), dtype=F64),)).sum()
    grads = torch.autograd.grad(flow, list(ws.values()))
    return {n: (g > 0) & mask[n] for n, g in zip(ws, grads, strict=True)}


@pytest.mark.parametrize(
    ("cls", "shape"),
    [(TinyCNN, (3, 8, 8)), (TinyResNet, (3, 8, 8)), (PathNet, (2, 4, 4)), (WideChain, (8,))],
)
@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.97])
def test_phew_exact_counts_and_only_weights_on_input_output_paths(cls, shape, sparsity):
    model = make_model(cls)
    batch = (torch.zeros((3, *shape)), torch.zeros(3, dtype=torch.long))
    mask = ep.prune(model, "phew", sparsity, batch)
    total = sum(m.numel() for m in mask.values())
    assert total - kept(mask) == round(sparsity * total)
    paths = on_a_path(model, mask, shape)
    for n, m in mask.items():
        assert torch.equal(paths[n], m), f"{n}: kept weights off every input→output path"
    again = ep.prune(model, "phew", sparsity, batch)
    assert all(torch.equal(mask[n], again[n]) for n in mask)


def test_phew_prefers_large_weights_and_depends_on_the_seed():
    model = make_model(TinyResNet)
    batch = image_batch()
    masks = [ep.prune(model, "phew", 0.9, batch, seed=s) for s in range(3)]
    ws = ep.prunable(model)
    kept_mean = torch.cat([ws[n].detach().abs()[m[n]] for m in masks for n in m]).mean()
    all_mean = torch.cat([w.detach().abs().flatten() for w in ws.values()]).mean()
    assert kept_mean > 1.2 * all_mean
    assert any(not torch.equal(masks[0][n], masks[1][n]) for n in masks[0])


# ------------------------------------------------------------------------ demo --methods all


def test_demo_methods_all_runs_every_registered_method_after_the_papers():
    from earlyprune.apps import demo

    every = demo.demo_methods("all")
    assert every[: len(demo.DEMO_METHODS)] == demo.DEMO_METHODS
    assert set(ep.list_methods()) <= set(every)
    assert {"iter_snip", "force", "synflow_l2", "prospr", "ntk_sap", "phew"} <= set(every)
    assert demo.demo_methods(None) == demo.DEMO_METHODS  # the default demo is unchanged
    assert demo.demo_methods("phew, snip") == ("phew", "snip")
    grid = demo.QUICK
    n = len(grid.sparsities) * len(grid.seeds)
    # Sparse-training methods take only the ablations they accept (none, reinit here).
    from earlyprune.methods.sparse_training import ablation_applies

    runs = sum(ablation_applies(m, a) for m in every for a in demo.DEMO_ABLATIONS)
    assert {"static", "set", "rigl", "gmp"} <= set(every)
    assert len(demo.demo_specs(grid, every)) == runs * n + len(grid.seeds)


def test_demo_rejects_an_unknown_method_in_one_line(capsys, tmp_path):
    from earlyprune import cli

    code = cli.main(["demo", "--methods", "snip,nope", "--store", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2 and "nope" in err and "iter_snip" in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()
