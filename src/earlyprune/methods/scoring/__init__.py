"""Scoring methods, one file each; importing this package registers them all."""

# isort: off
# The baselines (erk, uniform, ...) first: `ep.list_methods()` has always listed them first.
import earlyprune.methods.baselines  # noqa: F401  (register)
from earlyprune.methods.base import (
    METHODS,
    Batch,
    Method,
    method_from_function,
    preserved_state,
    register_method,
)
from earlyprune.methods.scoring import (  # noqa: F401  (register)
    force,
    grasp,
    iter_snip,
    lamp,
    magnitude,
    ntk_sap,
    phew,
    prospr,
    random,
    snip,
    synflow,
    synflow_l2,
)

# isort: on

#: The methods shipped with the package, registered above. A test holds each of them to leaving
#: the model bit for bit as it was; ``ep.prune`` and ``ep.score`` check every other scorer.
BUILT_IN: dict[str, Method] = {name: METHODS.get(name) for name in METHODS.names()}

__all__ = [
    "BUILT_IN",
    "METHODS",
    "Batch",
    "Method",
    "method_from_function",
    "preserved_state",
    "register_method",
]
