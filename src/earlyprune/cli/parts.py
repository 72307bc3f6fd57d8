"""Pieces of the `earlyprune` command that need nothing else of it: the `list` and `verify`
commands, and flag groups shared by several sub-commands."""

from __future__ import annotations

import argparse
import sys

STALE_HELP = "redo runs stored by an older earlyprune (another numerics version)"
PER_GPU_HELP = (
    "runs sharing each GPU at once (local: N workers per GPU, default from the size of a "
    "training step: 4 for ResNet-20 on CIFAR-10, 1 for ResNet-50 on ImageNet; ray: 1/N GPU each, "
    "default 1)"
)
FUSE_HELP = "train K compatible pruned runs at a time as one fused pack (their own run ids)"
#: What `earlyprune list WHAT` can show.
LISTS = (
    "models",
    "datasets",
    "methods",
    "allocations",
    "placements",
    "ablations",
    "presets",
    "devices",
)


def log_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--quiet", action="store_true", help="no progress lines or bars; only the result line(s)"
    )
    p.add_argument(
        "--log-format",
        default="text",
        choices=("text", "json"),
        help="text: a line per epoch (run) or per finished run (sweep) when stdout "
        "is not a terminal; json: one JSON object per line, always",
    )


def version_text(version: str) -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:  # without importing torch (slow): the installed distribution's version
        torch_version = installed("torch")
    except PackageNotFoundError:
        torch_version = "not installed"
    return f"earlyprune {version} (torch {torch_version}, python {sys.version.split()[0]})"


def cmd_list(args: argparse.Namespace) -> int:
    from earlyprune.data import list_datasets
    from earlyprune.methods.ablations import ABLATIONS
    from earlyprune.methods.scoring import METHODS
    from earlyprune.models import list_models
    from earlyprune.run.hparams import preset_values
    from earlyprune.run.spec import BASELINES, PRESETS

    show = [args.what] if args.what else list(LISTS)
    if "models" in show:
        print("models:   " + ", ".join(list_models()))
    if "datasets" in show:
        print("datasets: " + ", ".join(list_datasets()))
    if "methods" in show:
        print("methods:")
        for name in METHODS.names():
            print(f"  {name:<24} {METHODS.get(name).summary}")
        for name in BASELINES:
            print(
                f"  {name:<24} baseline: magnitude mask of the trained network"
                + (", weights rewound to step t" if name == "ltr" else ", retrained from the end")
            )
        print(
            "  imp                      baseline: iterative magnitude pruning, 20% of the survivors a"
            " level (--levels), rewound to step t"
        )
        from earlyprune.methods.sparse_training import SPARSE_TRAINERS

        for name in SPARSE_TRAINERS.names():
            print(f"  {name:<24} {SPARSE_TRAINERS.get(name).summary}")
        print("  dense                    the unpruned network (sparsity 0)")
    if "allocations" in show:
        from earlyprune.methods.allocation import ALLOCATIONS

        print("allocations (--allocation; or any method's name: its global layer counts):")
        for name in ALLOCATIONS.names():
            print(f"  {name:<24} {ALLOCATIONS.get(name).summary}")
    if "placements" in show:
        from earlyprune.methods.placement import PLACEMENTS

        print("placements (--placement; or any method's name: top-k of its scores in each layer):")
        for name in PLACEMENTS.names():
            print(f"  {name:<24} {PLACEMENTS.get(name).summary}")
    if "ablations" in show:
        print("ablations:")
        for name, text in ABLATIONS.items():
            print(f"  {name:<24} {text}")
    if "presets" in show:
        print("presets:" + ("" if args.what else "   (`earlyprune list presets`: every value)"))
        for name in PRESETS.names():
            p = PRESETS.get(name)
            if args.what:  # every value a run of this preset trains with (flag = field name)
                values = "  ".join(f"{k}={v}" for k, v in preset_values(p).items())
                print(f"  {name}\n    {values}")
            else:
                print(
                    f"  {name:<24} {p.model} on {p.dataset or 'your own data'}: {p.epochs} epochs, batch "
                    f"{p.batch_size}, lr {p.lr}, drops at {list(p.milestones)}, rewind step "
                    f"{p.rewind_step}"
                )
        if args.what:
            _preset_legend()
    if "devices" in show:
        _devices()
    return 0


def _devices() -> None:
    """This machine's devices and the ``device_kind`` a run computed on each is stored under."""
    import torch

    from earlyprune.core.device_identity import device_kind

    print(
        "devices (device: the device_kind in a run's identity; give it to plan GPU runs elsewhere):"
    )
    print(f"  {'cpu':<8} cpu")
    for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        print(f"  cuda:{i:<3} {device_kind(f'cuda:{i}')}")


def _preset_legend() -> None:
    """What each value of `list presets` means: the run field's own help (one source)."""
    from earlyprune.run.hparams import HPARAMS
    from earlyprune.run.settings import field_help
    from earlyprune.run.spec import RunSpec

    helps = field_help(RunSpec)
    print("values (each a run field: `--flag-name` of `earlyprune run`, a sweep TOML key):")
    for name in ("model", "dataset", "epochs", *HPARAMS):
        print(f"  {name:<16} {helps[name]}")
    print(f"  {'train_subset':<16} training examples, a class-stratified subset (None: all)")
    print(f"  {'test_subset':<16} test examples, a class-stratified subset (None: all)")


def cmd_verify(args: argparse.Namespace) -> int:
    """Exit 0 when every finished run is intact, 1 when some are damaged (listed)."""
    from pathlib import Path

    from earlyprune.core.errors import StoreError
    from earlyprune.run.integrity import requeue, verify_store

    root = Path(args.store)
    if not root.is_dir():
        raise StoreError(f"result store {str(root)!r} does not exist")
    checked, damaged, unverified = verify_store(root)
    for rid, found in damaged.items():
        what = "; ".join(f"{name} {why}" for name, why in found.items())
        print(f"damaged: {rid}  {what}")
        if args.repair:
            requeue(root / rid, found)
    old = f", {unverified} without recorded hashes (older earlyprune)" if unverified else ""
    fix = " (re-queued: run the sweep or command again)" if args.repair and damaged else ""
    print(f"{checked} finished runs in {root}: {len(damaged)} damaged{fix}{old}")
    return 1 if damaged else 0
