"""Your own network: ``--model path/to/file.py:factory`` or ``--model pkg.module:factory``.

``factory(num_classes, input_shape) -> nn.Module`` is imported with the same machinery as user
scoring functions (:mod:`earlyprune.core.user_functions`) and registered in :data:`MODELS` under
``<file stem or module>:<factory>@<8 hex digits of the file's SHA-256>``. That name is what a
run spec stores in ``model`` (so it is part of the run id: editing the file reruns, moving it
does not); the absolute location goes in ``model_file``, outside the id, so that any worker
process — a local pool or a Ray node — can import the file again before it runs.

earlyprune's initializer (``RunSpec.init``, Kaiming normal by default) is applied to the network
after ``factory`` returns, exactly as for the built-in networks, so seeds, ``init`` and the
``init_normal`` / ``reinit`` ablations mean the same thing for every network.
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn

from earlyprune.core.errors import SpecError
from earlyprune.models.base import MODELS, InputShape, ModelEntry

__registers__ = ()  # helper: registers a user's FILE.py:FUNC network when a run names it

USAGE = "expected a registered model name, path/to/file.py:FACTORY or package.module:FACTORY"
#: A registered user network's name: ``stem:factory@<8 hex>``.
USER_NAME = re.compile(r"^.+:[A-Za-z_]\w*@([0-9a-f]{8}|nosource)$")


def resolve_model(model: str, model_file: str) -> tuple[str, str]:
    """The ``(model, model_file)`` a spec stores, registering a user network in this process.

    A registered name is kept as it is. A user network's stored name (``stem:f@digest``) is
    registered from ``model_file`` if this process has not seen it yet (a worker), and must
    match the file's current content. Any other ``X:F`` is a file or module target.

    Raises:
        SpecError: The file cannot be imported, has no such factory, or changed since the spec
            was made.
    """
    from earlyprune.core.user_functions import resolve_user_input

    return resolve_user_input(
        "model",
        model,
        model_file,
        registered=MODELS.__contains__,
        user_name=is_user_model,
        register=register_model_target,
    )


def register_model_target(target: str) -> str:
    """Imports ``FILE.py:FACTORY`` / ``pkg.module:FACTORY`` and registers it; returns its name."""
    from earlyprune.core.user_functions import load_function

    factory, name = load_function(target, USAGE)
    if name not in MODELS:
        MODELS.add(
            name, ModelEntry(name=name, build=_builder(factory, target), input_shape=USER_SHAPE)
        )
    return name


#: Placeholder "designed for" shape of a user network: runs always pass the dataset's shape.
USER_SHAPE: InputShape = (1, 28, 28)


def _builder(factory: Any, target: str) -> Any:
    def build(num_classes: int, input_shape: InputShape) -> nn.Module:
        try:
            model = factory(num_classes, tuple(input_shape))
        except Exception as exc:
            from earlyprune.core.user_functions import one_line

            raise SpecError(
                f"{target}(num_classes={num_classes}, input_shape="
                f"{tuple(input_shape)}) raised {one_line(exc)}"
            ) from None
        if not isinstance(model, nn.Module):
            raise SpecError(f"{target} must return an nn.Module, got {type(model).__name__}")
        return model

    return build


def is_user_model(name: str) -> bool:
    """Whether ``name`` is a registered user network (a ``stem:factory@digest`` name)."""
    return bool(USER_NAME.match(name))


def check_user_model(name: str, bundle: Any) -> None:
    """Builds the user's network for ``bundle`` and checks one forward pass of two examples.

    Raises:
        SpecError: The factory fails, the network has no Conv/Linear weight to prune, or its
            output is not ``(batch, num_classes)`` logits.
    """
    import torch

    from earlyprune.core.user_functions import one_line
    from earlyprune.masks.mask import prunable
    from earlyprune.models.base import create_model

    model = create_model(name, bundle.num_classes, input_shape=tuple(bundle.input_shape), seed=0)
    if not prunable(model):
        raise SpecError(f"network {name} has no Conv or Linear weights to prune")
    x, _ = bundle.train_examples(torch.arange(min(2, len(bundle.train))))
    try:
        with torch.no_grad():
            out = model.eval()(x)
    except Exception as exc:
        raise SpecError(
            f"network {name} fails on the data's inputs {tuple(x.shape)}: {one_line(exc)}"
        ) from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(x), bundle.num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise SpecError(
            f"network {name} must return (batch, {bundle.num_classes}) logits for "
            f"{bundle.num_classes} classes, got {shape}"
        )
