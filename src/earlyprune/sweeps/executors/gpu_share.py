"""How many runs share one GPU when ``--workers-per-gpu`` is not given: from a step's size.

A batch-128 ResNet-20 step is launch-bound on a large GPU (about 5 G multiply-adds forward, in
some 300 small kernels), so one run leaves the card mostly idle; a batch-1024 ResNet-50 step
(about 4 T) fills it alone. The default counts the forward multiply-adds of one training
micro-batch (``masks.flops.count_flops`` on one example × batch / ``accumulate``) of the largest
network in the sweep and maps it through :data:`TIERS`. How many runs share a GPU changes no
run's numbers (each run's kernels are its own), only the speed and the memory in use.

The tiers are a starting point, **not measured on a GPU** in this project yet (none was lent):
``benchmarks/gpu_check.py`` times several workers per GPU and is where they are to be checked.
"""

from __future__ import annotations

from collections.abc import Sequence

from earlyprune.run.spec import RunSpec

#: (multiply-adds per step below which, runs per GPU); above the last: 1.
TIERS = ((2e10, 4), (2e11, 2))


def per_gpu_for(macs_per_step: float) -> int:
    """Runs per GPU for a training step of ``macs_per_step`` forward multiply-adds."""
    return next((n for limit, n in TIERS if macs_per_step < limit), 1)


def step_macs(model: str, num_classes: int, input_shape: Sequence[int], batch: int) -> int:
    """Forward multiply-adds of one step of ``batch`` examples of the registered ``model``."""
    from earlyprune.masks.flops import count_flops
    from earlyprune.models import MODELS

    net = MODELS.get(model).build(num_classes, tuple(input_shape))
    return int(count_flops(net, tuple(input_shape))["dense"]) * batch


def default_per_gpu(specs: Sequence[RunSpec], data_root: str | None) -> int:
    """Runs per GPU for ``specs``: the fewest that any of their networks' steps allows."""
    from earlyprune.run.hparams import make_schedule
    from earlyprune.run.spec import PRESETS, register_user_inputs
    from earlyprune.run.stages import load_bundle

    seen: dict[tuple, int] = {}
    for spec in specs:
        key = (spec.model, spec.dataset, spec.preset, spec.batch_size, spec.accumulate)
        if key in seen:
            continue
        register_user_inputs(spec)  # a user's network or data
        preset = PRESETS.get(spec.preset)
        bundle = load_bundle(spec.dataset, data_root, preset.train_subset, preset.test_subset)
        batch = make_schedule(spec, preset, bundle).batch_size // spec.accumulate
        macs = step_macs(spec.model, bundle.num_classes, bundle.input_shape, batch)
        seen[key] = per_gpu_for(macs)
    return min(seen.values(), default=1)
