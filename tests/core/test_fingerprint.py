"""Never a stale answer: a result is keyed by everything its code depends on.

Each scenario is a small project on disk run as a script in a fresh process, edited between
runs as a user edits files; the script prints ``COMPUTE`` on each real computation, so a test
counts computations and checks the value. In-process cases (closures, class attributes changed
at run time, values passed as arguments) run here.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import persist_to_disk as ptd
from persist_to_disk import fingerprint, why
from persist_to_disk.header import EntryHeader


class Project:
    """A project folder (pyproject.toml marks its root) whose scripts run in fresh processes."""

    def __init__(self, root: Path, home: Path) -> None:
        self.root = root
        self.home = home
        root.mkdir(parents=True, exist_ok=True)
        (root / "pyproject.toml").write_text("[project]\nname = 'proj'\n")

    def write(self, name: str, text: str) -> None:
        (self.root / name).write_text(textwrap.dedent(text))

    def edit(self, name: str, old: str, new: str) -> None:
        path = self.root / name
        text = path.read_text()
        assert old in text, f"{old!r} not in {name}"
        path.write_text(text.replace(old, new))

    def run(self, script: str = "main.py") -> tuple[int, list[str]]:
        """(computations, the lines the script printed that are not COMPUTE lines)."""
        env = dict(os.environ, HOME=str(self.home), PYTHONDONTWRITEBYTECODE="1")
        proc = subprocess.run(
            [sys.executable, script], cwd=self.root, env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        lines = proc.stdout.splitlines()
        return sum(line.startswith("COMPUTE") for line in lines), [x for x in lines if not x.startswith("COMPUTE")]


@pytest.fixture
def project(tmp_path: Path, isolated_home: Path) -> Project:
    return Project(tmp_path / "proj", isolated_home)


MAIN = """
import persist_to_disk as ptd
import util
from util import SCALE, shift

OFFSET = 1

def helper(x):
    return x + OFFSET

@ptd.persistf()
def f(x):
    print("COMPUTE")
    return helper(x) * SCALE + util.bonus(x) + util.RATE + shift(x)

print(f(5))
"""

UTIL = """
SCALE = 2
RATE = 10

def bonus(x):
    return x

def shift(x):
    return 0
"""


@pytest.mark.parametrize(
    "file, old, new, expected",
    [
        ("main.py", "return x + OFFSET", "return x + OFFSET + 100", 227),  # a helper in the same module
        ("util.py", "def bonus(x):\n    return x", "def bonus(x):\n    return -x", 17),  # a helper in another module
        ("util.py", "def shift(x):\n    return 0", "def shift(x):\n    return 1", 28),  # imported by name
        ("main.py", "OFFSET = 1", "OFFSET = 2", 29),  # a module constant
        ("util.py", "SCALE = 2", "SCALE = 3", 33),  # a constant imported by name from another module
        ("util.py", "RATE = 10", "RATE = 20", 37),  # a module attribute read as util.RATE
    ],
    ids=["helper", "helper-in-other-module", "helper-imported-by-name", "constant", "imported-constant",
         "module-attribute"],
)
def test_an_edit_to_anything_the_function_uses_recomputes_and_reverting_hits(project, file, old, new, expected):
    project.write("main.py", MAIN)
    project.write("util.py", UTIL)
    assert project.run() == (1, ["27"])
    assert project.run() == (0, ["27"])
    project.edit(file, old, new)
    assert project.run() == (1, [str(expected)])
    project.edit(file, new, old)
    assert project.run() == (0, ["27"]), "reverting the edit finds the old entry"


def test_comments_docstrings_and_formatting_in_dependencies_do_not_recompute(project):
    project.write("main.py", MAIN)
    project.write("util.py", UTIL)
    assert project.run()[0] == 1
    documented = 'def bonus(x):\n    """The bonus."""\n    # why\n    return (x)'
    project.edit("util.py", "def bonus(x):\n    return x", documented)
    project.edit("main.py", "return x + OFFSET", "return x+OFFSET  # a comment")
    assert project.run() == (0, ["27"])


def test_a_stacked_decorators_argument_counts(project):
    project.write("main.py", """
        import functools
        import persist_to_disk as ptd

        def scaled_by(k):
            def deco(fn):
                @functools.wraps(fn)
                def wrapper(x):
                    return fn(x) * k
                return wrapper
            return deco

        @ptd.persistf()
        @scaled_by(2)
        def g(x):
            print("COMPUTE")
            return x

        print(g(5))
    """)
    assert project.run() == (1, ["10"])
    project.edit("main.py", "@scaled_by(2)", "@scaled_by(3)")
    assert project.run() == (1, ["15"])


def test_a_class_attribute_read_by_a_method_or_a_classmethod_counts(project):
    project.write("main.py", """
        import persist_to_disk as ptd

        class Model:
            factor = 2

            @ptd.persistf()
            def predict(self, x):
                print("COMPUTE")
                return x * self.factor

            @classmethod
            @ptd.persistf()
            def build(cls, x):
                print("COMPUTE")
                return x * cls.factor

        print(Model().predict(5), Model.build(5))
    """)
    assert project.run() == (2, ["10 10"])
    assert project.run() == (0, ["10 10"])
    project.edit("main.py", "factor = 2", "factor = 3")
    assert project.run() == (2, ["15 15"])


def test_a_class_or_a_partial_passed_as_an_argument_counts_by_its_code(project):
    project.write("models.py", """
        class Net:
            def forward(self, x):
                return x + 1

        def loss(x, scale):
            return x * scale
    """)
    project.write("main.py", """
        import functools
        import persist_to_disk as ptd
        import models

        @ptd.persistf()
        def train(model_cls, objective, x):
            print("COMPUTE")
            return objective(model_cls().forward(x))

        print(train(models.Net, functools.partial(models.loss, scale=2), 1))
    """)
    assert project.run() == (1, ["4"])
    project.edit("models.py", "return x + 1", "return x + 2")
    assert project.run() == (1, ["6"])
    project.edit("models.py", "return x * scale", "return x * scale * 10")
    assert project.run() == (1, ["60"])
    assert project.run() == (0, ["60"])


# -- in one process ----------------------------------------------------------------------------------------
def test_closure_variables_of_a_decorated_inner_function_count(cache_root):
    runs = []

    def make(n):
        @ptd.persistf()
        def inner(x):
            runs.append(n)
            return x * n

        return inner

    assert make(2)(5) == 10
    assert make(3)(5) == 15
    assert make(2)(5) == 10
    assert runs == [2, 3]


def test_a_global_changed_in_the_process_recomputes(cache_root):
    runs = []
    namespace = {"SCALE": 2, "runs": runs, "ptd": ptd}
    exec(
        "@ptd.persistf()\ndef f(x):\n    runs.append(x)\n    return x * SCALE\n",
        namespace,
    )
    f = namespace["f"]
    assert f(5) == 10 and f(5) == 10
    namespace["SCALE"] = 3
    assert f(5) == 15
    namespace["SCALE"] = 2
    assert f(5) == 10
    assert runs == [5, 5]


def test_a_helper_redefined_in_the_process_recomputes(cache_root):
    runs = []
    namespace = {"runs": runs, "ptd": ptd}
    exec("def helper(x):\n    return x + 1\n", namespace)
    exec("@ptd.persistf()\ndef f(x):\n    runs.append(x)\n    return helper(x)\n", namespace)
    f = namespace["f"]
    assert f(1) == 2 and f(1) == 2
    exec("def helper(x):\n    return x + 100\n", namespace)  # a notebook cell run again
    assert f(1) == 101
    assert runs == [1, 1]


def test_two_lambdas_on_one_line_are_different_arguments(cache_root):
    inc, dbl = (lambda x: x + 1), (lambda x: x * 2)  # noqa: E731

    @ptd.persistf()
    def apply(fn, x):
        return fn(x)

    assert (apply(inc, 5), apply(dbl, 5)) == (6, 10)


def test_state_the_function_changes_itself_is_not_an_input(cache_root):
    log: list = []
    seen: dict = {}

    @ptd.persistf()
    def f(x):
        log.append(x)
        seen[x] = True
        return x

    assert [f(1), f(1), f(2), f(1)] == [1, 1, 2, 1]
    assert log == [1, 2]


def test_an_unhashable_global_is_named_once_and_keyed_by_its_type(cache_root):
    import threading

    namespace = {"ptd": ptd, "GUARD": threading.Lock(), "runs": []}
    exec("@ptd.persistf()\ndef f(x):\n    runs.append(x)\n    with GUARD:\n        return x\n", namespace)
    f = namespace["f"]
    with pytest.warns(ptd.CacheWarning, match="'GUARD'.*keyed by its type") as caught:
        assert f(1) == 1
        assert f(1) == 1
    assert len([w for w in caught if "GUARD" in str(w.message)]) == 1
    assert namespace["runs"] == [1]


def test_escape_hatches_ignore_globals_track_dependencies_and_version(cache_root):
    namespace = {"ptd": ptd, "SCALE": 2, "runs": []}
    code = "def f(x):\n    runs.append(x)\n    return x * SCALE\n"
    exec(code, namespace)
    ignoring = ptd.persistf(ignore_globals=["SCALE"])(namespace["f"])
    untracked = ptd.persistf(track_dependencies=False)(namespace["f"])
    pinned = ptd.persistf(version="v1")(namespace["f"])
    for fn in (ignoring, untracked, pinned):
        namespace["SCALE"] = 2
        assert fn(5) == 10
        namespace["SCALE"] = 3
        assert fn(5) == 10, "left out on purpose: the stored result stands"
    assert len(namespace["runs"]) == 3
    ptd.config.set_track_dependencies(False)
    tracked_by_default = ptd.persistf()(namespace["f"])
    namespace["SCALE"] = 2
    assert tracked_by_default(6) == 12
    namespace["SCALE"] = 3
    assert tracked_by_default(6) == 12


def test_state_read_per_call_is_only_what_the_code_reads(cache_root):
    """The fingerprint lists code dependencies with where they live, and the values it reads."""
    namespace = {"ptd": ptd, "SCALE": 2, "UNUSED": 1}
    exec("def helper(x):\n    return x * SCALE\n\ndef f(x):\n    return helper(x)\n", namespace)
    fp = fingerprint.of_object(namespace["f"])
    assert {(d.kind, d.name) for d in fp.code_dependencies} == {("function", "f"), ("function", "helper")}
    assert [v.name for v in fp.values] == ["SCALE"]


# -- saying why ------------------------------------------------------------------------------------------------
def test_why_names_what_differs_from_the_nearest_entry(cache_root):
    namespace = {"ptd": ptd, "SCALE": 2}
    exec("def scale(x):\n    return x * SCALE\n\n@ptd.persistf()\ndef f(x, lr=0.01):\n    return scale(x)\n", namespace)
    f = namespace["f"]
    assert str(f.cache.why(5)) == "f: nothing is cached for this function yet"
    f(5)
    assert str(f.cache.why(5)) == "f: this call is cached"
    namespace["SCALE"] = 3
    assert f.cache.why(5).reasons == ["global SCALE: 2 -> 3"]
    assert f.cache.why(5, lr=0.001).reasons == ["argument lr: 0.01 -> 0.001", "global SCALE: 2 -> 3"]
    namespace["SCALE"] = 2
    exec("def scale(x):\n    return x * SCALE + 1\n", namespace)
    assert f.cache.why(5).reasons == ["function `scale` in <string>:1 changed"]
    assert "function `scale`" in str(f.cache.why(5))


def test_why_says_an_entry_was_stored_under_an_older_key_format(cache_root, previous_key_format):
    """After an upgrade that changes the key format, the kept entries miss: `why` says so, instead of
    reporting equal arguments as changed."""
    source = "@ptd.persistf()\ndef f(x):\n    return x * 2\n"
    before = {"ptd": ptd}
    with previous_key_format():
        exec(source, before)
        assert before["f"](3) == 6
    after = {"ptd": ptd}
    exec(source, after)
    f = after["f"]
    assert f.cache.why(3).reasons == [
        "stored under an older key format (ptd-key-2); this version computes keys as ptd-key-3"
    ]
    assert f(3) == 6
    assert str(f.cache.why(3)) == "f: this call is cached"


def test_why_reads_a_header_without_a_key_format_as_an_older_one():
    """Entries written before headers recorded the key format are of an older one; digests of one
    format are still compared."""
    then = why.CallRecord.from_header(EntryHeader(args={"x": "3"}, arg_digests={"x": "d-old"}))
    now = why.CallRecord({"x": "d-new"}, {"x": "3"}, (), key_format="ptd-key-3")
    assert why.differences(now, then) == [
        "stored under an older key format (ptd-key-2 or earlier); this version computes keys as ptd-key-3"
    ]
    newer = dataclasses.replace(then, key_format="ptd-key-4")  # written by a newer release
    assert why.differences(now, newer) == [
        "stored under another key format (ptd-key-4); this version computes keys as ptd-key-3"
    ]
    same = why.CallRecord({"x": "d-old"}, {"x": "3"}, (), key_format="ptd-key-3")
    assert why.differences(same, dataclasses.replace(same, arg_digests={"x": "d-new"})) == ["argument x: 3 -> 3"]


def test_an_entry_header_and_ptd_info_list_the_dependencies(project):
    project.write("main.py", MAIN)
    project.write("util.py", UTIL)
    project.run()
    entry = next(project.home.rglob("*.ptd"))
    env = dict(os.environ, HOME=str(project.home))
    proc = subprocess.run([sys.executable, "-m", "persist_to_disk", "info", str(entry)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    deps = text[text.index("dependencies:"):]
    for expected in ("function f: main.py:", "function helper: main.py:", "function bonus: util.py:",
                     "global OFFSET: __main__ = 1", "global SCALE: __main__ = 2", "attribute util.RATE: util = 10"):
        assert expected in deps, deps


def test_a_walk_that_fails_never_costs_the_call(cache_root, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("odd code")

    monkeypatch.setattr(fingerprint, "of_object", broken)

    @ptd.persistf()
    def f(x):
        return x + 1

    with pytest.warns(ptd.CacheWarning, match="dependencies of .*f could not be read.*odd code"):
        assert f(1) == 2
    assert f(1) == 2 and f.cache.contains(1)
