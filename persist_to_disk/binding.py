"""Binding a call's arguments to the function's parameters, fast for plain signatures (every call does it)."""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["bind_simple", "from_var_keyword", "simple_parameters"]


def simple_parameters(signature: inspect.Signature) -> tuple[tuple[str, Any], ...] | None:
    """((name, default), ...) when every parameter is positional-or-keyword (the common case), else None."""
    params = tuple(signature.parameters.values())
    if any(p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params):
        return None
    return tuple((p.name, p.default) for p in params)


def bind_simple(simple: tuple[tuple[str, Any], ...], args: tuple, kwargs: dict) -> dict[str, Any] | None:
    """What ``signature.bind(*args, **kwargs)`` + ``apply_defaults()`` gives for a plain signature, in
    the same order, ~4x faster; None for any call it would reject (the slow path then raises its TypeError)."""
    n = len(args)
    if n > len(simple):
        return None
    named: dict[str, Any] = {}
    used = 0
    for i, (name, default) in enumerate(simple):
        if name in kwargs:
            if i < n:
                return None  # given twice
            named[name] = kwargs[name]
            used += 1
        elif i < n:
            named[name] = args[i]
        elif default is not inspect.Parameter.empty:
            named[name] = default
        else:
            return None  # missing
    return named if used == len(kwargs) else None  # else an unexpected keyword


def from_var_keyword(signature: inspect.Signature, named: dict, name: str) -> Any:
    for pname, param in signature.parameters.items():
        if param.kind is inspect.Parameter.VAR_KEYWORD and name in named.get(pname, {}):
            return named[pname][name]
    raise ValueError(f"groupby names {name!r}, which this call did not pass")
