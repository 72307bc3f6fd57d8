"""``earlyprune speed``: measured inference latency of a pruned network, dense vs its best kernel.

The dense side is the masked network run densely (what a framework does with a mask); the
sparse side is the real kernel for the structure (:mod:`earlyprune.apps.speed_kernels`):
channel → the shrunk network, unstructured → CSR on CPU, fanin → the condensed layout,
nm:2:4 → semi-structured tensors on CUDA (skipped, with the reason, elsewhere). Both sides run
in one process on the same inputs, and the speedup is their ratio of median latencies.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from earlyprune.apps.speed_kernels import sparse_model
from earlyprune.masks.channels import silence_channels
from earlyprune.masks.mask import apply_mask, prunable
from earlyprune.masks.shrink import shrink
from earlyprune.masks.structure import achieved_sparsity, parse_structure, select_structured


def _latency(model: nn.Module, x: Tensor, repeats: int) -> float:
    """Median seconds of one forward pass (after two warm-up passes)."""
    cuda = x.device.type == "cuda"
    times = []
    with torch.inference_mode():
        for i in range(repeats + 2):
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(x)
            if cuda:
                torch.cuda.synchronize()
            if i >= 2:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def _kernel(
    model: nn.Module, mask: Mapping[str, Tensor], kind: str, device: torch.device
) -> tuple[nn.Module | None, str, str | None]:
    """(kernel model or None, kernel name, reason it was skipped)."""
    if kind == "channel":
        return shrink(model, mask), "shrunk dense network", None
    if kind == "unstructured":
        if device.type != "cpu":
            return None, "torch.sparse CSR", "the CSR kernel is measured on CPU only"
        return sparse_model(model, mask, "csr")[0], "torch.sparse CSR (Linear, Conv2d im2col)", None
    if kind == "fanin":
        return sparse_model(model, mask, "condensed")[0], "condensed (gather + multiply-sum)", None
    if device.type != "cuda":
        return None, "semi-structured 2:4", "semi-structured sparse kernels need a CUDA GPU"
    kernel, swapped = sparse_model(model, mask, "semi")
    if swapped == 0:
        return None, "semi-structured 2:4", "no layer has a shape the 2:4 kernel accepts"
    return kernel.half(), f"semi-structured 2:4 ({swapped} layers)", None


def measure_speed(
    model: nn.Module,
    mask: Mapping[str, Tensor],
    structure: str,
    input_shape: Sequence[int],
    device: str | torch.device = "cpu",
    batch_size: int = 32,
    repeats: int = 10,
    seed: int = 0,
) -> dict:
    """Inference latency of the masked ``model`` dense against the best kernel for ``structure``.

    Args:
        model: The network (left unchanged); evaluated in eval mode.
        mask: Its mask, which must have ``structure``.
        structure: ``unstructured``, ``nm:N:M`` (only 2:4 has a kernel), ``fanin``, ``channel``.
        input_shape: (channels, height, width) of one input.
        device: Where to measure.
        batch_size: Inputs per forward pass.
        repeats: Timed passes per side (median taken).
        seed: Seed of the random inputs.

    Returns:
        A JSON-ready dict: ``dense_ms``, ``sparse_ms``, ``speedup`` (None when skipped, with
        ``skipped`` saying why), ``max_abs_diff``, ``outputs_equal``, ``sparsity``, ``kernel``.
    """
    st = parse_structure(structure)
    if st.kind == "nm" and (st.n, st.m) != (2, 4):
        raise ValueError(f"no real kernel for {st}; only nm:2:4 has one (sparse tensor cores)")
    device = torch.device(device)
    dense = copy.deepcopy(model).to(device).eval()
    apply_mask(dense, mask)
    if st.kind == "channel":
        silence_channels(dense, mask)  # a pruned channel must output 0 to be removable
    kernel, name, skipped = _kernel(dense, mask, st.kind, device)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, *input_shape, generator=gen).to(device)
    half = (
        st.kind == "nm" and kernel is not None
    )  # the 2:4 kernels are fp16: compare fp16 with fp16
    if half:
        dense = dense.half()
        x = x.half()
    result = {
        "structure": str(st),
        "device": str(device),
        "kernel": name,
        "sparsity": achieved_sparsity(mask),
        "batch_size": batch_size,
        "dense_ms": 1e3 * _latency(dense, x, repeats),
        "sparse_ms": None,
        "speedup": None,
        "max_abs_diff": None,
        "outputs_equal": None,
        "skipped": skipped,
    }
    if kernel is None:
        return result
    kernel = kernel.to(device).eval()
    with torch.inference_mode():
        diff = float((dense(x).float() - kernel(x).float()).abs().max())
        scale = float(dense(x).float().abs().max())
    tol = (1e-2 if half else 1e-4) * max(1.0, scale)
    result["sparse_ms"] = 1e3 * _latency(kernel, x, repeats)
    result["speedup"] = result["dense_ms"] / result["sparse_ms"]
    result["max_abs_diff"], result["outputs_equal"] = diff, diff <= tol
    return result


def magnitude_mask(model: nn.Module, structure: str, sparsity: float) -> dict[str, Tensor]:
    """A mask of ``structure`` from weight magnitudes, each layer allocated ``1 − sparsity``."""
    params = prunable(model)
    scores = {n: p.detach().abs() for n, p in params.items()}
    counts = {n: p.numel() - round(sparsity * p.numel()) for n, p in params.items()}
    return select_structured(scores, structure, counts, model=model)


def format_result(result: Mapping) -> str:
    """The two lines ``speed`` prints."""
    head = f"{result['structure']} at sparsity {result['sparsity']:.4f} on {result['device']}"
    if result["speedup"] is None:
        return f"{head}: dense {result['dense_ms']:.2f} ms; no kernel: {result['skipped']}"
    equal = "outputs equal" if result["outputs_equal"] else "outputs DIFFER"
    return (
        f"{head} ({result['kernel']}): dense {result['dense_ms']:.2f} ms, "
        f"sparse {result['sparse_ms']:.2f} ms\nspeedup {result['speedup']:.2f}× "
        f"{equal} (max |Δ| = {result['max_abs_diff']:.2e})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``speed`` on a registered model with a magnitude mask (stage 2 reads a run instead)."""
    from earlyprune.models import MODELS, create_model

    parser = argparse.ArgumentParser(prog="earlyprune speed")
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--structure", default="unstructured")
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, help="write the result here (speed.json)")
    args = parser.parse_args(argv)
    try:
        model = create_model(args.model, 10)
        shape = MODELS.get(args.model).input_shape if args.model in MODELS else (3, 32, 32)
        mask = magnitude_mask(model, args.structure, args.sparsity)
        result = measure_speed(
            model, mask, args.structure, shape, args.device, args.batch_size, args.repeats
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_result(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0
