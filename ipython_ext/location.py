"""Where code typed into IPython or a notebook caches: the running notebook's place in its project.

The core asks ``config.notebook_locator`` (see ``persist_to_disk.layout.CellLocator``)
whenever a function's source file is not a real file. This module answers for the
files IPython compiles cells into:

* ipykernel (Jupyter, VS Code, nbclient): ``<tmp>/ipykernel_<pid>/<hash>.py``
  (``ipykernel.compiler.get_file_name``);
* plain IPython: ``<ipython-input-<n>-<hash>>``.

Such code lives in the running notebook, so it caches under the notebook's path in
its project: ``proj/notebooks/exp.ipynb`` gives ``(proj, ("notebooks", "exp"))``.

When no notebook is known (terminal IPython, or a headless run the kernel could not
place: nbclient without ``PTD_NOTEBOOK``), the working folder stands in: the project root
above the cwd (or the cwd itself), and as the parts the cwd's folders inside that root
plus ``"_ipython"`` -- ``proj/notebooks`` as cwd gives
``(proj, ("notebooks", "_ipython"))``. The leading underscore, as in the core's
``_interactive`` and ``_external``, marks a folder that names no file. A notebook whose
path is known only to you: ``ptd.config.set_notebook_path("notebooks/exp.ipynb")``.

The notebook is looked up once per kernel (see ``ipython_ext.notebook.locate_notebook``
for the order of the sources and the short timeout), and again when the explicit setting
changes. The cwd fallback is recomputed on every call, so ``%cd`` is followed.

A notebook renamed or moved while its kernel runs (JupyterLab's File > Rename) is followed:
when the notebook came from a Jupyter session, the server is asked again at the start of a
cell (at most once a second, half a second at most, and only every 30 s after a question
went unanswered) and when the kernel exits; after a restart the server's path wins over the
name the session started with. When the old file is gone, the cache moves to the new name
(:mod:`ipython_ext.moves`), so what was computed before the rename is found after it.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from .moves import move_notebook_cache
from .notebook import (
    NotebookLocation,
    find_project_root,
    locate_notebook,
    located,
    running_server_sessions_notebook,
    session_start_notebook,
)

__all__ = ["INTERACTIVE_PART", "NotebookLocator", "install", "is_cell_file"]

log = logging.getLogger("persist_to_disk")

#: The folder part that stands in for a notebook when none is known.
INTERACTIVE_PART = "_ipython"

#: Seconds the lookup may spend asking running Jupyter servers (only when some are running).
SERVER_TIMEOUT = 1.0

#: Following a rename: at most one question to the server per FOLLOW_INTERVAL seconds (at a cell's
#: start), each of at most FOLLOW_TIMEOUT seconds; FOLLOW_BACKOFF seconds of quiet after no answer.
FOLLOW_INTERVAL = 1.0
FOLLOW_TIMEOUT = 0.5
FOLLOW_BACKOFF = 30.0

#: Sources whose notebook belongs to a Jupyter session, which the server can rename.
_SESSION_SOURCES = frozenset({"jupyter-server", "JPY_SESSION_NAME", "__session__"})

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
        self._next_question = 0.0  # time.monotonic() before which follow() does not ask the server

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
                before = self._found if self._found is not None and self._found.how in _SESSION_SOURCES else None
                found = locate_notebook(explicit=settings.notebook_path, timeout=self.timeout)
                log.debug("notebook location: %s", found)
                if found.how == "jupyter-server":  # renamed before this kernel (re)started?
                    started = session_start_notebook()
                    self._follow(before or (located(started, "JPY_SESSION_NAME") if started else None), found)
                self._found, self._explicit = found, settings.notebook_path
            self._generation = settings.generation
        assert found is not None
        if found.notebook is None:  # the working folder stands in, as it is now
            root, how = find_project_root(_cwd())
            if how == "notebook-folder":
                root, how = _cwd(), "cwd"
            return NotebookLocation(None, "cwd", root, how)
        return found

    def follow(self, *, at_exit: bool = False) -> None:
        """Ask the Jupyter server whether this session's notebook was renamed; if so, take the cache along.

        Called at the start of each cell (an IPython ``pre_run_cell`` event), at most once
        per ``FOLLOW_INTERVAL``, and when the kernel exits (a restart after a rename, before
        any cell ran); a notebook not from a Jupyter session is never asked about.
        """
        found = self._found
        if found is None or found.how not in _SESSION_SOURCES:
            return
        if not at_exit and time.monotonic() < self._next_question:
            return
        with self._lock:
            # at exit nothing waits on us but the restart (which allows the kernel seconds): the longer limit
            timeout = self.timeout if at_exit else FOLLOW_TIMEOUT
            path = running_server_sessions_notebook(timeout, in_thread=not at_exit)
            quiet = FOLLOW_INTERVAL if path is not None else FOLLOW_BACKOFF
            self._next_question = time.monotonic() + quiet
            if path is None or self._found is not found or path == found.notebook:
                return
            moved = located(path, "jupyter-server")
            self._follow(found, moved)
            self._found = moved
        from persist_to_disk import config

        config.reload()  # a new generation of settings: persisted functions find their folders again

    def _follow_at_cell_start(self, info: Any = None) -> None:
        """IPython's ``pre_run_cell`` event; never fails the cell."""
        try:
            self.follow()
        except Exception as exc:  # pragma: no cover - defensive: a cell must run whatever happens here
            log.debug("following the notebook failed: %r", exc)

    def _follow(self, before: NotebookLocation | None, after: NotebookLocation) -> None:
        """Move the cache of a renamed or moved notebook; a copy (the old file still there) keeps its own."""
        if before is None or before.notebook is None or before.notebook == after.notebook:
            return
        if os.path.exists(before.notebook):
            return
        log.debug("notebook renamed: %s -> %s", before.notebook, after.notebook)
        move_notebook_cache(self._place_of(before), self._place_of(after))

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
        return self._place_of(self.location())

    @staticmethod
    def _place_of(loc: NotebookLocation) -> tuple[Path, tuple[str, ...]]:
        from persist_to_disk import config

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
_exit_registered = False


def install(shell: Any = None) -> Any:
    """Make this process's ``ptd.config`` map cell files to the running notebook (idempotent).

    With an IPython ``shell``, our locator also follows renames at the start of each cell.
    """
    from persist_to_disk import config

    with _install_lock:
        locator = config.notebook_locator
        if locator is None:  # keep one installed before (ours, or a user's own)
            locator = NotebookLocator()
            config.notebook_locator = locator
        if shell is not None and isinstance(locator, NotebookLocator):
            _watch(shell, locator)
        return locator


def _follow_at_exit() -> None:
    from persist_to_disk import config

    locator = config.notebook_locator
    if isinstance(locator, NotebookLocator):
        try:
            locator.follow(at_exit=True)
        except Exception as exc:  # pragma: no cover - defensive: exiting must not fail
            log.debug("following the notebook at exit failed: %r", exc)


def _watch(shell: Any, locator: NotebookLocator) -> None:
    global _exit_registered
    if not _exit_registered:
        atexit.register(_follow_at_exit)
        _exit_registered = True
    callbacks = shell.events.callbacks["pre_run_cell"]
    for callback in list(callbacks):
        if getattr(callback, "__func__", None) is NotebookLocator._follow_at_cell_start:
            if callback.__self__ is locator:
                return
            shell.events.unregister("pre_run_cell", callback)  # a locator replaced since (config.reset in tests)
    shell.events.register("pre_run_cell", locator._follow_at_cell_start)


def uninstall(shell: Any) -> None:
    """Stop following renames in ``shell`` (``%unload_ext``); the locator stays installed."""
    callbacks = shell.events.callbacks["pre_run_cell"]
    for callback in list(callbacks):
        if getattr(callback, "__func__", None) is NotebookLocator._follow_at_cell_start:
            shell.events.unregister("pre_run_cell", callback)
