"""Display names, orderings and colours for methods, ablations, models and datasets.

Nothing here restricts which names may appear: a method registered by a user (say, one tried with
``earlyprune check-method``) is shown under its own name, after the known ones, in a colour of its
own. The known names only decide order and looks, so the figures read like the paper's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Order of rows and legend entries: the references first, then the methods at initialization in
# the order the paper introduces them.
METHOD_ORDER = (
    "dense",
    "magnitude_after_training",
    "ltr",
    "random",
    "magnitude",
    "snip",
    "grasp",
    "grasp_magnitude",
    "synflow",
    # Random-sparse allocations (reference lines, see REFERENCE_METHODS).
    "erk",
    "er",
    "uniform",
    "uniform_plus",
    "smart_ratio",
    # Newer methods at initialization, then iterative and sparse-training methods.
    "iter_snip",
    "force",
    "synflow_l2",
    "prospr",
    "ntk_sap",
    "phew",
    "lamp",
    "imp",
    "gmp",
    "set",
    "rigl",
)
#: Methods that place weights at random by some layer-wise allocation: baselines a method must
#: beat, drawn as dashed reference lines (no markers) in the accuracy figures.
REFERENCE_METHODS = ("random", "erk", "er", "uniform", "uniform_plus", "smart_ratio")
ABLATION_ORDER = ("none", "shuffle", "reinit", "invert", "init_normal")

METHOD_LABELS = {
    "dense": "Dense",
    "magnitude_after_training": "Magnitude After Training",
    "ltr": "LTR",
    "random": "Random",
    "magnitude": "Magnitude",
    "snip": "SNIP",
    "grasp": "GraSP",
    "grasp_magnitude": "GraSP Magnitude",
    "synflow": "SynFlow",
    "erk": "ERK",
    "er": "ER",
    "uniform": "Uniform",
    "uniform_plus": "Uniform+",
    "smart_ratio": "Smart Ratio",
    "iter_snip": "Iterative SNIP",
    "force": "FORCE",
    "synflow_l2": "SynFlow-L2",
    "prospr": "ProsPr",
    "ntk_sap": "NTK-SAP",
    "phew": "PHEW",
    "lamp": "LAMP",
    "imp": "IMP",
    "gmp": "GMP",
    "set": "SET",
    "rigl": "RigL",
}
ABLATION_LABELS = {
    "none": "Unmodified",
    "shuffle": "Shuffled Layerwise",
    "reinit": "Reinitialized",
    "invert": "Inverted",
    "init_normal": "Init N(0, 1)",
}
MODEL_LABELS = {
    "resnet20": "ResNet-20",
    "resnet18": "ResNet-18",
    "resnet50": "ResNet-50",
    "vgg11": "VGG-11",
    "vgg16": "VGG-16",
    "vgg19": "VGG-19",
    "lenet300": "LeNet-300-100",
    "lenet_300_100": "LeNet-300-100",
}
DATASET_LABELS = {
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "tinyimagenet": "TinyImageNet",
    "imagenet": "ImageNet",
    "mnist": "MNIST",
    "fashion_mnist": "Fashion-MNIST",
    "fashion-mnist": "Fashion-MNIST",
}

# The paper's colours (Figure 4): after training blue, random orange, magnitude green, SNIP red,
# GraSP purple, SynFlow brown, the unpruned network grey.
METHOD_COLORS = {
    "dense": "tab:gray",
    "magnitude_after_training": "tab:blue",
    "ltr": "tab:cyan",
    "random": "tab:orange",
    "magnitude": "tab:green",
    "snip": "tab:red",
    "grasp": "tab:purple",
    "grasp_magnitude": "tab:pink",
    "synflow": "tab:brown",
}
ABLATION_COLORS = {
    "none": "tab:blue",
    "shuffle": "tab:orange",
    "reinit": "tab:green",
    "invert": "tab:red",
    "init_normal": "tab:purple",
}
_SPARE_COLORS = (
    "tab:olive",
    "black",
    "gold",
    "navy",
    "teal",
    "crimson",
    "darkkhaki",
    "indigo",
    "lime",
    "sienna",
    "slategray",
    "orchid",
)


def ordered(values: Iterable[str], known: tuple[str, ...]) -> list[str]:
    """Returns the distinct ``values``: known names in their fixed order, then the rest sorted."""
    distinct = set(values)
    return [v for v in known if v in distinct] + sorted(distinct.difference(known), key=str)


def rank(value: object, known: tuple[str, ...]) -> tuple[int, str]:
    """Sort key that puts known names first in their fixed order and the rest alphabetically."""
    return (known.index(value), "") if value in known else (len(known), str(value))


def method_label(name: str) -> str:
    """``SNIP`` for ``snip``; an unknown name as it is."""
    return METHOD_LABELS.get(name, name)


def ablation_label(name: str) -> str:
    """``Shuffled Layerwise`` for ``shuffle``; an unknown name as it is."""
    return ABLATION_LABELS.get(name, name)


def setting_label(model: str, dataset: str) -> str:
    """``ResNet-20 (CIFAR-10)``, as the paper titles its tables."""
    return f"{MODEL_LABELS.get(model, model)} ({DATASET_LABELS.get(dataset, dataset)})"


def color_for(name: str, known: dict[str, str], others: list[str]) -> str:
    """The fixed colour of a known name, or a spare colour by position among ``others``."""
    if name in known:
        return known[name]
    spare = [n for n in others if n not in known]
    index = spare.index(name) if name in spare else len(spare)
    return _SPARE_COLORS[index % len(_SPARE_COLORS)]


def file_slug(*parts: str) -> str:
    """A file-name-safe ``part1_part2`` (anything outside ``[A-Za-z0-9._-]`` becomes ``-``)."""
    return "_".join(re.sub(r"[^A-Za-z0-9._-]+", "-", str(p)).strip("-.") or "x" for p in parts)
