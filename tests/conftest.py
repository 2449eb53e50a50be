"""Every test runs with HOME in a temp folder: nothing touches the real home or cache."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))
    for var in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
        monkeypatch.setenv(var, str(home / var.lower()))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    # subprocesses import the checkout, whether or not it is installed
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    import persist_to_disk as ptd

    ptd.config.reset()
    yield home
    ptd.config.reset()


@pytest.fixture
def cache_root(isolated_home: Path) -> Path:
    """The default persist path under the temp HOME."""
    return isolated_home / ".cache" / "persist_to_disk" / "cache"


@pytest.fixture
def python() -> str:
    return sys.executable


@pytest.fixture
def become_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], Path]:
    """(name, persist_path) -> this process switched to machine ``name`` of the project ``tmp_path/proj``:
    a HOME of its own (so local copies of its own), returned."""
    import persist_to_disk as ptd

    def become(name: str, persist_path: str) -> Path:
        home = tmp_path / name
        home.mkdir()
        monkeypatch.setenv("HOME", str(home))
        ptd.config.reset()
        ptd.config.set_persist_path(persist_path)
        ptd.config.set_project_path(tmp_path / "proj")
        return home

    return become


@pytest.fixture
def previous_key_format(monkeypatch: pytest.MonkeyPatch) -> Callable[[], contextlib.AbstractContextManager[None]]:
    """A context in which calls are keyed, and their entries written, as under the previous key format
    (``ptd-key-2``): an entry a user kept from before an upgrade."""
    from persist_to_disk import keys

    @contextlib.contextmanager
    def previous() -> Iterator[None]:
        with monkeypatch.context() as patch:
            patch.setattr(keys, "KEY_FORMAT", b"ptd-key-2")
            keys._started.cache_clear()  # the states it caches start with the format
            try:
                yield
            finally:
                keys._started.cache_clear()

    return previous
