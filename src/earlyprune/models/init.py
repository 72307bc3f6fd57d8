"""Weight initialization for any ``nn.Module``, deterministic given a ``torch.Generator``.

The paper initializes every Conv/Linear weight with Kaiming (He) normal based on the fan-in and
draws BatchNorm γ from U(0, 1) (the PyTorch default at the time). The SynFlow paper used fan-out
and γ = 1, and the paper's ablation initializes with N(0, 1); all of these are options here.
Biases keep PyTorch's default, U(−1/√fan_in, 1/√fan_in), as in the authors' code (only
``.weight`` is redrawn there); ``bias="zero"`` zeroes them instead.

We sample with ``torch.randn(..., generator=g)`` instead of ``nn.init``: older torch versions of
``nn.init`` ignore generators, and a model's weights must be a pure function of the run's seed.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__registers__ = ()  # helper: weight initializations shared by every network

INITS = ("kaiming_fan_in", "kaiming_fan_out", "normal")
BN_GAMMAS = ("uniform", "one")
#: ``"default"``: PyTorch's U(±1/√fan_in) (the authors' code); ``"zero"``: all biases 0.
BIAS_INITS = ("default", "zero")

# The layers whose ``.weight`` is drawn from the chosen initializer (and, in this library, pruned).
WEIGHT_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
)

# Kaiming's gain for ReLU: Var(w) = 2 / fan keeps activations' second moment constant.
_RELU_GAIN = math.sqrt(2.0)


def check_init(init: str, bn_gamma: str, bias: str = "default") -> None:
    """Raises ``ValueError`` naming the valid choices if ``init``, ``bn_gamma`` or ``bias`` is
    unknown."""
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of: {', '.join(INITS)}")
    if bn_gamma not in BN_GAMMAS:
        raise ValueError(f"unknown bn_gamma {bn_gamma!r}; choose one of: {', '.join(BN_GAMMAS)}")
    if bias not in BIAS_INITS:
        raise ValueError(f"unknown bias init {bias!r}; choose one of: {', '.join(BIAS_INITS)}")


def _fans(weight: torch.Tensor) -> tuple[int, int]:
    """Fan-in and fan-out with torch's convention: dims 1 and 0 times the receptive field."""
    if weight.dim() < 2:
        raise ValueError(f"cannot compute the fan of a weight with shape {tuple(weight.shape)}")
    receptive_field = math.prod(weight.shape[2:])
    return weight.shape[1] * receptive_field, weight.shape[0] * receptive_field


def weight_std(weight: torch.Tensor, init: str) -> float:
    """The standard deviation that ``init`` draws ``weight`` with.

    Args:
        weight: A Conv or Linear weight (only its shape is used).
        init: One of :data:`INITS`.

    Returns:
        ``sqrt(2 / fan_in)``, ``sqrt(2 / fan_out)`` or 1.0.

    Raises:
        ValueError: If ``init`` is unknown.
    """
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of: {', '.join(INITS)}")
    if init == "normal":
        return 1.0
    fan_in, fan_out = _fans(weight)
    fan = fan_in if init == "kaiming_fan_in" else fan_out
    return _RELU_GAIN / math.sqrt(fan)


def _sample(kind: str, shape: torch.Size, generator: torch.Generator | None) -> torch.Tensor:
    # Sample in float32 on the generator's device, then copy: the values depend only on the
    # generator state, not on where the model lives or its dtype.
    device = generator.device if generator is not None else torch.device("cpu")
    sampler = torch.randn if kind == "normal" else torch.rand
    return sampler(shape, generator=generator, device=device, dtype=torch.float32)


@torch.no_grad()
def initialize(
    model: nn.Module,
    init: str = "kaiming_fan_in",
    bn_gamma: str = "uniform",
    generator: torch.Generator | None = None,
    bias: str = "default",
) -> None:
    """Initializes ``model`` in place, as in the paper and the authors' code.

    Every Conv/Linear weight is drawn from N(0, std²) with std from :func:`weight_std`.
    BatchNorm γ is drawn from U(0, 1) (``"uniform"``) or set to 1 (``"one"``), β is zero and the
    running statistics are reset, so the result is the same as a freshly built network. Conv/
    Linear biases get PyTorch's default U(−1/√fan_in, 1/√fan_in) (``bias="default"``, the
    authors' convention) or zero (``"zero"``). Other modules' parameters are left untouched.

    Modules are visited in ``model.modules()`` order, so everything is a pure function of the
    generator's state. Biases are drawn in a second pass, after every weight and γ: the weights
    are the same whichever ``bias`` is chosen, so the two options differ in the biases only.

    Args:
        model: Any ``nn.Module``, built in or written by a user.
        init: One of :data:`INITS`.
        bn_gamma: One of :data:`BN_GAMMAS`.
        generator: Source of randomness; ``None`` uses torch's global RNG.
        bias: One of :data:`BIAS_INITS`.

    Raises:
        ValueError: If ``init``, ``bn_gamma`` or ``bias`` is unknown.
    """
    check_init(init, bn_gamma, bias)
    biased = []
    for module in model.modules():
        if isinstance(module, WEIGHT_LAYERS):
            weight = module.weight
            std = weight_std(weight, init)
            weight.copy_(_sample("normal", weight.shape, generator) * std)
            if module.bias is not None:
                biased.append(module)
        elif isinstance(module, NORM_LAYERS):
            if module.weight is not None:  # None when affine=False
                if bn_gamma == "uniform":
                    module.weight.copy_(_sample("uniform", module.weight.shape, generator))
                else:
                    module.weight.fill_(1.0)
                module.bias.zero_()
            module.reset_running_stats()
    for module in biased:
        if bias == "zero":
            module.bias.zero_()
        else:  # torch's reset_parameters: bound 1/√fan_in from the weight's shape (0 if empty)
            fan_in = _fans(module.weight)[0]
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            u = _sample("uniform", module.bias.shape, generator)
            module.bias.copy_((2.0 * u - 1.0) * bound)
