"""numpy and torch scalars as the plain Python numbers they hold (``np.int64(3)`` → ``3``).

Run specs and the API take them anywhere a number is expected, so that a value computed with
numpy (``np.linspace``) or torch names the same run as the literal it equals.
"""

from __future__ import annotations

import numbers
from typing import Any


def plain_number(value: Any) -> Any:
    """A numpy or 0-d torch scalar as the Python number it holds; anything else unchanged."""
    if isinstance(value, bool) or value is None or type(value) in (int, float):
        return value
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):  # torch / numpy 0-d
        narrow = "float16" in str(value.dtype) or "float32" in str(value.dtype)
        value = value.item()
        if narrow:  # np.float32(0.9) is 0.899999976...: take the decimal it was written as
            import numpy as np

            return float(np.format_float_positional(np.float32(value), unique=True))
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return value
