"""Fused training through the sweep (issue 23, stage 2): ``run_specs(..., fuse=K)``.

Tiny runs (fashion-mnist-mini subset of the demo preset, CPU, one thread); the reference is the
same grid trained solo.
"""

from __future__ import annotations

import json

import pytest
import torch

from earlyprune.core.errors import SpecError
from earlyprune.run.fused_run import run_pack
from earlyprune.run.pipeline import run
from earlyprune.run.spec import RunSpec
from earlyprune.run.store import RunStore
from earlyprune.sweeps.executors.fused import fused_specs
from earlyprune.sweeps.grid import run_specs

BASE = RunSpec(dataset="fashion-mnist-mini", epochs=0.5, device="cpu", method="snip", sparsity=0.9)
#: Four runs of different methods and seeds (one at step t: its dense run trains solo first).
FOUR = [
    BASE,
    BASE.replace(method="magnitude", sparsity=0.8, seed=1),
    BASE.replace(method="random", sparsity=0.5, seed=2, ablation="shuffle"),
    BASE.replace(method="snip", sparsity=0.7, seed=3, prune_step=5),
]


def weights(store: RunStore, rid: str) -> dict[str, torch.Tensor]:
    return store.load_tensors(rid, "final.pt")["model"]


def test_fused_ids_differ_from_solo_and_dense_runs_stay_solo():
    fused = fused_specs([*FOUR, BASE.dense_spec(), BASE.replace(method="set")], 2)
    assert [s.engine for s in fused] == ["fused"] * 4 + ["solo", "solo"]
    assert fused[0].run_id != BASE.run_id and BASE.replace(engine="solo").run_id == BASE.run_id
    with pytest.raises(SpecError, match="positive whole number"):
        fused_specs(FOUR, 0)
    with pytest.raises(SpecError, match="fused run"):
        run(fused[0], RunStore("/nonexistent/never-written"))


@pytest.mark.slow
def test_four_members_through_the_sweep_match_solo(tmp_path):
    solo_store, fused_store = RunStore(tmp_path / "solo"), RunStore(tmp_path / "fused")
    solo = run_specs(FOUR, solo_store, workers=1, progress=False)
    fused = run_specs(FOUR, fused_store, workers=1, progress=False, fuse=4)
    nchw_specs = [s.replace(channels_last=False) for s in FOUR]  # the layout switch's own gap
    nchw = run_specs(nchw_specs, solo_store, workers=1, progress=False)
    gaps, layouts = [], []
    for s, f, n, spec in zip(solo, fused, nchw, FOUR, strict=True):
        assert f["status"] == "ok" and f["run_id"] == spec.replace(engine="fused").run_id
        # Same mask (scoring is per run, as solo), trained weights close, accuracy close.
        sm = solo_store.load_tensors(s["run_id"], "mask.pt")
        fm = fused_store.load_tensors(f["run_id"], "mask.pt")
        assert all(torch.equal(sm[n], fm[n]) for n in sm)
        sw, fw = weights(solo_store, s["run_id"]), weights(fused_store, f["run_id"])
        nw = weights(solo_store, n["run_id"])
        gap = max(float((sw[k].float() - fw[k].float()).abs().max()) for k in sw)
        layout = max(float((sw[k].float() - nw[k].float()).abs().max()) for k in sw)
        gaps.append(gap)
        layouts.append(layout)
        assert abs(s["test_accuracy"] - f["test_accuracy"]) <= 0.03
        for name, keep in fm.items():  # pruned weights exactly zero
            assert (fw[name][~keep] == 0).all()
        rec = json.loads((fused_store.run_dir(f["run_id"]) / "result.json").read_text())
        others = sorted(x["run_id"] for x in fused if x is not f)
        assert rec["fused"] == {"k": 4, "partners": others}
        folder = fused_store.run_dir(f["run_id"])
        assert (folder / "metrics.jsonl").exists() and not (folder / "latest.pt").exists()
    # Both gaps are float reassociation grown by training; member by member they scatter (here
    # 0.007-0.014 fused, 0.002-0.026 layout), so the pack's largest gaps are compared.
    assert max(gaps) <= 2 * max(layouts), (gaps, layouts)


@pytest.mark.slow
def test_partners_never_change_a_members_numbers(tmp_path):
    a, b = (RunStore(tmp_path / n) for n in "ab")
    specs = fused_specs(FOUR, 4)
    run_pack([specs[0], specs[1]], a)
    run_pack([specs[2], specs[0], specs[3]], b)
    rid = specs[0].run_id
    wa, wb = weights(a, rid), weights(b, rid)
    assert all(torch.equal(wa[n], wb[n]) for n in wa)
    c = RunStore(tmp_path / "c")
    run_pack([specs[0]], c)  # a pack of one (trained beside a padding copy of itself)
    wc = weights(c, rid)
    assert all(torch.equal(wa[n], wc[n]) for n in wa)
