"""Cache switches: how one call (or every call of a function) uses the cache.

The values are the seed's integers, so ``cache_switch=2`` keeps working.
"""

from __future__ import annotations

import enum

__all__ = ["Switch", "as_switch"]


class Switch(enum.IntEnum):
    NOCACHE = 0  # run the function, neither read nor write the cache
    CACHE = 1  # read on a hit, compute and write on a miss (the default)
    RECACHE = 2  # compute and overwrite, whatever is cached
    READONLY = 3  # read on a hit, raise NotCachedError on a miss
    CHECKONLY = 4  # only for manual_cache: tell whether an entry exists


NOCACHE, CACHE, RECACHE, READONLY, CHECKONLY = (
    Switch.NOCACHE,
    Switch.CACHE,
    Switch.RECACHE,
    Switch.READONLY,
    Switch.CHECKONLY,
)


def as_switch(value: object, *, setting: str) -> Switch:
    """Validate a user-supplied switch, naming the setting when it is wrong."""
    try:
        return Switch(value)  # type: ignore[arg-type]
    except ValueError:
        if isinstance(value, str) and value.upper() in Switch.__members__:
            return Switch[value.upper()]
        raise ValueError(
            f"{setting}={value!r} is not a cache switch; use one of "
            "ptd.NOCACHE, ptd.CACHE, ptd.RECACHE, ptd.READONLY"
        ) from None
