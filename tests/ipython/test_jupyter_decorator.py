"""The decorator in a notebook: real notebooks in real kernels (nbclient + ipykernel).

The notebook lives in ``proj/notebooks/exp.ipynb`` of a temp project with ``.git``;
the kernel learns its path from JPY_SESSION_NAME, as under Jupyter Server. Cached code
appends to a counter file, so "computed again" is a line more in it.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PRELUDE = """\
import json
import persist_to_disk as ptd
COUNTER = {counter!r}
"""

TRAIN = """\
@ptd.persistf(groupby=["dataset"], skip_kwargs=["device"])
def train(dataset, n, device="cpu"):
    # count every real computation
    with open(COUNTER, "a") as fh:
        fh.write(f"train {{dataset}} {{n}}\\n")
    return n * {factor}
"""

TRAIN_COMMENTED = '''\
@ptd.persistf(groupby=["dataset"], skip_kwargs=["device"])
def train(dataset, n, device="cpu"):
    """Now with a docstring, a comment and other formatting."""
    # count every real computation (a longer comment)
    with open(COUNTER, "a") as fh:
        fh.write(f"train {{dataset}} {{n}}\\n")
    return (
        n * {factor}
    )
'''

REPORT = """\
print("RESULT", train("mnist", 21), train("mnist", 21, device="cuda"))
print("WHERE", json.dumps({"path": str(train.cache.path("mnist", 21)), "config": ptd.config.describe()}))
"""


def _result(nb, cell_text) -> str:
    text = cell_text(nb.cells[-1])
    return next(line for line in text.splitlines() if line.startswith("RESULT"))


def _where(nb, cell_text) -> dict:
    text = cell_text(nb.cells[-1])
    return json.loads(next(line for line in text.splitlines() if line.startswith("WHERE"))[6:])


def test_decorator_in_a_notebook_caches_under_the_project_and_follows_code_edits(
    project: Path, run_notebook, nbtools, cache_root: Path
) -> None:
    counter = project / "counter.txt"
    nb_path = project / "notebooks" / "exp.ipynb"
    prelude = PRELUDE.format(counter=str(counter))

    def run(train_source: str):
        nb = run_notebook(nb_path, [prelude, train_source, REPORT])
        lines = counter.read_text().splitlines() if counter.exists() else []
        return nb, lines

    # first run: computes once (device is skipped, so the second call hits)
    nb, lines = run(TRAIN.format(factor=2))
    assert _result(nb, nbtools.cell_text) == "RESULT 42 42"
    assert lines == ["train mnist 21"]
    where = _where(nb, nbtools.cell_text)
    entry = Path(where["path"])
    project_folder = entry.relative_to(cache_root).parts[0]
    assert project_folder.startswith("proj-")
    assert entry.relative_to(cache_root).parts[1:5] == ("notebooks", "exp", "train", "mnist")
    assert entry.is_file() and entry.suffix == ".ptd"
    config = where["config"]
    assert config["notebook_path"] == str(nb_path.resolve())
    assert config["notebook_how"] == "JPY_SESSION_NAME"
    assert config["notebook_project_root"] == str(project.resolve())
    assert config["notebook_project_how"] == "marker:.git"
    assert config["project_path"] == str(project.resolve())

    # a fresh kernel (a restart): reads the cache
    nb, lines = run(TRAIN.format(factor=2))
    assert _result(nb, nbtools.cell_text) == "RESULT 42 42"
    assert lines == ["train mnist 21"]

    # comments, a docstring and formatting are not edits
    nb, lines = run(TRAIN_COMMENTED.format(factor=2))
    assert _result(nb, nbtools.cell_text) == "RESULT 42 42"
    assert lines == ["train mnist 21"]

    # editing the body makes a new entry
    nb, lines = run(TRAIN.format(factor=3))
    assert _result(nb, nbtools.cell_text) == "RESULT 63 63"
    assert lines == ["train mnist 21", "train mnist 21"]

    # reverting the edit finds the old entry again
    nb, lines = run(TRAIN.format(factor=2))
    assert _result(nb, nbtools.cell_text) == "RESULT 42 42"
    assert len(lines) == 2
    entries = sorted(p.relative_to(cache_root) for p in cache_root.rglob("*.ptd"))
    assert len(entries) == 2 and all(e.parts[1:5] == ("notebooks", "exp", "train", "mnist") for e in entries)


SPAWN = """\
import multiprocessing as mp
import os

@ptd.persistf()
def square(x):
    with open(COUNTER, "a") as fh:
        fh.write(f"square {x} {os.getpid()}\\n")
    return x * x

with mp.get_context("spawn").Pool(2) as pool:
    print("RESULT", pool.map(square, range(4)))
print("LOCAL", [square(i) for i in range(4)], os.getpid())
print("FOLDER", square.folder())
"""


def test_notebook_functions_sent_to_a_spawn_pool_cache_into_the_notebook_tree(
    project: Path, run_notebook, nbtools, cache_root: Path
) -> None:
    counter = project / "counter.txt"
    nb_path = project / "notebooks" / "exp.ipynb"
    cells = [PRELUDE.format(counter=str(counter)), SPAWN]

    nb = run_notebook(nb_path, cells)
    text = nbtools.cell_text(nb.cells[-1])
    assert "RESULT [0, 1, 4, 9]" in text
    kernel_pid = text.split("LOCAL [0, 1, 4, 9] ")[1].split()[0]
    lines = counter.read_text().splitlines()
    assert sorted(line.split()[1] for line in lines) == ["0", "1", "2", "3"]  # computed once each
    assert all(line.split()[2] != kernel_pid for line in lines)  # ... in the workers; the kernel hit
    folder = Path(text.split("FOLDER ")[1].strip())
    assert folder.relative_to(cache_root).parts[1:] == ("notebooks", "exp", "square")
    assert len(list(folder.rglob("*.ptd"))) == 4

    nb = run_notebook(nb_path)  # a fresh kernel and fresh workers: all hits
    assert "RESULT [0, 1, 4, 9]" in nbtools.cell_text(nb.cells[-1])
    assert len(counter.read_text().splitlines()) == 4


HEADLESS = """\
import json, os, time
start = time.perf_counter()
ptd.config.describe()  # the first use looks for the notebook: a stuck server must not hold it up
print("LOOKUP", round(time.perf_counter() - start, 2))

@ptd.persistf()
def f(x):
    with open(COUNTER, "a") as fh:
        fh.write("f\\n")
    return x + 1
print("RESULT", f(1))
print("WHERE", json.dumps({"path": str(f.cache.path(1)), "config": ptd.config.describe()}))
"""

EXPLICIT = """\
ptd.config.set_notebook_path("exp.ipynb")
print("RESULT", f(1))
print("WHERE", json.dumps({"path": str(f.cache.path(1)), "config": ptd.config.describe()}))
"""


@pytest.fixture
def stuck_jupyter_server(project: Path):
    """A Jupyter server's runtime file whose server accepts connections and never answers."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    runtime = Path(os.environ["JUPYTER_RUNTIME_DIR"])
    runtime.mkdir(parents=True, exist_ok=True)
    info = {"url": f"http://127.0.0.1:{port}/", "hostname": "127.0.0.1", "port": port, "token": "t",
            "root_dir": str(project), "pid": os.getpid()}
    (runtime / f"jpserver-{os.getpid()}.json").write_text(json.dumps(info), encoding="utf-8")
    try:
        yield port
    finally:
        listener.close()


def test_headless_kernels_use_the_working_folder_until_told_the_notebook(
    project: Path, run_notebook, nbtools, cache_root: Path, stuck_jupyter_server: int
) -> None:
    """nbclient without a session name: cwd stands in (``notebooks/_ipython``); set_notebook_path fixes it.

    A Jupyter server that never answers costs the lookup its timeout (1 s), once, and no more.
    """
    counter = project / "counter.txt"
    nb_path = project / "notebooks" / "exp.ipynb"
    cells = [PRELUDE.format(counter=str(counter)), HEADLESS, EXPLICIT]
    nb = run_notebook(nb_path, cells, session_name=False, server_connection_file=True)
    lookup = float(nbtools.cell_text(nb.cells[1]).split("LOOKUP ")[1].split()[0])
    assert 0.5 < lookup < 5  # it did ask the stuck server, and gave up in time
    headless = _where_in(nb.cells[1], nbtools.cell_text)
    assert headless["config"]["notebook_how"] == "cwd"
    assert headless["config"]["notebook_path"] is None
    assert headless["config"]["project_path"] == str(project.resolve())
    assert Path(headless["path"]).relative_to(cache_root).parts[1:4] == ("notebooks", "_ipython", "f")
    told = _where_in(nb.cells[2], nbtools.cell_text)
    assert told["config"]["notebook_how"] == "explicit"
    assert told["config"]["notebook_path"] == str(nb_path.resolve())
    assert Path(told["path"]).relative_to(cache_root).parts[1:4] == ("notebooks", "exp", "f")
    assert len(counter.read_text().splitlines()) == 2  # a new place: computed again


def _where_in(cell, cell_text) -> dict:
    text = cell_text(cell)
    return json.loads(next(line for line in text.splitlines() if line.startswith("WHERE"))[6:])


def test_spawn_workers_cache_under_the_persist_path_the_notebook_set(
    project: Path, run_notebook, nbtools, tmp_path: Path
) -> None:
    """A persist path set in the kernel travels with the function to the workers."""
    counter = project / "counter.txt"
    elsewhere = tmp_path / "team-cache"
    cells = [PRELUDE.format(counter=str(counter)), f"ptd.config.set_persist_path({str(elsewhere)!r})\n" + SPAWN]

    nb = run_notebook(project / "notebooks" / "exp.ipynb", cells)
    assert "RESULT [0, 1, 4, 9]" in nbtools.cell_text(nb.cells[-1])
    assert len(counter.read_text().splitlines()) == 4  # the workers computed, the kernel then hit
    written = sorted(p.relative_to(elsewhere).parts[1:4] for p in elsewhere.rglob("*.ptd"))
    assert written == [("notebooks", "exp", "square")] * 4
