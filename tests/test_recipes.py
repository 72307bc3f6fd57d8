"""Every kind of run has exactly one recipe, whose prerequisites are what the pipeline and the
executors required before recipes existed; ``pipeline.run`` stays a short narration."""

from __future__ import annotations

import ast
import inspect
import textwrap

import pytest

from earlyprune.core.errors import SpecError
from earlyprune.methods.scoring import METHODS
from earlyprune.methods.sparse_training import SPARSE_TRAINERS
from earlyprune.run import pipeline
from earlyprune.run.imp import previous_spec
from earlyprune.run.recipes import RECIPES, kind_of, recipe_for
from earlyprune.run.spec import BASELINES, DENSE, IMP, RunSpec, imp_sparsity
from earlyprune.sweeps.executors.base import prerequisites, with_prerequisites

#: Every method the CLI accepts (the list ``spec_checks`` validates against).
ALL_METHODS = [DENSE, *METHODS.names(), *BASELINES, IMP, *SPARSE_TRAINERS.names()]


def _specs() -> list[RunSpec]:
    out = []
    for method in ALL_METHODS:
        for step in (None, 0, 2):
            for level in (1, 2, 3) if method == IMP else (None,):
                fields = {"method": method, "prune_step": step, "epochs": 1.0}
                if method == IMP:
                    fields.update(levels=level, sparsity=imp_sparsity(level, 0.2))
                elif method != DENSE:
                    fields["sparsity"] = 0.5
                try:
                    out.append(RunSpec(**fields))
                except SpecError:  # e.g. a prune step the method does not take
                    continue
    return out


SPECS = _specs()


def old_pipeline_prerequisites(spec: RunSpec) -> list[RunSpec]:
    """What ``pipeline.pruned`` ran first before recipes: the dense run (``needs_dense``:
    the baselines, IMP, a prune step > 0), then for IMP the previous level."""
    if spec.method == DENSE:
        return []
    # LTR and IMP (the rewinding methods) always needed it; the others at a prune step > 0.
    needs_dense = spec.method in ("magnitude_after_training", "ltr", IMP)
    out = [spec.dense_spec()] if needs_dense or (spec.prune_step or 0) > 0 else []
    if spec.method == IMP and previous_spec(spec) not in out:
        out.append(previous_spec(spec))
    return out


def old_executor_prerequisite(spec: RunSpec) -> RunSpec | None:
    """What ``executors.base.prerequisite`` returned before recipes."""
    if spec.method == IMP:
        return previous_spec(spec)
    if spec.method in BASELINES or (spec.method != DENSE and (spec.prune_step or 0) > 0):
        return spec.dense_spec()
    return None


def test_the_table_covers_every_method_and_every_recipe() -> None:
    assert {s.method for s in SPECS} == set(ALL_METHODS)
    assert {kind_of(s) for s in SPECS} == set(RECIPES.names())
    assert len(RECIPES) == 7


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.method}-{s.prune_step}-{s.levels}")
def test_each_spec_has_one_recipe_with_the_old_prerequisites(spec: RunSpec) -> None:
    recipe = recipe_for(spec)
    assert recipe is RECIPES.get(kind_of(spec)) and recipe.name == kind_of(spec)
    assert recipe.prerequisites(spec) == old_pipeline_prerequisites(spec)
    assert prerequisites(spec) == recipe.prerequisites(spec)  # the executors ask the recipe
    old = old_executor_prerequisite(spec)
    assert (old is None) == (not prerequisites(spec))
    assert old is None or old == prerequisites(spec)[-1]  # the one the run waits on last


def test_kinds_follow_from_the_spec() -> None:
    base = RunSpec(method="snip", sparsity=0.5)
    assert kind_of(base) == "at_init" and kind_of(base.replace(prune_step=0)) == "at_init"
    assert kind_of(base.replace(prune_step=2)) == "at_step"
    assert kind_of(RunSpec()) == "dense"
    assert recipe_for(RunSpec()).prunes is False
    assert [r.moves_mask for r in map(RECIPES.get, RECIPES.names())].count(True) == 1


def test_imp_levels_chain_down_to_the_dense_run() -> None:
    level3 = RunSpec(method=IMP, levels=3, sparsity=imp_sparsity(3, 0.2))
    found = with_prerequisites([level3])
    assert [s.levels for s in found] == [None, 3, 2, 1]
    assert found[0] == level3.dense_spec()


def test_pipeline_run_reads_as_a_short_narration() -> None:
    tree = ast.parse(textwrap.dedent(inspect.getsource(pipeline.run)))
    func = tree.body[0]
    assert isinstance(func, ast.FunctionDef)
    body = func.body[1:]  # after the docstring
    statements = [n for stmt in body for n in ast.walk(stmt) if isinstance(n, ast.stmt)]
    assert len(statements) <= 16, len(statements)
    assert func.end_lineno - func.lineno + 1 < 60
