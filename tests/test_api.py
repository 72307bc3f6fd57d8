"""The public API: every registered method and model, inversion, errors, mask files, torch interop."""

from __future__ import annotations

import copy
import math
import pickle

import pytest
import torch
from conftest import (
    NUM_CLASSES,
    TinyCNN,
    TinyResNet,
    assert_same_state,
    image_batch,
    make_model,
    messy_state,
    snapshot,
)
from torch import nn

import earlyprune as ep
from earlyprune.methods.scoring import METHODS, Method

METHOD_NAMES = ep.list_methods()
BATCH_METHODS = [m for m in METHOD_NAMES if METHODS.get(m).needs_batch]
FAST_ROUNDS = 5  # iterative methods (SynFlow: 100 rounds) are exercised with fewer rounds here


def fast_rounds(method: str) -> int:
    return min(METHODS.get(method).rounds, FAST_ROUNDS)


def n_weights(model: nn.Module) -> int:
    return sum(w.numel() for w in ep.prunable(model).values())


def n_kept(mask) -> int:
    return sum(int(m.sum()) for m in mask.values())


def test_the_paper_methods_are_registered():
    assert {"random", "magnitude", "snip", "grasp", "grasp_magnitude", "synflow"} <= set(
        METHOD_NAMES
    )
    for name in METHOD_NAMES:
        assert METHODS.get(name).summary, f"method {name!r} has no summary line"


# ------------------------------------------------------------------- every registered method


@pytest.mark.parametrize("method", METHOD_NAMES)
@pytest.mark.parametrize("cls", [TinyCNN, TinyResNet])
def test_prune_and_score_leave_the_model_untouched(method, cls):
    model = messy_state(make_model(cls))
    before = snapshot(model)
    ep.score(model, method, image_batch())
    assert_same_state(before, snapshot(model))
    # allow_disconnected: SynFlow-L2 on signed running means (messy_state) may empty a layer.
    ep.prune(model, method, 0.8, image_batch(), rounds=fast_rounds(method), allow_disconnected=True)
    assert_same_state(before, snapshot(model))


def _abs_in_place(model, batch):  # SynFlow done carelessly: |w| left in the model
    for p in model.parameters():
        p.data.abs_()
    return {n: w.detach().abs() for n, w in ep.prunable(model).items()}


def _halve_under_no_grad(model, batch, mask, seed):
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.5)
    return {n: w.detach().abs() for n, w in ep.prunable(model).items()}


def _replace_a_parameter(model, batch):
    model.fc.weight = nn.Parameter(model.fc.weight.detach().clone())
    return {n: w.detach().abs() for n, w in ep.prunable(model).items()}


def _swap_the_data(model, batch):
    model.conv1.weight.data = torch.zeros(1)
    return {n: torch.ones(p.shape) for n, p in ep.prunable(make_model(TinyCNN)).items()}


@pytest.mark.parametrize(
    "fn", [_abs_in_place, _halve_under_no_grad, _replace_a_parameter, _swap_the_data]
)
@pytest.mark.parametrize("call", ["prune", "score", "placement"])
def test_a_user_scorer_that_edits_the_weights_is_refused_and_undone(fn, call):
    model = messy_state(make_model(TinyCNN))
    before = snapshot(model)
    with pytest.raises(ValueError, match="changed the model's weights") as err:
        if call == "prune":
            ep.prune(model, fn, 0.5, image_batch())
        elif call == "score":
            ep.score(model, fn, image_batch())
        else:  # a registered user method used only to place the weights
            METHODS.add("edits_weights", ep.scoring.method_from_function("edits_weights", fn))
            try:
                ep.prune(model, "magnitude", 0.5, image_batch(), placement="edits_weights")
            finally:
                METHODS.remove("edits_weights")
    assert "\n" not in str(err.value)
    assert_same_state(before, snapshot(model))


def test_a_user_scorer_may_train_mode_forward_and_backward_the_model():
    """BatchNorm statistics and .grad are put back silently; the scores are the ones computed."""

    def grad_times_weight(model, batch):
        model.train()
        x, y = batch
        nn.functional.cross_entropy(model(x), y).backward()
        return {n: (w.grad * w).detach().abs() for n, w in ep.prunable(model).items()}

    model = messy_state(make_model(TinyCNN))
    before = snapshot(model)
    ep.prune(model, grad_times_weight, 0.5, image_batch())
    assert_same_state(before, snapshot(model))
    fresh = make_model(TinyCNN)  # pruned twice: the second run sees no leftover grad or stats
    first = ep.prune(fresh, grad_times_weight, 0.5, image_batch())
    again = ep.prune(fresh, grad_times_weight, 0.5, image_batch())
    assert all(torch.equal(first[n], again[n]) for n in first)


@pytest.mark.parametrize("method", METHOD_NAMES)
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_every_method_gives_exact_counts(method, scope):
    model = make_model(TinyResNet)
    total = n_weights(model)
    # Counts only: a method may collapse a layer of this network (SynFlow-L2 with few rounds and
    # random BatchNorm shifts does); refusing that is tested in test_connectivity.py.
    mask = ep.prune(
        model,
        method,
        0.9,
        image_batch(),
        rounds=fast_rounds(method),
        scope=scope,
        allow_disconnected=True,
    )
    assert list(mask) == list(ep.prunable(model))
    for name, w in ep.prunable(model).items():
        assert mask[name].dtype == torch.bool and mask[name].shape == w.shape
    assert total - n_kept(mask) == round(0.9 * total)


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_every_method_scores_every_prunable_weight(method):
    model = make_model(TinyCNN)
    scores = ep.score(model, method, image_batch())
    weights = ep.prunable(model)
    assert list(scores) == list(weights)
    for name, w in weights.items():
        assert scores[name].shape == w.shape
        assert not torch.isnan(scores[name]).any()


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_zero_sparsity_keeps_everything(method):
    model = make_model(TinyCNN)
    mask = ep.prune(model, method, 0.0, image_batch())
    assert n_kept(mask) == n_weights(model)


# ------------------------------------------------------------------------------------ invert


def distinct_scores_method(seed: int = 0):
    def prepare(model, batch, seed_):
        gen = torch.Generator().manual_seed(seed)
        sizes = {n: w.numel() for n, w in ep.prunable(model).items()}
        perm = torch.randperm(sum(sizes.values()), generator=gen).float()
        scores, start = {}, 0
        for n, w in ep.prunable(model).items():
            scores[n] = perm[start : start + sizes[n]].reshape(w.shape)
            start += sizes[n]
        return lambda mask: scores

    return Method("distinct", prepare)


@pytest.mark.parametrize("sparsity", [0.1, 0.5, 0.93])
def test_invert_keeps_the_lowest_scoring_weights(sparsity):
    model = make_model(TinyResNet)
    method = distinct_scores_method()
    scores = ep.score(model, method)
    flat = torch.cat([s.flatten() for s in scores.values()])
    n_keep = flat.numel() - round(sparsity * flat.numel())
    lowest = torch.zeros(flat.numel(), dtype=torch.bool)
    lowest[torch.argsort(flat)[:n_keep]] = True

    inverted = ep.prune(model, method, sparsity, invert=True)
    normal = ep.prune(model, method, sparsity)

    got = torch.cat([m.flatten() for m in inverted.values()])
    assert torch.equal(got, lowest)
    highest = torch.cat([m.flatten() for m in normal.values()])
    assert not (got & highest).any() or 2 * n_keep > flat.numel()


def test_inverted_magnitude_keeps_the_smallest_weights():
    model = make_model(TinyResNet)
    weights = ep.prunable(model)
    flat = torch.cat([w.detach().abs().flatten() for w in weights.values()])
    n_keep = flat.numel() - round(0.8 * flat.numel())
    threshold = torch.sort(flat).values[n_keep - 1]
    # The shortcut ends up empty: the batch lets ep.prune see that a path remains (the stem).
    mask = ep.prune(model, "magnitude", 0.8, invert=True, batch=image_batch())
    for n, w in weights.items():
        assert torch.equal(mask[n], w.detach().abs() <= threshold)


# ------------------------------------------------------------------------------- bad arguments


def test_unknown_method_lists_the_valid_ones(tiny_cnn, batch):
    before = snapshot(tiny_cnn)
    with pytest.raises(ValueError, match="snip") as info:
        ep.prune(tiny_cnn, "snipp", 0.5, batch)
    for name in METHOD_NAMES:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="magnitude"):
        ep.score(tiny_cnn, "nope", batch)
    assert_same_state(before, snapshot(tiny_cnn))


def test_unknown_scope_lists_the_valid_ones(tiny_cnn, batch):
    before = snapshot(tiny_cnn)
    with pytest.raises(ValueError, match="global") as info:
        ep.prune(tiny_cnn, "snip", 0.5, batch, scope="per_layer")
    assert "layer" in str(info.value)
    assert_same_state(before, snapshot(tiny_cnn))


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.5, "abc", float("nan"), None, True])
def test_bad_sparsity(tiny_cnn, batch, sparsity):
    before = snapshot(tiny_cnn)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        ep.prune(tiny_cnn, "snip", sparsity, batch)
    assert_same_state(before, snapshot(tiny_cnn))


@pytest.mark.parametrize("rounds", [0, -3, 1.5, True, "2"])
def test_bad_rounds(tiny_cnn, batch, rounds):
    with pytest.raises(ValueError, match="rounds"):
        ep.prune(tiny_cnn, "magnitude", 0.5, batch, rounds=rounds)


@pytest.mark.parametrize("method", BATCH_METHODS)
@pytest.mark.parametrize("bad_label", [NUM_CLASSES, 99, -1])
def test_labels_outside_the_classes_are_rejected(method, bad_label):
    model = messy_state(make_model(TinyResNet))
    x, y = image_batch()
    y = y.clone()
    y[3] = bad_label
    before = snapshot(model)
    with pytest.raises(ValueError, match=f"0..{NUM_CLASSES - 1}"):
        ep.prune(model, method, 0.5, (x, y))
    assert_same_state(before, snapshot(model))


@pytest.mark.parametrize("method", BATCH_METHODS)
def test_data_methods_need_a_batch(tiny_cnn, method):
    with pytest.raises(ValueError, match="batch"):
        ep.prune(tiny_cnn, method, 0.5)


def test_a_model_without_prunable_weights_is_rejected():
    with pytest.raises(ValueError, match="Conv or Linear"):
        ep.prune(nn.Sequential(nn.ReLU()), "magnitude", 0.5)


def good_mask(model):
    return ep.prune(model, "magnitude", 0.5)


@pytest.mark.parametrize(
    ("breakage", "named"),
    [
        (lambda m: m.pop("fc.weight"), "fc.weight"),
        (lambda m: m.update({"fc.bias": torch.ones(5, dtype=torch.bool)}), "fc.bias"),
        (
            lambda m: m.update({"conv2.weight": torch.ones(6, 4, 3, dtype=torch.bool)}),
            "(6, 4, 3, 3)",
        ),
        (lambda m: m.update({"fc.weight": m["fc.weight"].t()}), "fc.weight"),
        (lambda m: m.update({"fc.weight": [[True] * 6] * 5}), "fc.weight"),
    ],
)
def test_apply_mask_rejects_mismatched_masks_and_changes_nothing(breakage, named):
    model = make_model(TinyCNN)
    mask = good_mask(model)
    breakage(mask)
    before = snapshot(model)
    with pytest.raises(ValueError) as info:
        ep.apply_mask(model, mask)
    assert named in str(info.value)
    assert_same_state(before, snapshot(model))


def test_apply_mask_zeroes_exactly_the_pruned_weights():
    model = make_model(TinyResNet)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    mask = ep.prune(model, "random", 0.6, seed=2)
    ep.apply_mask(model, mask)
    for n, p in model.named_parameters():
        if n in mask:
            assert torch.equal(p.detach(), before[n] * mask[n])
        else:
            assert torch.equal(p.detach(), before[n])  # biases and BatchNorm untouched


# ------------------------------------------------------------------------------------ mask files


def test_save_and_load_round_trip(tmp_path, tiny_resnet):
    mask = ep.prune(tiny_resnet, "random", 0.7, seed=1)
    path = tmp_path / "mask.pt"
    ep.save_mask(mask, path)
    loaded = ep.load_mask(path)
    assert list(loaded) == list(mask)
    for n in mask:
        assert loaded[n].dtype == torch.bool and torch.equal(loaded[n], mask[n])
    assert [p.name for p in tmp_path.iterdir()] == ["mask.pt"]  # no temporary files left


def _plant_marker(path: str) -> dict:
    """Called by the unpickler of a malicious file: proof that code ran."""
    with open(path, "w") as f:
        f.write("pwned")
    return {}


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_plant_marker, (self.marker,))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_load_mask_refuses_code_execution(tmp_path, writer):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    payload = {"fc.weight": _Exploit(str(marker))}
    if writer == "torch":
        torch.save(payload, path)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f)
    with pytest.raises(ValueError, match="evil.pt"):
        ep.load_mask(path)
    assert not marker.exists()


def test_load_mask_rejects_missing_and_non_mask_files(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        ep.load_mask(tmp_path / "absent.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="mask"):
        ep.load_mask(tmp_path / "list.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="junk.pt"):
        ep.load_mask(tmp_path / "junk.pt")


def test_to_torch_prune_matches_our_mask(tiny_resnet):
    model = tiny_resnet
    mask = ep.prune(model, "magnitude", 0.6)
    originals = {n: p.detach().clone() for n, p in ep.prunable(model).items()}
    reference = copy.deepcopy(model)
    ep.apply_mask(reference, mask)

    ep.to_torch_prune(model, mask)

    modules = dict(model.named_modules())
    for name, m in mask.items():
        module = modules[name.rpartition(".")[0]]
        assert torch.equal(module.weight_mask, m.to(module.weight_mask.dtype))
        assert torch.equal(module.weight_orig.detach(), originals[name])
        assert (module.weight[~m] == 0).all()
        assert torch.equal(module.weight.detach(), originals[name] * m)
    x = image_batch()[0]
    model.eval()
    reference.eval()
    torch.testing.assert_close(model(x), reference(x))


# ------------------------------------------------------------------------------ reinitialize


def test_reinitialize_redraws_weights_deterministically():
    pytest.importorskip("earlyprune.models")
    a, b, c = (make_model(TinyResNet) for _ in range(3))
    before = {n: p.detach().clone() for n, p in ep.prunable(a).items()}
    ep.ablations.reinitialize(a, seed=5)
    ep.ablations.reinitialize(b, seed=5)
    ep.ablations.reinitialize(c, seed=6)
    for n, p in ep.prunable(a).items():
        assert not torch.equal(p, before[n])
        assert torch.equal(p, ep.prunable(b)[n])
        assert not torch.equal(p, ep.prunable(c)[n])
        fan_in = math.prod(p.shape[1:])
        assert p.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.6)
    mask = ep.prune(a, "random", 0.5)
    ep.apply_mask(a, mask)
    for n, p in ep.prunable(a).items():
        assert (p[~mask[n]] == 0).all()


# ------------------------------------------------------------------------ the model registry


def _registered_models() -> list[str]:
    try:
        from earlyprune.models import list_models
    except ImportError:  # the models package is written separately; see the skip below
        return ["<earlyprune.models not importable>"]
    return list_models()


MAX_PARAMS = 5_000_000


@pytest.mark.parametrize("name", _registered_models())
def test_registered_models_prunable_weights_and_snip_counts(name):
    models = pytest.importorskip("earlyprune.models")
    entry = models.MODELS.get(name)
    c, h, w = entry.input_shape
    shape = (c, min(h, 16), min(w, 16))  # small inputs keep the test fast
    probe = entry.build(10, shape)
    if sum(p.numel() for p in probe.parameters()) > MAX_PARAMS:
        pytest.skip(f"{name} has more than {MAX_PARAMS:,} parameters")
    model = models.create_model(name, 10, input_shape=shape, seed=0)

    found = ep.prunable(model)
    expected = {
        f"{mod_name}.weight"
        for mod_name, mod in model.named_modules()
        if isinstance(mod, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear)
    }
    assert set(found) == expected
    norm_ids = {
        id(p)
        for mod in model.modules()
        if isinstance(mod, nn.modules.batchnorm._BatchNorm | nn.LayerNorm | nn.GroupNorm)
        for p in mod.parameters()
    }
    for pname, p in found.items():
        assert not pname.endswith("bias") and id(p) not in norm_ids
    params = dict(model.named_parameters())
    for pname, p in found.items():
        assert params[pname] is p

    gen = torch.Generator().manual_seed(0)
    batch = (torch.randn(4, *shape, generator=gen), torch.arange(4) % 10)
    before = snapshot(model)
    mask = ep.prune(model, "snip", 0.5, batch)
    total = n_weights(model)
    assert total - n_kept(mask) == round(0.5 * total)
    assert_same_state(before, snapshot(model))
