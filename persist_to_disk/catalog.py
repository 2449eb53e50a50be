"""The catalog: what is cached, as a person looks at it, and how to remove it.

One layer for both faces that browse the cache, the ipywidgets panel
(``ipython_ext/browser.py``) and the command line (``cli.py``)::

    <persist_path>/<project>-<id>/<source path...>/<function or cell>/<groupby...>/<bucket>/<digest>.ptd
    '------------ root ---------'  '-- source --'   '--- function --'  '-- group --'  '--- entry ---'

A :class:`Node` is a place in that tree (``project``, ``source``, ``function``, ``group``).
The tree is read lazily: a project's functions are found by walking its folders until
a probe (one entry header below a folder) says where a function folder starts, so
opening a project with 50,000 entries reads a handful of headers, not 50,000.
Entries are listed with :meth:`Catalog.scan` (headers read, values never loaded), and
removed with :meth:`Catalog.delete` / :meth:`Catalog.delete_node` (bytes freed reported),
or chosen for removal by :func:`plan_prune` (age, older code version, total size by
least recently read).

Which code version is *current*: a live function's version when the caller knows it
(``Catalog(versions={function folder: version})``, e.g. ``browse(func=f)``); otherwise
the version of the function folder's most recently used entry (the file's mtime is
refreshed on reads and set on writes). So a reverted edit that hits old entries makes
their version current again, and a function whose newest code never ran yet is judged
by the code that last ran. Entries with no version (``manual_cache``) are neither.

Every file operation goes through :mod:`persist_to_disk.store` (``LocalStore.iter_entries``,
``info``, ``delete``, ``read_header_file``); this module only reads folder names.
Deleting is ``unlink``: a reader that has the file open keeps reading it, a writer
replaces the file atomically, so a concurrent delete never corrupts an entry; at worst
the call is computed again.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .config import _ID_SEP, PROJECT_IDS_FILE, settings_dir
from .entryfile import CorruptEntry
from .errors import CatalogError
from .header import EntryHeader, EntryKind, header_of
from .layout import ENTRY_SUFFIX, find_marker_root, safe_folder_name
from .readable import call_text, format_bytes, function_label, group_label, plural
from .store import LocalStore, read_header_file

logger = logging.getLogger("persist_to_disk")

_PROBE_LIMIT = 64  # entry headers a probe reads at most before settling for what it found
_SOURCE_SUFFIXES = (".py", ".ipynb")
_CLOCK_SLACK = 60.0  # seconds: a last-read time further ahead than this was stamped by a wrong clock


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
    kind: str  # "function" | "cell" | "manual"
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
class CatalogEntry:
    """One entry as listed: its file's size and times, and its header (value never loaded)."""

    path: Path
    size: int
    last_read: float  # the file's mtime: set on write, refreshed on reads
    header: dict[str, Any] | None = None
    error: str | None = None  # "vanished", or "corrupt: <why>"
    current: bool | None = None  # of the current code version? None: unknown or no version (manual)
    function_folder: Path | None = None
    _record: EntryHeader | None = field(default=None, init=False, repr=False, compare=False)
    _record_of: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def digest(self) -> str:
        return self.path.name[: -len(ENTRY_SUFFIX)]

    @property
    def status(self) -> str:
        """ "ok", "corrupt" or "vanished"."""
        if self.error is None:
            return "ok"
        return "vanished" if self.error == "vanished" else "corrupt"

    @property
    def record(self) -> EntryHeader | None:
        """The header as a typed record; None when unread or not one this version can read."""
        if self._record_of is not self.header:  # parsed once per header read
            self._record, self._record_of = header_of(self.header), self.header
        return self._record

    @property
    def args(self) -> dict[str, str]:
        return dict(self.record.args) if self.record else {}

    @property
    def names(self) -> list[str] | None:
        """The variables a ``%%persist`` cell entry holds (None for a function's entry)."""
        names = self.record.names if self.record else None
        return list(names) if names is not None else None

    @property
    def dependencies(self) -> list[tuple[str, str, str]]:
        """What the result depends on besides its arguments, as the key recorded it:
        ``(kind, name, where)``, e.g. ``("global", "SCALE", "__main__ = 3")``."""
        rows = self.record.dependencies if self.record else None
        return [(kind, name, where) for kind, name, where, _digest in rows or ()]

    @property
    def args_text(self) -> str:
        """The call in readable form: ``dataset='MNIST', lr=0.001``; a cell's adds what it holds
        (``window=3 → X, summary``)."""
        return call_text(self.args, self.names)

    @property
    def func(self) -> str | None:
        return self.record.func if self.record else None

    @property
    def owner(self) -> str:
        """The function or cell the entry belongs to, as the panel and the CLI name it (``train()``,
        ``cell features``); ``?`` when the header cannot be read."""
        return function_label(self.kind, self.func or "?") if self.record is not None else "?"

    @property
    def created(self) -> float | None:
        return self.record.created if self.record else None

    @property
    def compute_seconds(self) -> float | None:
        return self.record.compute_seconds if self.record else None

    @property
    def code_version(self) -> str | None:
        return self.record.code_version if self.record else None

    @property
    def kind(self) -> EntryKind | Literal["unknown"]:
        """ "function", "cell" or "manual" ("unknown" when the header cannot be read)."""
        return self.record.kind if self.record is not None else "unknown"

    def matches(self, text: str) -> bool:
        """Whether ``text`` (case-insensitive) occurs in the arguments' readable form."""
        return not text or text.lower() in self.args_text.lower()


@dataclass
class Totals:
    entries: int = 0
    bytes: int = 0

    def add(self, size: int) -> None:
        self.entries += 1
        self.bytes += size


@dataclass
class Deleted:
    """What a deletion did: entries removed, bytes freed, entries already gone, failures."""

    entries: int = 0
    bytes: int = 0
    missing: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)
    deleted: list[Path] = field(default_factory=list)

    def describe(self) -> str:
        text = f"Deleted {plural(self.entries, 'entry')}, freed {format_bytes(self.bytes)}"
        if self.missing:
            text += f"; {plural(self.missing, 'entry', 'entries')} already gone"
        if self.failed:
            path, why = self.failed[0]
            text += f"; {plural(len(self.failed), 'entry')} could not be deleted ({path}: {why})"
        return text + "."


@dataclass
class Listing:
    """The entries of a node, with totals and each function folder's current code version."""

    node: Node
    entries: list[CatalogEntry]
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

    ``root``: the persist path (default: ``ptd.config.get_persist_path()``).
    ``versions``: ``{function folder: code version}`` of live functions, which decide what
    counts as the current code version of those folders (see the module's doc).
    Folder discoveries are cached until :meth:`refresh`.
    """

    def __init__(self, root: str | os.PathLike | None = None, *, versions: Mapping[Any, str] | None = None) -> None:
        if root is None:
            from ._state import config

            root = config.get_persist_path()
        self.root = Path(os.path.abspath(os.fspath(root)))
        self.store = LocalStore(self.root)
        self.versions: dict[Path, str] = {Path(os.path.abspath(k)): v for k, v in (versions or {}).items()}
        self._functions: dict[str, list[Function]] = {}

    def refresh(self) -> None:
        """Forget the folders found so far (after deletions, or when other processes wrote)."""
        self._functions.clear()

    # -- projects -------------------------------------------------------------------------------------
    def projects(self) -> list[Project]:
        """Every project folder under the root, sorted by name."""
        registry = _read_registry()
        found = []
        for name in _subfolders(self.root):
            found.append(Project(name, self.root / name, registry.get(name)))
        return found

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
        raise CatalogError(f"no project {text!r} under {self.root} (projects there: {available})")

    def current_project(self) -> Project | None:
        """The project the running process caches into (the notebook's, in Jupyter), if it has a folder."""
        from ._state import config

        try:
            folder = Path(config.get_project_persist_path())
        except Exception as exc:  # reporting must not fail on an odd setup
            logger.debug("no current project: %r", exc)
            return None
        if folder.parent != self.root or not folder.is_dir():
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
            found = sorted(_discover(project.folder), key=lambda f: (f.source, f.folder.name))
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
            for name in _subfolders(node.folder)
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
                parts = _group_folders(project.folder, parts, len(fparts), function.groupby)
                if not project.folder.joinpath(*parts).is_dir():
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
        raise CatalogError(f"nothing is cached at {text!r} in project {project.name} ({project.folder})")

    def node_of_folder(self, folder: str | os.PathLike) -> Node:
        """The node whose folder this is (a function's cache folder, say)."""
        folder = Path(os.path.abspath(os.fspath(folder)))
        try:
            rel = folder.relative_to(self.root)
        except ValueError:
            raise CatalogError(f"{folder} is not under the persist path {self.root}") from None
        if not rel.parts:
            raise CatalogError(f"{folder} is the persist path itself, not a project or function folder")
        project = Project(rel.parts[0], self.root / rel.parts[0], _read_registry().get(rel.parts[0]))
        return self.node(project, "/".join(rel.parts[1:]))

    # -- entries --------------------------------------------------------------------------------------
    def _prefix(self, folder: Path) -> str:
        return folder.relative_to(self.root).as_posix()

    def entry_files(self, node: Node) -> list[CatalogEntry]:
        """The node's entries with sizes and last-read times, headers not read (fast: stat only)."""
        found = []
        for folder in node.scope:
            if not folder.is_dir():
                continue
            for info in self.store.iter_entries(self._prefix(folder), headers=False):
                found.append(CatalogEntry(info.path, info.size, info.last_read, None, info.error))
        return found

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
        for i, entry in enumerate(entries):
            if i % chunk == 0 and i:
                if progress is not None:
                    progress(i, total)
                if should_stop is not None and should_stop():
                    complete = False
                    entries = entries[:i]
                    break
            read_header(entry)
        if progress is not None and complete:
            progress(total, total)
        versions = self.mark_current(node, entries)
        return Listing(node, entries, versions, complete)

    def mark_current(self, node: Node, entries: list[CatalogEntry]) -> dict[Path, str | None]:
        """Set each entry's ``function_folder`` and ``current``; return each function folder's current version."""
        project_folder = os.fspath(node.project.folder)
        by_function: dict[Path, list[CatalogEntry]] = {}
        folders: dict[str, Path] = {}
        for entry in entries:
            if entry.function_folder is None:
                if node.function is not None:
                    entry.function_folder = node.function.folder
                else:
                    text = _function_folder(os.fspath(entry.path), entry.header, project_folder)
                    folder = folders.get(text)
                    if folder is None:
                        folder = folders[text] = Path(text)
                    entry.function_folder = folder
            by_function.setdefault(entry.function_folder, []).append(entry)
        versions: dict[Path, str | None] = {}
        for folder, members in by_function.items():
            if folder in self.versions:
                version: str | None = self.versions[folder]
            elif node.kind == "group":  # the node sees part of the folder: ask the whole folder
                version = self.current_version(folder)
            else:
                version = most_recent_version(members)
            versions[folder] = version
            for entry in members:
                entry.current = None if entry.code_version is None or version is None else entry.code_version == version
        return versions

    def current_version(self, function_folder: str | os.PathLike) -> str | None:
        """The current code version of a function folder: a live one if given, else its most recently used."""
        folder = Path(os.path.abspath(os.fspath(function_folder)))
        if folder in self.versions:
            return self.versions[folder]
        if not folder.is_dir():
            return None
        files = [
            CatalogEntry(info.path, info.size, info.last_read)
            for info in self.store.iter_entries(self._prefix(folder), headers=False)
        ]
        files.sort(key=lambda e: e.last_read, reverse=True)
        for entry in files[:_PROBE_LIMIT]:
            read_header(entry)
            if entry.code_version is not None:
                return entry.code_version
        return None

    # -- deleting ---------------------------------------------------------------------------------------
    def delete(
        self, entries: Iterable[CatalogEntry | str | os.PathLike], *, progress: Callable[[int, int], Any] | None = None
    ) -> Deleted:
        """Delete entry files (only ``.ptd`` files under the root); report entries and bytes freed."""
        items = list(entries)
        result = Deleted()
        for i, item in enumerate(items):
            path = Path(os.path.abspath(item.path if isinstance(item, CatalogEntry) else os.fspath(item)))
            if progress is not None and i % 500 == 0:
                progress(i, len(items))
            try:
                key = path.relative_to(self.root).as_posix()
            except ValueError:
                result.failed.append((path, f"not under the persist path {self.root}"))
                continue
            if not key.endswith(ENTRY_SUFFIX) or path.name.startswith("."):
                result.failed.append((path, "not a cache entry file"))
                continue
            existed = os.path.lexists(path)
            try:
                freed = self.store.delete(key)
            except OSError as exc:
                result.failed.append((path, exc.strerror or str(exc)))
                continue
            if freed or existed:
                result.entries += 1
                result.bytes += freed
                result.deleted.append(path)
            else:
                result.missing += 1
        if progress is not None:
            progress(len(items), len(items))
        return result

    def delete_node(self, node: Node, *, progress: Callable[[int, int], Any] | None = None) -> Deleted:
        """Delete every entry of a node, then its folders left empty (a whole function or project goes)."""
        result = self.delete(self.entry_files(node), progress=progress)
        for folder in node.scope:
            _remove_empty_folders(folder, keep=self.root)
        self.refresh()
        return result


# -------------------------------------------------------------------------------------------- pruning
@dataclass
class PrunePlan:
    delete: list[CatalogEntry]
    keep: Totals
    reasons: dict[str, int]  # how many entries each criterion chose

    @property
    def totals(self) -> Totals:
        totals = Totals()
        for entry in self.delete:
            totals.add(entry.size)
        return totals


def plan_prune(
    entries: Iterable[CatalogEntry],
    *,
    older_than: float | None = None,
    old_versions: bool = False,
    max_size: int | None = None,
    now: float | None = None,
) -> PrunePlan:
    """Which entries a prune removes; criteria add up.

    ``older_than`` (seconds): entries not read (nor written) for that long.
    ``old_versions``: entries of an older code version than their function's current one
    (see :meth:`Catalog.mark_current`), and unreadable (corrupt) entries, which are never returned.
    ``max_size`` (bytes): then the least recently read entries until what is left fits (a last-read
    time in the future counts as never read: see :func:`last_read_rank`).
    """
    now = time.time() if now is None else now
    chosen: dict[Path, CatalogEntry] = {}
    reasons = {"older_than": 0, "old_versions": 0, "max_size": 0}
    pool = [e for e in entries if e.status != "vanished"]
    for entry in pool:
        if older_than is not None and now - entry.last_read > older_than:
            chosen[entry.path] = entry
            reasons["older_than"] += 1
        elif old_versions and (entry.current is False or entry.status == "corrupt"):
            chosen[entry.path] = entry
            reasons["old_versions"] += 1
    rest = sorted((e for e in pool if e.path not in chosen), key=lambda e: last_read_rank(e.last_read, now))
    left = sum(e.size for e in rest)
    if max_size is not None:
        while rest and left > max_size:
            entry = rest.pop(0)
            chosen[entry.path] = entry
            left -= entry.size
            reasons["max_size"] += 1
    return PrunePlan(list(chosen.values()), Totals(len(rest), left), reasons)


# -------------------------------------------------------------------------------------------- helpers
def read_header(entry: CatalogEntry) -> CatalogEntry:
    """Read an entry's header into it (corrupt or vanished files are marked, never raised)."""
    if entry.header is not None or entry.error == "vanished":
        return entry
    try:
        entry.header = read_header_file(entry.path)
        entry.error = None
    except FileNotFoundError:
        entry.error = "vanished"
    except (OSError, CorruptEntry) as exc:
        entry.error = f"corrupt: {exc}"
    return entry


def last_read_rank(last_read: float, now: float) -> float:
    """A last-read time to order entries by: one in the future (a wrong clock stamped it) counts as
    never read, since a read brings such a time back to the present (``LocalStore.load``)."""
    return last_read if last_read <= now + _CLOCK_SLACK else 0.0


def most_recent_version(entries: Iterable[CatalogEntry]) -> str | None:
    """The code version of the most recently used entry that has one."""
    best: tuple[float, float] | None = None
    version = None
    now = time.time()
    for entry in entries:
        if entry.code_version is None:
            continue
        rank = (last_read_rank(entry.last_read, now), entry.created or 0.0)
        if best is None or rank > best:
            best, version = rank, entry.code_version
    return version


def _kind_of(header: Mapping[str, Any]) -> str:
    if header.get("manual"):
        return "manual"
    return "cell" if header.get("kind") == "cell" else "function"


def function_folder_of(path: str | os.PathLike, header: Mapping[str, Any] | None, project_folder: Path) -> Path:
    """The function (or cell) folder an entry file belongs to.

    Exact when the header lists its groupby folders (the decorator writes them); else the
    nearest folder above the bucket named after the header's function; else the bucket's parent.
    """
    return Path(_function_folder(os.fspath(path), header, os.fspath(project_folder)))


def _function_folder(path: str, header: Mapping[str, Any] | None, project_folder: str) -> str:
    """function_folder_of on strings (it runs once per entry of a listing)."""
    prefix = project_folder.rstrip(os.sep) + os.sep
    if not path.startswith(prefix):
        return os.path.dirname(path)
    dirs = path[len(prefix) :].split(os.sep)[:-1]  # the folders inside the project, outermost first
    n = len(dirs)
    if n == 0 or (header is not None and header.get("manual")):
        return os.path.dirname(path)

    def above(i: int) -> str:  # the folder i levels above the entry's own folder
        return prefix + os.sep.join(dirs[: n - i])

    groups = header.get("groupby") if header is not None else None
    if isinstance(groups, list):
        return above(min(len(groups) + 1, n - 1))
    if header is not None and isinstance(header.get("func"), str):
        names = {header["func"]}
        try:
            names.add(safe_folder_name(header["func"], setting="func"))
        except ValueError:
            pass
        for i in range(1, n):
            if dirs[n - 1 - i] in names:
                return above(i)
    return above(1) if n > 1 else above(0)


def _probe(folder: Path) -> tuple[Path, dict[str, Any] | None] | None:
    """One entry below a folder and its header, preferring a decorated call's entry (it tells the
    groupby depth) over a manual one and a readable one over a corrupt one."""
    fallback: tuple[Path, dict[str, Any] | None] | None = None
    tried = 0
    stack = [folder]
    while stack and tried < _PROBE_LIMIT:
        current = stack.pop()
        try:
            with os.scandir(current) as it:
                items = list(it)
        except OSError:
            continue
        files = sorted(i.name for i in items if i.name.endswith(ENTRY_SUFFIX) and not i.name.startswith("."))
        dirs = sorted(
            (i.name for i in items if not i.name.startswith(".") and i.is_dir(follow_symlinks=False)), reverse=True
        )
        for name in files:
            path = Path(current, name)
            tried += 1
            try:
                header = read_header_file(path)
            except (OSError, CorruptEntry):
                fallback = fallback or (path, None)
            else:
                if not header.get("manual"):
                    return path, header
                if fallback is None or fallback[1] is None:
                    fallback = (path, header)
            if tried >= _PROBE_LIMIT:
                break
        stack.extend(Path(current, d) for d in dirs)
    return fallback


def _discover(project_folder: Path) -> list[Function]:
    """Walk a project's folders down to the function folders (one probe per folder visited)."""
    found: list[Function] = []

    def visit(folder: Path) -> None:
        for name in _subfolders(folder):
            sub = folder / name
            probe = _probe(sub)
            if probe is None:
                continue  # nothing cached below
            path, header = probe
            ffolder = function_folder_of(path, header, project_folder)
            if ffolder == sub or sub not in ffolder.parents:
                found.append(_function_at(sub, project_folder, header if ffolder == sub else None))
            else:
                visit(sub)

    visit(project_folder)
    return found


def _function_at(folder: Path, project_folder: Path, header: Mapping[str, Any] | None) -> Function:
    source = folder.parent.relative_to(project_folder).parts
    if header is None:
        return Function(folder, folder.name, "function", source)
    groups = header.get("groupby")
    labels = tuple(str(g[0]) for g in groups if isinstance(g, list) and g) if isinstance(groups, list) else ()
    name = header.get("func") if isinstance(header.get("func"), str) else folder.name
    return Function(folder, name, _kind_of(header), source, header.get("module"), labels)


def _group_folders(
    project_folder: Path, parts: tuple[str, ...], start: int, labels: tuple[str, ...]
) -> tuple[str, ...]:
    """A path's groupby parts as folder names: ``dataset=mnist`` (as the panel and the CLI show
    a groupby folder) means the folder ``mnist`` below ``train_a_model``, unless a folder is
    named ``dataset=mnist`` itself."""
    found = list(parts)
    for i in range(start, len(found)):
        level = i - start
        prefix = f"{labels[level]}=" if level < len(labels) else None
        here = project_folder.joinpath(*found[: i + 1])
        if prefix and found[i].startswith(prefix) and not here.is_dir():
            found[i] = found[i][len(prefix) :]
    return tuple(found)


def _subfolders(folder: Path) -> list[str]:
    try:
        with os.scandir(folder) as it:
            # a symbolic link is never followed: one planted in a shared root could lead a clear out of it
            return sorted(i.name for i in it if not i.name.startswith(".") and i.is_dir(follow_symlinks=False))
    except OSError:
        return []


def _remove_empty_folders(top: Path, keep: Path) -> None:
    """rmdir the empty folders under top, then top and its empty parents up to (not including) keep."""
    if top.is_symlink() or not top.is_dir():
        return
    for folder, _dirs, _files in os.walk(top, topdown=False):  # (not into linked folders)
        try:
            os.rmdir(folder)  # fails when not empty (a writer's temp file, an entry written meanwhile)
        except OSError:
            pass
    parent = top.parent
    while parent != keep and keep in parent.parents:
        try:
            os.rmdir(parent)
        except OSError:
            break
        parent = parent.parent


def _strip_suffix(name: str) -> str:
    for suffix in _SOURCE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _read_registry() -> dict[str, str]:
    """``{project folder name: project folder on disk}`` from project_to_pids.txt (read only)."""
    path = settings_dir() / PROJECT_IDS_FILE
    found: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return found
    for line in text.splitlines():
        source, sep, pid = line.rpartition(_ID_SEP)
        if sep:
            found.setdefault(f"{os.path.basename(os.path.normpath(source)) or 'root'}-{pid}", source)
    return found


# --------------------------------------------------------------------------------------------- parsing
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:I?B)?\s*$", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_size(text: str) -> int:
    """``10G`` -> bytes (binary units: K, M, G, T; ``10GB`` and ``10GiB`` mean the same)."""
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"size {text!r} is not understood; use a number with K, M, G or T, e.g. 10G")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def parse_duration(text: str) -> float:
    """``30d`` -> seconds (s, m, h, d, w)."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"age {text!r} is not understood; use a number with s, m, h, d or w, e.g. 30d")
    return float(match.group(1)) * _SECONDS[match.group(2).lower()]
