"""Following a renamed notebook without a server: how often the server is asked, how the cache moves.

The end-to-end flow (a real ``jupyter server``, a real kernel) is in test_notebook_rename.py.
"""

from __future__ import annotations

import types
from pathlib import Path

import pytest

import persist_to_disk as ptd
from ipython_ext import location, moves


def _cache_folder(cache_root: Path, project: Path, *parts: str) -> Path:
    return cache_root / ptd.config.project_folder_name(project) / Path(*parts)


def _entry(folder: Path, name: str, text: str = "x") -> Path:
    path = folder / "f" / "7" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_the_cache_moves_in_one_rename(project: Path, cache_root: Path) -> None:
    old = _cache_folder(cache_root, project, "notebooks", "Untitled")
    _entry(old, "a.ptd")
    moved = moves.move_notebook_cache((project, ("notebooks", "Untitled")), (project, ("sub", "exp")))
    new = _cache_folder(cache_root, project, "sub", "exp")
    assert moved == [new] and (new / "f" / "7" / "a.ptd").read_text() == "x" and not old.exists()


def test_onto_a_name_with_a_cache_entries_merge_and_the_new_names_win(project: Path, cache_root: Path) -> None:
    old = _cache_folder(cache_root, project, "notebooks", "Untitled")
    new = _cache_folder(cache_root, project, "notebooks", "exp")
    _entry(old, "a.ptd", "old a")
    _entry(old, "b.ptd", "old b")
    _entry(new, "a.ptd", "new a")
    moves.move_notebook_cache((project, ("notebooks", "Untitled")), (project, ("notebooks", "exp")))
    assert (new / "f" / "7" / "a.ptd").read_text() == "new a"
    assert (new / "f" / "7" / "b.ptd").read_text() == "old b"
    assert not old.exists()


def test_nothing_cached_nothing_moved(project: Path, cache_root: Path) -> None:
    assert moves.move_notebook_cache((project, ("notebooks", "a")), (project, ("notebooks", "b"))) == []


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def session_locator(project: Path, monkeypatch: pytest.MonkeyPatch):
    """A locator whose notebook came from JPY_SESSION_NAME; the server's answers and the clock are ours."""
    monkeypatch.setenv("JPY_SESSION_NAME", str(project / "notebooks" / "Untitled.ipynb"))
    monkeypatch.setattr("ipython_ext.notebook._ipython_user_ns", lambda: None)
    monkeypatch.setattr("ipython_ext.notebook._connection_file", lambda: None)
    clock = _Clock()
    monkeypatch.setattr(location, "time", types.SimpleNamespace(monotonic=clock.monotonic))
    answers: list = []
    asked: list = []

    def server(timeout: float, in_thread: bool = True):
        asked.append(clock.now)
        return answers[-1] if answers else None

    monkeypatch.setattr(location, "running_server_sessions_notebook", server)
    locator = location.NotebookLocator()
    assert locator.location().how == "JPY_SESSION_NAME"
    return locator, clock, answers, asked


def test_the_server_is_asked_at_most_once_a_second_and_rarely_when_it_does_not_answer(session_locator) -> None:
    locator, clock, answers, asked = session_locator
    answers.append(locator.location().notebook)  # it answers: not renamed
    for now in (1000.0, 1000.5, 1001.2, 1001.3):
        clock.now = now
        locator.follow()
    assert asked == [1000.0, 1001.2]
    answers.append(None)  # no answer (the server went away)
    for now in (1002.5, 1003.6, 1020.0, 1032.6):
        clock.now = now
        locator.follow()
    assert asked == [1000.0, 1001.2, 1002.5, 1032.6]


def test_a_rename_moves_the_cache_and_a_copy_does_not(session_locator, project: Path, cache_root: Path) -> None:
    locator, clock, answers, _asked = session_locator
    untitled = project / "notebooks" / "Untitled.ipynb"
    untitled.write_text("{}")
    old = _cache_folder(cache_root, project, "notebooks", "Untitled")
    _entry(old, "a.ptd")
    generation = ptd.config.settings().generation

    answers.append((project / "notebooks" / "copy.ipynb").resolve())  # Save As: the old file stays
    locator.follow()
    assert locator.place() == (project.resolve(), ("notebooks", "copy")) and old.exists()
    assert ptd.config.settings().generation > generation  # persisted functions look for their folder again

    # back on the original, which is then renamed: the old file is gone
    untitled.unlink()
    locator._found = location.located(untitled, "JPY_SESSION_NAME")
    answers.append((project / "notebooks" / "exp.ipynb").resolve())
    clock.now += 2
    locator.follow()
    assert locator.place() == (project.resolve(), ("notebooks", "exp"))
    assert not old.exists() and (_cache_folder(cache_root, project, "notebooks", "exp") / "f" / "7" / "a.ptd").exists()
