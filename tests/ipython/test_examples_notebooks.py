"""The example notebooks in examples/ run top to bottom, and a second run (a restart) reads the cache.

They are copied into ``proj/notebooks/`` of a temp project first: the checkout's files stay
clean, and the cache tree they make is checked.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _copy(name: str, project: Path) -> Path:
    target = project / "notebooks" / name
    shutil.copy(EXAMPLES / name, target)
    return target


def _code_cells(nb) -> list:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def test_decorator_example(project: Path, run_notebook, nbtools, cache_root: Path) -> None:
    path = _copy("decorator_in_a_notebook.ipynb", project)
    first = _code_cells(run_notebook(path))
    assert "training on mnist for 20 epochs" in nbtools.cell_text(first[2])
    where = nbtools.cell_text(first[3])
    assert "'notebook_how': 'JPY_SESSION_NAME'" in where and "notebooks/decorator_in_a_notebook" in where
    assert "'dataset': 'cifar', 'epochs': 5" in nbtools.cell_text(first[5])

    second = _code_cells(run_notebook(path))  # a fresh kernel
    assert "training on" not in nbtools.cell_text(second[2])
    assert "'loss': 0.5" in nbtools.cell_text(second[2])
    folders = {p.relative_to(cache_root).parts[1:4] for p in cache_root.rglob("*.ptd")}
    assert folders == {("notebooks", "decorator_in_a_notebook", "train")}


def test_cell_magic_example(project: Path, run_notebook, nbtools) -> None:
    path = _copy("persist_cell_magic.ipynb", project)
    first = _code_cells(run_notebook(path))
    simulation, unpicklable, readonly = first[2], first[4], first[5]
    assert "simulating ..." in nbtools.cell_text(simulation) and "[persist]" not in nbtools.cell_text(simulation)
    assert "CacheWarning" in nbtools.cell_text(unpicklable) and "'guard'" in nbtools.cell_text(unpicklable)
    assert nbtools.cell_text(readonly).startswith("[persist] read from cache")

    second = _code_cells(run_notebook(path))
    text = nbtools.cell_text(second[2])
    assert text.startswith("[persist] read from cache") and "simulating ..." in text
    assert any("text/markdown" in out.get("data", {}) for out in second[2].outputs)
    assert any("image/png" in out.get("data", {}) for out in second[3].outputs)
    assert "not restored (could not be pickled): guard" in nbtools.cell_text(second[4])
