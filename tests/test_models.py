"""Tests for earlyprune.models: every registered network, parameter counts, initialization."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from earlyprune.models import (
    BN_GAMMAS,
    INITS,
    MODELS,
    ModelEntry,
    create_model,
    initialize,
    list_models,
    register_model,
)

BUILTIN = (
    "lenet_300_100",
    "resnet18",
    "resnet18_modified",
    "resnet20",
    "resnet32",
    "resnet50",
    "resnet56",
    "smallcnn",
    "vgg11",
    "vgg16",
    "vgg19",
    "wrn_14_10",
    "wrn_14_8",
    "wrn_20_8",
    "wrn_32_2",
)


@pytest.fixture(autouse=True)
def _two_threads():
    # The test machines have two cores; more threads only add contention.
    previous = torch.get_num_threads()
    torch.set_num_threads(min(previous, 2))
    yield
    torch.set_num_threads(previous)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def prunable(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


# --- every registered model -------------------------------------------------------------------


def test_builtin_models_are_registered():
    assert set(BUILTIN) <= set(list_models())
    assert list_models() == sorted(list_models())


@pytest.mark.parametrize("name", list_models())
def test_model_builds_and_runs_at_its_input_shape(name):
    shape = MODELS.get(name).input_shape
    model = create_model(name, num_classes=10, seed=0)
    layers = prunable(model)
    assert layers, "a model needs at least one Conv2d/Linear to be prunable"
    assert all(torch.isfinite(m.weight).all() for m in layers)
    with torch.no_grad():
        out = model(torch.randn(2, *shape))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", list_models())
def test_model_accepts_other_channels_and_sizes(name):
    channels, height, width = MODELS.get(name).input_shape
    shape = (1 if channels != 1 else 3, min(height, 64), min(width, 64))
    model = create_model(name, num_classes=7, input_shape=shape, seed=0).eval()
    with torch.no_grad():
        assert model(torch.randn(2, *shape)).shape == (2, 7)


@pytest.mark.parametrize("name", BUILTIN)
def test_conv_biases_only_where_the_authors_have_them(name):
    # The authors' (open_lth's) VGG convolutions carry biases; their ResNets' do not.
    model = create_model(name, num_classes=10, seed=0)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    expected = name.startswith("vgg")
    assert all((m.bias is not None) == expected for m in convs)


# --- parameter counts, from closed forms ------------------------------------------------------


def cifar_resnet_count(depth: int, width: int, classes: int) -> int:
    """Closed form for open_lth's CIFAR ResNet with stage widths w, 2w, 4w and n blocks each.

    Stem 27w + 2w; a block of width c costs 18c² + 4c; the first blocks of stages 2 and 3 have
    a conv1 of c/2 → c (−4.5c²) and a projection c/2 → c with its BN (+0.5c² + 2c).
    """
    n, w = (depth - 2) // 6, width
    return (378 * n - 80) * w * w + (28 * n + 41) * w + 4 * w * classes + classes


def vgg_count(convs: list[int], classes: int) -> int:
    total, c_in = 0, 3
    for c_out in convs:
        total += 9 * c_in * c_out + 3 * c_out  # 3×3 conv with its bias, BN γ and β
        c_in = c_out
    return total + 512 * classes + classes


@pytest.mark.parametrize(
    ("name", "depth", "width"),
    [
        ("resnet20", 20, 16),
        ("resnet32", 32, 16),
        ("resnet56", 56, 16),
        ("wrn_32_2", 32, 32),
        ("wrn_14_8", 14, 128),
        ("wrn_14_10", 14, 160),
        ("wrn_20_8", 20, 128),
    ],
)
def test_cifar_resnet_parameter_counts(name, depth, width):
    assert n_params(create_model(name, 10, seed=0)) == cifar_resnet_count(depth, width, 10)


def test_pinned_parameter_counts():
    # ResNet-20: the figure of He et al. (0.27 M) and open_lth's cifar_resnet_20.
    assert cifar_resnet_count(20, 16, 10) == 272_474
    assert cifar_resnet_count(56, 16, 10) == 855_770
    assert cifar_resnet_count(14, 128, 10) == 11_093_130
    assert n_params(create_model("resnet20", 10)) == 272_474
    # torchvision's documented counts for ResNet-18 and ResNet-50 at 1000 classes.
    assert n_params(create_model("resnet18", 1000)) == 11_689_512
    assert n_params(create_model("resnet50", 1000)) == 25_557_032
    # The modified ResNet-18 swaps the 7×7×3×64 stem for a 3×3×3×64 one.
    assert n_params(create_model("resnet18_modified", 1000)) == 11_689_512 - 9408 + 1728
    # LeNet-300-100: 784·300 + 300 + 300·100 + 100 + 100·10 + 10.
    assert n_params(create_model("lenet_300_100", 10)) == 266_610
    # smallcnn: conv 1·16·25 + BN 32, conv 16·32·9 + BN 64, 1568·64 + 64, 64·10 + 10.
    assert n_params(create_model("smallcnn", 10)) == 106_170


def test_vgg_parameter_counts():
    # Paper, Appendix A: 2×64, pool, 2×128, pool, 3×256, pool, 3×512, pool, 3×512; one FC.
    vgg16_convs = [64] * 2 + [128] * 2 + [256] * 3 + [512] * 6
    # open_lth's cifar_vgg_16 (the authors' code): 14,728,266, conv biases included.
    assert vgg_count(vgg16_convs, 10) == 14_728_266
    assert n_params(create_model("vgg16", 10)) == 14_728_266
    vgg11_convs = [64, 128, 256, 256, 512, 512, 512, 512]
    assert n_params(create_model("vgg11", 10)) == vgg_count(vgg11_convs, 10)
    vgg19_convs = [64] * 2 + [128] * 2 + [256] * 4 + [512] * 8
    assert n_params(create_model("vgg19", 10)) == vgg_count(vgg19_convs, 10)


# --- architecture details ---------------------------------------------------------------------


def test_resnet20_structure():
    model = create_model("resnet20", 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    # Stem + 9 blocks × 2 + 2 projection shortcuts (into stages 2 and 3).
    assert len(convs) == 21
    assert sum(m.kernel_size == (1, 1) for m in convs) == 2
    assert sorted({m.out_channels for m in convs}) == [16, 32, 64]
    assert [type(m) for m in prunable(model)].count(nn.Linear) == 1


def test_wide_resnet_widens_every_stage_and_the_stem():
    convs = [m for m in create_model("wrn_14_8", 10).modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].out_channels == 128
    assert sorted({m.out_channels for m in convs}) == [128, 256, 512]


def test_vgg16_structure():
    model = create_model("vgg16", 10)
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 13
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 4
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(512, 10)]


def test_imagenet_resnet_stems_and_torchvision_keys():
    standard = create_model("resnet18", 10)
    modified = create_model("resnet18_modified", 10)
    assert standard.conv1.kernel_size == (7, 7) and standard.conv1.stride == (2, 2)
    assert any(isinstance(m, nn.MaxPool2d) for m in standard.modules())
    assert modified.conv1.kernel_size == (3, 3) and modified.conv1.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in modified.modules())
    keys = set(create_model("resnet50", 10).state_dict())
    assert {"conv1.weight", "layer1.0.conv3.weight", "layer2.0.downsample.0.weight"} <= keys
    assert "layer1.1.downsample.0.weight" not in keys


def test_vgg_rejects_images_too_small_for_its_pools():
    with pytest.raises(ValueError, match="16"):
        create_model("vgg16", 10, input_shape=(3, 8, 8))


def test_input_shape_override_reaches_the_builder():
    model = create_model("lenet_300_100", 10, input_shape=(3, 32, 32))
    assert prunable(model)[0].in_features == 3 * 32 * 32


# --- initialization ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("init", "expected_std"),
    [
        ("kaiming_fan_in", math.sqrt(2 / (256 * 9))),
        ("kaiming_fan_out", math.sqrt(2 / (64 * 9))),
        ("normal", 1.0),
    ],
)
def test_conv_weight_std(init, expected_std):
    conv = nn.Conv2d(256, 64, 3)
    initialize(conv, init=init, generator=torch.Generator().manual_seed(0))
    # 147,456 samples: the std estimate is within ~0.2 % of the truth; 3 % cannot fail by chance.
    assert conv.weight.std().item() == pytest.approx(expected_std, rel=0.03)
    assert abs(conv.weight.mean().item()) < 0.05 * expected_std
    assert_default_bias(conv.bias, 256 * 9)


@pytest.mark.parametrize(("init", "fan"), [("kaiming_fan_in", 1000), ("kaiming_fan_out", 250)])
def test_linear_weight_std(init, fan):
    linear = nn.Linear(1000, 250)
    initialize(linear, init=init, generator=torch.Generator().manual_seed(0))
    assert linear.weight.std().item() == pytest.approx(math.sqrt(2 / fan), rel=0.03)
    assert_default_bias(linear.bias, 1000)


def assert_default_bias(bias: torch.Tensor, fan_in: int) -> None:
    """PyTorch's default bias init, U(−b, b) with b = 1/√fan_in: range, mean and variance."""
    b = 1 / math.sqrt(fan_in)
    n = bias.numel()
    assert bias.abs().max() <= b and bias.abs().max() > 0.5 * b
    # U(−b, b): mean 0 (sd b/√(3n)), variance b²/3 (sd of the estimate ≈ b²·0.3/√n).
    assert abs(bias.mean().item()) < 5 * b / math.sqrt(3 * n)
    assert abs(bias.var().item() - b * b / 3) < 5 * 0.3 * b * b / math.sqrt(n)


def test_bias_init_default_matches_torch_and_zero_leaves_weights_alone():
    conv = nn.Conv2d(8, 4096, 3)  # 4096 biases, fan-in 72
    initialize(conv, generator=torch.Generator().manual_seed(0))
    assert_default_bias(conv.bias, 72)
    torch_default = nn.Conv2d(8, 4096, 3).bias.detach()  # torch's own reset_parameters
    assert torch_default.abs().max() <= 1 / math.sqrt(72)
    weight = conv.weight.detach().clone()
    initialize(conv, generator=torch.Generator().manual_seed(0), bias="zero")
    assert torch.count_nonzero(conv.bias) == 0
    assert torch.equal(conv.weight, weight)  # biases are drawn after all weights
    with pytest.raises(ValueError, match="bias init 'nope'"):
        initialize(conv, bias="nope")


def test_model_biases_are_deterministic_for_a_seed():
    a = create_model("lenet_300_100", 10, seed=3)
    b = create_model("lenet_300_100", 10, seed=3)
    c = create_model("lenet_300_100", 10, seed=4)
    biases = [n for n, _ in a.named_parameters() if n.endswith("bias")]
    assert biases and all(torch.count_nonzero(dict(a.named_parameters())[n]) > 0 for n in biases)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[n], sb[n]) for n in biases)
    assert not any(torch.equal(sa[n], sc[n]) for n in biases)
    zero = create_model("lenet_300_100", 10, seed=3, bias="zero").state_dict()
    assert all(torch.count_nonzero(zero[n]) == 0 for n in biases)


def test_batchnorm_gamma_uniform_and_one():
    bn = nn.BatchNorm2d(4096)
    with torch.no_grad():
        bn.bias.fill_(5.0)
        bn.running_mean.fill_(3.0)
    initialize(bn, bn_gamma="uniform", generator=torch.Generator().manual_seed(0))
    assert bn.weight.min() >= 0 and bn.weight.max() < 1
    assert bn.weight.mean().item() == pytest.approx(0.5, abs=0.03)
    assert torch.count_nonzero(bn.bias) == 0
    assert torch.count_nonzero(bn.running_mean) == 0  # fresh running statistics
    initialize(bn, bn_gamma="one")
    assert torch.equal(bn.weight, torch.ones(4096))


def test_create_model_init_options_reach_every_layer():
    model = create_model("resnet20", 10, init="normal", bn_gamma="one", seed=0)
    weights = torch.cat([m.weight.flatten() for m in prunable(model)])
    assert weights.std().item() == pytest.approx(1.0, rel=0.03)
    gammas = [m.weight for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.equal(g, torch.ones_like(g)) for g in gammas)
    assert_default_bias(model.fc.bias.detach(), 64)


def test_same_seed_same_weights_different_seed_different():
    a = create_model("resnet20", 10, seed=1).state_dict()
    b = create_model("resnet20", 10, seed=1).state_dict()
    c = create_model("resnet20", 10, seed=2).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv.weight"], c["conv.weight"])
    assert not torch.equal(a["bn.weight"], c["bn.weight"])


def test_seed_none_uses_the_global_rng():
    torch.manual_seed(123)
    a = create_model("smallcnn", 10).state_dict()
    torch.manual_seed(123)
    b = create_model("smallcnn", 10).state_dict()
    c = create_model("smallcnn", 10).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv1.weight"], c["conv1.weight"])


class UserNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, bias=True)
        self.bn = nn.BatchNorm2d(8)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3))
        return self.head(self.norm(out))


def test_initialize_works_on_a_user_module():
    net = UserNet()
    with torch.no_grad():
        net.norm.weight.fill_(2.0)
    initialize(net, generator=torch.Generator().manual_seed(0))
    assert 0 < net.conv.bias.abs().max() <= 1 / math.sqrt(27)
    assert 0 < net.head.bias.abs().max() <= 1 / math.sqrt(8)
    assert torch.equal(net.norm.weight, torch.full((8,), 2.0))  # unknown layers are untouched
    again = UserNet()
    initialize(again, generator=torch.Generator().manual_seed(0))
    assert torch.equal(net.conv.weight, again.conv.weight)
    assert torch.equal(net.bn.weight, again.bn.weight)
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 4)


def test_initialize_is_independent_of_dtype():
    a, b = UserNet(), UserNet().double()
    initialize(a, generator=torch.Generator().manual_seed(0))
    initialize(b, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.conv.weight.double(), b.conv.weight)


# --- errors -----------------------------------------------------------------------------------


def test_unknown_model_lists_choices():
    with pytest.raises(ValueError, match="resnet20") as info:
        create_model("resnet21", 10)
    assert "vgg16" in str(info.value)


def test_unknown_init_and_bn_gamma_list_choices():
    with pytest.raises(ValueError, match=INITS[1]):
        create_model("smallcnn", 10, init="xavier")
    with pytest.raises(ValueError, match=BN_GAMMAS[1]):
        create_model("smallcnn", 10, bn_gamma="zero")
    with pytest.raises(ValueError, match="kaiming_fan_in"):
        initialize(UserNet(), init="he")


@pytest.mark.parametrize("num_classes", [1, 0, -3, 2.0, True, "10", None])
def test_bad_num_classes(num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        create_model("smallcnn", num_classes)


@pytest.mark.parametrize("shape", [(3, 32), (0, 32, 32), (3, 32, -1), (3.0, 32, 32), "3x32x32"])
def test_bad_input_shape(shape):
    with pytest.raises(ValueError, match="input_shape"):
        create_model("resnet20", 10, input_shape=shape)


# --- registration -----------------------------------------------------------------------------


def test_register_model_adds_a_network_and_rejects_duplicates():
    @register_model("tmp_test_linear", input_shape=(1, 4, 4))
    def build(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))

    try:
        assert "tmp_test_linear" in list_models()
        entry = MODELS.get("tmp_test_linear")
        assert entry == ModelEntry("tmp_test_linear", build, (1, 4, 4))
        assert create_model("tmp_test_linear", 3, seed=0)(torch.randn(2, 1, 4, 4)).shape == (2, 3)
        with pytest.raises(ValueError, match="already registered"):
            register_model("tmp_test_linear", input_shape=(1, 4, 4))(build)
    finally:
        MODELS.remove("tmp_test_linear")
    with pytest.raises(ValueError, match="input_shape"):
        register_model("tmp_bad_shape", input_shape=(4, 4))  # type: ignore[arg-type]


def test_the_bias_init_field_reaches_the_run_and_its_dense_weights():
    from earlyprune.run.spec import RunSpec
    from earlyprune.run.stages import fresh_model, prepare

    spec = RunSpec(method="snip", sparsity=0.5, prune_step=2, bias_init="zero", device="cpu")
    assert spec.dense_spec().bias_init == "zero"
    biases = {n: p for n, p in fresh_model(prepare(spec)).named_parameters() if n.endswith("bias")}
    default = dict(fresh_model(prepare(spec.replace(bias_init="default"))).named_parameters())
    linear = [n for n in biases if torch.count_nonzero(default[n]) > 0]
    assert linear and all(torch.count_nonzero(biases[n]) == 0 for n in linear)


class _Scaled(torch.nn.Module):
    """A user-style network with a parameter of its own, drawn in its constructor."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)
        self.scale = torch.nn.Parameter(torch.randn(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)) * self.scale


def test_a_networks_own_draws_follow_the_run_seed_not_the_process(monkeypatch) -> None:
    """One run id, one set of numbers: draws a network makes while it is built (a user's custom
    parameter) come from the run's seed, whatever the process drew before; the caller's global
    random state is left as it was; built-in networks are unchanged (everything redrawn)."""
    from earlyprune.core import rng
    from earlyprune.models import base
    from earlyprune.models.init import initialize

    entry = base.ModelEntry("scaled_test", lambda n, shape: _Scaled(), (1, 2, 2))
    monkeypatch.setitem(base.MODELS._entries, "scaled_test", entry)
    torch.manual_seed(1)
    a = base.create_model("scaled_test", 3, seed=7)
    state = torch.random.get_rng_state()
    torch.rand(5)  # the process draws something else in between
    b = base.create_model("scaled_test", 3, seed=7)
    torch.manual_seed(123)
    c = base.create_model("scaled_test", 3, seed=8)
    assert torch.equal(a.scale, b.scale) and not torch.equal(a.scale, c.scale)
    torch.manual_seed(1)
    base.create_model("scaled_test", 3, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)  # no draw leaks into the caller's
    # Built-in networks: every parameter is redrawn from the "init" stream, so the build stream
    # changes nothing (the same weights as building under any global state).
    for seed in (0, 1):
        torch.manual_seed(999)
        old = base.MODELS.get("resnet20").build(10, (3, 32, 32))
        initialize(old, generator=rng.generator(seed, "init"))
        new = base.create_model("resnet20", 10, seed=seed)
        for (name, x), y in zip(old.state_dict().items(), new.state_dict().values(), strict=True):
            assert torch.equal(x, y), name
