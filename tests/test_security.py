"""Security: files in a store never run code, and nothing a user or a result file writes can
reach outside the store (or the report folder).

Checkpoints and masks are loaded with ``weights_only=True``: a planted pickle that would run code
is refused, set aside as ``*.corrupt`` and the work redone. Run ids are hashes and store file
names are checked, so a spec field such as ``../../x`` cannot name a path outside the store.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from earlyprune import cli
from earlyprune.core.errors import SpecError, StoreError
from earlyprune.run import numerics
from earlyprune.run.pipeline import run
from earlyprune.run.spec import RunSpec
from earlyprune.run.store import RunStore

# Pruned at step 3 of a dense run of 0.25 demo epochs: every kind of checkpoint is loaded.
DENSE = RunSpec(epochs=0.25, device="cpu")
PRUNED = RunSpec(epochs=0.25, device="cpu", method="snip", sparsity=0.9, prune_step=3)
STR_FIELDS = (
    "dataset",
    "model",
    "preset",
    "method",
    "scope",
    "ablation",
    "init",
    "bn_gamma",
    "precision",
    "device",
)
ESCAPES = ["../../escaped", "/tmp/escaped", "..", "a/../../escaped", "~/escaped", "x\0y"]


class Exploit:
    """Unpickling this calls ``os.mkdir(marker)``: proof that the file ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.mkdir, (self.marker,))


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("form", ["torch.save", "plain pickle"])
def test_planted_pickles_in_a_store_are_refused_and_the_work_redone(tmp_path: Path, form: str):
    clean = RunStore(tmp_path / "clean")
    want = run(PRUNED, clean, progress=False)
    store, marker = RunStore(tmp_path / "store"), tmp_path / "pwned"
    planted = [
        (DENSE.run_id, "latest.pt"),
        (DENSE.run_id, "step_3.pt"),
        (PRUNED.run_id, "mask.pt"),
        (PRUNED.run_id, "latest.pt"),
    ]
    for rid, name in planted:
        path = store.path(rid, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"model": Exploit(marker), "optimizer": {}, "step": 1, "curve": []}
        if form == "torch.save":
            torch.save(payload, path)
        else:
            path.write_bytes(pickle.dumps(payload))
        # Planted among today's files (a folder of older numerics is cleared without reading).
        store.write_json(rid, numerics.MARKER, {"numerics_version": numerics.NUMERICS_VERSION})
    got = run(PRUNED, store, progress=False)
    assert not marker.exists(), "a checkpoint in the store ran code when loaded"
    for rid, name in planted:
        assert store.path(rid, f"{name}.corrupt").exists(), (rid, name)
    assert got["status"] == "ok"
    assert (got["test_accuracy"], got["layer_density"]) == (
        want["test_accuracy"],
        want["layer_density"],
    )
    mask, clean_mask = (
        store.load_tensors(PRUNED.run_id, "mask.pt"),
        clean.load_tensors(PRUNED.run_id, "mask.pt"),
    )
    assert all(torch.equal(mask[n], clean_mask[n]) for n in clean_mask)


@pytest.mark.parametrize("field", STR_FIELDS)
def test_a_spec_field_with_a_path_cannot_escape_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], field: str
) -> None:
    base = {"dataset": "fashion-mnist-mini", "epochs": 0.25, field: "../../escaped"}
    toml = tmp_path / "sweep.toml"
    toml.write_text(
        "[base]\n"
        + "".join(f"{k} = {json.dumps(v)}\n" for k, v in base.items())
        + "[axes]\nseed = [0]\n"
    )
    workdir = tmp_path / "a" / "b"
    workdir.mkdir(parents=True)
    monkeypatch.chdir(workdir)  # "../../escaped" would land in tmp_path
    code = cli.main(["sweep", "run", str(toml), "--store", "store", "--workers", "1"])
    assert code == 2 and "'../../escaped'" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "sweep.toml"]


@given(field=st.sampled_from(STR_FIELDS), value=st.one_of(st.sampled_from(ESCAPES), st.text()))
def test_any_string_in_a_spec_either_fails_or_stays_in_its_run_folder(field: str, value: str):
    try:
        spec = RunSpec(**{field: value})
    except SpecError:
        return
    store = RunStore("/nonexistent/store")
    assert store.run_dir(spec.run_id).parent == store.root  # a 12-hex-digit name, whatever value
    assert len(spec.run_id) == 12 and set(spec.run_id) <= set("0123456789abcdef")


HEX_ID = st.from_regex(r"\A[0-9a-f]{12}\Z")


@given(
    run_id=st.one_of(HEX_ID, HEX_ID.map(lambda h: h + "/.."), st.sampled_from(ESCAPES), st.text()),
    name=st.one_of(
        st.sampled_from([*ESCAPES, "result.json", "../result.json", "sub/x.pt"]), st.text()
    ),
)
def test_store_paths_never_leave_the_run_folder(run_id: str, name: str):
    store = RunStore("/nonexistent/store")
    try:
        path = store.path(run_id, name)
    except StoreError:
        return
    assert path.parent.parent == store.root and path.name == name and ".." not in path.parts
    assert os.path.normpath(path) == str(path)


def test_a_tampered_result_file_cannot_make_the_report_write_elsewhere(tmp_path: Path, capsys):
    store, out = tmp_path / "deep" / "store", tmp_path / "deep" / "report"
    evil = {"model": "../../../escaped", "dataset": "../../escaped", "preset": "/tmp/escaped"}
    for i, (method, sparsity, acc) in enumerate([("dense", 0.0, 0.9), ("snip", 0.5, 0.8)]):
        folder = store / f"{i:012x}"
        folder.mkdir(parents=True)
        spec = {**evil, "method": method, "sparsity": sparsity, "seed": 0, "ablation": "none"}
        result = {
            "run_id": f"../../../escaped{i}",
            "spec": spec,
            "status": "ok",
            "test_accuracy": acc,
            "density": 1 - sparsity,
            "layer_density": {"../../escaped.weight": 1 - sparsity},
        }
        (folder / "result.json").write_text(json.dumps(result))
    before = {p for p in tmp_path.rglob("*")}
    assert cli.main(["report", str(store), "--out", str(out)]) == 0
    written = {p for p in tmp_path.rglob("*")} - before
    assert written and all(out in p.parents or p == out for p in written), sorted(written)
    assert not list(Path("/tmp").glob("escaped*"))
