"""The Jupyter layer of persist_to_disk: ``%load_ext persist_to_disk``.

* :mod:`ipython_ext.notebook`: which notebook a kernel runs, and its project root
  (:mod:`~ipython_ext.headless` for a kernel a headless runner started);
* :mod:`ipython_ext.location`: maps code typed into cells to that notebook for the core's cache tree,
  following renames (:mod:`~ipython_ext.moves` takes the cache along);
* :mod:`ipython_ext.cells`: what a cell reads and assigns (static analysis);
* :mod:`ipython_ext.magics`: the ``%%persist`` cell magic (with :mod:`~ipython_ext.namespace`
  and :mod:`~ipython_ext.outputs`);
* :mod:`ipython_ext.browser`: the cache browser panel and ``%persist_browse`` (its state, HTML,
  widgets and background work in ``browser_state``, ``browser_html``, ``browser_widget``, ``browser_tasks``).

Importing this package imports no IPython; loading the extension does.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["load_ipython_extension", "unload_ipython_extension"]

log = logging.getLogger("persist_to_disk")

_BROWSE_MAGIC = "persist_browse"


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%%persist`` and ``%persist_browse``; loading again is harmless."""
    from . import location
    from .magics import PersistMagics

    location.install(ipython)
    ipython.register_magics(PersistMagics)
    try:
        from . import browser
    except ImportError as exc:  # ipywidgets missing or broken: %%persist still works
        log.warning("persist_to_disk: %%%s is unavailable: %s", _BROWSE_MAGIC, exc)
    else:
        browser.register(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove the magics this extension registered (``%unload_ext`` and ``%reload_ext``)."""
    from . import location
    from .magics import PersistMagics

    location.uninstall(ipython)
    manager = ipython.magics_manager
    for kind, names in PersistMagics.magics.items():
        for name in names:
            manager.magics[kind].pop(name, None)
    manager.registry.pop(PersistMagics.__name__, None)
    manager.magics["line"].pop(_BROWSE_MAGIC, None)
