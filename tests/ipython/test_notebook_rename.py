"""A notebook renamed in JupyterLab keeps its cache: a real ``jupyter server`` and a real kernel.

JupyterLab names a new notebook ``Untitled.ipynb``; its kernel starts with
``JPY_SESSION_NAME`` naming that file and keeps it through renames (a restarted kernel gets
the new name, so it no longer says where the cache was), while the server's sessions API
follows the rename at once. The test drives the rename with the three REST
calls JupyterLab makes (see ``live_server``) and counts computations in a file.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from .live_server import JupyterServer, Kernel

pytestmark = pytest.mark.slow

SETUP = """\
import os, json
import persist_to_disk as ptd
COUNTER = {counter!r}

@ptd.persistf()
def square(x):
    with open(COUNTER, "a") as fh:
        fh.write(f"square {{x}}\\n")
    return x * x
"""

WHERE = 'print(json.dumps({"notebook": ptd.config.describe()["notebook_path"], "env": os.environ["JPY_SESSION_NAME"]}))'


@pytest.fixture
def server(project: Path, kernelspec: Path, tmp_path: Path) -> Iterator[JupyterServer]:
    srv = JupyterServer(project, tmp_path / "jupyter-server.log")
    try:
        yield srv
    finally:
        survivors = srv.stop()
        if survivors:
            pytest.fail("processes outlived the Jupyter server (killed now): " + "; ".join(survivors))


def _untitled(server: JupyterServer, project: Path) -> dict:
    """A new notebook as JupyterLab makes one, open in the server: its session."""
    nbformat.write(nbformat.v4.new_notebook(), str(project / "notebooks" / "Untitled.ipynb"))
    return server.open_notebook("notebooks/Untitled.ipynb")


@contextlib.contextmanager
def _kernel(server: JupyterServer, session: dict, counter: Path) -> Iterator[Kernel]:
    """The session's kernel with SETUP run (``square`` counting its runs into ``counter``); closed after."""
    kernel = server.kernel(session)
    try:
        kernel.run(SETUP.format(counter=str(counter)))
        yield kernel
    finally:
        kernel.close()


def _computed(counter: Path) -> list[str]:
    return counter.read_text().splitlines() if counter.exists() else []


def _entries(cache_root: Path, notebook: str) -> list[Path]:
    return sorted(cache_root.glob(f"proj-*/notebooks/{notebook}/square/*/*.ptd"))


def _wait_for_notebook(kernel, suffix: str) -> dict:
    """Run a cell that reports the notebook until it names ``suffix`` (the kernel checks at a cell's start)."""
    deadline = time.monotonic() + 30
    while True:
        where = json.loads(kernel.run(WHERE))
        if where["notebook"] and where["notebook"].endswith(suffix) or time.monotonic() > deadline:
            return where


def test_a_renamed_notebook_finds_its_cache_and_a_restart_hits(
    server: JupyterServer, project: Path, cache_root: Path
) -> None:
    counter = project / "counter.txt"
    session = _untitled(server, project)
    with _kernel(server, session, counter) as kernel:
        assert kernel.run("print(square(3))").strip() == "9"
        assert _computed(counter) == ["square 3"]
        assert len(_entries(cache_root, "Untitled")) == 1

        server.rename(session, "notebooks/exp.ipynb")
        where = _wait_for_notebook(kernel, "exp.ipynb")
        assert where["env"].endswith("Untitled.ipynb")  # the premise: the kernel's environment is not told
        assert where["notebook"] == str((project / "notebooks" / "exp.ipynb").resolve())

        # what was cached under the old name is found under the new one; new entries go there too
        assert kernel.run("print(square(3), square(4))").strip() == "9 16"
        assert _computed(counter) == ["square 3", "square 4"]
        assert len(_entries(cache_root, "exp")) == 2 and _entries(cache_root, "Untitled") == []
        assert kernel.run('print(square.cache.path(3))').strip().startswith(str(cache_root))
        assert "/notebooks/exp/square/" in kernel.run('print(square.cache.path(3))')

    server.restart(session)
    with _kernel(server, session, counter) as kernel:
        where = json.loads(kernel.run(WHERE))
        assert where["notebook"] == str((project / "notebooks" / "exp.ipynb").resolve())
        assert kernel.run("print(square(3), square(4))").strip() == "9 16"
        assert _computed(counter) == ["square 3", "square 4"]  # a restart hits


def test_a_rename_before_any_new_cell_is_followed_after_a_restart(
    server: JupyterServer, project: Path, cache_root: Path
) -> None:
    counter = project / "counter.txt"
    session = _untitled(server, project)
    with _kernel(server, session, counter) as kernel:
        kernel.run("square(5)")
    server.rename(session, "notebooks/renamed.ipynb")  # and restart at once: the old kernel never ran a cell since
    server.restart(session)
    with _kernel(server, session, counter) as kernel:
        assert kernel.run("print(square(5))").strip() == "25"
        assert _computed(counter) == ["square 5"]
        assert len(_entries(cache_root, "renamed")) == 1 and _entries(cache_root, "Untitled") == []
