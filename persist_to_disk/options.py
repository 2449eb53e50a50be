"""A persisted function's settings (``persistf``'s options), checked once at decoration time."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import identity
from .config import Granularity, validate_granularity, validate_hashsize
from .switches import Switch

__all__ = ["Options", "check_options", "setting_names"]


@dataclass(frozen=True)
class Options:
    """A persisted function's settings, checked once at decoration time."""

    hashsize: int | None = None
    skip_kwargs: tuple[str, ...] = ()
    expand_dict_kwargs: tuple[str, ...] | str = ()
    groupby: tuple[str | tuple[str, ...], ...] = ()
    switch_kwarg: str = "cache_switch"
    cache: Switch | None = None
    lock_granularity: Granularity | None = None
    hash_method: str = "pickle"
    local: bool = False
    alt_dirs: tuple[str, ...] = ()
    version: str | None = None
    ignore_globals: tuple[str, ...] = ()  # globals, helpers and closure variables left out of the key on purpose
    track_dependencies: bool | None = None  # None: the setting of the same name
    mmap: bool = True  # large results mapped copy-on-write at load (False: copied into fresh memory)


def setting_names(value: Any, setting: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    try:
        names = tuple(value)
    except TypeError:
        raise ValueError(f"{setting}={value!r} must be a list of argument names") from None
    return names


def check_options(func: Callable, opts: Options) -> None:
    """Fail at decoration time on settings that can never work, naming the setting."""
    if opts.hashsize is not None:
        validate_hashsize(opts.hashsize)
    if opts.lock_granularity is not None:
        validate_granularity(opts.lock_granularity)
    if not isinstance(opts.mmap, bool):
        raise ValueError(f"mmap={opts.mmap!r} must be True (map large results) or False (copy them at load)")
    if opts.hash_method not in ("pickle", "json"):
        raise ValueError(f"hash_method={opts.hash_method!r} must be 'pickle' or 'json'")
    params = inspect.signature(func).parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    group_names = [n for g in opts.groupby for n in ((g,) if isinstance(g, str) else g)]
    expand = () if opts.expand_dict_kwargs == "all" else opts.expand_dict_kwargs
    for setting, names in (("groupby", group_names), ("skip_kwargs", opts.skip_kwargs), ("expand_dict_kwargs", expand)):
        for name in names:
            if not isinstance(name, str):
                raise ValueError(f"{setting} entries must be argument names (str), got {name!r}")
            if name not in params and not takes_kwargs:
                raise ValueError(
                    f"{setting} names {name!r}, which is not a parameter of {identity.function_name(func)}"
                    f"{inspect.signature(func)}"
                )
    overlap = set(group_names) & set(opts.skip_kwargs)
    if overlap:
        raise ValueError(f"{sorted(overlap)} cannot be both in groupby and in skip_kwargs")
    if opts.switch_kwarg in params:
        raise ValueError(
            f"switch_kwarg={opts.switch_kwarg!r} is also a parameter of {identity.function_name(func)}; "
            "pick another switch_kwarg"
        )
