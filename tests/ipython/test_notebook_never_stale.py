"""Never stale in a notebook: a real kernel (nbclient + ipykernel) runs cells as a user does.

Helpers redefined in a later cell, globals changed between cells, a project module's attribute
changed in the kernel, a variable a ``%%persist`` cell changes in place, and a cell calling a
persisted function whose helper changed: each recomputes exactly when its inputs changed, and
a second run of the whole notebook in a new kernel (a restart) hits everything.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CELLS = [
    """\
%load_ext persist_to_disk
import persist_to_disk as ptd
import params

def count(label):
    with open({counter!r}, "a") as fh:
        fh.write(label + "\\n")
""",
    "SCALE = 2\ndef helper(x):\n    return x * SCALE\n",
    "@ptd.persistf()\ndef f(x):\n    count('f')\n    return helper(x)\n",
    "print('R1', f(5))",
    "def helper(x):\n    return x * SCALE + 1\n",  # the helper's cell, edited and run again
    "print('R2', f(5))",
    "SCALE = 3",
    "print('R3', f(5))",
    "%%persist lr\ncount('lr')\nout = params.LR * 10\nprint('LR', out)",
    "params.LR = 0.2",
    "%%persist lr\ncount('lr')\nout = params.LR * 10\nprint('LR', out)",
    "log = []",
    "%%persist mutate\ncount('mutate')\nlog.append('ran')\n",
    "print('LOG', log)",
    "%%persist usef\ncount('usef')\ny = f(1)\nprint('Y', y)",
    "def helper(x):\n    return x * SCALE + 100\n",
    "%%persist usef\ncount('usef')\ny = f(1)\nprint('Y', y)",
]


_PRINTED = ("R1", "R2", "R3", "LR", "LOG", "Y")


def _printed(nb, cell_text) -> list[str]:
    lines = []
    for cell in nb.cells:
        lines += [line for line in cell_text(cell).splitlines() if line.split(" ")[0] in _PRINTED]
    return lines


def test_notebook_edits_recompute_and_a_restart_hits(project: Path, run_notebook, nbtools) -> None:
    counter = project / "counter.txt"
    (project / "params.py").write_text("LR = 0.1\n")
    cells = [CELLS[0].format(counter=str(counter)), *CELLS[1:]]
    nb_path = project / "notebooks" / "exp.ipynb"

    env = {"PYTHONPATH": os.pathsep.join([str(project), os.environ["PYTHONPATH"]])}  # `import params`
    nb = run_notebook(nb_path, cells, env=env)
    printed = _printed(nb, nbtools.cell_text)
    assert printed == ["R1 10", "R2 11", "R3 16", "LR 1.0", "LR 2.0", "LOG ['ran']", "Y 4", "Y 103"], printed
    shown = [nbtools.cell_text(cell) for cell in nb.cells]
    assert "[persist] f: recomputing, function `helper` in" in shown[5], "a recompute says why, in one line"
    assert "[persist] f: recomputing, global SCALE: 2 -> 3" in shown[7]
    first = Counter(counter.read_text().split())
    assert first == {"f": 5, "lr": 2, "mutate": 1, "usef": 2}, "each change recomputes once, nothing else does"

    # a restart: the same cells in a new kernel hit every entry, and the in-place change is restored
    nb = run_notebook(nb_path, env=env)
    assert _printed(nb, nbtools.cell_text) == printed, "hits restore the values, `log` included, and replay output"
    assert Counter(counter.read_text().split()) == first
