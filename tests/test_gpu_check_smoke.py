"""benchmarks/gpu_check.py runs its exactness parts on CPU (no timing asserted).

The whole ``--device cpu --quick`` run takes minutes on 2 shared cores, so the suite runs the
parts that check exactness (resident batches, selection kernels, kill-and-resume bit identity)
and the scoring list on its own; the full quick run is for ``.ci/run`` and by hand.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def test_gpu_check_exactness_parts_pass_on_cpu(capsys):
    sys.path.insert(0, str(BENCH))
    try:
        gpu_check = importlib.import_module("gpu_check")
        only = ["resident_data", "selection", "kill_and_resume"]
        result = gpu_check.main(["--device", "cpu", "--quick", "--only", *only])
    finally:
        sys.path.remove(str(BENCH))
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == json.loads(json.dumps(result))
    assert result["ok"] and result["device_kind"] == "cpu" and result["size"] == "quick"
    assert set(only) <= set(result) and "training" not in result
    assert result["kill_and_resume"]["bit_identical"]
    assert result["resident_data"]["equal_batches"]
    assert {"kthvalue_ms", "sort_ms"} <= set(result["selection"])
