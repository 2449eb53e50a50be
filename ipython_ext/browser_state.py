"""What the cache panel shows, as a plain value: :class:`PanelState` and its updates.

No ipywidgets here. The panel (:mod:`ipython_ext.browser_widget`) holds one ``PanelState``;
every user action is a small pure function from a state to the next one (open a node,
show what a scan read, filter, sort, turn a page, select, ask for and forget a deletion),
and the widgets are then redrawn from the new state. Tests call these functions directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from persist_to_disk.catalog import Node
from persist_to_disk.listing import EntryInfo, Totals
from persist_to_disk.readable import format_bytes, plural, short_path

PAGE_SIZE = 25
MAX_TREE_CHILDREN = 400  # rows per tree level; a groupby argument with more values says how many are hidden
INDENT = "\u2003"  # an em space: <option> text keeps it

SortColumn = Literal["function", "arguments", "size", "created", "last_read", "compute"]
_NEWEST_FIRST: frozenset[SortColumn] = frozenset({"size", "created", "last_read", "compute"})


@dataclass(frozen=True)
class Status:
    """A line for the user; ``error`` shows it as one."""

    text: str = ""
    error: bool = False


@dataclass(frozen=True)
class Pending:
    """A deletion waiting for the user's confirmation: these entries, or every entry of a node."""

    question: str
    entries: tuple[EntryInfo, ...] = ()
    node: Node | None = None


@dataclass(frozen=True)
class Summary:
    """Totals of a list of entries, for the line above the table."""

    entries: int
    bytes: int
    compute_seconds: float  # what recomputing them all would cost
    older: int  # of older code versions
    broken: int  # corrupt or vanished


@dataclass(frozen=True)
class TreeRow:
    """One row of the tree: its text (indent and ▸/▾ included) and its node; ``node`` is None
    for the row that says how many folders are not listed."""

    label: str
    node: Node | None
    path: tuple[str, ...]  # node ids from the root down to this row's node


@dataclass(frozen=True)
class PanelState:
    """Everything the panel shows. Derived lists (:attr:`shown`, :attr:`page_entries`) are computed once."""

    root: Node | None = None
    node: Node | None = None  # the open tree node, whose entries the table lists
    open_path: tuple[str, ...] = ()  # node ids from the root down to ``node``
    entries: tuple[EntryInfo, ...] = ()  # the node's entries as last read
    complete: bool = False  # the scan of ``node`` finished
    busy: bool = False  # a scan or deletion is running
    filter_text: str = ""
    sort: SortColumn = "created"
    descending: bool = True
    page: int = 0
    page_size: int = PAGE_SIZE
    selected: frozenset[Path] = frozenset()  # entry files ticked for invalidation
    focus: Path | None = None  # the entry whose details show
    pending: Pending | None = None
    project_totals: Totals | None = None
    status: Status = Status()
    notice: Status = Status()  # a deletion's outcome: stays in front of the status until the user moves on
    stale: bool = False  # the cache changed on disk since the node was read
    note: str = ""  # said when the node has no entries (why the panel is empty)
    # derived, and kept by the updates that change what they derive from (not recomputed on
    # every click: sorting 50,000 entries takes a fifth of a second)
    shown: tuple[EntryInfo, ...] = ()  # the entries that pass the filter, in the table's order
    summary: Summary = Summary(0, 0, 0.0, 0, 0)  # totals of ``entries``

    @property
    def pages(self) -> int:
        return max(1, -(-len(self.shown) // self.page_size))

    @property
    def page_entries(self) -> tuple[EntryInfo, ...]:
        start = self.page * self.page_size
        return self.shown[start : start + self.page_size]

    @property
    def selection(self) -> list[EntryInfo]:
        """The ticked entries, in the table's order."""
        return [e for e in self.shown if e.path in self.selected]

    @property
    def focused(self) -> EntryInfo | None:
        return next((e for e in self.entries if e.path == self.focus), None)

    @property
    def above_function(self) -> bool:
        """Whether the node holds entries of several functions or cells (a project or source)."""
        return self.node is not None and self.node.function is None

    @property
    def line(self) -> Status:
        """The status line: the last deletion's outcome first, then the latest message."""
        notice, status = self.notice, self.status
        if not notice.text or notice.text == status.text:
            return status if status.text or not notice.text else notice
        return Status(f"{notice.text} {status.text}".strip(), notice.error or status.error)


def _arranged(state: PanelState) -> PanelState:
    """The state with ``shown`` computed again: filtered, then sorted (ties by file, so the order is stable)."""
    text = state.filter_text.strip()
    chosen = [e for e in state.entries if e.matches(text)] if text else list(state.entries)
    key = _SORT_KEYS[state.sort]
    chosen.sort(key=lambda e: (key(e), str(e.path)), reverse=state.descending)
    return replace(state, shown=tuple(chosen))


def summarize(entries: Iterable[EntryInfo]) -> Summary:
    count = size = older = broken = 0
    seconds = 0.0
    for e in entries:
        count += 1
        size += e.size
        seconds += e.compute_seconds or 0.0
        older += e.current is False
        broken += e.status != "ok"
    return Summary(count, size, seconds, older, broken)


def tree_label(node: Node) -> str:
    """A node in the tree: a project with its folder on disk (``proj-3 (~/proj)``)."""
    if node.kind == "project" and node.project.source:
        return f"{node.project.name} ({short_path(node.project.source)})"
    return node.label


def node_name(node: Node) -> str:
    """A node as messages name it: a project by its folder name (its path on disk is in the project list)."""
    return node.project.name if node.kind == "project" else node.label


_SORT_KEYS: dict[SortColumn, Callable[[EntryInfo], object]] = {
    "function": lambda e: e.owner.lower(),
    "arguments": lambda e: e.args_text.lower(),
    "size": lambda e: e.size,
    "created": lambda e: e.created or e.last_read,
    "last_read": lambda e: e.last_read,
    "compute": lambda e: e.compute_seconds if e.compute_seconds is not None else -1.0,
}


# ------------------------------------------------------------------------------------------ updates
def say(state: PanelState, text: str) -> PanelState:
    return replace(state, status=Status(text))


def fail(state: PanelState, text: str) -> PanelState:
    return replace(state, status=Status(text, error=True))


def report(state: PanelState, text: str, *, failed: bool) -> PanelState:
    """A deletion's outcome: it stays in front of later messages until the user opens something else."""
    return replace(state, notice=Status(text, failed), status=Status())


def open_node(state: PanelState, node: Node | None, path: tuple[str, ...]) -> PanelState:
    """Open a tree node: its entries are read next (the filter and the sort stay)."""
    return replace(
        state,
        node=node,
        open_path=path,
        entries=(),
        shown=(),
        summary=summarize(()),
        complete=node is None,
        page=0,
        selected=frozenset(),
        focus=None,
        pending=None,
        stale=False,
        notice=Status(),
    )


def show_entries(state: PanelState, entries: Iterable[EntryInfo], *, complete: bool) -> PanelState:
    """What a scan of the node read; ticks and focus stay on the entries that are still there."""
    entries = tuple(entries)
    paths = {e.path for e in entries}
    new = replace(
        state,
        entries=entries,
        summary=summarize(entries),
        complete=complete,
        selected=state.selected & paths,
        focus=state.focus if state.focus in paths else None,
        stale=False,
    )
    new = _arranged(new)
    return replace(new, page=min(state.page, new.pages - 1))


def set_filter(state: PanelState, text: str) -> PanelState:
    """Show only entries whose arguments contain ``text``; ticks on hidden entries go (never delete unseen)."""
    new = _arranged(replace(state, filter_text=text, page=0))
    visible = {e.path for e in new.shown}
    return replace(new, selected=state.selected & visible)


def sort_by(state: PanelState, column: SortColumn) -> PanelState:
    """Sort by a column; the same column again reverses the order. Sizes and times start largest/newest."""
    if column not in _SORT_KEYS:
        raise ValueError(f"cannot sort by {column!r}; columns: {', '.join(_SORT_KEYS)}")
    descending = not state.descending if column == state.sort else column in _NEWEST_FIRST
    return _arranged(replace(state, sort=column, descending=descending, page=0))


def turn_page(state: PanelState, delta: int) -> PanelState:
    return replace(state, page=min(max(state.page + delta, 0), state.pages - 1))


def choose(state: PanelState, path: Path) -> PanelState:
    """A click on a row: that entry alone is selected, and its details show."""
    return replace(state, selected=frozenset({path}), focus=path)


def tick(state: PanelState, path: Path, on: bool) -> PanelState:
    """A row's checkbox: add it to (or take it out of) the selection; its details show."""
    if on:
        return replace(state, selected=state.selected | {path}, focus=path)
    rest = state.selected - {path}
    focus = state.focus if state.focus != path else next((e.path for e in state.shown if e.path in rest), None)
    return replace(state, selected=rest, focus=focus)


def tick_all(state: PanelState, on: bool) -> PanelState:
    """The header's checkbox: every entry that passes the filter, on every page."""
    if not on:
        return replace(state, selected=frozenset())
    return replace(state, selected=frozenset(e.path for e in state.shown))


def ask(state: PanelState, pending: Pending) -> PanelState:
    return replace(state, pending=pending)


def cancel(state: PanelState) -> PanelState:
    return replace(state, pending=None)


def forget(state: PanelState, gone: Iterable[Path]) -> PanelState:
    """Drop deleted entries from the table (and from the project's totals)."""
    gone = set(gone)
    kept = tuple(e for e in state.entries if e.path not in gone)
    freed = sum(e.size for e in state.entries if e.path in gone)
    totals = state.project_totals
    if totals is not None:
        totals = Totals(max(0, totals.entries - (len(state.entries) - len(kept))), max(0, totals.bytes - freed))
    return replace(show_entries(state, kept, complete=state.complete), project_totals=totals, pending=None)


def mark_stale(state: PanelState) -> PanelState:
    return replace(state, stale=True)


# -------------------------------------------------------------------------------- deletions to ask
def ask_selected(state: PanelState) -> PanelState:
    chosen = state.selection
    if not chosen:
        return say(state, "Select one or more entries in the table first.")
    size = sum(e.size for e in chosen)
    question = f"Delete {plural(len(chosen), 'selected entry', 'selected entries')} ({format_bytes(size)})?"
    return ask(state, Pending(question, entries=tuple(chosen)))


def ask_older(state: PanelState) -> PanelState:
    if state.busy or not state.complete:
        return say(state, "Wait until the entries are read, then try again.")
    older = tuple(e for e in state.entries if e.current is False or e.status == "corrupt")
    if not older or state.node is None:
        return say(state, "No entries of older code versions here.")
    size = sum(e.size for e in older)
    question = (
        f"Delete {plural(len(older), 'entry')} of older code versions (or corrupt) in {node_name(state.node)} "
        f"({format_bytes(size)})?"
    )
    return ask(state, Pending(question, entries=older))


def ask_node(state: PanelState, on_disk: Totals | None = None) -> PanelState:
    """Every entry of the open node; ``on_disk``: its totals when the scan is not complete."""
    node = state.node
    if node is None:
        return state
    count, size = (len(state.entries), state.summary.bytes) if on_disk is None else (on_disk.entries, on_disk.bytes)
    if not count:
        return say(state, f"Nothing to delete in {node_name(node)}.")
    question = f"Delete all {plural(count, 'entry')} in {node_name(node)} ({format_bytes(size)})?"
    return ask(state, Pending(question, node=node))


# ---------------------------------------------------------------------------------------- the tree
@dataclass
class TreeLevels:
    """The children of the nodes opened so far (read once per node, until a refresh), capped per level."""

    read: Callable[[Node], list[Node]]
    limit: int = MAX_TREE_CHILDREN
    _found: dict[str, tuple[list[Node], int]] = field(default_factory=dict)

    def children(self, node: Node) -> tuple[list[Node], int]:
        """(the first ``limit`` children, how many more are not listed)."""
        found = self._found.get(node.id)
        if found is None:
            kids = self.read(node)
            found = self._found[node.id] = (kids[: self.limit], max(0, len(kids) - self.limit))
        return found

    def forget(self) -> None:
        self._found.clear()


def tree_rows(root: Node | None, open_path: tuple[str, ...], levels: TreeLevels) -> list[TreeRow]:
    """The tree as rows: the open node's ancestors opened (▾), their other children closed (▸)."""
    rows: list[TreeRow] = []

    def add(node: Node, depth: int, path: tuple[str, ...]) -> None:
        is_open = path == open_path[: len(path)]
        kids, hidden = levels.children(node) if is_open else ([], 0)
        leaf = (is_open and not kids) or (node.function is not None and node.level >= len(node.function.groupby))
        mark = " " if leaf else ("▾" if is_open else "▸")
        rows.append(TreeRow(f"{INDENT * depth}{mark} {tree_label(node)}", node, path))
        for kid in kids:
            add(kid, depth + 1, (*path, kid.id))
        if hidden:
            rows.append(TreeRow(f"{INDENT * (depth + 1)}… {hidden:,} more (use ptd ls)", None, path))

    if root is not None:
        add(root, 0, (root.id,))
    return rows


def watched_folders(state: PanelState) -> list[Path]:
    """The folders whose mtimes change when an entry of the open node is written or deleted: the
    node's own folders and every folder between them and the entries read (buckets, groupby
    folders). Reads refresh files' mtimes, not folders': last-read times are as of the scan."""
    node = state.node
    if node is None:
        return []
    tops = {node.folder, *node.scope}
    found = set(tops)
    for entry in state.entries:
        folder = entry.path.parent
        while folder not in found and any(top in folder.parents for top in tops):
            found.add(folder)
            folder = folder.parent
    return sorted(found)
