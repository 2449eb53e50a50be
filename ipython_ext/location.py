"""Where code typed into IPython or a notebook caches: the running notebook's place in its project.

The core asks ``config.notebook_locator`` (see ``persist_to_disk.layout.CellLocator``)
whenever a function's source file is not a real file. This module answers for the
files IPython compiles cells into:

* ipykernel (Jupyter, VS Code, nbclient): ``<tmp>/ipykernel_<pid>/<hash>.py``
  (``ipykernel.compiler.get_file_name``);
* plain IPython: ``<ipython-input-<n>-<hash>>``.

Such code lives in the running notebook, so it caches under the notebook's path in
its project: ``proj/notebooks/exp.ipynb`` gives ``(proj, ("notebooks", "exp"))``.

When no notebook is known (terminal IPython, or a notebook executed headless by
nbclient or papermill, which do not tell the kernel its document), the working folder
stands in: the project root above the cwd (or the cwd itself), and as the parts the cwd's
folders inside that root plus ``"_ipython"`` -- ``proj/notebooks`` as cwd gives
``(proj, ("notebooks", "_ipython"))``. The leading underscore, as in the core's
``_interactive`` and ``_external``, marks a folder that names no file. A notebook whose
path is known only to you: ``ptd.config.set_notebook_path("notebooks/exp.ipynb")``.

The notebook is looked up once per kernel (see ``ipython_ext.notebook.locate_notebook``
for the order of the sources and the short timeout), and again when the explicit setting
changes. The cwd fallback is recomputed on every call, so ``%cd`` is followed.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

from .notebook import NotebookLocation, find_project_root, locate_notebook

__all__ = ["INTERACTIVE_PART", "NotebookLocator", "install", "is_cell_file"]

log = logging.getLogger("persist_to_disk")

#: The folder part that stands in for a notebook when none is known.
INTERACTIVE_PART = "_ipython"

#: Seconds the lookup may spend asking running Jupyter servers (only when some are running).
SERVER_TIMEOUT = 1.0

_CELL_FILE = re.compile(
    r"^<ipython-input-\d+-[0-9a-f]+>$"  # plain IPython
    r"|(^|[\\/])ipykernel_\d+[\\/][^\\/]+\.py$"  # ipykernel (any kernel's pid: restored functions keep theirs)
)


def is_cell_file(filename: str | None) -> bool:
    """Whether ``filename`` is a file IPython or ipykernel compiled a cell into."""
    if not filename:
        return False
    if _CELL_FILE.search(filename):
        return True
    custom = os.environ.get("IPYKERNEL_CELL_NAME")  # ipykernel's override of the cell file name
    return bool(custom) and filename == custom


def _cwd() -> Path:
    try:
        return Path(os.getcwd())
    except OSError:
        return Path(os.path.abspath(os.sep))


class NotebookLocator:
    """``config.notebook_locator`` in an IPython process: maps cell files to the running notebook."""

    def __init__(self, *, timeout: float = SERVER_TIMEOUT) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._found: NotebookLocation | None = None
        self._explicit: Path | None = None
        self._generation = -1

    # -- the notebook ------------------------------------------------------------------------------
    def location(self) -> NotebookLocation:
        """The running notebook and its project root (the cwd's when no notebook is known)."""
        from persist_to_disk import config

        settings = config.settings()
        with self._lock:
            found = self._found
            stale = (
                found is None
                or settings.notebook_path != self._explicit
                # nothing was found: a setting changed (config.reset, set_notebook_path(None)): look again
                or (found.notebook is None and settings.generation != self._generation)
            )
            if stale:
                found = locate_notebook(explicit=settings.notebook_path, timeout=self.timeout)
                log.debug("notebook location: %s", found)
                self._found, self._explicit = found, settings.notebook_path
            self._generation = settings.generation
        assert found is not None
        if found.notebook is None:  # the working folder stands in, as it is now
            root, how = find_project_root(_cwd())
            if how == "notebook-folder":
                root, how = _cwd(), "cwd"
            return NotebookLocation(None, "cwd", root, how)
        return found

    # -- the CellLocator protocol ----------------------------------------------------------------------
    def locate(self, filename: str) -> tuple[Path, tuple[str, ...]] | None:
        """(project root, path parts of the notebook inside it) for a cell's code file, else None."""
        if not is_cell_file(filename):
            return None
        return self.place()

    def place(self) -> tuple[Path, tuple[str, ...]]:
        """(project root, parts) under which this kernel's cells and functions cache.

        An explicit ``ptd.config.set_project_path`` roots the parts there, as for modules.
        """
        from persist_to_disk import config

        loc = self.location()
        explicit_root = config.settings().project_path
        root = explicit_root if explicit_root is not None else loc.project_root
        if loc.notebook is not None:
            return root, _parts_in(loc.notebook.with_suffix(""), root, loc.project_root)
        return root, (*_parts_in(_cwd(), root, loc.project_root), INTERACTIVE_PART)

    def project_root(self) -> tuple[Path, str] | None:
        loc = self.location()
        how = loc.project_how if loc.notebook is None else f"{loc.project_how} above the notebook"
        return loc.project_root, how

    def describe(self) -> dict[str, Any]:
        loc = self.location()
        _root, parts = self.place()
        return {
            "notebook_path": str(loc.notebook) if loc.notebook is not None else None,
            "notebook_how": loc.how,
            "notebook_project_root": str(loc.project_root),
            "notebook_project_how": loc.project_how,
            "notebook_cache_folder": "/".join(parts),
        }

    def __repr__(self) -> str:
        return f"<NotebookLocator {self._found}>"


def _parts_in(path: Path, root: Path, found_root: Path) -> tuple[str, ...]:
    for base in (root, found_root):
        try:
            return Path(os.path.normpath(path)).relative_to(os.path.normpath(base)).parts
        except ValueError:
            continue
    return ("_external", path.name)


_install_lock = threading.Lock()


def install() -> Any:
    """Make this process's ``ptd.config`` map cell files to the running notebook (idempotent)."""
    from persist_to_disk import config

    with _install_lock:
        locator = config.notebook_locator
        if locator is None:  # keep one installed before (ours, or a user's own)
            locator = NotebookLocator()
            config.notebook_locator = locator
        return locator
