"""``%%persist`` on a real InteractiveShell in this process: both ways IPython runs a cell magic.

``ip.run_cell_magic("persist", line, body)`` raises what the magic raises;
``ip.run_cell("%%persist ...")`` reports it the way a user sees it.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import pytest
from IPython.core.error import UsageError

import persist_to_disk as ptd
from ipython_ext import magics, namespace


def entries(root: Path) -> list[Path]:
    return sorted(root.rglob("*.ptd"))


RUNS: list = []


def tick(value: object = 1) -> int:
    """Cells call this on every real run; it returns how many runs there were.

    RUNS is state the function changes, so it is not an input of the keys of the cells calling it.
    """
    RUNS.append(value)
    return len(RUNS)


@pytest.fixture
def runs(ip):
    """The list of real runs (``tick()`` in a cell appends to it)."""
    RUNS.clear()
    ip.user_ns["tick"] = tick
    return RUNS


# ----------------------------------------------------------------------------- loading


def test_load_twice_reload_and_unload(ip) -> None:
    assert "persist" in ip.magics_manager.magics["cell"]
    assert "persist_browse" in ip.magics_manager.magics["line"]
    ip.run_line_magic("load_ext", "persist_to_disk")  # again: harmless
    ip.run_line_magic("reload_ext", "persist_to_disk")
    assert "persist" in ip.magics_manager.magics["cell"]
    ip.run_line_magic("unload_ext", "persist_to_disk")
    assert "persist" not in ip.magics_manager.magics["cell"]
    assert "persist_browse" not in ip.magics_manager.magics["line"]
    ip.run_line_magic("load_ext", "persist_to_disk")
    assert "persist" in ip.magics_manager.magics["cell"]
    assert isinstance(ptd.config.notebook_locator, __import__("ipython_ext.location").location.NotebookLocator)


def test_help_shows_the_flags(ip) -> None:
    doc = ip.magics_manager.magics["cell"]["persist"].__doc__
    for flag in ("--recache", "--readonly", "--nocache", "--no-mmap", "name"):
        assert flag in doc


# ----------------------------------------------------------------------------- hits and misses


def test_second_run_restores_variables_and_replays_outputs(ip, runs, capsys, cache_root: Path) -> None:
    body = "tick(1)\nprint('hello from the cell')\nx = 6 * 7\ny = [x, x]\nx + 1\n"
    first = ip.run_cell_magic("persist", "answer", body)
    assert first == 43 and runs == [1]
    out = capsys.readouterr().out
    assert "hello from the cell" in out and "[persist]" not in out
    del ip.user_ns["x"], ip.user_ns["y"]

    second = ip.run_cell_magic("persist", "answer", body)
    assert second == 43 and runs == [1]
    assert ip.user_ns["x"] == 42 and ip.user_ns["y"] == [42, 42]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("[persist] read from cache (computed ") and "took" in lines[0]
    assert lines[1:] == ["hello from the cell"]
    (entry,) = entries(cache_root)
    assert entry.relative_to(cache_root).parts[1:3] == ("_ipython", "answer")  # the cwd stands in

    # the same through run_cell, as typed
    result = ip.run_cell("%%persist answer\n" + body)
    assert result.success and result.result == 43 and runs == [1]


def test_entry_header_lists_the_cell_for_the_browser(ip, runs, cache_root: Path) -> None:
    ip.user_ns["n"] = 5
    ip.run_cell_magic("persist", "", "tick(1)\nsquares = [i * i for i in range(n)]\n")
    (entry,) = entries(cache_root)
    from persist_to_disk.store import read_header_file

    header = read_header_file(entry)
    assert header["kind"] == "cell"
    assert header["func"] == entry.parent.parent.name and header["func"].startswith("cell-")
    assert header["args"] == {"n": "5", "tick": f"function {tick.__module__}.tick"}
    assert header["names"] == ["squares"]
    assert header["code_version"] == magics.cell_code_version("tick(1)\nsquares = [i * i for i in range(n)]\n")
    assert header["compute_seconds"] >= 0 and header["created"] > 0
    assert "squares = " in header["source"]
    assert header["key_format"] == "ptd-key-3"  # an older one marks the entry as of an old version


def test_changed_input_or_code_misses_and_comments_do_not(ip, runs) -> None:
    ip.user_ns["n"] = 2
    body = "tick(n)\nz = n * 10\n"
    ip.run_cell_magic("persist", "z", body)
    ip.run_cell_magic("persist", "z", "# a comment\ntick( n )   # spaced\nz = n*10\n")
    assert runs == [2]
    ip.user_ns["n"] = 3
    ip.run_cell_magic("persist", "z", body)
    assert runs == [2, 3] and ip.user_ns["z"] == 30
    ip.run_cell_magic("persist", "z", "tick(n)\nz = n * 11\n")
    assert runs == [2, 3, 3] and ip.user_ns["z"] == 33
    ip.user_ns["n"] = 2
    ip.run_cell_magic("persist", "z", body)  # back to the first input and code: a hit
    assert runs == [2, 3, 3] and ip.user_ns["z"] == 20


def test_functions_count_by_code_including_what_they_use(ip, runs) -> None:
    ip.run_cell("SCALE = 2\ndef inner(v):\n    return v * SCALE\ndef outer(v):\n    return inner(v) + 1\n")
    body = "tick(1)\nw = outer(5)\n"
    ip.run_cell_magic("persist", "w", body)
    ip.run_cell_magic("persist", "w", body)
    assert runs == [1] and ip.user_ns["w"] == 11
    ip.run_cell("def inner(v):\n    return v * SCALE * 10\n")  # a helper of a helper changed
    ip.run_cell_magic("persist", "w", body)
    assert runs == [1, 1] and ip.user_ns["w"] == 101
    ip.run_cell("SCALE = 3")  # a global the helper reads changed
    ip.run_cell_magic("persist", "w", body)
    assert runs == [1, 1, 1] and ip.user_ns["w"] == 151


def test_classes_count_by_code(ip, runs) -> None:
    ip.run_cell("class Model:\n    def predict(self, v):\n        return v + 1\n")
    body = "tick(1)\npred = Model().predict(1)\n"
    ip.run_cell_magic("persist", "m", body)
    ip.run_cell("class Model:\n    '''Documented now.'''\n    def predict(self, v):\n        return v + 1\n")
    ip.run_cell_magic("persist", "m", body)
    assert runs == [1]
    ip.run_cell("class Model:\n    def predict(self, v):\n        return v + 2\n")
    ip.run_cell_magic("persist", "m", body)
    assert runs == [1, 1] and ip.user_ns["pred"] == 3


def test_definitions_in_the_cell_are_restored_bound_to_the_namespace(ip, runs) -> None:
    ip.run_cell("class Base:\n    kind = 'base'\n")
    body = (
        "tick(1)\n"
        "def scaled(v):\n    return v * FACTOR\n"
        "class Thing(Base):\n    def size(self):\n        return len(self.items)\n"
        "thing = Thing()\nthing.items = [1, 2, 3]\nbase = Base()\n"
    )
    ip.user_ns["FACTOR"] = 2
    ip.run_cell_magic("persist", "defs", body)
    for name in ("scaled", "Thing", "thing", "base"):
        del ip.user_ns[name]
    ip.run_cell_magic("persist", "defs", body)
    assert runs == [1]
    ns = ip.user_ns
    assert ns["scaled"](5) == 10 and ns["scaled"].__globals__ is ns
    ns["FACTOR"] = 3
    assert ns["scaled"](5) == 15  # sees the notebook's globals as they are now
    assert isinstance(ns["thing"], ns["Thing"]) and ns["thing"].size() == 3
    assert isinstance(ns["base"], ns["Base"])  # an earlier cell's class: the notebook's own, not a copy
    import inspect

    assert "return v * FACTOR" in inspect.getsource(ns["scaled"])


def test_del_in_the_cell_is_replayed(ip, runs) -> None:
    ip.user_ns["scratch"] = 1
    body = "tick(1)\nkept = scratch + 1\ndel scratch\n"
    ip.run_cell_magic("persist", "d", body)
    assert "scratch" not in ip.user_ns
    ip.user_ns["scratch"] = 1
    ip.run_cell_magic("persist", "d", body)
    assert runs == [1] and "scratch" not in ip.user_ns and ip.user_ns["kept"] == 2


def test_semicolon_silences_the_value(ip, runs) -> None:
    assert ip.run_cell("%%persist s\ntick(1)\n5 + 5;\n").result is None
    assert ip.run_cell("%%persist s\ntick(1)\n5 + 5;\n").result is None
    assert runs == [1]


def test_displays_are_replayed_with_their_mime_bundles(ip, runs) -> None:
    from IPython.utils.capture import capture_output

    body = (
        "tick(1)\nfrom IPython.display import HTML, Markdown, JSON, display\n"
        "print('before')\ndisplay(HTML('<i>it</i>'))\ndisplay(Markdown('**md**'))\n"
        "display(JSON({'a': 1}))\nprint('after')\n"
    )
    with capture_output() as first:
        ip.run_cell_magic("persist", "shows", body)
    with capture_output() as second:
        ip.run_cell_magic("persist", "shows", body)
    assert runs == [1]
    assert [o.data for o in second.outputs] == [o.data for o in first.outputs]
    kinds = [sorted(o.data) for o in second.outputs]
    assert ["text/html", "text/plain"] in kinds and ["text/markdown", "text/plain"] in kinds
    assert ["application/json", "text/plain"] in kinds
    assert second.stdout.splitlines()[1:] == ["before", "after"]


# ----------------------------------------------------------------------------- flags


def test_recache_readonly_nocache(ip, runs, cache_root: Path) -> None:
    body = "v = tick(1)\n"
    with pytest.raises(ptd.NotCachedError, match="--readonly"):
        ip.run_cell_magic("persist", "flags --readonly", body)
    assert runs == []
    ip.run_cell_magic("persist", "flags --nocache", body)
    assert runs == [1] and entries(cache_root) == []
    ip.run_cell_magic("persist", "flags", body)
    assert runs == [1, 1] and ip.user_ns["v"] == 2
    ip.run_cell_magic("persist", "flags --recache", body)
    assert runs == [1, 1, 1] and ip.user_ns["v"] == 3
    ip.run_cell_magic("persist", "flags --readonly", body)
    assert runs == [1, 1, 1] and ip.user_ns["v"] == 3  # the recached value


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mapped files are read from /proc/self/maps")
def test_no_mmap_restores_large_values_as_copies_from_the_same_entry(ip, runs, cache_root: Path) -> None:
    body = "import numpy as np\ntick(1)\nbig = np.arange(600_000, dtype=np.float64)\n"  # 4.8 MB
    ip.run_cell_magic("persist", "big", body)
    [entry] = entries(cache_root)
    path = os.path.realpath(entry)

    def mapped() -> bool:
        with open("/proc/self/maps") as fh:
            return any(line.rstrip("\n").endswith(path) for line in fh)

    ip.run_cell_magic("persist", "big", body)
    assert runs == [1] and mapped(), "restored from a map of the entry file by default"
    del ip.user_ns["big"]
    ip.run_cell_magic("persist", "big --no-mmap", body)
    assert runs == [1], "--no-mmap reads the same entry"
    assert not mapped() and ip.user_ns["big"][-1] == 599_999.0
    ip.user_ns["big"] += 1  # a copy the notebook rewrites
    ip.run_cell_magic("persist", "big --no-mmap", body)
    assert ip.user_ns["big"][-1] == 599_999.0


@pytest.mark.parametrize("line", ["--bogus", "a b", "--recache --nocache", "../escape"])
def test_bad_lines_are_usage_errors(ip, runs, line: str) -> None:
    with pytest.raises(UsageError):
        ip.run_cell_magic("persist", line, "tick(1)\n")
    result = ip.run_cell(f"%%persist {line}\ntick(1)\n")
    assert isinstance(result.error_in_exec, UsageError)
    assert runs == []


# ----------------------------------------------------------------------------- faults


def test_unpicklable_values_warn_and_the_rest_is_cached(ip, runs, capsys) -> None:
    body = "tick(1)\nimport threading\nlock = threading.Lock()\ngen = (i for i in range(3))\nok = 5\n"
    with pytest.warns(ptd.CacheWarning) as caught:
        ip.run_cell_magic("persist", "h", body)
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2 and "'gen'" in messages[0] and "'lock'" in messages[1]
    for name in ("lock", "gen", "ok"):
        del ip.user_ns[name]
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ip.run_cell_magic("persist", "h", body)
    assert runs == [1] and ip.user_ns["ok"] == 5 and "lock" not in ip.user_ns
    assert "not restored (could not be pickled): gen, lock" in capsys.readouterr().out


def test_unpicklable_last_value_is_shown_again(ip, runs) -> None:
    from IPython.utils.capture import capture_output

    body = "tick(1)\nimport threading\nthreading.Lock()\n"
    with pytest.warns(ptd.CacheWarning, match="last value"):
        ip.run_cell_magic("persist", "lastlock", body)
    with capture_output() as shown:
        assert ip.run_cell_magic("persist", "lastlock", body) is None
    assert runs == [1]
    assert "lock" in shown.outputs[0].data["text/plain"]


def test_an_exception_propagates_and_stores_nothing(ip, runs, cache_root: Path) -> None:
    body = "tick(1)\npartial = 1\nraise KeyError('inside the cell')\n"
    with pytest.raises(KeyError, match="inside the cell"):
        ip.run_cell_magic("persist", "fails", body)
    assert ip.user_ns["partial"] == 1  # what ran before the error stays, as without the magic
    result = ip.run_cell("%%persist fails\n" + body)
    assert isinstance(result.error_in_exec, KeyError)
    assert runs == [1, 1] and entries(cache_root) == []


def test_traceback_points_into_the_cell(ip, capsys) -> None:
    ip.run_cell("%%persist tb\nfirst = 1\n1 / 0\n")
    shown = capsys.readouterr()
    text = shown.out + shown.err
    assert "ZeroDivisionError" in text and "1 / 0" in text


def test_unhashable_input_runs_without_the_cache(ip, runs, cache_root: Path) -> None:
    ip.run_cell("import threading\nguard = threading.Lock()")
    with pytest.warns(ptd.CacheWarning, match="'guard'"):
        ip.run_cell_magic("persist", "u", "tick(1)\nwith guard:\n    got = 1\n")
    assert runs == [1] and ip.user_ns["got"] == 1 and entries(cache_root) == []


def test_a_cell_reading_a_frame_with_dates_is_cached(ip, runs, cache_root: Path) -> None:
    """read_csv(parse_dates=...) frames are the most common input of all: they must key, and hit."""
    ip.run_cell("import io, pandas as pd\n"
                "df = pd.read_csv(io.StringIO('when,n\\n2024-01-01,1\\n2024-01-02,2\\n'), parse_dates=['when'])")
    body = "tick(1)\ntotal = int(df['n'].sum())\n"
    ip.run_cell_magic("persist", "dates", body)
    ip.run_cell_magic("persist", "dates", body)
    assert runs == [1] and ip.user_ns["total"] == 3
    ip.run_cell("df.loc[0, 'when'] = pd.Timestamp('2023-12-31')")
    ip.run_cell_magic("persist", "dates", body)
    assert runs == [1, 1], "another date is another input"


class _RefusesToHash:
    """An object whose own pickling support fails with an error that is not ours."""

    def __reduce_ex__(self, protocol):
        raise ValueError("broken __reduce_ex__")


def test_an_input_whose_hashing_fails_in_its_own_code_still_runs(ip, runs, cache_root: Path) -> None:
    ip.user_ns["odd"] = _RefusesToHash()
    with pytest.warns(ptd.CacheWarning, match="'odd'.*broken __reduce_ex__"):
        ip.run_cell_magic("persist", "odd", "tick(1)\nseen = repr(odd)[:1]\n")
    assert runs == [1] and ip.user_ns["seen"] == "<" and entries(cache_root) == []


def test_syntax_error_is_reported_as_without_the_magic(ip, runs) -> None:
    with pytest.raises(SyntaxError):
        ip.run_cell_magic("persist", "", "tick(1)\nx = (\n")
    assert runs == []


# ----------------------------------------------------------------------------- keys


def test_cell_key_format_is_pinned() -> None:
    """A change here changes every user's cell keys: it must be deliberate."""
    version = magics.cell_code_version("y = x + 1  # comment\n")
    assert version == magics.cell_code_version("y = x+1\n")
    digests = namespace.input_digests({"x", "print"}, {"x": 41}, {})
    assert set(digests) == {"x", "print"}  # print: read but not in the namespace (absent is a value too)
    assert magics.cell_digest("name", version, digests) == GOLDEN_DIGEST
    assert magics.cell_digest(None, version, digests) != GOLDEN_DIGEST


GOLDEN_DIGEST = "f1ec2114918a772e4e9688d2b3740706"  # cell code from ast.unparse; KEY_FORMAT ptd-key-3


def test_input_digests_skip_ipython_furniture_and_key_modules_by_name() -> None:
    import os as os_module

    hidden = {"In": [], "get_ipython": print}
    ns = {"In": hidden["In"], "get_ipython": print, "os": os_module, "_": 3}
    digests = namespace.input_digests({"In", "get_ipython", "os", "_"}, ns, hidden)
    assert set(digests) == {"os", "_"}
    assert digests["os"] == namespace.input_digests({"os"}, {"os": os_module})["os"]


def test_unhashable_direct_read_names_the_variable() -> None:
    import threading

    with pytest.raises(ptd.UnhashableArgumentError, match="'handle'"):
        namespace.input_digests({"handle"}, {"handle": threading.Lock()})


def test_cells_are_listed_beside_the_functions_of_the_notebook(ip, runs, cache_root: Path) -> None:
    """One tree: the catalog (the browser's and the CLI's view) shows a cell next to a function."""
    from persist_to_disk.catalog import Catalog

    ip.run_cell("import persist_to_disk as ptd\n@ptd.persistf()\ndef double(v):\n    return 2 * v\n")
    ip.run_cell_magic("persist", "named", "tick(1)\ndoubled = double(21)\n")
    ip.run_cell_magic("persist", "", "tick(2)\nalso = 1\n")
    catalog = Catalog(cache_root)
    (project,) = catalog.projects()
    found = {(f.kind, f.name, f.source) for f in catalog.functions(project)}
    anon = magics.cell_code_version("tick(2)\nalso = 1\n")[:8]
    assert found == {
        ("function", "double", ("_ipython",)),
        ("cell", "named", ("_ipython",)),
        ("cell", f"cell-{anon}", ("_ipython",)),
    }
