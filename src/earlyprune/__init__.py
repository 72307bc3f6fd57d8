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
import os
from typing import TYPE_CHECKING, Any

from earlyprune import _compat
from earlyprune.core.errors import DatasetError, SpecError, StoreError

_compat.install()  # the old module paths still import, with a FutureWarning
# cuBLAS reads its workspace setting when a process first uses it: deterministic CUDA runs
# (core.device_identity) need it fixed before any CUDA work, so it is set on import.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

__version__ = "0.1.0"

#: Public name → module that defines it.
_LAZY = {
    "ablations": "earlyprune.methods.ablations",
    "list_methods": "earlyprune.methods.api",
    "load_mask": "earlyprune.methods.api",
    "prune": "earlyprune.methods.api",
    "save_mask": "earlyprune.methods.api",
    "score": "earlyprune.methods.api",
    "to_torch_prune": "earlyprune.methods.api",
    "DataBundle": "earlyprune.data",
    "list_datasets": "earlyprune.data",
    "load_dataset": "earlyprune.data",
    "scoring_batch": "earlyprune.data",
    "keep_pruned": "earlyprune.masks.keep",
    "Mask": "earlyprune.masks.mask",
    "Scores": "earlyprune.masks.mask",
    "apply_mask": "earlyprune.masks.mask",
    "layer_density": "earlyprune.masks.density",
    "neuron_collapse": "earlyprune.masks.density",
    "overall_density": "earlyprune.masks.density",
    "prunable": "earlyprune.masks.mask",
    "effective_density": "earlyprune.masks.connectivity",
    "effective_mask": "earlyprune.masks.connectivity",
    "create_model": "earlyprune.models",
    "list_models": "earlyprune.models",
    "RunSpec": "earlyprune.run.spec",
    "RunStore": "earlyprune.run.store",
}

__all__ = ["DatasetError", "SpecError", "StoreError", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        old = _compat.old_attribute(name)  # ep.spec: an old module, with a warning
        if old is not None:
            return old
        raise AttributeError(f"module 'earlyprune' has no attribute {name!r}")
    mod = importlib.import_module(module)
    value = mod if module.endswith("." + name) else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # for type checkers and IDEs: the eager imports
    from earlyprune.data import DataBundle, list_datasets, load_dataset, scoring_batch  # noqa: F401
    from earlyprune.masks.connectivity import effective_density, effective_mask  # noqa: F401
    from earlyprune.masks.density import layer_density, neuron_collapse, overall_density  # noqa: F401
    from earlyprune.masks.keep import keep_pruned  # noqa: F401
    from earlyprune.masks.mask import Mask, Scores, apply_mask, prunable  # noqa: F401
    from earlyprune.methods import ablations  # noqa: F401
    from earlyprune.methods.api import (  # noqa: F401
        list_methods,
        load_mask,
        prune,
        save_mask,
        score,
        to_torch_prune,
    )
    from earlyprune.models import create_model, list_models  # noqa: F401
    from earlyprune.run.spec import RunSpec  # noqa: F401
    from earlyprune.run.store import RunStore  # noqa: F401
