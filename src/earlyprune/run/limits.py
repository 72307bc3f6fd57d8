"""The names and limits a run spec is checked against.

Below ``spec``, ``spec_checks`` and ``hparams``, so that each can read them without importing
the others (``earlyprune.run.spec`` re-exports them).
"""

from __future__ import annotations

import re

#: Methods that are not scorers but whole pipelines (they need a trained dense network).
BASELINES = ("magnitude_after_training", "ltr")
#: Iterative magnitude pruning with rewinding: level k is its own run, built on level k − 1.
IMP = "imp"
#: Methods whose survivors are rewound to a dense checkpoint (``rewind_step`` applies to them).
REWINDING = ("ltr", IMP)
#: The unpruned reference run.
DENSE = "dense"
PRECISIONS = ("fp32", "tf32", "bf16")  # tf32: TF32 products on CUDA (== fp32 on CPU)
#: Decimals a sparsity keeps: 0.9 and 0.9000000001 are one run (and compute as 0.9). At 1e-9 the
#: count of removed weights, round(s·N), moves by at most 0.03 for the largest network (25 M).
SPARSITY_DECIMALS = 9
#: More pruning rounds than this is a typo (SynFlow, the most iterative method, uses 100; each
#: round is a full scoring pass).
MAX_ROUNDS = 1000
#: torch's generators take 64-bit seeds; derived seeds add to them.
SEED_LIMIT = 2**63
_DEVICE = re.compile(r"^(auto|cpu|cuda(:[0-9]+)?)$")
