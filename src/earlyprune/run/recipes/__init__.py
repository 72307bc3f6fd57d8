"""The kinds of run, one registered recipe each, and :func:`recipe_for`, which picks one.

A spec's ``method`` names four kinds of thing — the dense run, a scorer (pruned at
initialization or at step t), a baseline (magnitude after training, LTR, IMP) and a
sparse-training algorithm — and :func:`kind_of` is the one place that tells them apart.
"""

from __future__ import annotations

from earlyprune.core.registry import Registry
from earlyprune.methods import sparse_training
from earlyprune.run.recipes.after_training import AfterTraining
from earlyprune.run.recipes.at_init import AtInit
from earlyprune.run.recipes.at_step import AtStep
from earlyprune.run.recipes.base import Recipe
from earlyprune.run.recipes.dense import Dense
from earlyprune.run.recipes.imp import IterativeMagnitude
from earlyprune.run.recipes.ltr import LotteryTicket
from earlyprune.run.recipes.sparse import SparseTraining
from earlyprune.run.spec import DENSE, IMP, RunSpec

#: Every kind of run, by name.
RECIPES: Registry[Recipe] = Registry("recipe")
for _recipe in (
    Dense(),
    AtInit(),
    AtStep(),
    AfterTraining(),
    LotteryTicket(),
    IterativeMagnitude(),
    SparseTraining(),
):
    RECIPES.add(_recipe.name, _recipe)


def kind_of(spec: RunSpec) -> str:
    """The name of the recipe that runs ``spec``, from its method and prune step."""
    if spec.method == DENSE:
        return "dense"
    if spec.method == IMP:
        return "imp"
    if spec.method == "ltr":
        return "ltr"
    if spec.method == "magnitude_after_training":
        return "after_training"
    if sparse_training.is_sparse_training(spec.method):
        return "sparse_training"
    return "at_step" if (spec.prune_step or 0) > 0 else "at_init"


def recipe_for(spec: RunSpec) -> Recipe:
    """The registered recipe that runs ``spec``."""
    return RECIPES.get(kind_of(spec))


__all__ = ["RECIPES", "Recipe", "kind_of", "recipe_for"]
