"""The cache browser: ``ptd.browse()`` and ``%persist_browse``, an ipywidgets panel to see and
invalidate cached entries.

The panel is three modules: :mod:`~ipython_ext.browser_state` (what it shows, as a plain
value with pure updates), :mod:`~ipython_ext.browser_html` (text and HTML drawn from that
state) and :mod:`~ipython_ext.browser_widget` (:class:`CacheBrowser`, the widgets and their
callbacks). This module opens it on the right place: a project, the running notebook, or
one persisted function.

Everything it lists and deletes goes through :mod:`persist_to_disk.catalog`, the same
code as the ``ptd`` command line, and it names things as the CLI does
(:mod:`persist_to_disk.readable`). The tree reads folders only when a node is opened;
a node's entries are scanned (headers only, values never loaded) in a background
thread with a progress bar, so a 50,000-entry cache does not block the kernel; the
table shows one page at a time.

Which entries are of the *current* code version: for a function given as
``browse(func=f)``, and for every persisted function in the notebook's namespace,
the version of the code that runs now; for others, the version of the function
folder's most recently used entry (see :mod:`persist_to_disk.catalog`). An entry
of another key format is of an older version whatever its code: no call hits it again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from persist_to_disk.catalog import Catalog, CatalogError, Function, Node, Project
from persist_to_disk.readable import function_label

from .browser_state import PAGE_SIZE
from .browser_widget import CacheBrowser

logger = logging.getLogger("persist_to_disk")

__all__ = ["CacheBrowser", "browse", "register"]


# ------------------------------------------------------------------------------------------ browse()
def browse(
    project: str | os.PathLike | None = None,
    *,
    notebook: bool | str | os.PathLike = False,
    func: Any = None,
    root: str | os.PathLike | None = None,
    local: bool = False,
    page_size: int = PAGE_SIZE,
    background: bool = True,
) -> CacheBrowser:
    """The cache browser panel (an ipywidgets widget: display it, or leave it last in a cell).

    ``project``: another project than the current one (a folder name like ``proj-3``, a unique
    name, or its folder on disk). ``notebook=True``: only the running notebook's functions and
    cells (or ``notebook="path/to/nb.ipynb"``). ``func=f``: only one persisted function; its
    live code version decides which entries are current. ``root``: another persist path
    (``local=True``: ``persist_path_local``). ``background=False`` reads in the calling thread.
    """
    from persist_to_disk import PersistedFunction, config
    from persist_to_disk.identity import function_name

    if func is not None and not isinstance(func, PersistedFunction):
        raise TypeError(f"browse(func=...) takes a function decorated with @ptd.persistf, not {type(func).__name__}")
    versions = _live_versions()
    start: Node | None = None
    chosen: Project | None = None
    note = ""
    if func is not None:
        folder = func.folder()
        versions[folder] = func.code_version()
        _project_root, parts = func.location()
        persist_root = folder.parents[len(parts) + 1]
        catalog = Catalog(root if root is not None else persist_root, versions=versions)
        start = _node_or_placeholder(catalog, folder, "function", func_name=function_name(func))
        chosen = start.project
    else:
        catalog = Catalog(root if root is not None else config.get_persist_path(local=local), versions=versions)
        if project is not None:
            chosen = catalog.project(project)
        elif notebook:
            folder = _notebook_folder(catalog, None if notebook is True else notebook)
            start = _node_or_placeholder(catalog, folder, "source")
            chosen = start.project
        else:
            chosen = catalog.current_project()
            if chosen is None:
                projects = catalog.projects()
                chosen = projects[0] if projects else None
                if chosen is not None:
                    note = f"The current project has nothing cached; showing {chosen.name}."
    if start is not None and not catalog.has_folder(start.folder):
        note = f"Nothing is cached yet for {start.label} ({start.folder})."
    return CacheBrowser(catalog, start=start, project=chosen, page_size=page_size, background=background, note=note)


def _live_versions() -> dict[Path, str]:
    """Current code versions of the persisted functions in the IPython namespace, by folder."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except Exception:
        return {}
    if shell is None:
        return {}
    from persist_to_disk import PersistedFunction

    found: dict[Path, str] = {}
    for value in list(shell.user_ns.values()):
        if isinstance(value, PersistedFunction):
            try:
                found[Path(value.folder())] = value.code_version()
            except Exception as exc:  # a function whose folder cannot be resolved now: judge by its entries
                logger.debug("browse: no live version for %r: %r", value, exc)
    return found


def _notebook_folder(catalog: Catalog, notebook: str | os.PathLike | None) -> Path:
    """The cache folder of the running (or the given) notebook's functions and cells."""
    from persist_to_disk import config

    from .notebook import find_project_root, locate_notebook

    if notebook is None:
        location = locate_notebook()
        if location.notebook is None:
            raise ValueError(
                "browse(notebook=True): cannot tell which notebook this kernel runs; "
                "pass the notebook's path, browse(notebook='analysis/exp.ipynb')"
            )
        path, project_root = location.notebook, location.project_root
    else:
        path = Path(os.path.abspath(os.fspath(notebook)))
        project_root = find_project_root(path)[0]
    explicit = config.settings().project_path
    if explicit is not None:
        project_root = explicit
    try:
        parts = path.with_suffix("").relative_to(project_root).parts
    except ValueError:
        raise ValueError(f"browse(notebook=...): {path} is not inside the project folder {project_root}") from None
    return catalog.root / config.project_folder_name(Path(project_root)) / Path(*parts)


def _node_or_placeholder(catalog: Catalog, folder: Path, kind: str, func_name: str | None = None) -> Node:
    """The node of a folder, or an empty one when nothing is cached there yet."""
    try:
        return catalog.node_of_folder(folder)
    except CatalogError:
        pass
    rel = folder.relative_to(catalog.root)
    project = Project(rel.parts[0], catalog.root / rel.parts[0])
    parts = rel.parts[1:]
    if kind == "function":
        function = Function(folder, func_name or folder.name, "function", tuple(parts[:-1]))
        return Node("function", project, parts, function_label(function.kind, function.name), function, (folder,))
    return Node("source", project, parts, "/".join(parts), scope=(folder,))


# -------------------------------------------------------------------------------------------- the magic
def register(ipython: Any) -> None:
    """Add the ``%persist_browse`` line magic to an IPython shell."""
    ipython.register_magic_function(persist_browse, magic_kind="line", magic_name="persist_browse")


def _magic_arguments(func: Callable[..., Any]) -> Callable[..., Any]:
    from IPython.core import magic_arguments as ma

    func = ma.argument("--page-size", type=int, default=PAGE_SIZE, help="entries per page")(func)
    func = ma.argument("--root", help="another persist path")(func)
    func = ma.argument("-f", "--func", metavar="NAME", help="only this persisted function (a name in the namespace)")(
        func
    )
    func = ma.argument("-n", "--notebook", action="store_true", help="only this notebook's functions and cells")(func)
    func = ma.argument("-p", "--project", help="another project (proj-3, a unique name, or its folder)")(func)
    return ma.magic_arguments()(func)


@_magic_arguments
def persist_browse(line: str = "") -> None:
    """Show the cache browser: ``%persist_browse [--notebook | --func NAME | --project P]``."""
    from IPython import get_ipython
    from IPython.core.error import UsageError
    from IPython.core.magic_arguments import parse_argstring
    from IPython.display import display

    args = parse_argstring(persist_browse, line)
    func = None
    if args.func:
        shell = get_ipython()
        func = shell.user_ns.get(args.func) if shell is not None else None
        if func is None:
            raise UsageError(f"%persist_browse --func {args.func}: no such name in the namespace")
    try:
        panel = browse(args.project, notebook=args.notebook, func=func, root=args.root, page_size=args.page_size)
    except (CatalogError, ValueError, TypeError) as exc:
        raise UsageError(f"%persist_browse: {exc}") from None
    display(panel)
