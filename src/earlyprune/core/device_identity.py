"""What a run's device contributes to its identity, and the settings that make CUDA fp32 exact.

Numbers depend on the hardware that computed them: a GPU's convolution and reduction kernels
round differently from the CPU's, and different GPU generations (compute capabilities) pick
different kernels. So the *device kind* — not the index, which only says where a run happened to
be scheduled — is part of a run's identity: ``"cpu"`` (the default, left out of the hash so CPU
ids stay as they were), ``"mps"``, or ``"cuda-sm90-nvidia-h100-80gb-hbm3"``: compute capability
and card name, because cards of one capability with different SM counts can still be handed
different kernels by cuDNN's heuristics.

fp32 on CUDA is only reproducible with deterministic algorithms, cuDNN autotuning off, TF32 off
and a fixed cuBLAS workspace; :func:`deterministic` sets all of them for a block and restores
them after. TF32 is then a precision of its own (``PRECISIONS["tf32"]``), in the identity. A run
may trade that reproducibility for speed (``autotune``, also in its identity): cuDNN then times
its algorithms and nondeterministic kernels are allowed.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator

import torch

__all__ = ["CUBLAS_WORKSPACE", "PRECISIONS", "deterministic", "device_kind", "identity_kind"]

#: cuBLAS needs a fixed workspace for deterministic results (CUDA ≥ 10.2; see the PyTorch
#: reproducibility notes); it must be set before the first cuBLAS call of the process.
CUBLAS_WORKSPACE = ":4096:8"

#: Precision name → what it means (for flags, TOML and listings).
PRECISIONS: dict[str, str] = {
    "fp32": "float32 everywhere; on CUDA deterministic algorithms and no TF32 (exact re-runs)",
    "tf32": "float32 storage, TF32 matrix products and convolutions on Ampere and later GPUs "
    "(faster, about 3 fewer decimal digits per product); deterministic algorithms still on",
    "bf16": "bfloat16 autocast for the forward pass, float32 weights and loss",
}


def device_kind(device: torch.device | str) -> str:
    """The kind of ``device`` that decides its numbers, e.g. "cpu" or "cuda-sm90-nvidia-a100".

    Raises:
        ValueError: A CUDA device when CUDA is not available here.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return device.type
    if not torch.cuda.is_available():
        raise ValueError(f"device {device} asked for, but this machine has no CUDA GPU")
    major, minor = torch.cuda.get_device_capability(device)
    name = re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(device).lower()).strip("-")
    return f"cuda-sm{major}{minor}-{name}"


def identity_kind(kind: str) -> str | None:
    """The value a spec hashes for ``kind``: None (left out) for "cpu", so CPU ids never move."""
    return None if kind == "cpu" else kind


@contextlib.contextmanager
def deterministic(
    device: torch.device | str,
    precision: str = "fp32",
    force: bool = False,
    autotune: bool = False,
) -> Iterator[None]:
    """Deterministic CUDA numerics for the block (a no-op on CPU unless ``force``).

    Sets deterministic algorithms (an op without a deterministic kernel raises instead of
    silently varying), ``cudnn.deterministic``, no cuDNN autotuning, TF32 off unless
    ``precision == "tf32"``, and the cuBLAS workspace; restores every one on exit, even on an
    error. ``force`` applies them on any device (for tests on CPU). ``autotune`` turns the
    first three around (nondeterministic algorithms allowed, ``cudnn.benchmark`` on): faster,
    not bit-identical from one run to the next; TF32 still as ``precision`` says.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    if torch.device(device).type != "cuda" and not force:
        yield
        return
    tf32 = precision == "tf32"
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cuda.matmul.allow_tf32,
        os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    )
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(not autotune)
    torch.backends.cudnn.deterministic = not autotune
    torch.backends.cudnn.benchmark = autotune
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic = saved[2]
        torch.backends.cudnn.benchmark = saved[3]
        torch.backends.cudnn.allow_tf32 = saved[4]
        torch.backends.cuda.matmul.allow_tf32 = saved[5]
        if saved[6] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
