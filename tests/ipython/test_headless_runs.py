"""Headless runs of a notebook cache under the same tree as interactive runs of it.

One notebook, ``proj/notebooks/exp.ipynb``, is first run as JupyterLab would (its kernel
told the notebook by ``JPY_SESSION_NAME``); then by nbclient with ``PTD_NOTEBOOK``, by
``jupyter nbconvert --execute`` and by ``papermill`` on their command lines, with nothing
set. Each cached function and ``%%persist`` cell appends to a counter file: the headless
runs must add nothing to it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from ipython_ext import notebook as nb_module

pytestmark = pytest.mark.slow

SETUP = """\
%load_ext persist_to_disk
import json
import persist_to_disk as ptd
COUNTER = {counter!r}

def bump(tag):
    with open(COUNTER, "a") as fh:
        fh.write(tag + "\\n")
"""

TRAIN = """\
@ptd.persistf()
def train(n):
    bump("train")
    return n * 2

print("RESULT", train(21))
"""

FEATURES = """\
%%persist features
bump("features")
feats = [i * i for i in range(5)]
print("FEATS", feats)
"""

WHERE = 'print("WHERE", json.dumps(ptd.config.describe()))'


def _cells(counter: Path) -> list[str]:
    return [SETUP.format(counter=str(counter)), TRAIN, FEATURES, WHERE]


def _where(notebook, cell_text) -> dict:
    text = cell_text(notebook.cells[-1])
    return json.loads(next(line for line in text.splitlines() if line.startswith("WHERE"))[6:])


def _computed(counter: Path) -> list[str]:
    return sorted(counter.read_text().splitlines())


@pytest.fixture
def interactive_run(project: Path, run_notebook, nbtools) -> tuple[Path, Path]:
    """The notebook run as under JupyterLab: every cell computes once."""
    counter = project / "counter.txt"
    path = project / "notebooks" / "exp.ipynb"
    notebook = run_notebook(path, _cells(counter))
    assert "RESULT 42" in nbtools.cell_text(notebook.cells[1])
    assert _where(notebook, nbtools.cell_text)["notebook_how"] == "JPY_SESSION_NAME"
    assert _computed(counter) == ["features", "train"]
    return path, counter


def _headless_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("JPY_SESSION_NAME", None)
    env.pop(nb_module.NOTEBOOK_ENV, None)
    return env


def _check_hits(output: Path, notebook_path: Path, counter: Path, how: str, cell_text) -> None:
    notebook = nbformat.read(str(output), as_version=4)
    assert "RESULT 42" in cell_text(notebook.cells[-3])
    features = cell_text(notebook.cells[-2])
    assert "[persist] read from cache" in features and "FEATS [0, 1, 4, 9, 16]" in features
    where = _where(notebook, cell_text)
    assert (where["notebook_path"], where["notebook_how"]) == (str(notebook_path.resolve()), how)
    assert _computed(counter) == ["features", "train"]  # nothing computed again


def test_nbclient_with_ptd_notebook_hits_the_interactive_entries(interactive_run, nbtools) -> None:
    path, counter = interactive_run
    nbtools.execute_notebook(path, session_name=False, env={nb_module.NOTEBOOK_ENV: str(path)})
    _check_hits(path, path, counter, "PTD_NOTEBOOK", nbtools.cell_text)


def test_nbconvert_execute_hits_the_interactive_entries(interactive_run, project: Path, nbtools) -> None:
    path, counter = interactive_run
    subprocess.run(
        [sys.executable, "-m", "nbconvert", "--to", "notebook", "--execute", "notebooks/exp.ipynb",
         "--output", "exp-executed"],
        cwd=project, env=_headless_env(), check=True, timeout=300, capture_output=True,
    )
    _check_hits(project / "notebooks" / "exp-executed.ipynb", path, counter, "launcher", nbtools.cell_text)


@pytest.mark.parametrize("options", [[], ["--cwd", "notebooks"]], ids=["here", "cwd"])
def test_papermill_hits_the_interactive_entries(interactive_run, project: Path, nbtools, options) -> None:
    path, counter = interactive_run
    env = dict(_headless_env(), PWD=str(project))  # as a shell started in proj/ sets it
    subprocess.run(
        [sys.executable, "-m", "papermill", "--no-progress-bar", *options, "notebooks/exp.ipynb", "out.ipynb"],
        cwd=project, env=env, check=True, timeout=300, capture_output=True,
    )
    _check_hits(project / "out.ipynb", path, counter, "launcher", nbtools.cell_text)
