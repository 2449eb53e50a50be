"""The cache browser: an ipywidgets panel to see and invalidate cached entries.

``ptd.browse()`` returns the panel; ``%persist_browse`` displays it (see :func:`register`).

::

    [persist path]                                            [project ▾]
    tree (lazy)              | totals of the node and the project
      proj-3 (/home/me/proj) | [filter by argument text]
        ▾ notebooks/exp      | ARGUMENTS        SIZE  CREATED  LAST READ  COMPUTE  VERSION
            ▸ train()        | entry rows (a page; select one or more)
            ▸ %%persist load | [◀ Previous]  page 1 of 3  [Next ▶]
        ▸ pipeline/train     | details of the selected entry
    [Invalidate selected] [Invalidate all in <node>] [Invalidate older versions] [Refresh]
    confirmation row (shown before any deletion)       progress bar, status line

Everything it lists and deletes goes through :mod:`persist_to_disk.catalog`, the same
code as the ``ptd`` command line. The tree reads folders only when a node is opened;
a node's entries are scanned (headers only, values never loaded) in a background
thread with a progress bar, so a 50,000-entry cache does not block the kernel; the
table shows one page at a time.

Which entries are of the *current* code version: for a function given as
``browse(func=f)``, and for every persisted function in the notebook's namespace,
the version of the code that runs now; for others, the version of the function
folder's most recently used entry (see :mod:`persist_to_disk.catalog`).

Every widget has a CSS class (``ptd-tree``, ``ptd-entries``, ``ptd-invalidate-selected``,
``ptd-confirm``, ``ptd-status``, ...) so a browser test can find it. Callbacks catch
their own errors and show them in the status line.
"""

from __future__ import annotations

import functools
import html
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from persist_to_disk import catalog as cat
from persist_to_disk.catalog import Catalog, CatalogEntry, CatalogError, Function, Node, Project, Totals

logger = logging.getLogger("persist_to_disk")

__all__ = ["CacheBrowser", "browse", "register"]

PAGE_SIZE = 25
TREE_ROWS = 18
MAX_TREE_CHILDREN = 400  # rows per tree level; a groupby argument with more values says how many are hidden
ARGS_WIDTH = 32
_INDENT = "\u2003"  # an em space: <option> text keeps it
_MORE = "\x00more"

_STYLE = """<style>
.ptd-browser .ptd-tree select, .ptd-browser .ptd-entries select, .ptd-browser .ptd-columns pre {
  font-family: var(--jp-code-font-family, monospace); font-size: 11.5px; line-height: 1.35;
}
.ptd-browser .ptd-columns pre { margin: 0 0 0 5px; padding: 0; font-weight: bold; white-space: pre; overflow: hidden;
  font-size: 11.5px; color: var(--jp-ui-font-color2, #555); }
.ptd-browser .ptd-status { margin-right: 12px; }
.ptd-browser .ptd-details .widget-html-content, .ptd-browser .ptd-title .widget-html-content { line-height: 1.45; }
.ptd-browser .ptd-entries select { white-space: pre; }
.ptd-browser .ptd-status.ptd-error { color: #b00020; }
.ptd-browser .ptd-details table { border-collapse: collapse; font-size: 12px; }
.ptd-browser .ptd-details td { padding: 1px 8px 1px 0; vertical-align: top; text-align: left; }
.ptd-browser .ptd-details td:first-child { color: var(--jp-ui-font-color2, #666); white-space: nowrap; }
.ptd-browser .ptd-confirm-box { background: var(--jp-warn-color3, #fff3e0); padding: 4px; border-radius: 3px; }
</style>"""


def _guarded(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Wrap a widget callback: an exception is shown in the panel (and logged), never lost."""

    def decorate(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(self: CacheBrowser, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except Exception as exc:
                logger.exception("cache browser: %s failed", what)
                self._error(f"{what} failed: {type(exc).__name__}: {exc}")
                return None

        return wrapper

    return decorate


class CacheBrowser(widgets.VBox):
    """The panel. Build it with :func:`browse`; it is an ``ipywidgets.VBox``.

    State lives here (the tree's open path, the node's entries, the filter, the page,
    a pending deletion); the widgets are rebuilt from it.
    """

    def __init__(
        self,
        catalog: Catalog,
        *,
        start: Node | None = None,
        project: Project | None = None,
        page_size: int = PAGE_SIZE,
        background: bool = True,
        note: str = "",
    ) -> None:
        super().__init__()
        self.add_class("ptd-browser")
        self.catalog = catalog
        self.page_size = max(1, int(page_size))
        self.background = background
        self._lock = threading.RLock()
        self._task_id = 0
        self._threads: list[threading.Thread] = []
        self.last_deleted: cat.Deleted | None = None
        self._notice: tuple[str, bool] = ("", False)
        self._busy = False
        self._updating = False
        self._children: dict[str, list[Node]] = {}
        self._hidden: dict[str, int] = {}
        self._rows: dict[str, tuple[Node, tuple[str, ...]]] = {}
        self._open: tuple[str, ...] = ()
        self._root: Node | None = None
        self.node: Node | None = None
        self.entries: list[CatalogEntry] = []  # the node's entries, newest first
        self.shown: list[CatalogEntry] = []  # after the filter
        self.page = 0
        self.complete = False
        self.project_totals: Totals | None = None
        self._pending: Callable[[], None] | None = None

        self._note = note
        self._build()
        projects = catalog.projects()
        self._set_project_options(projects, project)
        if note:
            self._say(note)
        if start is not None:
            self._set_root(start)
        elif project is not None:
            self._set_root(catalog.project_node(project))
        elif projects:
            self._set_root(catalog.project_node(projects[0]))
        else:
            self._set_root(None)
            self._say(f"Nothing is cached under {catalog.root} yet.")

    # -- widgets ----------------------------------------------------------------------------------------
    def _build(self) -> None:
        W = widgets
        self.title = W.HTML(
            f"<b>persist_to_disk cache</b><br><small><code>{html.escape(str(self.catalog.root))}</code></small>"
        )
        self.project_select = W.Dropdown(description="Project", layout=W.Layout(width="320px"))
        self.tree = W.Select(options=[], rows=TREE_ROWS, layout=W.Layout(width="100%"))
        self.totals = W.HTML("")
        self.filter = W.Text(
            placeholder="filter entries by argument text", continuous_update=True, layout=W.Layout(width="100%")
        )
        self.columns = W.HTML(f"<pre>{html.escape(_row_header())}</pre>", layout=W.Layout(width="100%"))
        self.entry_list = W.SelectMultiple(options=[], rows=min(self.page_size, 14), layout=W.Layout(width="100%"))
        self.prev_button = W.Button(description="◀ Previous", tooltip="previous page", layout=W.Layout(width="110px"))
        self.page_label = W.Label("")
        self.next_button = W.Button(description="Next ▶", tooltip="next page", layout=W.Layout(width="110px"))
        self.details = W.HTML("")
        self.invalidate_selected_button = W.Button(
            description="Invalidate selected",
            icon="trash",
            tooltip="delete the selected entries (asks first)",
            layout=W.Layout(width="auto"),
        )
        self.invalidate_node_button = W.Button(
            description="Invalidate all",
            icon="trash",
            tooltip="delete every entry of the selected tree node (asks first)",
            layout=W.Layout(width="auto"),
        )
        self.invalidate_older_button = W.Button(
            description="Invalidate older versions",
            icon="history",
            tooltip="delete the entries of older code versions (and corrupt ones) in the node (asks first)",
            layout=W.Layout(width="auto"),
        )
        self.refresh_button = W.Button(
            description="Refresh", icon="refresh", tooltip="read the cache folders again", layout=W.Layout(width="auto")
        )
        self.confirm_message = W.HTML("")
        self.confirm_button = W.Button(description="Confirm", button_style="danger", layout=W.Layout(width="auto"))
        self.cancel_button = W.Button(description="Cancel", layout=W.Layout(width="auto"))
        self.confirm_box = W.HBox(
            [self.confirm_message, self.confirm_button, self.cancel_button],
            layout=W.Layout(display="none", align_items="center"),
        )
        self.progress = W.IntProgress(value=0, min=0, max=1, layout=W.Layout(width="180px", visibility="hidden"))
        self.status = W.HTML("")

        for widget, cls in (
            (self.title, "ptd-title"),
            (self.project_select, "ptd-project"),
            (self.tree, "ptd-tree"),
            (self.totals, "ptd-totals"),
            (self.filter, "ptd-filter"),
            (self.columns, "ptd-columns"),
            (self.entry_list, "ptd-entries"),
            (self.prev_button, "ptd-prev"),
            (self.page_label, "ptd-page"),
            (self.next_button, "ptd-next"),
            (self.details, "ptd-details"),
            (self.invalidate_selected_button, "ptd-invalidate-selected"),
            (self.invalidate_node_button, "ptd-invalidate-node"),
            (self.invalidate_older_button, "ptd-invalidate-older"),
            (self.refresh_button, "ptd-refresh"),
            (self.confirm_box, "ptd-confirm-box"),
            (self.confirm_message, "ptd-confirm-message"),
            (self.confirm_button, "ptd-confirm"),
            (self.cancel_button, "ptd-cancel"),
            (self.progress, "ptd-progress"),
            (self.status, "ptd-status"),
        ):
            widget.add_class(cls)

        self.project_select.observe(self._on_project, names="value")
        self.tree.observe(self._on_tree, names="value")
        self.filter.observe(self._on_filter, names="value")
        self.entry_list.observe(self._on_entries, names="value")
        self.prev_button.on_click(self._on_prev)
        self.next_button.on_click(self._on_next)
        self.invalidate_selected_button.on_click(self._on_invalidate_selected)
        self.invalidate_node_button.on_click(self._on_invalidate_node)
        self.invalidate_older_button.on_click(self._on_invalidate_older)
        self.refresh_button.on_click(self._on_refresh)
        self.confirm_button.on_click(self._on_confirm)
        self.cancel_button.on_click(self._on_cancel)

        left = W.VBox([self.tree], layout=W.Layout(width="28%", min_width="200px"))
        pager = W.HBox([self.prev_button, self.page_label, self.next_button], layout=W.Layout(align_items="center"))
        right = W.VBox(
            [self.totals, self.filter, self.columns, self.entry_list, pager, self.details],
            layout=W.Layout(width="72%", padding="0 0 0 6px"),
        )
        actions = W.HBox(
            [
                self.invalidate_selected_button,
                self.invalidate_node_button,
                self.invalidate_older_button,
                self.refresh_button,
            ],
            layout=W.Layout(flex_flow="row wrap"),
        )
        top = W.HBox(
            [self.title, self.project_select], layout=W.Layout(justify_content="space-between", align_items="center")
        )
        self.children = [
            W.HTML(_STYLE),
            top,
            W.HBox([left, right]),
            actions,
            self.confirm_box,
            W.HBox([self.status, self.progress], layout=W.Layout(align_items="center")),
        ]

    # -- messages -----------------------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        """Show a message; the outcome of the last deletion stays in front until the user moves on."""
        notice, failed = self._notice
        if notice and text != notice:
            text = f"{notice} {text}"
        if failed:
            self.status.add_class("ptd-error")
            self.status.value = f"<b>Error:</b> {html.escape(text)}"
            return
        self.status.remove_class("ptd-error")
        self.status.value = html.escape(text)

    def _error(self, text: str) -> None:
        self.status.add_class("ptd-error")
        self.status.value = f"<b>Error:</b> {html.escape(text)}"

    # -- projects and the tree ------------------------------------------------------------------------------
    def _set_project_options(self, projects: list[Project], current: Project | None) -> None:
        options = [(p.name if p.source is None else f"{p.name}  ({p.source})", p.name) for p in projects]
        if current is not None and current.name not in {p.name for p in projects}:
            options.insert(0, (f"{current.name}  (nothing cached yet)", current.name))
        self._projects = {p.name: p for p in projects}
        if current is not None:
            self._projects.setdefault(current.name, current)
        self._updating = True
        try:
            self.project_select.options = options
            self.project_select.value = current.name if current is not None else (options[0][1] if options else None)
        finally:
            self._updating = False

    def _set_root(self, node: Node | None) -> None:
        self._root = node
        if node is None:
            self.node = None
            self.tree.options = []
            self._show_entries([], complete=True)
            return
        with self._hold():
            if self.project_select.value != node.project.name and node.project.name in self._projects:
                self.project_select.value = node.project.name
        self.project_totals = None
        self._select(node, (node.id,))

    def _children_of(self, node: Node) -> list[Node]:
        found = self._children.get(node.id)
        if found is None:
            found = self.catalog.children(node)
            if len(found) > MAX_TREE_CHILDREN:
                self._hidden[node.id] = len(found) - MAX_TREE_CHILDREN
                found = found[:MAX_TREE_CHILDREN]
            self._children[node.id] = found
        return found

    def _render_tree(self) -> None:
        rows: list[tuple[str, str]] = []
        self._rows = {}
        root = self._root
        if root is None:
            return

        def add(node: Node, depth: int, path: tuple[str, ...]) -> None:
            is_open = path == self._open[: len(path)]
            kids = self._children_of(node) if is_open else None
            leaf = (kids is not None and not kids) or (
                node.function is not None and node.level >= len(node.function.groupby)
            )
            mark = " " if leaf else ("▾" if is_open else "▸")
            rows.append((f"{_INDENT * depth}{mark} {node.label}", node.id))
            self._rows[node.id] = (node, path)
            if kids:
                for kid in kids:
                    add(kid, depth + 1, (*path, kid.id))
                hidden = self._hidden.get(node.id)
                if hidden:
                    rows.append((f"{_INDENT * (depth + 1)}… {hidden:,} more (use ptd ls)", _MORE + node.id))

        add(root, 0, (root.id,))
        with self._hold():
            self.tree.options = rows
            self.tree.value = self.node.id if self.node is not None and self.node.id in self._rows else None

    def _select(self, node: Node, path: tuple[str, ...]) -> None:
        self.node = node
        self._open = path
        self._render_tree()
        label = node.label if len(node.label) <= 40 else node.label[:39] + "…"
        self.invalidate_node_button.description = f"Invalidate all in {label}"
        self._cancel_pending()
        self._scan()

    @_guarded("opening the project")
    def _on_project(self, change: dict[str, Any]) -> None:
        if self._updating or change["new"] is None:
            return
        project = self._projects.get(change["new"])
        self._notice = ("", False)
        if project is not None:
            self._set_root(self.catalog.project_node(project))

    @_guarded("opening the tree node")
    def _on_tree(self, change: dict[str, Any]) -> None:
        if self._updating or change["new"] is None:
            return
        value = change["new"]
        if value.startswith(_MORE):
            self._say("Too many folders to list here; narrow with browse(func=...) or use `ptd ls`.")
            return
        row = self._rows.get(value)
        if row is not None:
            self._notice = ("", False)
            self._select(*row)

    def select_node(self, path: str) -> Node:
        """Open a node by its path in the project (``notebooks/exp/train``), as clicking the tree does."""
        if self._root is None:
            raise CatalogError("nothing to select: the cache is empty")
        target = self.catalog.node(self._root.project, path)
        chain = [self._root]
        while chain[-1].id != target.id:
            kids = [k for k in self._children_of(chain[-1]) if target.id == k.id or target.id.startswith(k.id + "/")]
            if not kids:
                raise CatalogError(f"{path!r} is not in this panel's tree (rooted at {self._root.label})")
            chain.append(max(kids, key=lambda k: len(k.id)))
        self._select(chain[-1], tuple(n.id for n in chain))
        return chain[-1]

    # -- scanning ------------------------------------------------------------------------------------------
    def _run(
        self,
        work: Callable[[Callable[[int, int], None], Callable[[], bool]], Any],
        done: Callable[[Any], None],
        what: str,
        *,
        cancellable: bool = True,
    ) -> None:
        """Run work(progress, stopped) in a thread (or here when background=False), then done(result).

        A newer cancellable task (opening another node) makes an older one stop and drop its result;
        a deletion is never cancelled: it finishes and reports.
        """
        with self._lock:
            self._task_id += 1
            task = self._task_id

        def stopped() -> bool:
            return cancellable and task != self._task_id

        def progress(current: int, total: int) -> None:
            if stopped():
                return
            self.progress.max = max(1, total)
            self.progress.value = min(current, total)

        def finish() -> None:
            if task == self._task_id:
                self._busy = False
                self.progress.layout.visibility = "hidden"

        def body() -> None:
            try:
                result = work(progress, stopped)
                with self._lock:
                    if stopped():
                        return
                    finish()
                    done(result)
            except Exception as exc:
                logger.exception("cache browser: %s failed", what)
                with self._lock:
                    finish()
                    self._error(f"{what} failed: {type(exc).__name__}: {exc}")

        self._busy = True
        self.progress.value, self.progress.max = 0, 1
        self.progress.layout.visibility = "visible"
        if self.background:
            thread = threading.Thread(target=body, name=f"ptd-browser-{task}", daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()
        else:
            body()

    def wait(self, timeout: float | None = 30.0) -> None:
        """Wait for the running scans and deletions (tests; background=True)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            alive = [t for t in self._threads if t.is_alive()]
            if not alive:
                return
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"the cache browser's task is still running after {timeout} s")
            alive[0].join(left)

    def _scan(self) -> None:
        node = self.node
        if node is None:
            return
        self.complete = False
        self._say(f"Reading {node.label} …")
        want_project = self.project_totals is None
        start = time.perf_counter()

        def work(progress: Callable[[int, int], None], stopped: Callable[[], bool]) -> Any:
            listing = self.catalog.scan(node, progress=progress, should_stop=stopped)
            project_totals = None
            if node.kind == "project" and listing.complete:
                project_totals = listing.totals
            elif want_project:
                project_totals = self.catalog.totals(self.catalog.project_node(node.project))
            return listing, project_totals

        def done(result: Any) -> None:
            listing, project_totals = result
            if project_totals is not None:
                self.project_totals = project_totals
            self._show_entries(listing.entries, complete=listing.complete)
            n = len(listing.entries)
            broken = sum(1 for e in listing.entries if e.status != "ok")
            extra = f"; {cat.plural(broken, 'entry')} corrupt or gone" if broken else ""
            if not n and self._note:
                self._say(self._note)
            else:
                self._say(f"{cat.plural(n, 'entry')} in {node.label} ({time.perf_counter() - start:.1f} s){extra}.")

        self._run(work, done, f"reading {node.label}")

    def _show_entries(self, entries: list[CatalogEntry], *, complete: bool) -> None:
        entries.sort(key=lambda e: e.created or e.last_read, reverse=True)
        self.entries = entries
        self.complete = complete
        self._apply_filter()

    def _apply_filter(self) -> None:
        text = self.filter.value.strip()
        self.shown = [e for e in self.entries if e.matches(text)] if text else list(self.entries)
        self.page = 0
        self._render_page()

    def _render_page(self) -> None:
        pages = max(1, -(-len(self.shown) // self.page_size))
        self.page = min(max(self.page, 0), pages - 1)
        chunk = self.shown[self.page * self.page_size : (self.page + 1) * self.page_size]
        with self._hold():
            self.entry_list.options = [(_row(e), str(e.path)) for e in chunk]
            self.entry_list.value = ()
        self._by_path = {str(e.path): e for e in chunk}
        self.page_label.value = f"page {self.page + 1} of {pages} · {len(self.shown):,} shown"
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = self.page >= pages - 1
        self._render_totals()
        self._render_details()

    def _render_totals(self) -> None:
        node = self.node
        if node is None:
            self.totals.value = ""
            return
        size = sum(e.size for e in self.entries)
        parts = [
            f"<b>{html.escape(node.label)}</b>: {cat.plural(len(self.entries), 'entry')}, {cat.format_bytes(size)}"
        ]
        if self.filter.value.strip():
            parts.append(f"{len(self.shown):,} match the filter")
        older = sum(1 for e in self.entries if e.current is False)
        if older:
            parts.append(f"{older:,} of older code versions")
        if self.project_totals is not None:
            t = self.project_totals
            parts.append(
                f"project {html.escape(node.project.name)}: {cat.plural(t.entries, 'entry')}, {cat.format_bytes(t.bytes)}"
            )
        self.totals.value = " · ".join(parts)

    def _render_details(self) -> None:
        chosen = self.selected()
        if not chosen:
            self.details.value = "<i>Select an entry to see its details.</i>" if self.shown else ""
            return
        e = chosen[0]
        gone = not e.path.exists()
        rows = [
            ("function", e.func or "?"),
            ("kind", e.kind),
            ("arguments", "\n".join(f"{k} = {v}" for k, v in e.args.items()) or "()"),
            ("status", "vanished (deleted by someone else; Refresh)" if gone else (e.error or "ok")),
            ("size", cat.format_bytes(e.size)),
            ("created", cat.format_time(e.created)),
            ("last read", cat.format_time(e.last_read)),
            ("compute time", cat.format_seconds(e.compute_seconds)),
            ("code version", f"{e.code_version or '-'} ({_version_text(e)})"),
            ("file", str(e.path)),
        ]
        more = f"<br><i>and {len(chosen) - 1} more selected</i>" if len(chosen) > 1 else ""
        body = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{html.escape(v).replace(chr(10), '<br>')}</td></tr>" for k, v in rows
        )
        self.details.value = f"<table>{body}</table>{more}"

    def selected(self) -> list[CatalogEntry]:
        """The entries selected in the table."""
        return [self._by_path[p] for p in self.entry_list.value if p in self._by_path]

    @_guarded("filtering")
    def _on_filter(self, change: dict[str, Any]) -> None:
        self._apply_filter()

    @_guarded("selecting entries")
    def _on_entries(self, change: dict[str, Any]) -> None:
        if not self._updating:
            self._render_details()

    @_guarded("paging")
    def _on_prev(self, _button: Any) -> None:
        self.page -= 1
        self._render_page()

    @_guarded("paging")
    def _on_next(self, _button: Any) -> None:
        self.page += 1
        self._render_page()

    @_guarded("refreshing")
    def _on_refresh(self, _button: Any) -> None:
        self._cancel_pending()
        self._notice = ("", False)
        self.refresh()

    def refresh(self) -> None:
        """Read the cache folders again and rescan the open node (the node's parent if it is gone)."""
        self.catalog.refresh()
        self._children.clear()
        self._hidden.clear()
        self.project_totals = None
        projects = self.catalog.projects()
        current = self._root.project if self._root is not None else None
        self._set_project_options(projects, current)
        if self._root is None:
            if projects:
                self._set_root(self.catalog.project_node(projects[0]))
            return
        node, path = self.node, self._open
        while node is not None and len(path) > 1 and not self._still_there(node):
            path = path[:-1]
            node = self._rows.get(path[-1], (None,))[0]
        if node is None:
            node, path = self._root, (self._root.id,)
        self._select(node, path)

    def _still_there(self, node: Node) -> bool:
        """Whether anything is still cached at a node (after others deleted or pruned)."""
        if node.kind == "project":
            return node.folder.is_dir()
        try:
            self.catalog.node(node.project, node.path)
        except CatalogError:
            return False
        return True

    # -- invalidating --------------------------------------------------------------------------------------
    def _ask(self, question: str, action: Callable[[], None]) -> None:
        self._pending = action
        self.confirm_message.value = f"<b>{html.escape(question)}</b> This cannot be undone."
        self.confirm_box.layout.display = "flex"

    def _cancel_pending(self) -> None:
        self._pending = None
        self.confirm_box.layout.display = "none"

    @_guarded("confirming")
    def _on_confirm(self, _button: Any) -> None:
        action = self._pending
        self._cancel_pending()
        if action is not None:
            action()

    @_guarded("cancelling")
    def _on_cancel(self, _button: Any) -> None:
        self._cancel_pending()
        self._say("Cancelled; nothing was deleted.")

    @_guarded("invalidating the selected entries")
    def _on_invalidate_selected(self, _button: Any) -> None:
        chosen = self.selected()
        if not chosen:
            self._say("Select one or more entries in the table first.")
            return
        size = sum(e.size for e in chosen)
        self._ask(
            f"Delete {cat.plural(len(chosen), 'selected entry', 'selected entries')} ({cat.format_bytes(size)})?",
            lambda: self._delete_entries(chosen),
        )

    @_guarded("invalidating older versions")
    def _on_invalidate_older(self, _button: Any) -> None:
        if self._busy or not self.complete:
            self._say("Wait until the entries are read, then try again.")
            return
        older = [e for e in self.entries if e.current is False or e.status == "corrupt"]
        node = self.node
        if not older or node is None:
            self._say("No entries of older code versions here.")
            return
        size = sum(e.size for e in older)
        self._ask(
            f"Delete {cat.plural(len(older), 'entry')} of older code versions (or corrupt) in {node.label} "
            f"({cat.format_bytes(size)})?",
            lambda: self._delete_entries(older),
        )

    @_guarded("invalidating the node")
    def _on_invalidate_node(self, _button: Any) -> None:
        node = self.node
        if node is None:
            return
        if self.complete:
            count, size = len(self.entries), sum(e.size for e in self.entries)
        else:
            totals = self.catalog.totals(node)
            count, size = totals.entries, totals.bytes
        if not count:
            self._say(f"Nothing to delete in {node.label}.")
            return
        self._ask(
            f"Delete all {cat.plural(count, 'entry')} in {node.label} ({cat.format_bytes(size)})?",
            lambda: self._delete_node(node),
        )

    def _delete_entries(self, chosen: list[CatalogEntry]) -> None:
        node = self.node

        def work(progress: Callable[[int, int], None], _stopped: Callable[[], bool]) -> cat.Deleted:
            return self.catalog.delete(chosen, progress=progress)

        def done(result: cat.Deleted) -> None:
            failed = {path for path, _why in result.failed}
            gone = {id(e) for e in chosen if Path(os.path.abspath(e.path)) not in failed}
            if self.project_totals is not None:
                self.project_totals = Totals(
                    max(0, self.project_totals.entries - result.entries),
                    max(0, self.project_totals.bytes - result.bytes),
                )
            if self.node is node:
                self.entries = [e for e in self.entries if id(e) not in gone]
                self.shown = [e for e in self.shown if id(e) not in gone]
                self._render_page()
            self._report(result)

        self._run(work, done, "deleting entries", cancellable=False)

    def _delete_node(self, node: Node) -> None:
        path = self._open

        def work(progress: Callable[[int, int], None], _stopped: Callable[[], bool]) -> cat.Deleted:
            return self.catalog.delete_node(node, progress=progress)

        def done(result: cat.Deleted) -> None:
            self._children.clear()
            self._hidden.clear()
            self.project_totals = None
            if self.node is node and self._root is not None:
                parent = path[:-1] if len(path) > 1 else path
                target = self._rows.get(parent[-1], (self._root,))[0] or self._root
                self._select(target, parent)
            else:
                self._render_tree()
            self._report(result)

        self._run(work, done, f"deleting {node.label}", cancellable=False)

    def _report(self, result: cat.Deleted) -> None:
        self.last_deleted = result
        self._notice = (result.describe(), bool(result.failed))
        self._say(self._notice[0])

    # -- helpers -------------------------------------------------------------------------------------------
    def _hold(self) -> _Holding:
        return _Holding(self)


class _Holding:
    """Within it, programmatic changes of widget values do not run the callbacks."""

    def __init__(self, owner: CacheBrowser) -> None:
        self.owner = owner
        self.before = False

    def __enter__(self) -> None:
        self.before = self.owner._updating
        self.owner._updating = True

    def __exit__(self, *exc: object) -> None:
        self.owner._updating = self.before


# ----------------------------------------------------------------------------------------------- rows
_COLUMNS = (
    ("ARGUMENTS", ARGS_WIDTH, "<"),
    ("SIZE", 9, ">"),
    ("CREATED", 12, "<"),
    ("LAST READ", 12, "<"),
    ("COMPUTE", 8, ">"),
    ("VERSION", 8, "<"),
)


def _short_time(ts: float | None) -> str:
    """``Nov 24 15:03`` this year, ``2023-11-24`` before (the details pane has the full time)."""
    if not ts:
        return "-"
    when = time.localtime(ts)
    if when.tm_year == time.localtime().tm_year:
        return time.strftime("%b %d %H:%M", when)
    return time.strftime("%Y-%m-%d", when)


def _fit(text: str, width: int, align: str) -> str:
    text = text if len(text) <= width else text[: width - 1] + "…"
    return text.ljust(width) if align == "<" else text.rjust(width)


def _row_header() -> str:
    return "  ".join(_fit(name, width, align) for name, width, align in _COLUMNS)


def _version_text(e: CatalogEntry) -> str:
    if e.status == "vanished":
        return "VANISHED"
    if e.status == "corrupt":
        return "CORRUPT"
    if e.current is None:
        return "-"
    return "current" if e.current else "older"


def _row(e: CatalogEntry) -> str:
    if e.status == "ok":
        args = e.args_text or "()"
    else:
        args = f"<{e.error}> {e.path.name}"
    cells = (
        args,
        cat.format_bytes(e.size),
        _short_time(e.created),
        _short_time(e.last_read),
        cat.format_seconds(e.compute_seconds),
        _version_text(e),
    )
    return "  ".join(_fit(text, width, align) for text, (_n, width, align) in zip(cells, _COLUMNS))


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
    if start is not None and not start.folder.is_dir():
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
        return Node("function", project, parts, cat.function_label(function), function, (folder,))
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
