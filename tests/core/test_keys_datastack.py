"""The data stack as arguments and results, in real processes with different hash seeds.

For each type a data scientist passes (pandas with dates, categories and pyarrow dtypes, polars,
pyarrow, every numpy dtype kind and Generators, scipy.sparse, xarray, torch tensors and modules,
pydantic, attrs, dataclasses, scikit-learn estimators, pipelines and classes, ABC and Enum classes,
regular expressions, aware datetimes), two "sessions" (processes with PYTHONHASHSEED 1 and 2, one
cache) call a persisted function with a value, an equal value built anew and a different value:

- the equal value hits, in the same process and in the other one; the different value misses;
- the value as a result loads back in the second process equal to a fresh one, with its types.

The cases live in ``datastack/values.py``; ``datastack/worker.py`` is one session. A library that
is not installed skips its cases with its name in the summary, except in CI, where the test extra
installs all of them and a missing one fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

HERE = Path(__file__).parent / "datastack"
sys.path.insert(0, str(HERE))
import values  # noqa: E402

sys.path.remove(str(HERE))


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict, Counter]:
    home = tmp_path_factory.mktemp("datastack-home")
    log = home / "computations.log"
    reports = []
    for seed in ("1", "2"):
        out = home / f"session-{seed}.json"
        env = dict(os.environ, HOME=str(home), PYTHONHASHSEED=seed, DATASTACK_LOG=str(log))
        proc = subprocess.run(
            [sys.executable, str(HERE / "worker.py"), str(out)], env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        reports.append(json.loads(out.read_text()))
    counts = Counter(log.read_text().splitlines()) if log.exists() else Counter()
    return reports[0], reports[1], counts


def _report(sessions: tuple[dict, dict, Counter], case: str) -> tuple[dict, dict]:
    first, second, _ = sessions
    for report in (first, second):
        assert "error" not in report[case], report[case].get("error")
    if "missing" in first[case]:
        if os.environ.get("CI"):
            pytest.fail(f"{first[case]['missing']} is not installed in CI: the test extra should install it")
        pytest.skip(f"{first[case]['missing']} is not installed")
    return first[case], second[case]


@pytest.mark.parametrize("case", list(values.CASES))
def test_equal_values_hit_across_processes_and_different_values_miss(sessions, case: str) -> None:
    first, second = _report(sessions, case)
    a, b, c = first["digests"]
    assert a == b, "an equal value built anew must give the same key"
    assert a != c, "a different value must give another key"
    assert first["digests"] == second["digests"], "keys must not depend on the process or its hash seed"
    counts = sessions[2]
    assert counts[f"use|{case}"] == 2, "computed once for the value and once for the different one, over both processes"


@pytest.mark.parametrize("case", list(values.CASES))
def test_results_load_back_equal_with_their_types(sessions, case: str) -> None:
    first, second = _report(sessions, case)
    assert sessions[2][f"give|{case}"] == 1, "the second process must read the stored result"
    assert first["loaded_equal"] and second["loaded_equal"], f"{second['loaded_type']} did not load back equal"
