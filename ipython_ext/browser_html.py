"""The cache panel's text and HTML, computed from a :class:`~ipython_ext.browser_state.PanelState`.

No ipywidgets here: the table's columns and cell texts, the totals line, the details of the
focused entry, the status line, and the style sheet. Colours are JupyterLab's theme
variables (``var(--jp-...)``), so the panel follows its light and dark themes.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass

from persist_to_disk.listing import EntryInfo
from persist_to_disk.readable import (
    format_bytes,
    format_seconds,
    format_short_time,
    format_time,
    plural,
    short_path,
    version_label,
)

from .browser_state import PanelState, SortColumn, Status, node_name

CHECK_WIDTH = "26px"


@dataclass(frozen=True)
class Column:
    """A table column: its title, its CSS grid track, how an entry fills it, what sorting by it means."""

    key: str
    title: str
    track: str
    text: Callable[[EntryInfo], str]
    sort: SortColumn | None = None
    numeric: bool = False


def _arguments(e: EntryInfo) -> str:
    return e.args_text if e.status == "ok" else f"<{e.error}> {e.path.name}"


FUNCTION = Column("function", "Function / cell", "minmax(80px, 1fr)", lambda e: e.owner, "function")
COLUMNS = (
    Column("arguments", "Arguments", "minmax(110px, 2fr)", _arguments, "arguments"),
    Column("size", "Size", "78px", lambda e: format_bytes(e.size), "size", numeric=True),
    Column("created", "Created", "80px", lambda e: format_short_time(e.created), "created"),
    Column("last_read", "Last read", "82px", lambda e: format_short_time(e.last_read), "last_read"),
    Column("compute", "Compute", "92px", lambda e: format_seconds(e.compute_seconds), "compute", numeric=True),
    Column("version", "Version", "66px", lambda e: version_label(e.status, e.current)),
)


def columns(state: PanelState) -> tuple[Column, ...]:
    """The table's columns: a function/cell column above function level, where rows of several mix."""
    return (FUNCTION, *COLUMNS) if state.above_function else COLUMNS


def grid_template(cols: tuple[Column, ...]) -> str:
    return " ".join((CHECK_WIDTH, *(c.track for c in cols)))


def header_text(state: PanelState, column: Column) -> str:
    if column.sort is None or column.sort != state.sort:
        return column.title
    return f"{column.title} {'▼' if state.descending else '▲'}"


def totals_html(state: PanelState) -> str:
    """``train(): 4 entries · 1.2 MiB · 3 h 12 min to recompute · 1 of older code versions · project …``."""
    node = state.node
    if node is None:
        return ""
    s = state.summary
    parts = [f"<b>{html.escape(node_name(node))}</b>: {plural(s.entries, 'entry')}", format_bytes(s.bytes)]
    if s.compute_seconds:
        parts.append(f"{format_seconds(s.compute_seconds)} to recompute")
    if state.filter_text.strip():
        parts.append(f"{len(state.shown):,} match the filter")
    if s.older:
        parts.append(f"{s.older:,} of older code versions")
    if state.project_totals is not None and node.kind != "project":
        t = state.project_totals
        parts.append(
            f"project {html.escape(node.project.name)}: {plural(t.entries, 'entry')}, {format_bytes(t.bytes)}"
        )
    return " · ".join(parts)


def page_text(state: PanelState) -> str:
    text = f"page {state.page + 1} of {state.pages} · {len(state.shown):,} shown"
    return f"{text} · {len(state.selected):,} selected" if state.selected else text


def details_html(state: PanelState) -> str:
    """Everything about the focused entry, arguments in full, one per line."""
    e = state.focused
    if e is None:
        return "<i>Click a row to see its details; tick rows to invalidate them.</i>" if state.shown else ""
    gone = not e.path.exists()
    rows: list[tuple[str, str]] = [("function" if e.kind != "cell" else "cell", e.owner)]
    args = "\n".join(f"{k} = {v}" for k, v in e.args.items())
    if e.names is not None:  # a %%persist cell: what it read, what it holds
        rows.append(("reads", args or "nothing"))
        rows.append(("holds", ", ".join(e.names) or "nothing"))
    else:
        rows.append(("arguments", args or "()"))
    others = [(kind, name, where) for kind, name, where in e.dependencies if (kind, name) != ("function", e.func)]
    if others:  # what else the key holds (the function's own code is its code version)
        rows.append(("depends on", "\n".join(f"{kind} {name}: {where}" for kind, name, where in others)))
    rows += [
        ("status", "vanished (deleted by someone else; Refresh)" if gone else (e.error or "ok")),
        ("size", format_bytes(e.size)),
        ("created", format_time(e.created)),
        ("last read", format_time(e.last_read)),
        ("compute time", format_seconds(e.compute_seconds)),
        ("code version", f"{e.code_version or '-'} ({version_label(e.status, e.current)})"),
        ("file", short_path(e.path)),
    ]
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    more = len(state.selected - {e.path})
    tail = f"<div class='ptd-more'>and {plural(more, 'more entry', 'more entries')} selected</div>" if more else ""
    return f"<table>{body}</table>{tail}"


def status_html(state: PanelState) -> tuple[str, bool]:
    """The status line's HTML, and whether it is an error."""
    line: Status = state.line
    text = html.escape(line.text)
    if state.stale:
        text += " <b>The cache changed on disk since this was read: Refresh.</b>"
    return (f"<b>Error:</b> {text}" if line.error else text), line.error


STYLE = """<style>
.ptd-browser { container-type: inline-size; max-width: 100%; box-sizing: border-box; color: var(--jp-ui-font-color1);
  font-family: var(--jp-ui-font-family); font-size: var(--jp-ui-font-size1); gap: 6px; }
.ptd-browser * { box-sizing: border-box; }
.ptd-browser .jupyter-widgets { margin: 0; max-width: 100%; }
.ptd-browser .widget-html-content { line-height: 1.4; }
.ptd-browser .ptd-top, .ptd-browser .ptd-actions, .ptd-browser .ptd-pager, .ptd-browser .ptd-footer { gap: 6px; }
.ptd-browser .ptd-body { gap: 10px; }
.ptd-browser .ptd-side { flex: 1 1 170px; max-width: 240px; min-width: 0; }
.ptd-browser .ptd-main { flex: 999 1 480px; min-width: 0; gap: 6px; }
@container (max-width: 960px) {  /* a narrow column: the tree goes above the table, which gets the width */
  .ptd-browser .ptd-side { flex-basis: 100%; max-width: none; }
  .ptd-browser .ptd-tree select { height: 132px; }
}
.ptd-browser .ptd-tree select { font-family: var(--jp-code-font-family); font-size: 12px; line-height: 1.4;
  overflow-x: hidden; text-overflow: ellipsis;
  background: var(--jp-layout-color1); color: var(--jp-ui-font-color1); border-color: var(--jp-border-color1); }
.ptd-browser .ptd-table { border: 1px solid var(--jp-border-color2); border-radius: 3px; overflow: hidden;
  align-items: center; background: var(--jp-layout-color1); }
.ptd-browser .ptd-table > .jupyter-widgets { min-width: 0; height: 26px; }
.ptd-browser .ptd-table .widget-checkbox { width: 26px; justify-content: center; }
.ptd-browser .ptd-table .widget-checkbox input { margin: 0 0 0 6px; }
.ptd-browser .ptd-head { font-weight: 600; background: var(--jp-layout-color2); }
.ptd-browser button.ptd-head, .ptd-browser button.ptd-cellbutton {
  width: 100%; height: 26px; padding: 0 6px; text-align: left; border-radius: 0; box-shadow: none;
  background: transparent; color: var(--jp-ui-font-color1); font-size: 12px; overflow: hidden;
  text-overflow: ellipsis; white-space: nowrap; outline: none; }
.ptd-browser button.ptd-head { background: var(--jp-layout-color2); font-weight: 600; color: var(--jp-ui-font-color1); }
.ptd-browser button.ptd-head:hover, .ptd-browser button.ptd-cellbutton:hover { background: var(--jp-layout-color3); }
.ptd-browser .ptd-table button.jupyter-button:hover:enabled,
.ptd-browser .ptd-table button.jupyter-button:focus:enabled { box-shadow: none; outline: none; }
.ptd-browser button.ptd-head:disabled { opacity: 1; cursor: default; }
.ptd-browser button.ptd-num { text-align: right; }
.ptd-browser button.ptd-code { font-family: var(--jp-code-font-family); }
.ptd-browser .ptd-table button.ptd-selected { background: var(--jp-brand-color3); }
.ptd-browser .ptd-table button.ptd-focus { background: var(--jp-brand-color2);
  color: var(--jp-ui-inverse-font-color1); }
.ptd-browser .ptd-table .ptd-older { color: var(--jp-ui-font-color2); }
.ptd-browser .ptd-table .ptd-broken { color: var(--jp-error-color1); }
.ptd-browser .ptd-details { background: var(--jp-layout-color2); border-radius: 3px; padding: 4px 8px; }
.ptd-browser .ptd-details table { border-collapse: collapse; font-size: 12px; table-layout: fixed; width: 100%; }
.ptd-browser .ptd-details th { width: 100px; padding: 1px 8px 1px 0; vertical-align: top; text-align: left;
  font-weight: normal; color: var(--jp-ui-font-color2); }
.ptd-browser .ptd-details td { padding: 1px 0; vertical-align: top; text-align: left; white-space: pre-wrap;
  overflow-wrap: anywhere; font-family: var(--jp-code-font-family); }
.ptd-browser .ptd-details .ptd-more { color: var(--jp-ui-font-color2); font-style: italic; }
.ptd-browser .ptd-title code { color: var(--jp-ui-font-color2); overflow-wrap: anywhere; }
.ptd-browser .ptd-status { flex: 1 1 auto; min-width: 0; overflow-wrap: anywhere; }
.ptd-browser .ptd-status.ptd-error { color: var(--jp-error-color1); }
.ptd-browser .ptd-confirm-box { background: var(--jp-warn-color3); color: var(--jp-ui-font-color1);
  padding: 4px 6px; border-radius: 3px; gap: 6px; flex-wrap: wrap; }
.ptd-browser .widget-text input { background: var(--jp-layout-color1); color: var(--jp-ui-font-color1); }
</style>"""
