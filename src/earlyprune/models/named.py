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

_POSITIONAL = re.compile(r"(\d+)\.(.+)")


def named_sequential(layers: OrderedDict[str, nn.Module]) -> nn.Sequential:
    """A Sequential of ``layers`` (same order, so the same initialization as a positional one)."""
    model = nn.Sequential(layers)
    names = list(layers)

    def rename(state: dict[str, Any], prefix: str, *_: Any) -> None:
        for key in [k for k in state if k.startswith(prefix)]:
            match = _POSITIONAL.fullmatch(key[len(prefix) :])
            if match and int(match.group(1)) < len(names):
                state[f"{prefix}{names[int(match.group(1))]}.{match.group(2)}"] = state.pop(key)

    model._register_load_state_dict_pre_hook(rename)
    return model
