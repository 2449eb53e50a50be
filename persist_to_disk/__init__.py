"""persist_to_disk: a persistent disk cache for expensive Python functions and notebook cells.

    import persist_to_disk as ptd

    @ptd.persistf(groupby=["dataset"], skip_kwargs=["device"])
    def train(dataset, lr, epochs, device="cpu"): ...

Results are stored under ``ptd.config.get_persist_path()`` in a tree laid out from
the project's folders, keyed by the function's code and its arguments. In IPython
or Jupyter, ``%load_ext persist_to_disk`` adds the ``%%persist`` cell magic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._state import config
from .errors import CacheError, CacheWarning, CatalogError, NotCachedError, UnhashableArgumentError, UntrustedCacheError
from .switches import CACHE, CHECKONLY, NOCACHE, READONLY, RECACHE, Switch

if TYPE_CHECKING:
    from .manual import get_caller_cache_path, manual_cache
    from .persister import PersistedFunction, persistf
    from .store import ENOVAL

__version__ = "0.1.0"

# The decorator's machinery (hashing, the store, locks: most of the package) is imported at the first
# use of one of these names (PEP 562), a decoration, before any call runs (docs/design.md, "One call");
# ``import persist_to_disk`` itself loads the settings, the errors and the switches.
_LAZY = {
    "persistf": "persister",
    "PersistedFunction": "persister",
    "manual_cache": "manual",
    "get_caller_cache_path": "manual",
    "ENOVAL": "store",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def clear_locks(clear: bool = False) -> list[str]:
    """Lock files that no process holds now (deleted when ``clear=True``); held locks are never removed."""
    from .locks import clear_locks as _clear_locks

    roots = {config.get_persist_path(), config.get_persist_path(local=True)}
    found: list[str] = []
    for root in sorted(roots):
        found.extend(_clear_locks(root, clear=clear))
    return found


def browse(*args: Any, **kwargs: Any) -> Any:
    """The cache browser panel (an ipywidgets widget); see ``ipython_ext.browser.browse`` for the options.

    ``ptd.browse()`` shows the current project, ``ptd.browse(notebook=True)`` this notebook,
    ``ptd.browse(func=f)`` one function, ``ptd.browse("other-3")`` another project.

    Raises ImportError naming the install command when ipywidgets is missing, and
    ``CatalogError`` listing the projects there are when ``project`` names none of them.
    """
    __tracebackhide__ = True  # IPython shows the user's line and the message, not the panel's insides
    from .errors import CatalogError

    try:
        from ipython_ext.browser import browse as _browse  # ipywidgets is imported only now
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != "ipywidgets":
            raise
        raise ImportError(
            "ptd.browse() needs ipywidgets, which is not installed here: pip install ipywidgets "
            "(in the kernel's environment: %pip install ipywidgets)"
        ) from None
    try:
        return _browse(*args, **kwargs)
    except CatalogError as exc:  # an unknown project: its message lists the projects there are
        raise exc.with_traceback(None) from None


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext persist_to_disk``: the Jupyter layer lives in the ``ipython_ext`` package."""
    import ipython_ext

    ipython_ext.load_ipython_extension(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    import ipython_ext

    ipython_ext.unload_ipython_extension(ipython)


__all__ = [
    "CACHE",
    "CHECKONLY",
    "ENOVAL",
    "NOCACHE",
    "READONLY",
    "RECACHE",
    "CacheError",
    "CacheWarning",
    "CatalogError",
    "NotCachedError",
    "PersistedFunction",
    "Switch",
    "UnhashableArgumentError",
    "UntrustedCacheError",
    "browse",
    "clear_locks",
    "config",
    "get_caller_cache_path",
    "load_ipython_extension",
    "manual_cache",
    "persistf",
    "unload_ipython_extension",
]
