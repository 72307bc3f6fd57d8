"""``nn.Sequential`` with named layers that still loads checkpoints saved with positional names.

``smallcnn`` and ``lenet_300_100`` name their layers (``conv1``, ``fc1``, ...) so that masks and
reports read like the network. Checkpoints written before they had names use positions
(``0.weight``); those still load: a positional key is renamed to the layer at that position.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any

from torch import nn

__registers__ = ()  # helper: a Sequential with named layers, used by two networks

_POSITIONAL = re.compile(r"(\d+)\.(.+)")


class NamedSequential(nn.Sequential):
    """A Sequential whose checkpoints may use positional keys (``0.weight``) or layer names."""

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        names = list(self._modules)
        for key in [k for k in state_dict if k.startswith(prefix)]:
            match = _POSITIONAL.fullmatch(key[len(prefix) :])
            if match and int(match.group(1)) < len(names):
                state_dict[f"{prefix}{names[int(match.group(1))]}.{match.group(2)}"] = (
                    state_dict.pop(key)
                )
        super()._load_from_state_dict(state_dict, prefix, *args)


def named_sequential(layers: OrderedDict[str, nn.Module]) -> nn.Sequential:
    """A Sequential of ``layers`` (same order, so the same initialization as a positional one)."""
    return NamedSequential(layers)
