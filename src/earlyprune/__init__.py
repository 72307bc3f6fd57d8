"""earlyprune: pruning neural networks at initialization, with the paper's sanity checks.

Three lines prune any network::

    import earlyprune as ep
    mask = ep.prune(model, "snip", sparsity=0.9, batch=(x, y))
    ep.apply_mask(model, mask)
"""

from earlyprune import ablations
from earlyprune.api import list_methods, load_mask, prune, save_mask, score, to_torch_prune
from earlyprune.data import DataBundle, list_datasets, load_dataset, scoring_batch
from earlyprune.errors import DatasetError, SpecError, StoreError
from earlyprune.masking import (
    Mask,
    Scores,
    apply_mask,
    layer_density,
    neuron_collapse,
    overall_density,
    prunable,
)
from earlyprune.models import create_model, list_models

__version__ = "0.1.0"

__all__ = [
    "DataBundle",
    "create_model",
    "list_datasets",
    "list_models",
    "load_dataset",
    "scoring_batch",
    "DatasetError",
    "Mask",
    "Scores",
    "SpecError",
    "StoreError",
    "ablations",
    "apply_mask",
    "layer_density",
    "list_methods",
    "load_mask",
    "neuron_collapse",
    "overall_density",
    "prunable",
    "prune",
    "save_mask",
    "score",
    "to_torch_prune",
]
