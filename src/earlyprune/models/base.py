"""The model registry: one decorator to add a network, one function to build and initialize it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from earlyprune.core import rng
from earlyprune.core.registry import Registry
from earlyprune.models.init import check_init, initialize

__registers__ = ()  # helper: the model registry, create_model and the input checks

InputShape = tuple[int, int, int]
Builder = Callable[[int, InputShape], nn.Module]


@dataclass(frozen=True)
class ModelEntry:
    """A registered network.

    Attributes:
        name: The name it is registered under.
        build: ``build(num_classes, input_shape) -> nn.Module``; returns an uninitialized network.
        input_shape: The (channels, height, width) the network is designed for.
    """

    name: str
    build: Builder
    input_shape: InputShape


MODELS: Registry[ModelEntry] = Registry("model")


def check_input_shape(input_shape: object) -> InputShape:
    """Returns ``input_shape`` as a tuple of three positive ints, or raises ``ValueError``."""
    valid = (
        isinstance(input_shape, tuple | list)
        and len(input_shape) == 3
        and all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in input_shape)
    )
    if not valid:
        raise ValueError(
            f"input_shape must be (channels, height, width) with positive ints, got {input_shape!r}"
        )
    return tuple(input_shape)  # type: ignore[return-value]


def check_num_classes(num_classes: object) -> int:
    """Returns ``num_classes`` if it is an int ≥ 2, else raises ``ValueError``."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    return num_classes


def register_model(name: str, input_shape: InputShape) -> Callable[[Builder], Builder]:
    """Decorator that registers a network builder under ``name``.

    Args:
        name: The model's name, as used by specs, presets and the CLI.
        input_shape: The (channels, height, width) the network is designed for.

    Returns:
        A decorator that registers ``build(num_classes, input_shape) -> nn.Module`` and returns
        it unchanged. The builder need not initialize weights: :func:`create_model` does.

    Raises:
        ValueError: If ``name`` is already registered or ``input_shape`` is invalid.
    """
    shape = check_input_shape(input_shape)

    def decorate(build: Builder) -> Builder:
        MODELS.add(name, ModelEntry(name=name, build=build, input_shape=shape))
        return build

    return decorate


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(MODELS.names())


def create_model(
    name: str,
    num_classes: int,
    input_shape: InputShape | None = None,
    init: str = "kaiming_fan_in",
    bn_gamma: str = "uniform",
    seed: int | None = None,
    bias: str = "default",
) -> nn.Module:
    """Builds a registered network and initializes it with :func:`initialize`.

    Args:
        name: A registered model name (see :func:`list_models`).
        num_classes: Number of outputs of the final layer (≥ 2).
        input_shape: (channels, height, width) of the inputs; defaults to the model's own.
        init: Weight initializer, one of ``INITS``.
        bn_gamma: BatchNorm γ initializer, one of ``BN_GAMMAS``.
        seed: Seed of the generator that draws the weights (its ``"init"`` stream, see
            :mod:`earlyprune.core.rng`); ``None`` uses torch's global RNG.
        bias: Bias initializer, one of ``BIAS_INITS`` (PyTorch's default, or zero).

    Returns:
        The initialized network, in training mode, on the CPU; its ``input_shape`` attribute
        holds the (channels, height, width) it was built for.

    Raises:
        ValueError: If any argument is invalid; the message lists the valid choices.
    """
    entry = MODELS.get(name)
    check_num_classes(num_classes)
    shape = entry.input_shape if input_shape is None else check_input_shape(input_shape)
    check_init(init, bn_gamma, bias)
    if seed is None:
        model = entry.build(num_classes, shape)
    else:
        # A network's own draws while it is built (a user's custom parameter or buffer) come
        # from the run's "build" stream, not from whatever state the process's global generator
        # is in; the caller's global state is left as it was. Conv/Linear/BatchNorm draws are
        # redrawn from the "init" stream below, so the built-in networks are unchanged.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(rng.stream_seed(seed, "build"))
            model = entry.build(num_classes, shape)
    # The "init" stream: independent of every other stream of the run (earlyprune.core.rng).
    generator = None if seed is None else rng.generator(seed, "init")
    initialize(model, init=init, bn_gamma=bn_gamma, generator=generator, bias=bias)
    # Data-free methods (SynFlow, NTK-SAP, ...) then need no batch: ep.prune reads the shape here.
    model.input_shape = shape
    return model


def global_avg_pool(x: torch.Tensor) -> torch.Tensor:
    """The mean over the spatial dimensions of ``x`` (N, C, H, W) → (N, C).

    A plain mean, not ``adaptive_avg_pool2d(x, 1)``: the latter's backward has no deterministic
    CUDA kernel, so under an fp32 run's deterministic settings (``core.device_identity``) it
    raises on a GPU. On the CPU the two are bit-identical, forward and backward (tested).
    """
    return x.mean(dim=(2, 3))
