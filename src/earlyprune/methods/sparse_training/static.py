"""Static sparse training: the sparse starting mask of SET/RigL, never moved (their control)."""

from __future__ import annotations

from earlyprune.methods.sparse_training.base import SPARSE_TRAINERS, SparseTrainer

SPARSE_TRAINERS.add(
    "static",
    SparseTrainer(
        "static",
        update=None,
        summary="the SET/RigL starting mask (allocation + random placement), fixed: their control",
    ),
)
