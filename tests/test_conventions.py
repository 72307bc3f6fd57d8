"""Each convention the README states for the modern baselines, checked against today's code.

SynFlow-L2 against an independent statement of what the authors' ``Prune/synflowl2_utils.py``
scores (PHEW repository); PHEW's walk starts against the reference's round robin over the first
layer's input units; NTK-SAP's resample initializer; the loss FORCE / Iterative SNIP score with.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TinyCNN, image_batch, make_model, reference_select
from torch import Tensor, nn

import earlyprune as ep

F64 = torch.float64


def layers_of(model: nn.Module) -> dict[str, nn.Module]:
    """Conv/Linear modules by the name of their weight (found without ``ep.prunable``)."""
    return {
        f"{n}.weight": m for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)
    }


# ------------------------------------------------------------------------------ synflow_l2


def reference_synflow_l2(model: nn.Module, input_shape, mask=None) -> dict[str, Tensor]:
    """One round of the authors' SynFlow-L2, restated: every parameter p := |p|·|p| (buffers as
    they are), eval mode; with a mask, masked weights and the biases of units left without any
    kept incoming weight are zeroed; R = Σ outputs on ones; score = |∂R/∂p| · √p."""
    net = copy.deepcopy(model).to(F64).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(p.abs() * p.abs())
        for name, m in layers_of(net).items():
            if mask is not None:
                m.weight.mul_(mask[name])
                if m.bias is not None:
                    m.bias.mul_(mask[name].reshape(len(m.bias), -1).sum(1) > 0)
    net.zero_grad()
    net(torch.ones((1, *input_shape), dtype=F64)).sum().backward()
    return {n: m.weight.grad.abs() * m.weight.detach().sqrt() for n, m in layers_of(net).items()}


def some_mask(model: nn.Module, density: float, seed: int, dead_rows: int = 0) -> dict[str, Tensor]:
    """A random mask; the first ``dead_rows`` output units of every layer lose all their weights."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for n, m in layers_of(model).items():
        keep = torch.rand(m.weight.shape, generator=gen) < density
        keep[:dead_rows] = False
        out[n] = keep
    return out


def nets() -> list[tuple[str, nn.Module, tuple[int, ...]]]:
    lenet = ep.create_model("lenet_300_100", 10)
    conv = make_model(TinyCNN, seed=3)  # γ, β and running means of both signs; conv2 has a bias
    with torch.no_grad():
        for m in conv.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.mul_(3.0)  # clearly signed: |running mean| would change R
    return [("lenet_300_100", lenet, (1, 28, 28)), ("tiny_cnn", conv, (3, 8, 8))]


@pytest.mark.parametrize("which", [0, 1], ids=["lenet_300_100", "tiny_cnn"])
@pytest.mark.parametrize("dead_rows", [None, 0, 2])
def test_synflow_l2_scores_what_the_authors_code_scores(which, dead_rows):
    _, model, shape = nets()[which]
    mask = None if dead_rows is None else some_mask(model, 0.5, which, dead_rows)
    x = torch.zeros((2, *shape))
    ours = ep.score(model, "synflow_l2", (x, torch.zeros(2, dtype=torch.long)), mask=mask)
    ref = reference_synflow_l2(model, shape, mask)
    assert set(ours) == set(ref)
    for n in ref:
        torch.testing.assert_close(ours[n].to(F64), ref[n], rtol=1e-12, atol=0)


def test_synflow_l2_iterative_masks_equal_the_restated_reference_under_exact_counts():
    """Three rounds: each round rescored (dead units' biases zeroed) on the last round's mask."""
    _, model, shape = nets()[1]
    total = sum(m.weight.numel() for m in layers_of(model).values())
    mask = {n: torch.ones_like(m.weight, dtype=torch.bool) for n, m in layers_of(model).items()}
    for t in (1, 2, 3):
        n_keep = total - round((1 - 0.4 ** (t / 3)) * total)
        mask = reference_select(reference_synflow_l2(model, shape, mask), n_keep, mask)
    x = torch.zeros((2, *shape))
    ours = ep.prune(model, "synflow_l2", 0.6, (x, torch.zeros(2, dtype=torch.long)), rounds=3)
    assert all(torch.equal(ours[n], mask[n]) for n in mask)


# ------------------------------------------------------------------------------------ phew


def reference_phew_mlp(weights: list[Tensor], n_keep: int, seed: int) -> list[Tensor]:
    """The authors' PHEW (``PHEW/phew.py``) on a chain of Linear layers, restated: walks alternate,
    forward from the first layer's input units in turn (round robin), backward from the last
    layer's outputs in turn; each step to the next unit ∝ |w|; walks go on until at least
    ``n_keep`` weights are kept (the reference's count: the last walk may overshoot)."""
    rng = np.random.default_rng(seed)
    a = [w.detach().abs().double().numpy() for w in weights]
    keep = [np.zeros(w.shape, dtype=bool) for w in a]
    n_in, n_out = a[0].shape[1], a[-1].shape[0]
    walk = 0
    while sum(int(k.sum()) for k in keep) < n_keep:
        if walk % 2 == 0:  # forward: column of the unit we stand on, over the next layer's units
            unit = (walk // 2) % n_in
            for w, k in zip(a, keep, strict=True):
                nxt = rng.choice(w.shape[0], p=w[:, unit] / w[:, unit].sum())
                k[nxt, unit], unit = True, nxt
        else:
            unit = (walk // 2) % n_out
            for w, k in zip(reversed(a), reversed(keep), strict=True):
                prv = rng.choice(w.shape[1], p=w[unit] / w[unit].sum())
                k[unit, prv], unit = True, prv
        walk += 1
    return [torch.from_numpy(k) for k in keep]


def connected_inputs(masks: list[Tensor]) -> int:
    """Input units of an MLP with a kept path to some output."""
    reach = torch.ones(masks[-1].shape[0], dtype=torch.bool)
    for m in reversed(masks):
        reach = (m & reach[:, None]).any(dim=0)
    return int(reach.sum())


def lenet_phew(sparsity: float, seed: int) -> tuple[list[Tensor], list[Tensor]]:
    torch.manual_seed(seed)
    model = ep.create_model("lenet_300_100", 10)
    x, y = torch.zeros(10, 1, 28, 28), torch.arange(10)
    ours = ep.prune(model, "phew", sparsity, (x, y), seed=seed)
    weights = [m.weight for m in layers_of(model).values()]
    n_keep = sum(w.numel() for w in weights) - round(sparsity * sum(w.numel() for w in weights))
    return list(ours.values()), reference_phew_mlp(weights, n_keep, seed)


def test_phew_forward_walks_start_at_each_input_unit_in_turn_on_an_mlp():
    """LeNet-300-100: the first layer is fully connected, so its 784 input units are the starts
    (the reference's ``mask[0].shape[1]``), not the image's one channel."""
    from earlyprune.methods.scoring.phew_graph import probe_wiring
    from earlyprune.methods.scoring.phew_walks import Layer, Walks

    model = ep.create_model("lenet_300_100", 10)
    params = dict(layers_of(model))
    wiring = probe_wiring(model, (1, 28, 28))
    layers = [Layer(params[n].weight, torch.ones_like(params[n].weight), 1) for n in wiring.layers]
    walks = Walks(wiring, layers, np.random.default_rng(0))
    starts = []
    for _ in range(4):  # 4 batches of 256 forward walks: past one full turn of 784
        owner, layer, flat = walks.batch()
        first = (layer == 0) & (owner % 2 == 0)
        order = np.argsort(owner[first], kind="stable")
        starts.append(flat[first][order] % 784)
    got = np.concatenate(starts)
    assert len(got) == 4 * 256  # every forward walk of an MLP with positive weights completes
    assert np.array_equal(got, np.arange(4 * 256) % 784)


@pytest.mark.parametrize("sparsity", [0.98, 0.99])
def test_phew_keeps_as_many_input_units_connected_as_the_reference_rule(sparsity):
    """At 98 % both connect every input unit; at 99 % ours is within 5 % of the reference's."""
    ours, ref = zip(*(lenet_phew(sparsity, seed) for seed in range(2)), strict=True)
    got = [connected_inputs(m) for m in ours]
    want = [connected_inputs(m) for m in ref]
    if sparsity == 0.98:
        assert got == want == [784, 784]
    else:
        assert abs(sum(got) - sum(want)) <= 0.05 * sum(want), (got, want)


# --------------------------------------------------------------------------------- ntk_sap


def test_ntk_sap_resamples_use_the_reference_initializer():
    """He fan-in normal weights, BatchNorm γ = 1 and β = 0, the model's own biases kept."""
    from earlyprune.core.rng import generator
    from earlyprune.methods.scoring.ntk_sap import resample

    model = make_model(TinyCNN, seed=3)  # γ, β randomized; conv2 and fc have biases
    net = copy.deepcopy(model)
    resample(net, (4, 3, 8, 8), generator(0, "ntk_sap", 0, 0))
    for name, m in net.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight)), name
            assert torch.equal(m.bias, torch.zeros_like(m.bias)), name
    own = dict(model.named_parameters())
    for name, m in layers_of(net).items():
        if m.bias is not None:
            assert torch.equal(m.bias, own[name.replace("weight", "bias")]), name
        assert not torch.equal(m.weight, own[name])  # redrawn
    big = nn.Linear(2000, 300)
    resample(big, (1, 2000), generator(0, "ntk_sap", 0, 0))
    assert abs(float(big.weight.detach().std()) / (2 / 2000) ** 0.5 - 1) < 0.01  # He, fan-in


def test_ntk_sap_masks_depend_on_the_models_biases_not_its_weights():
    """LeNet-300-100 (biases before ReLUs, no BatchNorm to cancel them)."""
    x, y = torch.zeros(4, 1, 28, 28), torch.arange(4)

    def lenet(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return ep.create_model("lenet_300_100", 10)

    a = ep.prune(lenet(0), "ntk_sap", 0.9, (x, y), rounds=1)
    other = lenet(1)
    same_biases = copy.deepcopy(other)
    with torch.no_grad():
        for (n, p), q in zip(lenet(0).named_parameters(), same_biases.parameters(), strict=True):
            if n.endswith("bias"):
                q.copy_(p)
    b = ep.prune(same_biases, "ntk_sap", 0.9, (x, y), rounds=1)
    c = ep.prune(other, "ntk_sap", 0.9, (x, y), rounds=1)
    assert all(torch.equal(a[n], b[n]) for n in a)  # the weights: not read
    assert any(not torch.equal(a[n], c[n]) for n in a)  # the biases: read


# ----------------------------------------------------------------------- force, iter_snip


@pytest.mark.parametrize("method", ["force", "iter_snip"])
def test_force_and_iter_snip_score_with_cross_entropy_on_the_logits(method):
    """Ours: the training loss, cross-entropy of the logits. The reference (naver/force) applies
    ``F.nll_loss`` to its networks' raw outputs (no log-softmax), i.e. −mean target logit."""
    model = make_model(TinyCNN, seed=2)
    x, y = image_batch()
    mask = some_mask(model, 0.5, 0)
    w = {n: m.weight.detach() for n, m in layers_of(model).items()}

    def grads(loss_fn) -> dict[str, Tensor]:
        net = copy.deepcopy(model).train()
        leaves = {n: (w[n] * mask[n]).requires_grad_(True) for n in w}
        out = torch.func.functional_call(net, leaves, (x,))
        grads = torch.autograd.grad(loss_fn(out, y), list(leaves.values()))
        return dict(zip(leaves, grads, strict=True))

    factor = w if method == "force" else {n: w[n] * mask[n] for n in w}
    ce = {n: (g * factor[n]).abs() for n, g in grads(F.cross_entropy).items()}
    nll = {n: (g * factor[n]).abs() for n, g in grads(F.nll_loss).items()}
    ours = ep.score(model, method, (x, y), mask=mask)
    for n in ce:
        torch.testing.assert_close(ours[n], ce[n], rtol=1e-5, atol=1e-7)
    assert any(not torch.allclose(ours[n], nll[n], rtol=1e-2) for n in nll)


# ----------------------------------------------------------------------- messages and the CLI


def test_missing_cifar_names_a_command_a_cli_user_can_run(tmp_path, monkeypatch, capsys):
    """One line, exit 2, nothing stored; the command it names fetches the data (served here)."""
    import hashlib
    import io
    import re
    import tarfile
    from dataclasses import replace

    from test_data import make_cifar

    from earlyprune import cli
    from earlyprune.data import cifar

    data, store = tmp_path / "data dir", tmp_path / "runs"
    argv = [
        "run",
        "--model",
        "resnet20",
        "--dataset",
        "cifar10",
        "--data-root",
        str(data),
        "--method",
        "snip",
        "--sparsity",
        "0.5",
        "--store",
        str(store),
    ]
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert not store.exists()
    assert "--download" not in err  # no such flag: the message must not invent one
    command = re.search(r'python -c "(.*)"$', err.strip())
    assert command and "download=True" in command.group(1), err

    make_cifar(tmp_path / "stage", "cifar10")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "stage" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setattr(cifar, "CIFAR10", replace(cifar.CIFAR10, md5=md5))
    served = archive.read_bytes()
    monkeypatch.setattr("urllib.request.urlopen", lambda url, timeout: io.BytesIO(served))
    exec(command.group(1), {})  # the command's Python, as `python -c` would run it
    assert len(ep.load_dataset("cifar10", root=data).train) == 30


def test_readme_says_what_tensorboard_does():
    """`earlyprune run --tensorboard DIR` exists and the README says so (and nothing else)."""
    from pathlib import Path

    from earlyprune import cli

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.choices and "run" in a.choices).choices
    assert "--tensorboard" in sub["run"].format_help()
    assert "--tensorboard" not in sub["sweep"].format_help()  # `sweep plan|run|status`: none
    assert "earlyprune run --tensorboard DIR" in readme and "`DIR/<run id>`" in readme
    assert "event files are not" not in readme


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_missing_idx_data_names_a_command_a_cli_user_can_run(tmp_path, capsys, dataset):
    """MNIST-style data missing: one line naming a runnable command, not an API argument."""
    import re

    from earlyprune import cli

    data, store = tmp_path / "data", tmp_path / "runs"
    argv = [
        "run",
        "--model",
        "lenet_300_100",
        "--dataset",
        dataset,
        "--data-root",
        str(data),
        "--method",
        "snip",
        "--sparsity",
        "0.5",
        "--store",
        str(store),
    ]
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert not store.exists()
    assert "pass download=True" not in err  # a CLI user cannot pass an API argument
    command = re.search(r'python -c "(.*)"$', err.strip())
    assert command and f"ep.load_dataset({dataset!r}, root={str(data)!r}, download=True)" in err
