"""Random streams for the scorers that draw random numbers (NTK-SAP, PHEW).

Every stream is derived from (seed, purpose) by SHA-256, so two purposes started from the same
seed are independent and nothing touches torch's global RNG. One helper, so that the project-wide
stream derivation (``earlyprune.rng``) can replace it in one place.
"""

from __future__ import annotations

import hashlib

import torch


def stream_seed(seed: int, purpose: str) -> int:
    """A 63-bit integer seed derived from ``seed`` and ``purpose``."""
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generator(seed: int, purpose: str) -> torch.Generator:
    """A CPU ``torch.Generator`` for ``purpose`` (draw on the CPU, then move: device-independent)."""
    return torch.Generator().manual_seed(stream_seed(seed, purpose))
