"""Which notebook a headless run executes, from the process that started the kernel.

A headless run starts its kernel as a child process: papermill (``papermill in.ipynb
out.ipynb``) and ``jupyter nbconvert --execute nb.ipynb`` name the notebook on their
command line, and nbclient/papermill pass the kernel nothing else about it (papermill
keeps its input path to itself: only the output notebook's ``metadata.papermill.input_path``
records it). The notebook named there whose code cells hold the code this kernel has
run is the one it executes; an output notebook of papermill counts as its input.

Linux only (it reads ``/proc``); elsewhere, and whenever no single notebook matches, it
answers None and ``PTD_NOTEBOOK`` (see :mod:`ipython_ext.notebook`) is the way to say it.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, List, Mapping, Optional, Tuple

__all__ = ["launcher_notebook"]

log = logging.getLogger("persist_to_disk")


def _resolve(name: str, cwd: Path) -> Path:
    path = Path(cwd, os.path.expanduser(name))
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))


def _launcher_command() -> Optional[Tuple[List[str], List[Path]]]:
    """The parent process's command line, and the folders its relative paths may be relative to.

    Its working folder now, and the one it started in (``$PWD``): ``papermill --cwd`` moves
    into another folder while it runs. None without Linux's ``/proc``.
    """
    proc = Path("/proc") / str(os.getppid())
    try:
        argv = (proc / "cmdline").read_bytes().split(b"\0")
        folders = [Path(os.readlink(proc / "cwd"))]
    except OSError:
        return None
    try:
        environ = (proc / "environ").read_bytes().split(b"\0")
        folders += [Path(os.fsdecode(v[4:])) for v in environ if v.startswith(b"PWD=/")]
    except OSError:  # another user's process: its environment is private
        pass
    return [os.fsdecode(a) for a in argv if a], folders


def _named(name: str, folders: List[Path]) -> Optional[Path]:
    """The existing file ``name`` names, relative to the first of ``folders`` holding it."""
    for folder in folders:
        path = _resolve(name, folder)
        if path.is_file():
            return path
    return None


def _executed_cells(ns: Mapping[str, object]) -> List[str]:
    """The cells this kernel has run so far, as typed (magics untranslated), stripped, without empties."""
    history: Any = None
    if "IPython" in sys.modules:
        from IPython import get_ipython

        history = getattr(getattr(get_ipython(), "history_manager", None), "input_hist_raw", None)
    if not isinstance(history, list):
        history = ns.get("In")
    if not isinstance(history, list):
        return []
    return [cell.strip() for cell in history if isinstance(cell, str) and cell.strip()]


def _code_cells(path: Path) -> Optional[Tuple[set, Optional[str]]]:
    """(the code cells' sources, papermill's input path) of a notebook file, or None if unreadable."""
    try:
        import nbformat

        document = nbformat.read(str(path), as_version=4)
    except Exception as exc:  # not a notebook, unreadable, nbformat missing
        log.debug("cannot read notebook %s: %r", path, exc)
        return None
    sources = {cell.source.strip() for cell in document.cells if cell.cell_type == "code"}
    papermill = document.metadata.get("papermill")
    input_path = papermill.get("input_path") if isinstance(papermill, dict) else None
    return sources, input_path if isinstance(input_path, str) else None


def _is_output_of_another(path: Path, input_path: Optional[str], candidates: Mapping[Path, Any],
                           folders: List[Path]) -> bool:
    """Whether ``path`` is papermill's output notebook of another notebook on the same command line."""
    source = _named(input_path, folders) if input_path else None
    return source is not None and source != path and source in candidates


def launcher_notebook(ns: Mapping[str, object]) -> Optional[Path]:
    """The notebook the process that started this kernel executes, when its command line names it."""
    executed = _executed_cells(ns)
    command = _launcher_command() if executed else None
    if command is None:
        return None
    argv, folders = command
    named = [_named(a, folders) for a in argv[1:] if a.endswith(".ipynb") and "://" not in a]
    read = {path: _code_cells(path) for path in dict.fromkeys(named) if path is not None}
    scores = {
        path: sum(cell in found[0] for cell in executed)
        for path, found in read.items()
        if found is not None and not _is_output_of_another(path, found[1], read, folders)
    }
    best = max(scores.values(), default=0)
    winners = [path for path, score in scores.items() if score == best]
    if best == 0 or len(winners) != 1:
        log.debug("no single notebook of the launcher %r holds this kernel's cells: %r", argv, scores)
        return None
    return winners[0]
