"""The cache panel's widgets: :class:`CacheBrowser`, drawn from a :class:`PanelState`.

::

    persist_to_disk cache  <persist path>                                  [Project ▾]
    tree (lazy)            | node: 9 entries · 2.1 MiB · 3 h 12 min to recompute · project …
      ▾ proj-3 (/…/proj)   | [filter by argument text]
        ▾ notebooks/exp    | ☐ Function / cell  Arguments   Size ▼  Created  Last read  Compute  Version
            train()        | ☐ train()          dataset=…   1.2 KiB  …
            cell features  | [◀ Previous]  page 1 of 3 · 60 shown · 1 selected  [Next ▶]
                           | details of the clicked entry: full arguments, or a cell's inputs and variables
    [Invalidate selected] [Invalidate all in <node>] [Invalidate older versions] [Refresh]
    confirmation row (shown before any deletion)                       status line, progress bar

The table is a ``GridBox`` of ipywidgets' own ``Button`` and ``Checkbox`` widgets: header
buttons sort, a click on a row shows its details, a row's checkbox selects it for
invalidation. Chosen over an HTML table (which cannot send clicks back to the kernel
without custom JavaScript) and over table packages (ipydatagrid, ipyaggrid: another
front-end extension to install and keep in step with JupyterLab, for 25 rows a page).
One CSS grid holds header and rows, so columns line up; cells cut long text with an
ellipsis (the full text is the tooltip and in the details), so nothing scrolls sideways.

Every change goes one way: a callback computes the next state with a pure function of
:mod:`~ipython_ext.browser_state`, and :meth:`CacheBrowser._render` sets every widget
from it. Setting a widget's value fires its observer, which finds the state already
agrees and does nothing, so no "updating" flag is needed. Callbacks catch their errors
and show them in the status line.

The panel watches the disk: every few seconds (while it is used) it compares the mtimes
of the open node's folders with those seen at its last scan, and reads the node again
when entries were added or deleted by another process; with a deletion waiting for
confirmation, or a node too large to reread every few seconds, it says it is out of date.
"""

from __future__ import annotations

import functools
import html
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from persist_to_disk import prune
from persist_to_disk.catalog import Catalog, CatalogError, Node, Project
from persist_to_disk.listing import EntryInfo
from persist_to_disk.readable import plural, short_path

from . import browser_html as view
from . import browser_state as st
from .browser_state import PanelState
from .browser_tasks import Tasks, Watcher, mtimes

logger = logging.getLogger("persist_to_disk")

__all__ = ["CacheBrowser"]

TREE_ROWS = 18
WATCH_SECONDS = 3.0  # how often the panel compares folder mtimes (about 1 ms for 500 folders)
REREAD_LIMIT = 5_000  # a changed node with more entries than this is marked out of date, not reread


def _guarded(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Wrap a widget callback: an exception is shown in the panel (and logged), never lost."""

    def decorate(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(self: CacheBrowser, *args: Any, **kwargs: Any) -> Any:
            try:
                self._watcher.poke()
                with self._lock:  # a scan finishing in its thread cannot slip in between reading and setting the state
                    return method(self, *args, **kwargs)
            except Exception as exc:
                logger.exception("cache browser: %s failed", what)
                self._set(st.fail(self.state, f"{what} failed: {type(exc).__name__}: {exc}"))
                return None

        return wrapper

    return decorate


def _styled(widget: widgets.Widget, *classes: str) -> Any:
    for cls in classes:
        widget.add_class(cls)
    return widget


def _button(cls: str, description: str, tooltip: str, icon: str = "", **kwargs: Any) -> widgets.Button:
    layout = widgets.Layout(width="auto")
    return _styled(widgets.Button(description=description, tooltip=tooltip, icon=icon, layout=layout, **kwargs), cls)


@dataclass
class _Row:
    """The widgets of one table row (reused from page to page)."""

    check: widgets.Checkbox
    cells: dict[str, widgets.Button]


class CacheBrowser(widgets.VBox):
    """The panel. Build it with :func:`ipython_ext.browser.browse`; it is an ``ipywidgets.VBox``.

    ``state`` is what it shows (a :class:`~ipython_ext.browser_state.PanelState`); the
    widgets are drawn from it. ``background=False`` scans and deletes in the calling thread
    and does not watch the disk (tests call :meth:`check_disk`).
    """

    def __init__(
        self,
        catalog: Catalog,
        *,
        start: Node | None = None,
        project: Project | None = None,
        page_size: int = st.PAGE_SIZE,
        background: bool = True,
        note: str = "",
        watch_seconds: float = WATCH_SECONDS,
    ) -> None:
        super().__init__()
        self.add_class("ptd-browser")
        self.catalog = catalog
        self.state = PanelState(page_size=max(1, int(page_size)), note=note)
        self.last_deleted: prune.Deleted | None = None
        self._lock = threading.RLock()  # one state change (and its drawing) at a time
        self._tasks = Tasks(background, self._lock)
        self._watcher = Watcher(watch_seconds if background else None, self.check_disk)
        self._levels = st.TreeLevels(catalog.children)
        self._tree_rows: list[st.TreeRow] = []
        self._projects: dict[str, Project] = {}
        self._seen: dict[Path, int] | None = None  # folder mtimes at the last scan

        root = f"<b>persist_to_disk cache</b> <code>{html.escape(short_path(catalog.location))}</code>"
        self.title = _styled(widgets.HTML(root), "ptd-title")
        self.project_select = _styled(
            widgets.Dropdown(description="Project", layout=widgets.Layout(width="300px")), "ptd-project"
        )
        self.tree = _styled(widgets.Select(options=[], rows=TREE_ROWS, layout=widgets.Layout(width="100%")), "ptd-tree")
        self.totals = _styled(widgets.HTML(""), "ptd-totals")
        self.filter = _styled(
            widgets.Text(placeholder="filter entries by argument text", layout=widgets.Layout(width="100%")),
            "ptd-filter",
        )
        self.tick_all = _styled(
            widgets.Checkbox(False, indent=False, tooltip="select every entry shown"), "ptd-tick-all"
        )
        self.headers = {
            c.key: _styled(widgets.Button(description=c.title, tooltip=f"sort by {c.title.lower()}"), "ptd-head")
            for c in (view.FUNCTION, *view.COLUMNS)
        }
        self.rows = [self._row() for _ in range(self.state.page_size)]
        self.table = _styled(widgets.GridBox([], layout=widgets.Layout(width="100%")), "ptd-table", "ptd-entries")
        self.prev_button = _button("ptd-prev", "◀ Previous", "previous page")
        self.page_label = _styled(widgets.Label(""), "ptd-page")
        self.next_button = _button("ptd-next", "Next ▶", "next page")
        self.details = _styled(widgets.HTML(""), "ptd-details")
        self.invalidate_selected_button = _button(
            "ptd-invalidate-selected", "Invalidate selected", "delete the selected entries (asks first)", "trash"
        )
        self.invalidate_node_button = _button(
            "ptd-invalidate-node", "Invalidate all", "delete every entry of the open tree node (asks first)", "trash"
        )
        self.invalidate_older_button = _button(
            "ptd-invalidate-older",
            "Invalidate older versions",
            "delete the entries of older code versions (and corrupt ones) in the node (asks first)",
            "history",
        )
        self.refresh_button = _button("ptd-refresh", "Refresh", "read the cache folders again", "refresh")
        self.confirm_message = _styled(widgets.HTML(""), "ptd-confirm-message")
        self.confirm_button = _button("ptd-confirm", "Confirm", "delete now", button_style="danger")
        self.cancel_button = _button("ptd-cancel", "Cancel", "keep everything")
        self.confirm_box = _styled(
            widgets.HBox([self.confirm_message, self.confirm_button, self.cancel_button]), "ptd-confirm-box"
        )
        self.progress = _styled(
            widgets.IntProgress(value=0, min=0, max=1, layout=widgets.Layout(width="160px")), "ptd-progress"
        )
        self.status = _styled(widgets.HTML(""), "ptd-status")
        self._wire()
        self.children = self._layout()

        projects = catalog.projects()
        root = start
        if root is None and (project is not None or projects):
            root = catalog.project_node(project if project is not None else projects[0])
        self.state = replace(self.state, root=root)
        self._set_projects(projects, root.project if root is not None else None)
        if root is not None:
            self._open_root(root)
        else:
            self._set(st.say(self.state, f"Nothing is cached under {catalog.location} yet."))

    # -- building -----------------------------------------------------------------------------------------
    def _row(self) -> _Row:
        check = _styled(widgets.Checkbox(False, indent=False), "ptd-row-check")
        cells = {}
        for c in (view.FUNCTION, *view.COLUMNS):
            button = _styled(widgets.Button(description=""), "ptd-cellbutton", f"ptd-col-{c.key}")
            if c.numeric:
                button.add_class("ptd-num")
            if c.key in ("function", "arguments"):
                button.add_class("ptd-code")
            cells[c.key] = button
        return _Row(check, cells)

    def _wire(self) -> None:
        self.project_select.observe(self._on_project, names="value")
        self.tree.observe(self._on_tree, names="value")
        self.filter.observe(self._on_filter, names="value")
        self.tick_all.observe(self._on_tick_all, names="value")
        for key, button in self.headers.items():
            button.on_click(functools.partial(self._on_sort, key))
        for i, row in enumerate(self.rows):
            row.check.observe(functools.partial(self._on_tick, i), names="value")
            for button in row.cells.values():
                button.on_click(functools.partial(self._on_row, i))
        self.prev_button.on_click(functools.partial(self._on_page, -1))
        self.next_button.on_click(functools.partial(self._on_page, 1))
        self.invalidate_selected_button.on_click(self._on_invalidate_selected)
        self.invalidate_node_button.on_click(self._on_invalidate_node)
        self.invalidate_older_button.on_click(self._on_invalidate_older)
        self.refresh_button.on_click(self._on_refresh)
        self.confirm_button.on_click(self._on_confirm)
        self.cancel_button.on_click(self._on_cancel)

    def _layout(self) -> list[widgets.Widget]:
        W = widgets
        side = _styled(W.VBox([self.tree]), "ptd-side")
        pager = _styled(W.HBox([self.prev_button, self.page_label, self.next_button]), "ptd-pager")
        main = _styled(W.VBox([self.totals, self.filter, self.table, pager, self.details]), "ptd-main")
        actions = _styled(
            W.HBox(
                [
                    self.invalidate_selected_button,
                    self.invalidate_node_button,
                    self.invalidate_older_button,
                    self.refresh_button,
                ],
                layout=W.Layout(flex_flow="row wrap"),
            ),
            "ptd-actions",
        )
        top = _styled(
            W.HBox(
                [self.title, self.project_select],
                layout=W.Layout(justify_content="space-between", align_items="center", flex_flow="row wrap"),
            ),
            "ptd-top",
        )
        body = _styled(W.HBox([side, main], layout=W.Layout(flex_flow="row wrap")), "ptd-body")
        footer = _styled(W.HBox([self.status, self.progress], layout=W.Layout(align_items="center")), "ptd-footer")
        return [W.HTML(view.STYLE), top, body, actions, self.confirm_box, footer]

    # -- state in, widgets out ----------------------------------------------------------------------------
    def _set(self, state: PanelState) -> None:
        with self._lock:
            self.state = state
            self._render()

    def _render(self) -> None:
        state = self.state
        self._render_tree(state)
        self.totals.value = view.totals_html(state)
        self.filter.value = state.filter_text
        self._render_table(state)
        self.page_label.value = view.page_text(state)
        self.prev_button.disabled = state.page == 0
        self.next_button.disabled = state.page >= state.pages - 1
        self.details.value = view.details_html(state)
        node = state.node
        label = "" if node is None else st.node_name(node)
        label = label if len(label) <= 32 else label[:31] + "…"
        self.invalidate_node_button.description = f"Invalidate all in {label}" if label else "Invalidate all"
        if state.pending is not None:
            self.confirm_message.value = f"<b>{html.escape(state.pending.question)}</b> This cannot be undone."
        self.confirm_box.layout.display = "flex" if state.pending is not None else "none"
        text, error = view.status_html(state)
        self.status.value = text
        (self.status.add_class if error else self.status.remove_class)("ptd-error")
        self.progress.layout.visibility = "visible" if state.busy else "hidden"

    def _render_tree(self, state: PanelState) -> None:
        rows = st.tree_rows(state.root, state.open_path, self._levels)
        if [(r.label, r.path) for r in rows] != [(r.label, r.path) for r in self._tree_rows]:
            self._tree_rows = rows
            self.tree.index = None  # new options would otherwise select the first one
            self.tree.options = [(row.label, i) for i, row in enumerate(rows)]
        at = next((i for i, r in enumerate(rows) if state.node is not None and r.node == state.node), None)
        self.tree.value = at

    def _render_table(self, state: PanelState) -> None:
        cols = view.columns(state)
        self.table.layout.grid_template_columns = view.grid_template(cols)
        for c in cols:
            self.headers[c.key].description = view.header_text(state, c)
            self.headers[c.key].disabled = c.sort is None
        self.tick_all.value = bool(state.shown) and len(state.selected) >= len(state.shown)  # ticks stay among shown
        children: list[widgets.Widget] = [self.tick_all, *(self.headers[c.key] for c in cols)]
        for row, entry in zip(self.rows, state.page_entries):
            row.check.value = entry.path in state.selected
            marks = {
                "ptd-selected": entry.path in state.selected,
                "ptd-focus": entry.path == state.focus,
                "ptd-older": entry.current is False,
                "ptd-broken": entry.status != "ok",
            }
            for c in cols:
                button = row.cells[c.key]
                text = c.text(entry)
                button.description = text
                button.tooltip = text
                for cls, on in marks.items():
                    if on and cls not in button._dom_classes:
                        button.add_class(cls)
                    elif not on and cls in button._dom_classes:
                        button.remove_class(cls)
            children += [row.check, *(row.cells[c.key] for c in cols)]
        if list(self.table.children) != children:
            self.table.children = children

    # -- projects and the tree ------------------------------------------------------------------------------
    def _set_projects(self, projects: list[Project], current: Project | None) -> None:
        options = [(p.name if p.source is None else f"{p.name}  ({short_path(p.source)})", p.name) for p in projects]
        if current is not None and current.name not in {p.name for p in projects}:
            options.insert(0, (f"{current.name}  (nothing cached yet)", current.name))
        self._projects = {p.name: p for p in projects}
        if current is not None:
            self._projects.setdefault(current.name, current)
        self.project_select.index = None  # new options would otherwise select the first one
        self.project_select.options = options
        if current is not None:
            self.project_select.value = current.name

    def _open_root(self, node: Node) -> None:
        self.state = state = replace(self.state, root=node, project_totals=None)
        if node.project.name in self._projects:
            self.project_select.value = node.project.name
        self._open(state, node, (node.id,))

    def _open(self, state: PanelState, node: Node, path: tuple[str, ...]) -> None:
        self._seen = None
        self._set(st.open_node(state, node, path))
        self._scan()

    @_guarded("opening the project")
    def _on_project(self, change: dict[str, Any]) -> None:
        project = self._projects.get(change["new"])
        root = self.state.root
        if project is not None and (root is None or root.project.name != project.name):
            self._open_root(self.catalog.project_node(project))

    @_guarded("opening the tree node")
    def _on_tree(self, change: dict[str, Any]) -> None:
        index = change["new"]
        if index is None or index >= len(self._tree_rows):
            return
        row = self._tree_rows[index]
        if row.node is None:
            text = "Too many folders to list here; narrow with browse(func=...) or use `ptd ls`."
            self._set(st.say(self.state, text))
        elif row.node != self.state.node:
            self._open(self.state, row.node, row.path)

    def select_node(self, path: str) -> Node:
        """Open a node by its path in the project (``notebooks/exp/train``, ``…/train/dataset=mnist``),
        as clicking the tree does."""
        root = self.state.root
        if root is None:
            raise CatalogError("nothing to select: the cache is empty")
        target = self.catalog.node(root.project, path)
        chain = [root]
        while chain[-1].id != target.id:
            below = self._levels.children(chain[-1])[0]
            kids = [k for k in below if target.id == k.id or target.id.startswith(k.id + "/")]
            if not kids:
                raise CatalogError(f"{path!r} is not in this panel's tree (rooted at {root.label})")
            chain.append(max(kids, key=lambda k: len(k.id)))
        self._open(self.state, chain[-1], tuple(n.id for n in chain))
        return chain[-1]

    # -- reading -------------------------------------------------------------------------------------------
    def _scan(self, *, why: str = "") -> None:
        node = self.state.node
        if node is None:
            return
        want_project = self.state.project_totals is None
        watched_before = set(self._seen or ())  # a bucket emptied since is still watched: a new entry may land there
        started = time.perf_counter()
        self._set(replace(st.say(self.state, f"Reading {st.node_name(node)} …"), busy=True))

        def work(progress: Callable[[int, int], None], stopped: Callable[[], bool]) -> Any:
            listing = self.catalog.scan(node, progress=progress, should_stop=stopped)
            totals = None
            if node.kind == "project" and listing.complete:
                totals = listing.totals
            elif want_project:
                totals = self.catalog.totals(self.catalog.project_node(node.project))
            folders = st.watched_folders(replace(self.state, node=node, entries=tuple(listing.entries)))
            seen = mtimes(sorted(watched_before.union(folders)))
            return listing, totals, seen

        def done(result: Any) -> None:
            listing, totals, seen = result
            self._seen = seen
            state = st.show_entries(self.state, listing.entries, complete=listing.complete)
            if totals is not None:
                state = replace(state, project_totals=totals)
            n = len(listing.entries)
            broken = state.summary.broken
            extra = f"; {plural(broken, 'entry')} corrupt or gone" if broken else ""
            if not n and state.note:
                text = state.note
            else:
                took = time.perf_counter() - started
                text = f"{why}{plural(n, 'entry')} in {st.node_name(node)} ({took:.1f} s){extra}."
            self._set(replace(st.say(state, text), busy=False))

        self._run(work, done, f"reading {node.label}")

    def _run(self, work: Any, done: Callable[[Any], None], what: str, *, cancellable: bool = True) -> None:
        def failed(exc: Exception) -> None:
            self._set(replace(st.fail(self.state, f"{what} failed: {type(exc).__name__}: {exc}"), busy=False))

        self.progress.value, self.progress.max = 0, 1
        self._tasks.run(work, self._progress, done, failed, what, cancellable=cancellable)

    def _progress(self, current: int, total: int) -> None:
        self.progress.max = max(1, total)
        self.progress.value = min(current, total)

    def wait(self, timeout: float | None = 30.0) -> None:
        """Wait for the running scans and deletions (tests; background=True)."""
        self._tasks.wait(timeout)

    def check_disk(self) -> bool:
        """Whether entries of the open node were added or deleted on disk since it was read (by
        comparing folder mtimes); if so, read it again, or say it is out of date when a deletion
        waits for confirmation or the node is too large to reread on its own."""
        with self._lock:
            state = self.state
            if state.node is None or state.busy or self._seen is None:
                return False
            if mtimes(list(self._seen)) == self._seen:
                return False
            if state.pending is not None or len(state.entries) > REREAD_LIMIT:
                if not state.stale:
                    self._set(st.mark_stale(state))
                return True
            self.catalog.refresh()
            self._levels.forget()
            self._scan(why="The cache changed on disk: ")
            return True

    @_guarded("refreshing")
    def _on_refresh(self, _button: Any) -> None:
        self._set(replace(st.cancel(self.state), notice=st.Status()))
        self.refresh()

    def refresh(self) -> None:
        """Read the cache folders again and rescan the open node (the node's parent if it is gone)."""
        self.catalog.refresh()
        self._levels.forget()
        projects = self.catalog.projects()
        state = replace(self.state, project_totals=None)
        root = state.root
        self._set_projects(projects, root.project if root is not None else None)
        if root is None:
            if projects:
                self._open_root(self.catalog.project_node(projects[0]))
            return
        nodes = {r.node.id: r.node for r in self._tree_rows if r.node is not None}
        node, path = state.node, state.open_path
        while node is not None and len(path) > 1 and not self._still_there(node):
            path = path[:-1]
            node = nodes.get(path[-1])
        if node is None:
            node, path = root, (root.id,)
        if node == state.node:
            self._set(state)
            self._scan()
        else:
            self._open(state, node, path)

    def _still_there(self, node: Node) -> bool:
        """Whether anything is still cached at a node (after others deleted or pruned)."""
        if node.kind == "project":
            return self.catalog.has_folder(node.folder)
        try:
            self.catalog.node(node.project, node.path)
        except CatalogError:
            return False
        return True

    # -- the table -----------------------------------------------------------------------------------------
    def selected(self) -> list[EntryInfo]:
        """The entries selected in the table."""
        return self.state.selection

    @_guarded("filtering")
    def _on_filter(self, change: dict[str, Any]) -> None:
        if change["new"] != self.state.filter_text:
            self._set(st.set_filter(self.state, change["new"]))

    @_guarded("sorting")
    def _on_sort(self, key: str, _button: Any) -> None:
        column = next(c for c in (view.FUNCTION, *view.COLUMNS) if c.key == key)
        if column.sort is not None:
            self._set(st.sort_by(self.state, column.sort))

    @_guarded("paging")
    def _on_page(self, delta: int, _button: Any) -> None:
        self._set(st.turn_page(self.state, delta))

    @_guarded("selecting entries")
    def _on_row(self, index: int, _button: Any) -> None:
        rows = self.state.page_entries
        if index < len(rows):
            self._set(st.choose(self.state, rows[index].path))

    @_guarded("selecting entries")
    def _on_tick(self, index: int, change: dict[str, Any]) -> None:
        rows = self.state.page_entries
        if index < len(rows) and (rows[index].path in self.state.selected) != change["new"]:
            self._set(st.tick(self.state, rows[index].path, change["new"]))

    @_guarded("selecting entries")
    def _on_tick_all(self, change: dict[str, Any]) -> None:
        state = self.state
        if change["new"] != (bool(state.shown) and len(state.selected) >= len(state.shown)):
            self._set(st.tick_all(self.state, change["new"]))

    # -- invalidating --------------------------------------------------------------------------------------
    @_guarded("invalidating the selected entries")
    def _on_invalidate_selected(self, _button: Any) -> None:
        self._set(st.ask_selected(self.state))

    @_guarded("invalidating older versions")
    def _on_invalidate_older(self, _button: Any) -> None:
        self._set(st.ask_older(self.state))

    @_guarded("invalidating the node")
    def _on_invalidate_node(self, _button: Any) -> None:
        node, state = self.state.node, self.state
        on_disk = None if node is None or state.complete else self.catalog.totals(node)
        self._set(st.ask_node(state, on_disk))

    @_guarded("cancelling")
    def _on_cancel(self, _button: Any) -> None:
        self._set(st.say(st.cancel(self.state), "Cancelled; nothing was deleted."))

    @_guarded("confirming")
    def _on_confirm(self, _button: Any) -> None:
        pending = self.state.pending
        self._set(st.cancel(self.state))
        if pending is None:
            return
        if pending.node is not None:
            self._delete_node(pending.node)
        else:
            self._delete_entries(pending.entries)

    def _delete_entries(self, chosen: tuple[EntryInfo, ...]) -> None:
        node = self.state.node
        self._set(replace(self.state, busy=True))

        def work(progress: Callable[[int, int], None], _stopped: Callable[[], bool]) -> prune.Deleted:
            return self.catalog.delete(chosen, progress=progress)

        def done(result: prune.Deleted) -> None:
            failed = {path for path, _why in result.failed}
            gone = [e.path for e in chosen if Path(os.path.abspath(e.path)) not in failed]
            state = st.forget(self.state, gone) if self.state.node == node else self.state
            if self._seen is not None:  # this panel's own deletion is no news from the disk
                self._seen = mtimes(list(self._seen))
            self._report(replace(state, busy=False), result)

        self._run(work, done, "deleting entries", cancellable=False)

    def _delete_node(self, node: Node) -> None:
        path = self.state.open_path
        nodes = {r.node.id: r.node for r in self._tree_rows if r.node is not None}
        self._set(replace(self.state, busy=True))

        def work(progress: Callable[[int, int], None], _stopped: Callable[[], bool]) -> prune.Deleted:
            return self.catalog.delete_node(node, progress=progress)

        def done(result: prune.Deleted) -> None:
            self._levels.forget()
            state = replace(self.state, project_totals=None, busy=False)
            root = state.root
            if state.node == node and root is not None:
                parent = path[:-1] if len(path) > 1 else path
                self._open(state, nodes.get(parent[-1], root), parent)
            else:
                self._set(state)
            self._report(self.state, result)

        self._run(work, done, f"deleting {node.label}", cancellable=False)

    def _report(self, state: PanelState, result: prune.Deleted) -> None:
        self.last_deleted = result
        self._set(st.report(state, result.describe(), failed=bool(result.failed)))

    # -- closing -------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop watching the disk, then close the widgets."""
        self._watcher.stop()
        super().close()
