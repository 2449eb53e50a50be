"""ipython_ext/browser_state.py: the panel's state and its pure updates, without widgets or disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipython_ext import browser_state as st
from persist_to_disk.catalog import Node, Project
from persist_to_disk.listing import EntryInfo, Totals

PROJECT = Project("proj-1", Path("/c/proj-1"))
NODE = Node("project", PROJECT, (), "proj-1", scope=(PROJECT.folder,))


def entry(name: str, size: int, created: float, compute: float, func: str = "f", kind: str = "function",
          **extra) -> EntryInfo:
    header = {"func": func, "kind": kind, "args": {"x": repr(name)}, "created": created, "compute_seconds": compute,
              "code_version": "v1", **extra}
    return EntryInfo(f"src/{func}/1/{name}.ptd", Path(f"/c/proj-1/src/{func}/1/{name}.ptd"), size, created + 5, header)


def loaded(*entries: EntryInfo, **kwargs) -> st.PanelState:
    state = st.open_node(st.PanelState(root=NODE, **kwargs), NODE, (NODE.id,))
    return st.show_entries(state, entries, complete=True)


A, B, C = entry("a", 300, 10.0, 3600.0), entry("b", 100, 30.0, 7200.0), entry("c", 200, 20.0, 720.0, func="g")


def names(state: st.PanelState) -> list[str]:
    return [e.path.stem for e in state.page_entries]


def test_newest_first_then_sorting_by_any_column_and_back():
    state = loaded(A, B, C)
    assert names(state) == ["b", "c", "a"]  # created, newest first
    assert names(st.sort_by(state, "size")) == ["a", "c", "b"]  # largest first
    assert names(st.sort_by(st.sort_by(state, "size"), "size")) == ["b", "c", "a"]  # again: reversed
    assert names(st.sort_by(state, "compute")) == ["b", "a", "c"]
    assert names(st.sort_by(state, "last_read")) == ["b", "c", "a"]
    assert names(st.sort_by(state, "function")) == ["a", "b", "c"]  # text: a to z
    with pytest.raises(ValueError, match="cannot sort by 'colour'"):
        st.sort_by(state, "colour")  # type: ignore[arg-type]


def test_totals_count_what_recomputing_would_cost():
    summary = loaded(A, B, C).summary
    assert (summary.entries, summary.bytes, summary.compute_seconds) == (3, 600, 11520.0)


def test_filter_pages_and_ticks():
    state = loaded(A, B, C, page_size=2)
    assert state.pages == 2 and names(st.turn_page(state, 1)) == ["a"] and st.turn_page(state, 5).page == 1
    ticked = st.tick(st.tick(state, A.path, True), B.path, True)
    assert ticked.selected == {A.path, B.path} and ticked.focus == B.path
    filtered = st.set_filter(ticked, "'a'")
    assert names(filtered) == ["a"] and filtered.selected == {A.path}  # a hidden entry is never deleted unseen
    assert st.tick_all(state, True).selected == {A.path, B.path, C.path}  # every page
    assert st.tick(ticked, B.path, False).focus == A.path
    chosen = st.choose(ticked, C.path)
    assert chosen.selected == {C.path} and chosen.focused is C


def test_asking_before_deleting_and_forgetting_what_went():
    state = replace_totals(loaded(A, B, C), Totals(10, 5000))
    assert st.ask_selected(state).status.text == "Select one or more entries in the table first."
    asked = st.ask_selected(st.tick(state, C.path, True))
    assert asked.pending is not None and asked.pending.entries == (C,) and "1 selected entry" in asked.pending.question
    after = st.forget(asked, [C.path])
    assert after.pending is None and C not in after.entries and after.selected == frozenset()
    assert after.project_totals == Totals(9, 4800)
    whole = st.ask_node(state)
    assert whole.pending is not None and whole.pending.node == NODE and "all 3 entries" in whole.pending.question
    assert st.cancel(whole).pending is None


def test_older_versions_wait_for_a_complete_scan():
    old = entry("o", 50, 1.0, 1.0)
    old.current = False
    state = loaded(A, old)
    assert st.ask_older(state).pending.entries == (old,)
    assert "Wait until" in st.ask_older(st.show_entries(state, state.entries, complete=False)).status.text


def test_a_deletion_outcome_stays_in_front_until_another_node_opens():
    state = st.report(loaded(A), "Deleted 1 entry, freed 300 B.", failed=False)
    state = st.say(state, "Cancelled; nothing was deleted.")
    assert state.line.text == "Deleted 1 entry, freed 300 B. Cancelled; nothing was deleted."
    assert "Deleted" not in st.open_node(state, NODE, (NODE.id,)).line.text


def test_tree_rows_open_the_path_and_cap_long_levels():
    source = Node("source", PROJECT, ("src",), "src", scope=())
    kids = {NODE.id: [source], source.id: [Node("source", PROJECT, ("src", str(i)), str(i)) for i in range(5)]}
    levels = st.TreeLevels(lambda node: kids.get(node.id, []), limit=3)
    rows = st.tree_rows(NODE, (NODE.id, source.id), levels)
    labels = [r.label.replace(st.INDENT, " ") for r in rows]
    assert labels[:2] == ["▾ proj-1", " ▾ src"] and len(rows) == 6
    assert rows[-1].node is None and "2 more" in rows[-1].label  # the row that says what is not listed
    assert st.tree_rows(NODE, (NODE.id,), levels)[1].label.replace(st.INDENT, " ") == " ▸ src"


def test_watched_folders_are_the_node_and_the_folders_down_to_its_entries():
    folders = st.watched_folders(loaded(A, C))
    assert folders == sorted({Path("/c/proj-1"), Path("/c/proj-1/src"), Path("/c/proj-1/src/f"),
                              Path("/c/proj-1/src/f/1"), Path("/c/proj-1/src/g"), Path("/c/proj-1/src/g/1")})


def replace_totals(state: st.PanelState, totals: Totals) -> st.PanelState:
    from dataclasses import replace

    return replace(state, project_totals=totals)
