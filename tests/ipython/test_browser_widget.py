"""The cache browser panel, driven headless: set .value, press .click(), look at the widgets and the disk."""

from __future__ import annotations

import html
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ipywidgets")

import persist_to_disk as ptd
from ipython_ext import browser as br
from ipython_ext.browser_html import columns
from ipython_ext.browser_state import INDENT
from persist_to_disk.catalog import CatalogError


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    root = tmp_path / "cache"
    ptd.config.set_persist_path(root)
    (tmp_path / "proj").mkdir()
    ptd.config.set_project_path(tmp_path / "proj")
    return root


@pytest.fixture
def funcs(cache: Path):
    calls: list = []

    @ptd.persistf(groupby=["dataset"])
    def train(dataset, lr):
        calls.append(("train", dataset, lr))
        return f"{dataset}-{lr}"

    @ptd.persistf()
    def square(x):
        calls.append(("square", x))
        return x * x

    for dataset in ("MNIST", "CIFAR"):
        for lr in (0.1, 0.01):
            train(dataset, lr)
    for x in range(5):
        square(x)
    return train, square, calls


def files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.ptd"))


def open_panel(**kwargs) -> br.CacheBrowser:
    kwargs.setdefault("background", False)
    return ptd.browse(**kwargs)


def node_path(folder: Path, cache: Path) -> str:
    return "/".join(folder.relative_to(cache).parts[1:])


def tree_labels(panel: br.CacheBrowser) -> list[str]:
    return [label.replace(INDENT, " ").strip() for label, _ in panel.tree.options]


def rows(panel: br.CacheBrowser) -> list[str]:
    """The table's rows on this page, as the cells' texts joined by spaces."""
    cols = columns(panel.state)
    return [
        " ".join(row.cells[c.key].description for c in cols)
        for row, _entry in zip(panel.rows, panel.state.page_entries)
    ]


def pick(panel: br.CacheBrowser, text: str) -> None:
    """Tick the rows whose arguments contain ``text`` (their checkboxes, as a click does)."""
    hits = [i for i, e in enumerate(panel.state.page_entries) if text in e.args_text + " "]
    assert hits, f"no row with {text!r} in {rows(panel)}"
    for i in hits:
        panel.rows[i].check.value = True


# ---------------------------------------------------------------------------------------------- opening
def test_opens_on_the_current_project_with_totals(funcs, cache):
    panel = open_panel()
    assert isinstance(panel, br.CacheBrowser) and "ptd-browser" in panel._dom_classes
    labels = tree_labels(panel)
    assert labels[0].startswith("▾ proj-") and len(labels) == 2  # the project, open; its one source, closed
    assert len(panel.state.entries) == 9 and len(rows(panel)) == 9
    assert "9 entries" in panel.totals.value and "to recompute" in panel.totals.value
    assert "9 entries in" in panel.status.value
    assert panel.invalidate_node_button.description.startswith("Invalidate all in proj-")
    assert panel.confirm_box.layout.display == "none"
    for widget, cls in (
        (panel.tree, "ptd-tree"),
        (panel.table, "ptd-entries"),
        (panel.invalidate_selected_button, "ptd-invalidate-selected"),
        (panel.confirm_button, "ptd-confirm"),
        (panel.status, "ptd-status"),
    ):
        assert cls in widget._dom_classes


def test_tree_opens_lazily_down_to_groupby_folders(funcs, cache):
    train, _square, _ = funcs
    panel = open_panel()
    source_id = panel.tree.options[1][1]
    panel.tree.value = source_id  # a click on the source row
    labels = tree_labels(panel)
    assert any(label.endswith("train()") and label.startswith("▸") for label in labels)
    assert any(label.endswith("square()") and not label.startswith("▸") for label in labels)  # no groupby: a leaf
    train_id = next(value for label, value in panel.tree.options if label.endswith("train()"))
    panel.tree.value = train_id
    labels = tree_labels(panel)
    assert "dataset=CIFAR" in " ".join(labels) and "dataset=MNIST" in " ".join(labels)
    assert len(panel.state.entries) == 4 and panel.state.node.kind == "function"
    assert panel.invalidate_node_button.description == "Invalidate all in funcs.train()"
    panel.select_node(node_path(train.folder(), cache) + "/MNIST")
    assert panel.state.node.label == "dataset=MNIST" and len(panel.state.entries) == 2
    assert panel._tree_rows[panel.tree.value].node == panel.state.node


def test_rows_show_readable_arguments_size_times_and_version(funcs, cache):
    train, _square, _ = funcs
    panel = open_panel(func=train)
    assert panel.state.node.kind == "function"
    row = next(label for label in rows(panel) if "dataset='MNIST', lr=0.1 " in label)
    assert " B " in row and time.strftime("%H:") in row and "current" in row  # created today: its time
    assert [panel.headers[c.key].description for c in columns(panel.state)][:2] == ["Arguments", "Size"]
    pick(panel, "dataset='MNIST', lr=0.1 ")
    assert "lr = 0.1" in panel.details.value and str(train.folder()) in panel.details.value


def test_filter_and_paging(funcs, cache):
    _train, square, _ = funcs
    panel = open_panel(func=square, page_size=2)
    assert panel.page_label.value == "page 1 of 3 · 5 shown" and panel.prev_button.disabled
    panel.next_button.click()
    panel.next_button.click()
    assert panel.page_label.value.startswith("page 3 of 3") and len(rows(panel)) == 1
    assert panel.next_button.disabled
    panel.prev_button.click()
    assert panel.page_label.value.startswith("page 2 of 3")
    panel.filter.value = "x=3"
    assert [label.split()[0] for label in rows(panel)] == ["x=3"]
    assert "1 match the filter" in panel.totals.value and panel.page_label.value == "page 1 of 1 · 1 shown"
    panel.filter.value = ""
    assert len(panel.state.shown) == 5


# ------------------------------------------------------------------------------------------ invalidating
def test_invalidate_selected_asks_then_deletes_and_the_next_call_recomputes(funcs, cache):
    train, _square, calls = funcs
    panel = open_panel(func=train)
    pick(panel, "dataset='CIFAR', lr=0.01")
    (victim,) = panel.state.selected
    panel.invalidate_selected_button.click()
    assert panel.confirm_box.layout.display == "flex"
    assert "Delete 1 selected entry" in panel.confirm_message.value
    assert victim.exists()  # nothing goes before the confirmation
    panel.confirm_button.click()
    assert not victim.exists() and panel.confirm_box.layout.display == "none"
    assert "Deleted 1 entry, freed" in panel.status.value
    assert len(panel.state.entries) == 3 and len(files(train.folder())) == 3
    assert panel.last_deleted.bytes > 0
    before = len(calls)
    train("CIFAR", 0.01)
    assert len(calls) == before + 1
    train("MNIST", 0.1)
    assert len(calls) == before + 1


def test_cancel_keeps_everything(funcs, cache):
    _train, square, _ = funcs
    panel = open_panel(func=square)
    pick(panel, "x=")
    panel.invalidate_selected_button.click()
    panel.cancel_button.click()
    assert panel.confirm_box.layout.display == "none" and "nothing was deleted" in panel.status.value
    assert len(files(square.folder())) == 5
    panel.confirm_button.click()  # a stale confirm does nothing
    assert len(files(square.folder())) == 5


def test_invalidate_without_a_selection_says_so(funcs, cache):
    panel = open_panel()
    panel.invalidate_selected_button.click()
    assert "Select one or more entries" in panel.status.value and panel.confirm_box.layout.display == "none"


def test_invalidate_all_in_a_node(funcs, cache):
    train, square, _ = funcs
    panel = open_panel()
    panel.select_node(node_path(train.folder(), cache) + "/MNIST")
    panel.invalidate_node_button.click()
    assert "Delete all 2 entries in dataset=MNIST" in panel.confirm_message.value
    panel.confirm_button.click()
    assert not (train.folder() / "MNIST").exists() and len(files(train.folder())) == 2
    assert "Deleted 2 entries, freed" in panel.status.value
    assert panel.state.node.kind == "function" and len(panel.state.entries) == 2  # back on the parent
    assert "dataset=MNIST" not in " ".join(tree_labels(panel))
    panel.invalidate_node_button.click()
    panel.confirm_button.click()
    assert not train.folder().exists() and len(files(square.folder())) == 5


def test_invalidate_older_versions(cache):
    calls: list = []

    def make(version):
        @ptd.persistf(version=version)
        def f(x):
            calls.append(x)
            return x

        return f

    old, new = make("1"), make("2")
    old(1)
    old(2)
    new(1)
    panel = open_panel(func=new)  # the live function says which version is current
    versions = sorted(label.split()[-1] for label in rows(panel))
    assert versions == ["current", "older", "older"] and "2 of older code versions" in panel.totals.value
    panel.invalidate_older_button.click()
    assert "Delete 2 entries of older code versions" in panel.confirm_message.value
    panel.confirm_button.click()
    assert "Deleted 2 entries" in panel.status.value
    assert new.cache.contains(1) and not old.cache.contains(1) and not old.cache.contains(2)
    panel.invalidate_older_button.click()
    assert "No entries of older code versions" in panel.status.value


def test_corrupt_and_vanished_entries_do_not_break_the_panel(funcs, cache):
    _train, square, _ = funcs
    entries = files(square.folder())
    entries[0].write_bytes(b"PTDE not really")
    panel = open_panel(func=square)
    assert sum(row.endswith(" corrupt") for row in rows(panel)) == 1 and "corrupt or gone" in panel.status.value
    index = next(i for i, e in enumerate(panel.state.page_entries) if e.path == entries[1])
    entries[1].unlink()  # someone else deletes it behind the panel's back
    panel.rows[index].cells["arguments"].click()
    assert "vanished" in panel.details.value
    panel.invalidate_selected_button.click()
    panel.confirm_button.click()
    assert "already gone" in panel.status.value and "ptd-error" not in panel.status._dom_classes
    panel.refresh_button.click()
    assert len(panel.state.entries) == 4


def test_errors_in_callbacks_show_in_the_panel(funcs, cache, monkeypatch):
    _train, square, _ = funcs
    panel = open_panel(func=square)
    pick(panel, "x=1")

    def broken(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(panel.catalog, "delete", broken)
    panel.invalidate_selected_button.click()
    panel.confirm_button.click()  # raises inside: caught and shown
    assert "ptd-error" in panel.status._dom_classes
    assert "PermissionError: read-only file system" in panel.status.value
    assert len(files(square.folder())) == 5
    panel.refresh_button.click()
    assert "ptd-error" not in panel.status._dom_classes


def test_refresh_sees_new_entries_and_vanished_nodes(funcs, cache):
    train, square, _ = funcs
    panel = open_panel()
    square(99)
    panel.refresh_button.click()
    assert len(panel.state.entries) == 10
    panel.select_node(node_path(train.folder(), cache))
    assert train.cache.clear() == 4  # another face deletes every entry of the open function
    panel.refresh_button.click()
    assert panel.state.node.kind == "source" and len(panel.state.entries) == 6
    assert not any(label.endswith("train()") for label in tree_labels(panel))


# ----------------------------------------------------------------------------------------- narrowing
def test_narrow_to_another_project(cache, tmp_path):
    @ptd.persistf()
    def g(x):
        return x

    g(1)
    other = tmp_path / "other"
    other.mkdir()
    ptd.config.set_project_path(other)
    g(2)
    g(3)
    first = next(p.name for p in cache.iterdir() if p.name.startswith("proj-"))
    second = next(p.name for p in cache.iterdir() if p.name.startswith("other-"))
    panel = open_panel(project="proj")  # a bare name, unique
    assert panel.state.node.project.name == first and len(panel.state.entries) == 1
    panel.project_select.value = second  # the project dropdown
    assert panel.state.node.project.name == second and len(panel.state.entries) == 2
    assert open_panel().state.node.project.name == second  # the current project (set_project_path)
    with pytest.raises(CatalogError, match="no project 'nope'"):
        open_panel(project="nope")


def test_narrow_to_a_notebook(cache, tmp_path):
    from persist_to_disk.store import LocalStore

    project = tmp_path / "proj"
    (project / "pyproject.toml").write_text("")
    folder = cache / ptd.config.project_folder_name(project)
    header = {"func": "load", "kind": "cell", "args": {"path": "'a.csv'"}, "code_version": "c1", "created": time.time()}
    LocalStore(folder).put("notebooks/exp/load/3/" + "c" * 32 + ".ptd", "v", header)
    LocalStore(folder).put("notebooks/other/f/3/" + "d" * 32 + ".ptd", "v", {**header, "func": "f"})
    panel = open_panel(notebook=str(project / "notebooks" / "exp.ipynb"))
    assert panel.state.node.kind == "source" and panel.state.node.label == "notebooks/exp"
    assert [label.strip(" ▾▸" + INDENT) for label, _ in panel.tree.options] == ["notebooks/exp", "cell load"]
    assert len(panel.state.entries) == 1 and "path='a.csv'" in rows(panel)[0]
    empty = open_panel(notebook=str(project / "notebooks" / "new.ipynb"))
    assert empty.state.entries == () and "Nothing is cached yet" in empty.status.value


def test_func_that_never_ran_shows_an_empty_panel(cache):
    @ptd.persistf()
    def never(x):
        return x

    panel = open_panel(func=never)
    assert (
        panel.state.entries == ()
        and "Nothing is cached yet for test_func_that_never_ran_shows_an_empty_panel.never()" in panel.status.value
    )
    with pytest.raises(TypeError, match="decorated with @ptd.persistf"):
        open_panel(func=len)


def test_empty_cache(cache):
    panel = open_panel()
    assert panel.state.entries == () and "Nothing is cached" in panel.status.value
    panel.refresh_button.click()
    panel.invalidate_node_button.click()
    assert "ptd-error" not in panel.status._dom_classes


# ---------------------------------------------------------------------------------------- background
def test_background_scans_and_deletions(funcs, cache):
    train, _square, _ = funcs
    panel = ptd.browse(background=True)
    panel.wait()
    assert len(panel.state.entries) == 9 and panel.state.complete and panel.progress.layout.visibility == "hidden"
    panel.select_node(node_path(train.folder(), cache))
    panel.wait()
    assert len(panel.state.entries) == 4
    pick(panel, "dataset='MNIST', lr=0.1 ")
    panel.invalidate_selected_button.click()
    panel.confirm_button.click()
    panel.wait()
    assert "Deleted 1 entry, freed" in panel.status.value and len(files(train.folder())) == 3


def test_a_newer_scan_drops_the_older_one(funcs, cache):
    train, square, _ = funcs
    panel = ptd.browse(background=True)
    panel.select_node(node_path(train.folder(), cache))
    panel.select_node(node_path(square.folder(), cache))
    panel.wait()
    assert panel.state.node.folder == square.folder() and len(panel.state.entries) == 5


# -------------------------------------------------------------------------------------- magic, import
@pytest.fixture
def shell(cache):
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    saved = sys.modules.get("__main__"), sys.displayhook, sys.excepthook
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    ip = InteractiveShell.instance(config=config)
    br.register(ip)
    try:
        yield ip
    finally:
        InteractiveShell.clear_instance()
        sys.modules["__main__"], sys.displayhook, sys.excepthook = saved  # type: ignore[assignment]


def test_magic_displays_the_panel(funcs, shell, monkeypatch):
    from IPython.core.error import UsageError

    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, **kw: shown.append(obj))
    train, _square, _ = funcs
    shell.user_ns["train"] = train
    shell.run_line_magic("persist_browse", "--func train")
    assert isinstance(shown[-1], br.CacheBrowser) and shown[-1].state.node.function.folder == train.folder()
    with pytest.raises(UsageError, match="no such name"):
        shell.run_line_magic("persist_browse", "--func missing")
    with pytest.raises(UsageError, match="no project 'nope'"):
        shell.run_line_magic("persist_browse", "--project nope")


def test_live_functions_in_the_namespace_decide_the_current_version(cache, shell):
    def make(version):
        @ptd.persistf(version=version)
        def h(x):
            return x

        return h

    new = make("2")
    new(1)
    old = make("1")
    old(1)  # the newest entry is of version 1, but the live function is version 2
    shell.user_ns["h"] = new
    panel = open_panel()
    assert sorted(label.split()[-1] for label in rows(panel)) == ["current", "older"]
    assert [e.code_version for e in panel.state.entries if e.current] == ["pinned:2"]


def test_importing_the_core_does_not_import_ipywidgets():
    code = "import sys, persist_to_disk as p; p.browse; print('ipywidgets' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60, env=os.environ.copy()
    )
    assert out.stdout.strip() == "False", out.stderr


# ------------------------------------------------------------------------------------- the table, redesigned
def test_header_buttons_sort_the_table(funcs, cache):
    panel = open_panel()
    panel.headers["size"].click()
    sizes = [e.size for e in panel.state.page_entries]
    assert panel.state.sort == "size" and sizes == sorted(sizes, reverse=True)
    assert panel.headers["size"].description == "Size ▼"
    panel.headers["size"].click()
    assert [e.size for e in panel.state.page_entries] == sorted(sizes)
    assert panel.headers["size"].description == "Size ▲"
    for key in ("created", "last_read", "compute"):
        panel.headers[key].click()
        assert panel.state.sort == key and panel.state.descending
    panel.headers["version"].click()  # not sortable: nothing happens
    assert panel.state.sort == "compute"


def test_a_function_column_above_function_level_only(funcs, cache):
    train, _square, _ = funcs
    panel = open_panel()
    owners = {row.cells["function"].description for row, _e in zip(panel.rows, panel.state.page_entries)}
    assert owners == {"funcs.train()", "funcs.square()"} and panel.table.children[1] is panel.headers["function"]
    panel.select_node(node_path(train.folder(), cache))
    assert panel.headers["function"] not in panel.table.children and len(rows(panel)) == 4


def test_a_click_on_a_row_shows_its_full_arguments(cache):
    @ptd.persistf()
    def fit(description, weights):
        return 1

    long = "a description far longer than the thirty-two characters that a table cell used to keep"
    fit(long, list(range(6)))
    fit("short", [1])
    panel = open_panel(func=fit)
    index = next(i for i, e in enumerate(panel.state.page_entries) if "far longer" in e.args_text)
    panel.rows[index].cells["size"].click()
    assert panel.state.selected == {panel.state.page_entries[index].path}
    details = html.unescape(panel.details.value)
    assert f"description = {long!r}" in details and f"weights = {list(range(6))!r}" in details
    assert panel.rows[index].cells["arguments"].tooltip == panel.state.page_entries[index].args_text


def test_a_cell_entry_shows_the_variables_it_holds_and_totals_the_compute_time(cache, tmp_path):
    from persist_to_disk.store import LocalStore

    folder = cache / ptd.config.project_folder_name(tmp_path / "proj")
    for i, seconds in enumerate((3600.0, 7200.0, 720.0)):
        header = {"func": "features", "kind": "cell", "args": {"window": str(i)}, "names": ["X", "summary"],
                  "code_version": "c1", "created": time.time(), "compute_seconds": seconds, "groupby": []}
        LocalStore(folder).put(f"nb/features/{i}/" + f"{i}" * 32 + ".ptd", "v", header)
    panel = open_panel()
    assert "3 h 12 min to recompute" in panel.totals.value and "3 entries" in panel.totals.value
    assert all("→ X, summary" in row and "cell features" in row for row in rows(panel))
    panel.rows[0].cells["arguments"].click()
    details = html.unescape(panel.details.value)
    assert "<th>holds</th><td>X, summary</td>" in details and "<th>reads</th>" in details
    assert "arguments" not in details


def test_the_details_list_what_an_entry_depends_on(cache):
    scale = 3

    @ptd.persistf()
    def scaled(x):
        return x * scale  # a closure: part of the key, recorded in the header

    scaled(2)
    panel = open_panel(func=scaled)
    panel.rows[0].cells["arguments"].click()
    details = html.unescape(panel.details.value)
    assert "<th>depends on</th>" in details and "closure scale" in details and "= 3" in details
    assert "function test_the_details_list_what_an_entry_depends_on" not in details  # itself: its code version


def test_the_panel_rereads_a_node_that_changed_on_disk(funcs, cache):
    _train, square, _ = funcs
    panel = open_panel(func=square)
    assert not panel.check_disk()  # nothing changed
    square(99)  # another process (or cell) writes an entry
    assert panel.check_disk() and len(panel.state.entries) == 6
    assert "changed on disk" in panel.status.value
    pick(panel, "x=99")
    panel.invalidate_selected_button.click()  # a question is open: the table must not move under it
    square.cache.invalidate(1)
    assert panel.check_disk() and panel.state.stale and len(panel.state.entries) == 6
    assert "changed on disk since this was read: Refresh" in panel.status.value
    panel.cancel_button.click()
    panel.refresh_button.click()
    assert not panel.state.stale and len(panel.state.entries) == 5


def test_its_own_deletions_are_no_news_and_a_recomputed_entry_is(funcs, cache):
    _train, square, _calls = funcs
    panel = open_panel(func=square)
    pick(panel, "x=2")
    panel.invalidate_selected_button.click()
    panel.confirm_button.click()
    assert len(panel.state.entries) == 4 and not panel.check_disk()
    square(2)  # recomputed into the bucket the deletion emptied
    assert panel.check_disk() and len(panel.state.entries) == 5


def test_the_watcher_thread_rereads_on_its_own(funcs, cache):
    _train, square, _ = funcs
    panel = br.CacheBrowser(panel_catalog(cache), start=None, background=True, watch_seconds=0.05)
    panel.wait()
    before = len(panel.state.entries)
    square(123)
    deadline = time.monotonic() + 30
    while len(panel.state.entries) != before + 1 and time.monotonic() < deadline:
        panel.wait()
        time.sleep(0.02)  # polling a condition, with a deadline
    assert len(panel.state.entries) == before + 1
    panel.close()


def panel_catalog(cache: Path):
    from persist_to_disk.catalog import Catalog

    return Catalog(cache)
