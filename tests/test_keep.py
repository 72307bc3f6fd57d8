"""ep.keep_pruned: pruned weights and their optimizer state stay exactly zero, for every optimizer.

The independent reference trains the same network with the mask inside the graph (the forward
uses ``w * mask``, as ``torch.nn.utils.prune`` does), so pruned entries get no gradient at all;
the kept weights must follow exactly the same trajectory.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

import earlyprune as ep

OPTIMIZERS = {
    "sgd_momentum_wd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-2),
    "sgd_nesterov": lambda p: torch.optim.SGD(
        p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-3
    ),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-3),
    "adam_amsgrad": lambda p: torch.optim.Adam(p, lr=1e-2, amsgrad=True),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
}
STEPS = 1000


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3))
    x, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
    g = torch.Generator().manual_seed(seed + 1)
    mask = {n: torch.rand(p.shape, generator=g) > 0.6 for n, p in ep.prunable(model).items()}
    return model, x, y, mask


def _step(model, opt, x, y, params=None):
    opt.zero_grad()
    out = model(x) if params is None else functional_call(model, params, (x,))
    nn.functional.cross_entropy(out, y).backward()
    opt.step()


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_pruned_weights_and_state_stay_zero_over_1000_steps(name):
    model, x, y, mask = _setup()
    opt = OPTIMIZERS[name](model.parameters())
    handle = ep.keep_pruned(opt, mask, model)
    params = dict(model.named_parameters())
    for _ in range(STEPS):
        _step(model, opt, x, y)
    for n, m in mask.items():
        p = params[n]
        assert int((p[~m] != 0).sum()) == 0, f"{n}: pruned weights grew back"
        assert int((p[m] != 0).sum()) == int(m.sum()), "kept weights should train"
        state = opt.state[p]
        tensors = [k for k, v in state.items() if torch.is_tensor(v) and v.shape == p.shape]
        assert tensors, "the optimizer keeps per-weight state"
        for key in tensors:
            assert int((state[key][~m] != 0).sum()) == 0, f"{n}: {key} of pruned weights"
    handle.remove()


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_kept_weights_follow_training_with_the_mask_in_the_graph(name):
    model, x, y, mask = _setup(3)
    ref = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3))
    ref.load_state_dict(model.state_dict())
    with torch.no_grad():  # the reference starts from the masked weights too
        for n, p in ref.named_parameters():
            if n in mask:
                p.mul_(mask[n])
    opt = OPTIMIZERS[name](model.parameters())
    ref_opt = OPTIMIZERS[name](ref.parameters())
    ep.keep_pruned(opt, mask, model)
    ref_params = dict(ref.named_parameters())
    for _ in range(200):
        _step(model, opt, x, y)
        masked = {n: (p * mask[n] if n in mask else p) for n, p in ref_params.items()}
        _step(ref, ref_opt, x, y, params=masked)
    for n, p in model.named_parameters():
        expected = ref_params[n] * mask[n] if n in mask else ref_params[n]
        torch.testing.assert_close(p, expected, rtol=1e-5, atol=1e-6)


def test_without_the_hook_pruned_weights_grow_back():
    # What the helper is for (and proof that the test above can fail).
    model, x, y, mask = _setup()
    opt = OPTIMIZERS["sgd_momentum_wd"](model.parameters())
    ep.apply_mask(model, mask)
    for _ in range(20):
        _step(model, opt, x, y)
    p = dict(model.named_parameters())["0.weight"]
    assert int((p[~mask["0.weight"]] != 0).sum()) > 0


def test_remove_stops_keeping_and_names_come_from_named_parameters():
    model, x, y, mask = _setup()
    opt = torch.optim.SGD(model.named_parameters(), lr=0.05, momentum=0.9, weight_decay=1e-2)
    with ep.keep_pruned(opt, mask):  # no model: names from the optimizer's param_names
        for _ in range(5):
            _step(model, opt, x, y)
        p = dict(model.named_parameters())["0.weight"]
        assert int((p[~mask["0.weight"]] != 0).sum()) == 0
    for _ in range(5):
        _step(model, opt, x, y)
    assert int((p[~mask["0.weight"]] != 0).sum()) > 0


def test_mistakes_are_value_errors_saying_what_to_do():
    model, _, _, mask = _setup()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="pass model="):
        ep.keep_pruned(opt, mask)
    with pytest.raises(ValueError, match="not a parameter"):
        ep.keep_pruned(opt, {"nope.weight": mask["0.weight"]}, model)
    with pytest.raises(ValueError, match="shape"):
        ep.keep_pruned(opt, {"0.weight": mask["2.weight"]}, model)
    other = torch.optim.SGD(model[2].parameters(), lr=0.1)
    with pytest.raises(ValueError, match="optimizer updates"):
        ep.keep_pruned(other, {"0.weight": mask["0.weight"]}, model)


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda model, mask: ep.score(model, "magnitude"), id="score_dict"),
        pytest.param(lambda model, mask: {n: m.float() for n, m in mask.items()}, id="float01"),
        pytest.param(lambda model, mask: {n: m.long() for n, m in mask.items()}, id="int01"),
        pytest.param(lambda model, mask: {n: m.tolist() for n, m in mask.items()}, id="lists"),
        pytest.param(lambda model, mask: list(mask.values()), id="not_a_dict"),
    ],
)
def test_anything_but_a_bool_mask_is_refused_and_nothing_changes(bad):
    model, _, _, mask = _setup()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="mask") as err:
        ep.keep_pruned(opt, bad(model, mask), model)
    assert "\n" not in str(err.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not opt._optimizer_step_post_hooks  # no hook left behind


def test_the_readme_training_loop_keeps_the_mask():
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in readme.split("```python\n")[1:]]
    (code,) = [b for b in blocks if "ep.keep_pruned(" in b]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    model, mask = namespace["model"], namespace["mask"]
    params = dict(model.named_parameters())
    assert all(int((params[n][~m] != 0).sum()) == 0 for n, m in mask.items())
    assert namespace["step"] == 19  # the loop really ran
