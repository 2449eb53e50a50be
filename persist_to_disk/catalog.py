"""The catalog: what is cached, as a person looks at it.

One layer for both faces that browse the cache, the ipywidgets panel
(``ipython_ext/browser.py``) and the command line (``cli.py``)::

    <persist_path>/<project>-<id>/<source path...>/<function or cell>/<groupby...>/<bucket>/<digest>.ptd
    '------------ root ---------'  '-- source --'   '--- function --'  '-- group --'  '--- entry ---'

A :class:`Node` is a place in that tree (``project``, ``source``, ``function``, ``group``).
The tree is read lazily: a project's functions are found by walking its folders until
a probe (one entry header below a folder) says where a function folder starts, so
opening a project with 50,000 entries reads a handful of headers, not 50,000.
Entries are listed with :meth:`Catalog.scan` (headers read, values never loaded), and
removed with :meth:`Catalog.delete` / :meth:`Catalog.delete_node` (bytes freed reported;
the work is in :mod:`persist_to_disk.prune`, which also chooses what a prune removes).

Which code version is *current*: a live function's version when the caller knows it
(``Catalog(versions={function folder: version})``, e.g. ``browse(func=f)``); otherwise
the version of the function folder's most recently used entry (the file's mtime is
refreshed on reads and set on writes). So a reverted edit that hits old entries makes
their version current again, and a function whose newest code never ran yet is judged
by the code that last ran. Entries with no version (``manual_cache``) are neither. An entry
keyed under another key format than this version's (:func:`keys.key_format_name`; a header that
records none is of an older one) is not current whatever its code: no call can hit it again.

Everything goes through the store of the persist path (:func:`persist_to_disk.stores.open_store`:
``list_folder``, ``iter_entries``, ``fill_headers``, ``delete``, ``tidy``); this module touches
no file. On a shared store (``persist_path = s3://...``) the tree is the bucket's, listed from
the store: ``Node.folder`` and ``EntryInfo.path`` are then where this machine keeps (or would
keep) its local copies, and a deletion removes the object and this machine's copy.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import keys, prune
from .config import project_folder, read_project_registry
from .errors import CatalogError
from .header import EntryHeader, EntryKind
from .layout import find_marker_root, safe_folder_name
from .listing import EntryInfo, Totals
from .readable import function_label, group_label
from .stores import Store, open_store

logger = logging.getLogger("persist_to_disk")

_PROBE_LIMIT = 64  # entry headers a probe reads at most before settling for what it found
_PROBE_BATCH = 8  # headers asked for at once when looking for a code version (one batch of GETs remotely)
_SOURCE_SUFFIXES = (".py", ".ipynb")


# ------------------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class Project:
    """A ``<name>-<id>`` folder under the persist path."""

    name: str  # the folder name, e.g. "proj-3"
    folder: Path
    source: str | None = None  # the project's folder on disk, from project_to_pids.txt, if registered


@dataclass(frozen=True)
class Function:
    """A function's (or ``%%persist`` cell's, or ``manual_cache`` caller's) cache folder."""

    folder: Path
    name: str  # as the header says (``Class.method``), else the folder name
    kind: EntryKind
    source: tuple[str, ...]  # the source path parts inside the project (``pipeline``, ``train``)
    module: str | None = None
    groupby: tuple[str, ...] = ()  # the groupby levels' argument names, outermost first


@dataclass(frozen=True)
class Node:
    """A place in the tree: a project, a source file or notebook, a function or cell, a groupby folder."""

    kind: str
    project: Project
    parts: tuple[str, ...]  # the folder's path inside the project folder
    label: str
    function: Function | None = None  # for "function" and "group" nodes
    scope: tuple[Path, ...] = ()  # the folders whose entries belong to the node

    @property
    def folder(self) -> Path:
        return self.project.folder.joinpath(*self.parts)

    @property
    def path(self) -> str:
        """The node's path inside its project, as the CLI takes it (``pipeline/train/train_a_model``)."""
        return "/".join(self.parts)

    @property
    def shown_path(self) -> str:
        """The path as the panel and the CLI show it: groupby folders as ``dataset=mnist``
        (``pipeline/train/train_a_model/dataset=mnist``); :meth:`Catalog.node` takes it back."""
        if self.function is None or self.level == 0:
            return self.path
        top = len(self.parts) - self.level
        groups = self.function.groupby
        named = [group_label(groups[i], part) if i < len(groups) else part for i, part in enumerate(self.parts[top:])]
        return "/".join((*self.parts[:top], *named))

    @property
    def id(self) -> str:
        return "/".join((self.project.name, *self.parts))

    @property
    def level(self) -> int:
        """For a group node, how deep below its function folder (1 = the first groupby argument)."""
        if self.function is None:
            return 0
        return len(self.parts) - len(self.function.folder.relative_to(self.project.folder).parts)


@dataclass
class Listing:
    """The entries of a node, with totals and each function folder's current code version."""

    node: Node
    entries: list[EntryInfo]
    versions: dict[Path, str | None]
    complete: bool = True  # False when the scan was stopped early

    @property
    def totals(self) -> Totals:
        totals = Totals()
        for entry in self.entries:
            totals.add(entry.size)
        return totals


# --------------------------------------------------------------------------------------- the catalog
class Catalog:
    """Projects, their functions and entries under one persist path; deletion and pruning.

    ``root``: the persist path (default: ``ptd.config.get_persist_path()``; for a shared store,
    this machine's folder of local copies, and the store is the bucket's).
    ``versions``: ``{function folder: code version}`` of live functions, which decide what
    counts as the current code version of those folders (see the module's doc).
    Folder discoveries are cached until :meth:`refresh`.
    """

    def __init__(self, root: str | os.PathLike | None = None, *, versions: Mapping[Any, str] | None = None) -> None:
        from ._state import config

        if root is None:
            root = config.get_persist_path()
        self.root = Path(os.path.abspath(os.fspath(root)))
        self.store: Store = open_store(self.root, self.root, config.settings())
        self.versions: dict[Path, str] = {Path(os.path.abspath(k)): v for k, v in (versions or {}).items()}
        self._functions: dict[str, list[Function]] = {}

    @property
    def location(self) -> str:
        """Where the entries live, as shown: the persist path, or the shared store's URL."""
        return self.store.url_of("").rstrip("/") or str(self.root)

    def refresh(self) -> None:
        """Forget the folders found so far (after deletions, or when other processes wrote)."""
        self._functions.clear()

    def _prefix(self, folder: Path) -> str:
        """A folder's key prefix in the store ("" for the root)."""
        rel = folder.relative_to(self.root).as_posix()
        return "" if rel == "." else rel

    def _subfolders(self, folder: Path) -> list[str]:
        return self.store.list_folder(self._prefix(folder))[0]

    def has_folder(self, folder: Path) -> bool:
        """Whether the store holds anything under a folder of the tree."""
        if folder == self.root:
            return True
        return self.root in folder.parents and folder.name in self._subfolders(folder.parent)

    # -- projects -------------------------------------------------------------------------------------
    def projects(self) -> list[Project]:
        """Every project folder under the root, sorted by name."""
        registry = _read_registry()
        return [Project(name, self.root / name, registry.get(name)) for name in self._subfolders(self.root)]

    def project(self, spec: str | os.PathLike | None = None) -> Project:
        """A project by folder name (``proj-3``), bare name if unique (``proj``), or its folder on disk.

        ``None`` or ``"."``: the project of the current folder (as a script run here would use).
        Raises CatalogError naming the projects there are when none matches.
        """
        projects = self.projects()
        by_name = {p.name: p for p in projects}
        text = "." if spec is None else os.fspath(spec)
        if text in by_name:
            return by_name[text]
        candidates = [p for p in projects if p.name.rsplit("-", 1)[0] == text]
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            names = ", ".join(p.name for p in candidates)
            raise CatalogError(f"project {text!r} is ambiguous: {names}; give the full folder name")
        folder = Path(os.path.abspath(os.path.expanduser(text)))
        if text == "." or folder.is_dir():
            found = find_marker_root(folder) if text == "." else None
            root = found[0] if found is not None else folder
            for candidate in (root, folder):
                key = os.path.normpath(str(candidate))
                for p in projects:
                    if p.source is not None and os.path.normpath(p.source) == key:
                        return p
        available = ", ".join(p.name for p in projects) or "none"
        raise CatalogError(f"no project {text!r} under {self.location} (projects there: {available})")

    def current_project(self) -> Project | None:
        """The project the running process caches into (the notebook's, in Jupyter), if it has a folder."""
        from ._state import config

        try:
            folder = Path(config.get_project_persist_path())
        except Exception as exc:  # reporting must not fail on an odd setup
            logger.debug("no current project: %r", exc)
            return None
        if folder.parent != self.root or not self.has_folder(folder):
            return None
        return Project(folder.name, folder, _read_registry().get(folder.name))

    # -- the tree -------------------------------------------------------------------------------------
    def project_node(self, project: Project) -> Node:
        label = project.name if project.source is None else f"{project.name} ({project.source})"
        return Node("project", project, (), label, scope=(project.folder,))

    def functions(self, project: Project) -> list[Function]:
        """Every function, cell and manual_cache folder of a project, sorted by source then name."""
        found = self._functions.get(project.name)
        if found is None:
            found = sorted(self._discover(project.folder), key=lambda f: (f.source, f.folder.name))
            self._functions[project.name] = found
        return found

    def sources(self, project: Project) -> list[Node]:
        """The project's source files and notebooks that have cached functions."""
        groups: dict[tuple[str, ...], list[Function]] = {}
        for function in self.functions(project):
            groups.setdefault(function.source, []).append(function)
        return [self._source_node(project, source, funcs) for source, funcs in sorted(groups.items())]

    def _source_node(self, project: Project, source: tuple[str, ...], funcs: list[Function]) -> Node:
        label = "/".join(source) or "(project root)"
        return Node("source", project, source, label, scope=tuple(f.folder for f in funcs))

    def function_node(self, project: Project, function: Function) -> Node:
        parts = function.folder.relative_to(project.folder).parts
        label = function_label(function.kind, function.name)
        return Node("function", project, parts, label, function, (function.folder,))

    def children(self, node: Node) -> list[Node]:
        """The nodes one level below: sources, functions of a source, groupby folders (read lazily)."""
        if node.kind == "project":
            return self.sources(node.project)
        if node.kind == "source":
            funcs = [f for f in self.functions(node.project) if f.source == node.parts]
            return [self.function_node(node.project, f) for f in funcs]
        function = node.function
        if function is None or node.level >= len(function.groupby):
            return []
        label = function.groupby[node.level]
        return [
            Node("group", node.project, (*node.parts, name), group_label(label, name), function, (node.folder / name,))
            for name in self._subfolders(node.folder)
        ]

    def node(self, project: Project | str, path: str | os.PathLike = "") -> Node:
        """The node at a path inside a project: ``""`` (the project), a source (``pipeline/train`` or
        ``pipeline/train.py``, or a folder above sources), a function (``pipeline/train/train_a_model``)
        or a groupby folder below one. Raises CatalogError when nothing is cached there."""
        if not isinstance(project, Project):
            project = self.project(project)
        text = os.fspath(path).replace(os.sep, "/").strip("/")
        parts = tuple(p for p in text.split("/") if p not in ("", "."))
        if not parts:
            return self.project_node(project)
        funcs = self.functions(project)
        for function in funcs:
            fparts = function.folder.relative_to(project.folder).parts
            if parts == fparts:
                return self.function_node(project, function)
            if parts[: len(fparts)] == fparts:
                parts = _group_folders(project.folder, parts, len(fparts), function.groupby, self.has_folder)
                if not self.has_folder(project.folder.joinpath(*parts)):
                    break
                level = len(parts) - len(fparts)
                labels = function.groupby
                label = group_label(labels[level - 1], parts[-1]) if level <= len(labels) else parts[-1]
                return Node("group", project, parts, label, function, (project.folder.joinpath(*parts),))
        stripped = (*parts[:-1], _strip_suffix(parts[-1]))
        for candidate in (parts, stripped):
            exact = [f for f in funcs if f.source == candidate]
            if exact:
                return self._source_node(project, candidate, exact)
            below = [f for f in funcs if f.source[: len(candidate)] == candidate]
            if below:
                return self._source_node(project, candidate, below)
        raise CatalogError(f"nothing is cached at {text!r} in project {project.name} ({self.location}/{project.name})")

    def node_of_folder(self, folder: str | os.PathLike) -> Node:
        """The node whose folder this is (a function's cache folder, say)."""
        folder = Path(os.path.abspath(os.fspath(folder)))
        try:
            rel = folder.relative_to(self.root)
        except ValueError:
            raise CatalogError(f"{folder} is not under the persist path {self.location}") from None
        if not rel.parts:
            raise CatalogError(f"{folder} is the persist path itself, not a project or function folder")
        project = Project(rel.parts[0], self.root / rel.parts[0], _read_registry().get(rel.parts[0]))
        return self.node(project, "/".join(rel.parts[1:]))

    # -- entries --------------------------------------------------------------------------------------
    def entry_files(self, node: Node) -> list[EntryInfo]:
        """The node's entries with sizes and last-read times, headers not read (a stat or a listing only)."""
        found: list[EntryInfo] = []
        for folder in node.scope:
            found.extend(self.store.iter_entries(self._prefix(folder), headers=False))
        return found

    def entry(self, path: str | os.PathLike) -> EntryInfo:
        """One entry by its path (a local file, or for a shared store where its copy goes), header read."""
        path = Path(os.path.abspath(os.fspath(path)))
        if self.root not in path.parents:
            raise CatalogError(f"{path} is not under the persist path {self.location}")
        for info in self.store.list_folder(self._prefix(path.parent))[1]:
            if info.path.name == path.name:
                self.store.fill_headers([info])
                return info
        raise CatalogError(f"no entry {path}")

    def totals(self, node: Node) -> Totals:
        """Entries and bytes under a node (stat only)."""
        totals = Totals()
        for entry in self.entry_files(node):
            totals.add(entry.size)
        return totals

    def scan(
        self,
        node: Node,
        *,
        progress: Callable[[int, int], Any] | None = None,
        should_stop: Callable[[], bool] | None = None,
        chunk: int = 500,
    ) -> Listing:
        """Every entry of a node with its header read, and which are of the current code version.

        ``progress(done, total)`` is called every ``chunk`` headers; ``should_stop()`` returning
        True ends the scan early (the listing says ``complete=False``).
        """
        entries = self.entry_files(node)
        total = len(entries)
        if progress is not None:
            progress(0, total)
        complete = True
        for i in range(0, total, chunk):
            if i:
                if progress is not None:
                    progress(i, total)
                if should_stop is not None and should_stop():
                    complete = False
                    entries = entries[:i]
                    break
            self.store.fill_headers(entries[i : i + chunk])
        if progress is not None and complete:
            progress(total, total)
        versions = self.mark_current(node, entries)
        return Listing(node, entries, versions, complete)

    def mark_current(self, node: Node, entries: list[EntryInfo]) -> dict[Path, str | None]:
        """Set each entry's ``function_folder`` and ``current``; return each function folder's current version."""
        project_folder = os.fspath(node.project.folder)
        by_function: dict[Path, list[EntryInfo]] = {}
        folders: dict[str, Path] = {}
        for entry in entries:
            if entry.function_folder is None:
                if node.function is not None:
                    entry.function_folder = node.function.folder
                else:
                    text = _function_folder(os.fspath(entry.path), entry.record, project_folder)
                    folder = folders.get(text)
                    if folder is None:
                        folder = folders[text] = Path(text)
                    entry.function_folder = folder
            by_function.setdefault(entry.function_folder, []).append(entry)
        versions: dict[Path, str | None] = {}
        key_format = keys.key_format_name()
        for folder, members in by_function.items():
            if folder in self.versions:
                version: str | None = self.versions[folder]
            elif node.kind == "group":  # the node sees part of the folder: ask the whole folder
                version = self.current_version(folder)
            else:
                version = most_recent_version(members)
            versions[folder] = version
            for entry in members:
                entry.current = _is_current(entry, version, key_format)
        return versions

    def current_version(self, function_folder: str | os.PathLike) -> str | None:
        """The current code version of a function folder: a live one if given, else its most recently used."""
        folder = Path(os.path.abspath(os.fspath(function_folder)))
        if folder in self.versions:
            return self.versions[folder]
        files = list(self.store.iter_entries(self._prefix(folder), headers=False))
        files.sort(key=lambda e: e.last_read, reverse=True)
        for start in range(0, min(len(files), _PROBE_LIMIT), _PROBE_BATCH):
            batch = files[start : start + _PROBE_BATCH]
            self.store.fill_headers(batch)
            for entry in batch:
                if entry.code_version is not None:
                    return entry.code_version
        return None

    # -- discovery ----------------------------------------------------------------------------------------
    def _probe(self, folder: Path) -> tuple[EntryInfo, EntryHeader | None] | None:
        """One entry below a folder and its header, preferring a decorated call's entry (it tells the
        groupby depth) over a manual one and a readable one over a corrupt one."""
        fallback: tuple[EntryInfo, EntryHeader | None] | None = None
        tried = 0
        stack = [self._prefix(folder)]
        while stack and tried < _PROBE_LIMIT:
            current = stack.pop()
            folders, entries = self.store.list_folder(current)
            for start in range(0, min(len(entries), _PROBE_LIMIT - tried), _PROBE_BATCH):
                batch = entries[start : min(start + _PROBE_BATCH, _PROBE_LIMIT - tried)]
                tried += len(batch)
                self.store.fill_headers(batch)
                for info in batch:
                    header = info.record
                    if header is None:
                        fallback = fallback or (info, None)
                    elif header.kind != "manual":
                        return info, header
                    elif fallback is None or fallback[1] is None:
                        fallback = (info, header)
            base = f"{current}/" if current else ""
            stack.extend(base + name for name in reversed(folders))
        return fallback

    def _discover(self, project_folder: Path) -> list[Function]:
        """Walk a project's folders down to the function folders (one probe per folder visited)."""
        found: list[Function] = []

        def visit(folder: Path) -> None:
            for name in self._subfolders(folder):
                sub = folder / name
                probe = self._probe(sub)
                if probe is None:
                    continue  # nothing cached below
                info, header = probe
                ffolder = function_folder_of(info.path, header, project_folder)
                if ffolder == sub or sub not in ffolder.parents:
                    found.append(_function_at(sub, project_folder, header if ffolder == sub else None))
                else:
                    visit(sub)

        visit(project_folder)
        return found

    # -- deleting (the work is in persist_to_disk.prune) ---------------------------------------------------
    def delete(
        self, entries: Iterable[EntryInfo | str | os.PathLike], *, progress: Callable[[int, int], Any] | None = None
    ) -> prune.Deleted:
        """Delete entries (only ``.ptd`` entries under the root); report entries and bytes freed."""
        return prune.delete_entries(self.store, self.root, entries, progress=progress)

    def delete_node(self, node: Node, *, progress: Callable[[int, int], Any] | None = None) -> prune.Deleted:
        """Delete every entry of a node, then its folders left empty (a whole function or project goes)."""
        result = self.delete(self.entry_files(node), progress=progress)
        self.tidy(node)
        self.refresh()
        return result

    def tidy(self, node: Node) -> None:
        """After deletions: dead writers' temp files and the folders left empty under a node go."""
        for folder in node.scope:
            self.store.tidy(self._prefix(folder))

# -------------------------------------------------------------------------------------------- helpers
def _is_current(entry: EntryInfo, version: str | None, key_format: str) -> bool | None:
    """Of the function's current code version and this key format? None: no version to judge by."""
    if entry.code_version is None:
        return None
    if entry.key_format != key_format:
        return False
    return None if version is None else entry.code_version == version


def most_recent_version(entries: Iterable[EntryInfo]) -> str | None:
    """The code version of the most recently used entry that has one."""
    best: tuple[float, float] | None = None
    version = None
    now = time.time()
    for entry in entries:
        if entry.code_version is None:
            continue
        rank = (prune.last_read_rank(entry.last_read, now), entry.created or 0.0)
        if best is None or rank > best:
            best, version = rank, entry.code_version
    return version


def function_folder_of(path: str | os.PathLike, header: EntryHeader | None, project_folder: Path) -> Path:
    """The function (or cell) folder an entry file belongs to.

    Exact when the header lists its groupby folders (the decorator writes them); else the
    nearest folder above the bucket named after the header's function; else the bucket's parent.
    """
    return Path(_function_folder(os.fspath(path), header, os.fspath(project_folder)))


def _function_folder(path: str, header: EntryHeader | None, project_folder: str) -> str:
    """function_folder_of on strings (it runs once per entry of a listing)."""
    prefix = project_folder.rstrip(os.sep) + os.sep
    if not path.startswith(prefix):
        return os.path.dirname(path)
    dirs = path[len(prefix) :].split(os.sep)[:-1]  # the folders inside the project, outermost first
    n = len(dirs)
    if n == 0 or (header is not None and header.kind == "manual"):
        return os.path.dirname(path)

    def above(i: int) -> str:  # the folder i levels above the entry's own folder
        return prefix + os.sep.join(dirs[: n - i])

    if header is not None and header.groupby is not None:
        return above(min(len(header.groupby) + 1, n - 1))
    if header is not None and header.func is not None:
        names = {header.func}
        try:
            names.add(safe_folder_name(header.func, setting="func"))
        except ValueError:
            pass
        for i in range(1, n):
            if dirs[n - 1 - i] in names:
                return above(i)
    return above(1) if n > 1 else above(0)


def _function_at(folder: Path, project_folder: Path, header: EntryHeader | None) -> Function:
    source = folder.parent.relative_to(project_folder).parts
    if header is None:
        return Function(folder, folder.name, "function", source)
    labels = tuple(label for label, _folder in header.groupby or ())
    name = header.func if header.func is not None else folder.name
    return Function(folder, name, header.kind, source, header.module, labels)


def _group_folders(
    project_folder: Path, parts: tuple[str, ...], start: int, labels: tuple[str, ...], is_folder: Callable[[Path], bool]
) -> tuple[str, ...]:
    """A path's groupby parts as folder names: ``dataset=mnist`` (as the panel and the CLI show
    a groupby folder) means the folder ``mnist`` below ``train_a_model``, unless a folder is
    named ``dataset=mnist`` itself."""
    found = list(parts)
    for i in range(start, len(found)):
        level = i - start
        prefix = f"{labels[level]}=" if level < len(labels) else None
        here = project_folder.joinpath(*found[: i + 1])
        if prefix and found[i].startswith(prefix) and not is_folder(here):
            found[i] = found[i][len(prefix) :]
    return tuple(found)


def _strip_suffix(name: str) -> str:
    for suffix in _SOURCE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _read_registry() -> dict[str, str]:
    """``{project folder name: project folder on disk}`` from this machine's project registry."""
    found: dict[str, str] = {}
    for source, pid in read_project_registry().items():
        found.setdefault(project_folder(source, pid), source)
    return found
