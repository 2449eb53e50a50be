"""``%%persist`` in real notebooks run by real kernels (nbclient + ipykernel).

Each cached cell appends its tag to a counter file, so a line more means "ran again".
The notebook is run, then run again in a fresh kernel (a restart) that must not run
the cached cells, then edited in the ways a user edits.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SETUP = """\
%load_ext persist_to_disk
import persist_to_disk as ptd
COUNTER = {counter!r}

def bump(tag):
    with open(COUNTER, "a") as fh:
        fh.write(tag + "\\n")
"""

INPUT = "N = {n}"

DATA = """\
%%persist data
bump("data")
print("computing data")
import sys
print("a note on stderr", file=sys.stderr)
from IPython.display import HTML, display
display(HTML("<b>bold {{N}}</b>".format(N=N)))
values = [i * N{extra} for i in range(5)]
total = sum(values)
total
"""

CHECK_DATA = 'print("CHECK", values, total)'

HANDLES = """\
%%persist handles {flag}
bump("handles")
import threading
lock = threading.Lock(){comment}
size = 10
"""

CHECK_HANDLES = 'print("CHECK2", size, "lock" in globals())'

BOOM = """\
%%persist boom
bump("boom")
partial = 1
raise ValueError("boom in the cell")
"""

ANON = """\
%%persist
bump("anon")
square = N ** 2
print("square is", square)
"""

PLOT = """\
%%persist plot
bump("plot")
%matplotlib inline
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(2, 2))
ax.plot([1, 2, 3], [1, 4, 9])
"""

HELPERS = """\
%%persist helpers
bump("helpers")

@ptd.persistf()
def cube(x):
    bump("cube")
    return x ** 3

class Scaler:
    def __init__(self, k):
        self.k = k

    def __call__(self, x):
        return self.k * x * N

triple = Scaler(3)
"""

USE_HELPERS = 'print("USE", cube(3), triple(2), isinstance(triple, Scaler))'


def notebook(counter: Path, *, n: int = 3, extra: str = "", flag: str = "", comment: str = "") -> list[str]:
    return [
        SETUP.format(counter=str(counter)),
        INPUT.format(n=n),
        DATA.format(extra=extra),
        CHECK_DATA,
        HANDLES.format(flag=flag, comment=comment),
        CHECK_HANDLES,
        BOOM,
        ANON,
        PLOT,
        HELPERS,
        USE_HELPERS,
    ]


def _types(cell) -> list[str]:
    kinds = []
    for out in cell.outputs:
        kind = out["output_type"]
        kinds.append(f"stream:{out['name']}" if kind == "stream" else kind)
    return kinds


def test_persist_cells_in_a_notebook(project: Path, run_notebook, nbtools, cache_root: Path) -> None:
    counter = project / "counter.txt"
    nb_path = project / "notebooks" / "exp.ipynb"
    text = nbtools.cell_text

    def run(**edits):
        before = counter.read_text().splitlines() if counter.exists() else []
        nb = run_notebook(nb_path, notebook(counter, **edits), allow_errors=True)
        after = counter.read_text().splitlines()
        assert after[: len(before)] == before
        return nb, sorted(after[len(before):])

    # 1. first run: every cell runs
    nb, ran = run()
    assert ran == ["anon", "boom", "cube", "data", "handles", "helpers", "plot"]
    data = nb.cells[2]
    assert _types(data) == ["stream:stdout", "stream:stderr", "display_data", "execute_result"]
    assert "computing data" in text(data) and "[persist]" not in text(data)
    assert data.outputs[2]["data"]["text/html"] == "<b>bold 3</b>"
    assert data.outputs[3]["data"]["text/plain"] == "30"
    assert "CHECK [0, 3, 6, 9, 12] 30" in text(nb.cells[3])
    handles = text(nb.cells[4])
    assert "CacheWarning" in handles and "'lock'" in handles and "cannot be pickled" in handles
    assert "CHECK2 10 True" in text(nb.cells[5])
    boom = nb.cells[6]
    assert boom.outputs[-1]["output_type"] == "error" and boom.outputs[-1]["ename"] == "ValueError"
    traceback = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(boom.outputs[-1]["traceback"]))  # without colours
    assert 'raise ValueError("boom in the cell")' in traceback  # it points into the cell
    assert "square is 9" in text(nb.cells[7])
    assert any("image/png" in out.get("data", {}) for out in nb.cells[8].outputs)
    tree = cache_root.glob("proj-*/notebooks/exp")
    (exp,) = list(tree)
    assert "USE 27 18 True" in text(nb.cells[10])
    assert sorted(p.name for p in exp.iterdir()) == sorted(
        ["data", "handles", "plot", "helpers", "cube", _anon_folder(exp)]
    )
    assert not (exp / "boom").exists()  # an exception stores nothing

    # 2. a fresh kernel: nothing runs but the failing cell; variables and outputs come back
    nb, ran = run()
    assert ran == ["boom"]
    data = nb.cells[2]
    assert _types(data) == ["stream:stdout", "stream:stderr", "display_data", "execute_result"]
    first_line, *rest = data.outputs[0]["text"].splitlines()
    assert first_line.startswith("[persist] read from cache (computed ") and ", took " in first_line
    assert rest == ["computing data"]
    assert data.outputs[1]["text"] == "a note on stderr\n"
    assert data.outputs[2]["data"]["text/html"] == "<b>bold 3</b>"
    assert data.outputs[3]["data"]["text/plain"] == "30"
    assert "CHECK [0, 3, 6, 9, 12] 30" in text(nb.cells[3])
    assert "not restored (could not be pickled): lock" in text(nb.cells[4])
    assert "CHECK2 10 False" in text(nb.cells[5])
    assert nb.cells[6].outputs[-1]["ename"] == "ValueError"
    assert "square is 9" in text(nb.cells[7]) and "[persist] read from cache" in text(nb.cells[7])
    assert any("image/png" in out.get("data", {}) for out in nb.cells[8].outputs)
    # a function and a class defined in a cached cell come back working, bound to the notebook:
    # the restored persisted function hits its own cache, the instance sees N and its class
    assert "USE 27 18 True" in text(nb.cells[10])

    # 3. a changed input: the cells reading it run again; a comment-only edit does not count
    nb, ran = run(n=4, comment="  # a comment is not an edit")
    assert ran == ["anon", "boom", "data", "helpers"]  # helpers: Scaler reads N
    assert "CHECK [0, 4, 8, 12, 16] 40" in text(nb.cells[3])
    assert "[persist] read from cache" in text(nb.cells[4])
    assert "USE 27 24 True" in text(nb.cells[10])

    # 4. changed code runs again; --recache runs again whatever is cached
    nb, ran = run(n=4, extra=" + 1", flag="--recache")
    assert ran == ["boom", "data", "handles"]
    assert "CHECK [1, 5, 9, 13, 17] 45" in text(nb.cells[3])
    assert "[persist]" not in text(nb.cells[4])

    # 5. back to the first version: all hits again
    nb, ran = run()
    assert ran == ["boom"]
    assert "CHECK [0, 3, 6, 9, 12] 30" in text(nb.cells[3])


def _anon_folder(exp: Path) -> str:
    names = [p.name for p in exp.iterdir() if p.name.startswith("cell-")]
    assert len(names) == 1, names
    return names[0]
