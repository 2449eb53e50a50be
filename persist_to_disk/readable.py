"""Short readable forms of argument values, stored in entry headers for people to read.

Never used for keys: only for the browser, the CLI and ``f.cache.entries()``.
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from typing import Any

MAX_REPR = 200

_repr = reprlib.Repr()
_repr.maxstring = 120
_repr.maxother = 120
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 8
_repr.maxlevel = 3


def short_repr(value: Any) -> str:
    """A bounded, exception-free repr; arrays and frames show their shape instead of values."""
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if shape is not None and dtype is not None and not isinstance(value, type):
        return f"{type(value).__name__}(dtype={dtype}, shape={tuple(shape)})"
    if shape is not None and hasattr(value, "columns"):  # a DataFrame
        return f"{type(value).__name__}(shape={tuple(shape)}, columns={_repr.repr(list(value.columns))})"
    try:
        text = _repr.repr(value)
    except Exception as exc:
        text = f"<{type(value).__name__}: repr failed ({type(exc).__name__})>"
    return text if len(text) <= MAX_REPR else text[: MAX_REPR - 3] + "..."


def readable_arguments(named: Mapping[str, Any]) -> dict[str, str]:
    return {name: short_repr(value) for name, value in named.items()}
