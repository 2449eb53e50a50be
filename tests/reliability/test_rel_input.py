"""Bad input gets a clear error, and nothing is lost or cached wrongly.

Arguments that cannot be keyed fail loudly naming the argument; results that cannot
be stored are returned with one warning and nothing on disk; bad settings name the
setting and the file; recursion and a changed signature work as a user expects.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import warnings

import pytest

import persist_to_disk as ptd


def _cache_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, ptd.CacheWarning)]


@pytest.mark.parametrize(
    "make", [threading.Lock, lambda: (i for i in range(3)), lambda: open(os.devnull)], ids=["lock", "gen", "file"]
)
def test_an_unhashable_argument_is_a_type_error_naming_it(rel, persist, make):
    @ptd.persistf
    def f(data, flag=True):
        return 1

    value = make()
    try:
        with pytest.raises(TypeError, match=r"'data'|\bdata\b") as info:
            f(value)
        assert isinstance(info.value, ptd.UnhashableArgumentError)
        assert type(value).__name__ in str(info.value)
    finally:
        getattr(value, "close", lambda: None)()
    assert not list(persist.rglob("*.ptd"))
    rel.count(faults=1, operations=1)


@pytest.mark.parametrize("make", [threading.Lock, lambda: (lambda x: x)], ids=["lock", "lambda"])
def test_a_result_that_cannot_be_pickled_is_returned_with_one_warning(rel, persist, make):
    runs = []

    @ptd.persistf
    def f(x):
        runs.append(x)
        return make()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = f(1)
    messages = _cache_warnings(caught)
    assert callable(first) or hasattr(first, "acquire")
    assert len(messages) == 1 and "was not cached" in messages[0] and "f" in messages[0]
    assert [p for p in persist.rglob("*") if p.is_file() and ".locks" not in p.parts] == []  # no entry, no temp
    with pytest.warns(ptd.CacheWarning, match="was not cached"):
        f(1)
    assert runs == [1, 1]  # not cached, so computed again (never a stale or partial value)
    rel.count(faults=1, operations=2)


BAD_SETTINGS = {
    "hashsize": "lots",
    "lock_granularity": "sometimes",
    "fsync": "maybe",
    "shared_group": "perhaps",
    "trust_shared": "2",
}


@pytest.mark.parametrize("setting", list(BAD_SETTINGS))
def test_an_invalid_config_ini_value_names_the_setting_and_the_file(rel, setting):
    path = ptd.config.config_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"[global_settings]\n{setting} = {BAD_SETTINGS[setting]}\n")
    ptd.config.reload()

    @ptd.persistf
    def f(x):
        return x

    with pytest.raises(ValueError) as info:
        f(1)
    message = str(info.value)
    assert setting in message and str(path) in message and BAD_SETTINGS[setting] in message
    rel.count(faults=1, operations=1)


def test_a_config_ini_that_is_not_ini_names_the_file():
    path = ptd.config.config_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("persist_path = /somewhere\n")  # no section header
    ptd.config.reload()
    with pytest.raises(ValueError, match="not a valid config.ini") as info:
        ptd.config.settings()
    assert str(path) in str(info.value)


@pytest.mark.parametrize("granularity", ["call", "func", "global"])
def test_recursive_calls_of_a_persisted_function(rel, persist, granularity):
    runs = []

    @ptd.persistf(lock_granularity=granularity)
    def fib(n):
        runs.append(n)
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    assert fib(60) == 1548008755920
    assert sorted(runs) == list(range(61))  # each n computed once, even as nested calls hold locks
    assert fib(60) == 1548008755920 and len(runs) == 61
    assert len(fib.cache.entries()) == 61
    rel.count(operations=61 * 2)


def test_a_function_whose_signature_changed_between_runs(rel, tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text("[project]\nname='proj'\n")
    log = tmp_path / "runs.log"
    versions = {
        "v1": "def f(a):\n    return a + 1\n",
        "v2": "def f(a, b=10):\n    return a + b\n",
        "v3": "def f(a, *, b=1):\n    return a + b * 100\n",
    }
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(project), os.environ["PYTHONPATH"]]),
           "PYTHONDONTWRITEBYTECODE": "1"}
    results = []
    for name in ("v1", "v2", "v1", "v3", "v2"):
        body = versions[name].replace("):\n", "):\n    open(LOG, 'a').write('run\\n')\n", 1)
        (project / "mod.py").write_text(
            f"import persist_to_disk as ptd\nLOG = {str(log)!r}\n\n@ptd.persistf\n" + body
        )
        out = subprocess.run([sys.executable, "-c", "import mod; print(mod.f(1))"], cwd=project, env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        results.append(int(out.stdout))
    assert results == [2, 11, 2, 101, 11]  # each version its own answer, never another version's
    assert log.read_text().count("run") == 3  # going back to v1 and v2 hit their old entries
    rel.count(operations=5)


def test_default_arguments_are_part_of_the_key(rel, persist):
    @ptd.persistf
    def f(a, b=2):
        return a * b

    assert f(3) == 6 and f(3, 2) == 6 and f(3, b=4) == 12 and f(a=3) == 6
    assert len(f.cache.entries()) == 2
    rel.count(operations=4)


def test_wrong_call_arguments_are_the_callers_type_error(persist):
    @ptd.persistf
    def f(a):
        return a

    with pytest.raises(TypeError, match=r"f\(\).*argument"):
        f(1, 2)
    assert not list(persist.rglob("*.ptd"))


def test_an_unknown_setting_in_config_ini_is_reported_not_silently_ignored(isolated_home) -> None:
    import persist_to_disk as ptd

    config_ini = isolated_home / ".cache" / "persist_to_disk" / "config.ini"
    config_ini.parent.mkdir(parents=True, exist_ok=True)
    config_ini.write_text("[global_settings]\nhashsize = 7\ntrust_share = true\n")
    ptd.config.reset()
    with pytest.warns(ptd.CacheWarning, match="trust_share"):
        assert ptd.config.get_hashsize() == 7
