"""Measured speedup per structure × sparsity, dense masked network vs the structure's kernel.

For each (structure, sparsity) one ``measure_speed`` call times both sides in this process on
the same inputs (medians of interleaved-free repeated passes; a ratio, never an absolute
claim): channel → the shrunk network, unstructured → CSR, fanin → condensed gather, nm:2:4 →
semi-structured on CUDA (skipped on CPU, with the reason). Masks come from weight magnitudes
with every layer allocated ``1 − sparsity``; nm:2:4 ignores the sparsity (it is fixed by N:M
and ASP's skipped layers). Prints a table and, with ``--json FILE``, writes the rows.

Usage: ``python benchmarks/bench_structure.py [--device cpu|cuda] [--quick] [--model resnet20]``.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from _common import base_parser, size_of  # noqa: E402

from earlyprune.apps.speed import magnitude_mask, measure_speed  # noqa: E402
from earlyprune.models import MODELS, create_model  # noqa: E402

STRUCTURES = ("unstructured", "fanin", "channel", "nm:2:4")


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--sparsities", default="0.5,0.9,0.98")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    size = size_of(args)
    repeats = {"full": 20, "quick": 5, "tiny": 1}[size]
    batch = {"full": 64, "quick": 32, "tiny": 2}[size]
    shape = MODELS.get(args.model).input_shape
    rows = []
    print(f"{args.model}, batch {batch}, {args.device}, median of {repeats} passes per side")
    print(
        f"{'structure':<14}{'target':>7}{'achieved':>10}{'dense ms':>10}{'kernel ms':>11}"
        f"{'speedup':>9}  max |Δ|   kernel"
    )
    for structure in STRUCTURES:
        for sparsity in [float(s) for s in args.sparsities.split(",")]:
            model = create_model(args.model, 10)
            mask = magnitude_mask(model, structure, sparsity)
            r = measure_speed(model, mask, structure, shape, args.device, batch, repeats)
            r["target_sparsity"] = sparsity
            rows.append(r)
            kernel_ms = "-" if r["sparse_ms"] is None else f"{r['sparse_ms']:.2f}"
            speedup = "-" if r["speedup"] is None else f"{r['speedup']:.2f}×"
            diff = "-" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.1e}"
            print(
                f"{structure:<14}{sparsity:>7.2f}{r['sparsity']:>10.4f}{r['dense_ms']:>10.2f}"
                f"{kernel_ms:>11}{speedup:>9}  {diff:<8}  {r['kernel'] if r['skipped'] is None else r['skipped']}"
            )
            if structure == "nm:2:4":
                break  # N:M fixes its own sparsity
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
