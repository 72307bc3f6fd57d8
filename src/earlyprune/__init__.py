"""earlyprune: pruning neural networks at initialization, with the paper's sanity checks.

Three lines prune any network::

    import earlyprune as ep
    mask = ep.prune(model, "snip", sparsity=0.9, batch=(x, y))
    ep.apply_mask(model, mask)

Names are imported lazily, so ``earlyprune.analysis`` (reports from stored results) and the
CLI start without loading torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from earlyprune.errors import DatasetError, SpecError, StoreError

__version__ = "0.1.0"

#: Public name → module that defines it.
_LAZY = {
    "ablations": "earlyprune.ablations",
    "list_methods": "earlyprune.api",
    "load_mask": "earlyprune.api",
    "prune": "earlyprune.api",
    "save_mask": "earlyprune.api",
    "score": "earlyprune.api",
    "to_torch_prune": "earlyprune.api",
    "DataBundle": "earlyprune.data",
    "list_datasets": "earlyprune.data",
    "load_dataset": "earlyprune.data",
    "scoring_batch": "earlyprune.data",
    "Mask": "earlyprune.masking",
    "Scores": "earlyprune.masking",
    "apply_mask": "earlyprune.masking",
    "layer_density": "earlyprune.density",
    "neuron_collapse": "earlyprune.density",
    "overall_density": "earlyprune.density",
    "prunable": "earlyprune.masking",
    "effective_density": "earlyprune.connectivity",
    "effective_mask": "earlyprune.connectivity",
    "create_model": "earlyprune.models",
    "list_models": "earlyprune.models",
    "RunSpec": "earlyprune.spec",
    "RunStore": "earlyprune.store",
}

__all__ = ["DatasetError", "SpecError", "StoreError", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'earlyprune' has no attribute {name!r}")
    mod = importlib.import_module(module)
    value = mod if module.endswith("." + name) else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # for type checkers and IDEs: the eager imports
    from earlyprune import ablations  # noqa: F401
    from earlyprune.api import (  # noqa: F401
        list_methods,
        load_mask,
        prune,
        save_mask,
        score,
        to_torch_prune,
    )
    from earlyprune.connectivity import effective_density, effective_mask  # noqa: F401
    from earlyprune.data import DataBundle, list_datasets, load_dataset, scoring_batch  # noqa: F401
    from earlyprune.masking import (  # noqa: F401
        Mask,
        Scores,
        apply_mask,
        layer_density,
        neuron_collapse,
        overall_density,
        prunable,
    )
    from earlyprune.models import create_model, list_models  # noqa: F401
    from earlyprune.spec import RunSpec  # noqa: F401
    from earlyprune.store import RunStore  # noqa: F401
