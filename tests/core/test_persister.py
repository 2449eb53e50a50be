"""The decorator as users know it from the seed README and issue 2.

Each test says what a user does and checks what they get: a counter proves whether
the function ran, the cache tree is checked on disk, and settings are changed the way
a user changes them (the API, config.ini, a fresh process).
"""

from __future__ import annotations

import asyncio
import configparser
import importlib.util
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from filelock import FileLock

import persist_to_disk as ptd
from persist_to_disk import store as st


# -- helpers ---------------------------------------------------------------------------------------------
def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def run_python(args: list[str], cwd: Path, env: dict | None = None, timeout: float = 60) -> str:
    full_env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", **(env or {}))
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


def import_file(path: Path):
    """Import a module from a file under a unique name (the file stays its source)."""
    name = f"ptd_core_mod_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def entry_files(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).rglob("*.ptd") if ".locks" not in p.parts)


def rel_entries(folder: Path) -> list[tuple[str, ...]]:
    return sorted(p.relative_to(folder).parts for p in entry_files(folder))


def counted(calls: list):
    """A function body that records each run and returns a fresh number per run."""

    def body(*args, **kwargs):
        calls.append((args, kwargs))
        return len(calls)

    return body


# -- the decorator forms ---------------------------------------------------------------------------------
def test_bare_and_called_decorator_both_cache(cache_root):
    calls = []

    @ptd.persistf
    def bare(x):
        calls.append(("bare", x))
        return x * 2

    @ptd.persistf()
    def called(x):
        calls.append(("called", x))
        return x * 3

    assert [bare(2), bare(2), called(2), called(2)] == [4, 4, 6, 6]
    assert calls == [("bare", 2), ("called", 2)]
    assert bare.__name__ == "bare" and bare.__wrapped__ is not None
    assert len(entry_files(cache_root)) == 2


# -- the seed's cache tree -------------------------------------------------------------------------------
TRAIN_PY = """
import os
import persist_to_disk as ptd

@ptd.persistf()
def train_a_model(dataset, model_cls, lr, epochs, device='cpu'):
    with open(os.environ["PTD_COUNTER"], "a") as fh:
        fh.write(f"{dataset} {epochs}\\n")
    return f"model:{dataset}:{lr}:{epochs}"

if __name__ == '__main__':
    print(train_a_model('MNIST', int, 1e-3, 30))
"""


def test_python_m_pipeline_train_makes_the_seed_tree(tmp_path, cache_root):
    project = tmp_path / "project_name"
    write(project / "pipeline" / "__init__.py", "")
    write(project / "pipeline" / "train.py", TRAIN_PY)
    counter = tmp_path / "counter.txt"

    for _ in range(2):
        out = run_python(["-m", "pipeline.train"], cwd=project, env={"PTD_COUNTER": str(counter)})
        assert out.strip() == "model:MNIST:0.001:30"
    assert counter.read_text().splitlines() == ["MNIST 30"], "the second run must read the cache"

    files = entry_files(cache_root)
    assert len(files) == 1
    parts = files[0].relative_to(cache_root).parts
    project_folder, *middle, bucket, _name = parts
    assert middle == ["pipeline", "train", "train_a_model"]
    name, _, autoid = project_folder.rpartition("-")
    assert name == "project_name" and autoid.isdigit()
    assert bucket.isdigit() and 0 <= int(bucket) < 500
    registry = (cache_root.parent / "project_to_pids.txt").read_text().splitlines()
    assert f"{project}||{autoid}" in registry

    # the same function imported (not run as __main__) finds the same entry
    script = write(project / "use.py", """
        from pipeline.train import train_a_model
        print(train_a_model('MNIST', int, 1e-3, 30))
    """)
    out = run_python([str(script)], cwd=project, env={"PTD_COUNTER": str(counter)})
    assert out.strip() == "model:MNIST:0.001:30"
    assert counter.read_text().splitlines() == ["MNIST 30"]


def test_hashsize_sets_the_number_of_buckets(cache_root):
    @ptd.persistf(hashsize=3)
    def f(x):
        return x

    for i in range(30):
        f(i)
    buckets = {parts[0] for parts in rel_entries(f.cache.folder)}
    assert buckets <= {"0", "1", "2"} and len(buckets) > 1
    assert len(entry_files(f.cache.folder)) == 30


def test_set_hashsize_applies_to_functions_without_their_own(cache_root):
    ptd.config.set_hashsize(2)
    assert ptd.config.get_hashsize() == 2

    @ptd.persistf
    def f(x):
        return x

    for i in range(12):
        f(i)
    assert {parts[0] for parts in rel_entries(f.cache.folder)} == {"0", "1"}


# -- groupby, skip_kwargs, expand_dict_kwargs --------------------------------------------------------------
def test_groupby_skip_and_expand_as_in_the_seed(cache_root):
    calls = []

    @ptd.persistf(groupby=["dataset", "epochs"], expand_dict_kwargs=["model_kwargs"], skip_kwargs=["device"])
    def train_a_model(dataset, model_cls, model_kwargs, lr, epochs, device="cpu"):
        calls.append((dataset, epochs, device))
        return f"{dataset}-{epochs}-{model_kwargs['hidden']}"

    assert train_a_model("MNIST", int, {"hidden": 8}, 1e-3, 20) == "MNIST-20-8"
    assert train_a_model("MNIST", int, {"hidden": 8}, 1e-3, 20, device="cuda:0") == "MNIST-20-8"
    assert calls == [("MNIST", 20, "cpu")], "device is skipped: the cuda call reads the cpu result"
    assert train_a_model("MNIST", int, {"hidden": 16}, 1e-3, 20) == "MNIST-20-16"
    assert train_a_model("MNIST", int, {"hidden": 8}, 1e-3, 10) == "MNIST-10-8"
    assert train_a_model("CIFAR10", int, {"hidden": 8}, 1e-3, 30) == "CIFAR10-30-8"
    assert len(calls) == 4

    groups = sorted({parts[:2] for parts in rel_entries(train_a_model.cache.folder)})
    assert groups == [("CIFAR10", "30"), ("MNIST", "10"), ("MNIST", "20")]
    for parts in rel_entries(train_a_model.cache.folder):
        assert len(parts) == 4 and parts[2].isdigit() and 0 <= int(parts[2]) < 500
    call = train_a_model.resolve_call(("MNIST", int, {"hidden": 8}, 1e-3, 10), {})
    assert call.groups == ("MNIST", "10") and call.key.startswith("MNIST/10/")
    assert st.read_header_file(call.path)["groupby"] == [["dataset", "MNIST"], ["epochs", "10"]]


def test_a_groupby_of_several_arguments_is_one_folder_named_in_the_header(cache_root):
    f = ptd.persistf(groupby=[("dataset", "split"), "seed"])(lambda dataset, split, seed: seed)
    f("mnist", "test/a", 3)
    call = f.resolve_call(("mnist", "test/a", 3), {})
    assert len(call.groups) == 2 and call.groups[0].startswith("mnist__test_a~") and call.groups[1] == "3"
    assert call.key.startswith("/".join(call.groups) + "/")
    assert st.read_header_file(call.path)["groupby"] == [["dataset+split", call.groups[0]], ["seed", "3"]]


def test_expand_dict_kwargs_all_is_accepted_and_dict_order_does_not_matter(cache_root):
    calls = []
    f = ptd.persistf(expand_dict_kwargs="all")(counted(calls))
    f({"a": 1, "b": {"c": 2, "d": 3}})
    f({"b": {"d": 3, "c": 2}, "a": 1})
    assert len(calls) == 1
    f({"a": 1, "b": {"c": 2, "d": 4}})
    assert len(calls) == 2


def test_skip_kwargs_inside_var_keyword(cache_root):
    calls = []

    @ptd.persistf(skip_kwargs=["verbose"])
    def f(x, **options):
        calls.append(options)
        return x

    f(1, mode="a", verbose=True)
    f(1, mode="a", verbose=False)
    assert len(calls) == 1
    f(1, mode="b", verbose=False)
    assert len(calls) == 2


# -- switches --------------------------------------------------------------------------------------------
def test_switches_per_call(cache_root):
    calls = []

    @ptd.persistf
    def f(x):
        calls.append(x)
        return len(calls)

    assert f(1) == 1 and f(1) == 1
    assert f(1, cache_switch=ptd.RECACHE) == 2, "RECACHE runs again"
    assert f(1) == 2, "... and overwrites the entry"
    assert f(1, cache_switch=ptd.NOCACHE) == 3, "NOCACHE runs"
    assert f(1) == 2, "... and does not write"
    assert f(2, cache_switch=ptd.NOCACHE) == 4
    assert not f.cache.contains(2)
    assert f(1, cache_switch=ptd.READONLY) == 2
    with pytest.raises(ptd.NotCachedError) as info:
        f(3, cache_switch=ptd.READONLY)
    assert "READONLY" in str(info.value)
    assert calls == [1, 1, 1, 2], "a READONLY miss must not run the function"
    assert f(1, cache_switch=2) == 5, "the seed's integer switches keep working"
    assert f(1, cache_switch=ptd.CACHE) == 5
    with pytest.raises(ValueError, match="cache_switch"):
        f(1, cache_switch=99)


def test_switches_per_function(cache_root):
    calls = []

    @ptd.persistf(cache=ptd.NOCACHE)
    def never(x):
        calls.append(("never", x))
        return x

    @ptd.persistf(cache=ptd.RECACHE)
    def always(x):
        calls.append(("always", x))
        return len(calls)

    @ptd.persistf(cache=ptd.READONLY)
    def readonly(x):
        calls.append(("readonly", x))
        return x

    never(1), never(1)
    assert calls.count(("never", 1)) == 2 and len(never.cache.entries()) == 0
    a1, a2 = always(1), always(1)
    assert a2 == a1 + 1 and always.cache.contains(1)
    with pytest.raises(ptd.NotCachedError):
        readonly(1)
    assert ("readonly", 1) not in calls


def test_custom_switch_kwarg(cache_root):
    calls = []

    @ptd.persistf(switch_kwarg="mode")
    def f(x):
        calls.append(x)
        return len(calls)

    assert f(1) == 1 and f(1, mode=ptd.RECACHE) == 2 and f(1) == 2
    with pytest.raises(TypeError):
        f(1, cache_switch=ptd.RECACHE)  # not a parameter of f any more


# -- hash_method, local, alt_dirs -------------------------------------------------------------------------
def test_hash_method_json(cache_root):
    calls = []

    @ptd.persistf(hash_method="json")
    def f(name, params):
        calls.append(name)
        return len(calls)

    assert f("a", {"x": [1, 2], "y": None}) == 1
    assert f("a", {"y": None, "x": [1, 2]}) == 1
    assert f("a", {"x": [1, 3], "y": None}) == 2
    with pytest.raises(TypeError):
        f("a", object())
    assert len(calls) == 2


def test_local_uses_persist_path_local(tmp_path):
    ptd.config.set_persist_path(tmp_path / "shared")
    ptd.config.set_persist_path_local(tmp_path / "local")
    calls = []

    @ptd.persistf(local=True)
    def fast(x):
        calls.append(x)
        return x

    @ptd.persistf
    def slow(x):
        return x

    fast(1), fast(1), slow(1)
    assert calls == [1]
    assert len(entry_files(tmp_path / "local")) == 1
    assert len(entry_files(tmp_path / "shared")) == 1
    assert str(fast.cache.folder).startswith(str(tmp_path / "local"))
    assert ptd.config.get_persist_path(local=True) == str(tmp_path / "local")


def _make_scored(alt_dirs, calls):
    @ptd.persistf(alt_dirs=alt_dirs)
    def score(x):
        calls.append(x)
        return x * 10

    return score


def test_alt_dirs_are_read_from_another_folder(tmp_path):
    calls = []
    ptd.config.set_persist_path(tmp_path / "old")
    old = _make_scored(None, calls)
    assert old(4) == 40
    old_folder = old.cache.folder
    assert str(old_folder).startswith(str(tmp_path / "old"))

    ptd.config.set_persist_path(tmp_path / "new")
    new = _make_scored([old_folder], calls)
    assert not new.cache.contains(4)
    assert new(4) == 40
    assert calls == [4], "the entry in the alternative folder was used"
    assert new.cache.contains(4), "and copied into the current cache"
    assert new(5) == 50 and calls == [4, 5]


# -- manual cache -----------------------------------------------------------------------------------------
def test_manual_cache_write_read_checkonly(cache_root):
    def producer():
        assert ptd.manual_cache("result", checkonly=True) is False
        assert ptd.manual_cache("result") is None
        ptd.manual_cache("result", {"acc": 0.9}, write=True)
        assert ptd.manual_cache("result", checkonly=True) is True
        return ptd.manual_cache("result"), ptd.get_caller_cache_path()

    value, folder = producer()
    assert value == {"acc": 0.9}

    def producer():  # the same function name and file: the same folder, read back later
        return ptd.manual_cache("result")

    assert producer() == {"acc": 0.9}
    assert Path(folder).name.endswith("producer")
    assert len(entry_files(Path(folder))) == 1

    def stranger():
        return ptd.manual_cache("result", checkonly=True)

    assert stranger() is False, "manual entries belong to the calling function's folder"
    with pytest.raises(ValueError):
        ptd.manual_cache("x", 1, write=True, checkonly=True)


def test_manual_cache_a_cached_none_is_distinguishable(cache_root):
    def job():
        ptd.manual_cache("k", None, write=True)
        return ptd.manual_cache("k", checkonly=True), ptd.manual_cache("k")

    assert job() == (True, None)


def test_get_caller_cache_path(tmp_path):
    project = tmp_path / "proj"
    write(project / "pkg" / "tools.py", """
        import persist_to_disk as ptd

        def where(make=True):
            return ptd.get_caller_cache_path(make)

        class Model:
            def where(self):
                return ptd.get_caller_cache_path()
    """)
    ptd.config.set_persist_path(tmp_path / "cache")
    ptd.config.set_project_path(project)
    tools = import_file(project / "pkg" / "tools.py")
    path = Path(tools.where(make=False))
    assert not path.exists()
    assert path.relative_to(tmp_path / "cache").parts[1:] == ("pkg", "tools", "where")
    assert path.relative_to(tmp_path / "cache").parts[0].startswith("proj-")
    assert Path(tools.where()).is_dir()
    assert Path(tools.Model().where()).name == "Model.where"


# -- locks -------------------------------------------------------------------------------------------------
def test_clear_locks_removes_free_lock_files_but_never_a_held_one(tmp_path):
    ptd.config.set_persist_path(tmp_path / "cache")

    @ptd.persistf(lock_granularity="func")
    def f(x):
        return x

    for i in range(3):
        f(i)
    free = ptd.clear_locks()
    assert free and all(Path(p).exists() for p in free)
    held_path = free[0]
    holder = FileLock(held_path, thread_local=False)
    holder.acquire()
    try:
        removed = ptd.clear_locks(clear=True)
        assert held_path not in removed
        assert Path(held_path).exists()
        assert all(not Path(p).exists() for p in removed)
    finally:
        holder.release()
    assert ptd.clear_locks() == [held_path]
    assert f(0) == 0 and f(5) == 5, "calls work after locks were cleared"


# -- settings: config.ini and paths -------------------------------------------------------------------------
def test_config_ini_is_generated_on_first_use(cache_root, isolated_home):
    config_file = isolated_home / ".cache" / "persist_to_disk" / "config.ini"
    assert not config_file.exists()

    @ptd.persistf
    def f(x):
        return x

    f(1)
    assert config_file.is_file()
    parser = configparser.ConfigParser()
    parser.read(config_file)
    section = parser["global_settings"]
    assert Path(section["persist_path"]) == cache_root
    assert section["hashsize"] == "500"
    assert section["lock_granularity"] == "call"
    assert len(entry_files(cache_root)) == 1

    config_file.unlink()
    assert Path(ptd.config.generate_config()) == config_file
    assert config_file.is_file()


def test_edited_config_ini_changes_where_the_next_process_caches(tmp_path, isolated_home, cache_root):
    elsewhere = tmp_path / "elsewhere"
    write(isolated_home / ".cache" / "persist_to_disk" / "config.ini", f"""
        [global_settings]
        persist_path = {elsewhere}
        hashsize = 3
        lock_granularity = func
    """)
    script = write(tmp_path / "proj" / "job.py", """
        import persist_to_disk as ptd

        @ptd.persistf
        def job(i):
            return i * i

        print(sum(job(i) for i in range(10)), ptd.config.get_lock_granularity())
    """)
    out = run_python([str(script)], cwd=tmp_path / "proj")
    assert out.split() == ["285", "func"]
    files = entry_files(elsewhere)
    assert len(files) == 10
    assert {p.parent.name for p in files} <= {"0", "1", "2"}
    assert entry_files(cache_root) == []


def test_bad_config_ini_value_is_a_clear_value_error(isolated_home):
    write(isolated_home / ".cache" / "persist_to_disk" / "config.ini", """
        [global_settings]
        hashsize = 0
    """)
    ptd.config.reload()

    @ptd.persistf
    def f(x):
        return x

    with pytest.raises(ValueError, match="hashsize"):
        f(1)


def test_settings_made_after_decoration_take_effect_on_the_next_call(tmp_path):
    calls = []

    @ptd.persistf
    def f(x):
        calls.append(x)
        return x

    ptd.config.set_persist_path(tmp_path / "first")
    f(1)
    assert len(entry_files(tmp_path / "first")) == 1
    ptd.config.set_persist_path(tmp_path / "second")
    assert ptd.config.get_persist_path() == str(tmp_path / "second")
    f(1)
    assert calls == [1, 1], "a new persist path is a new, empty cache"
    assert len(entry_files(tmp_path / "second")) == 1

    ptd.config.set_project_path(tmp_path / "myproject")
    assert ptd.config.get_project_path() == str(tmp_path / "myproject")
    f(1)
    [entry] = [p for p in entry_files(tmp_path / "second") if "myproject" in str(p)]
    assert entry.relative_to(tmp_path / "second").parts[0].startswith("myproject-")
    assert len(calls) == 3
    f(1)
    assert len(calls) == 3


def test_set_project_path_to_a_subfolder_roots_the_tree_there(tmp_path):
    """The seed README: set_project_path("./pipeline") gives pipeline-[autoid]/train/train_a_model."""
    project = tmp_path / "project_name"
    write(project / "pipeline" / "train.py", """
        import persist_to_disk as ptd

        @ptd.persistf
        def train_a_model(dataset):
            return dataset
    """)
    ptd.config.set_persist_path(tmp_path / "cache")
    train = import_file(project / "pipeline" / "train.py")
    ptd.config.set_project_path(project)
    train.train_a_model("MNIST")
    ptd.config.set_project_path(project / "pipeline")
    train.train_a_model("MNIST")
    tops = sorted(p.relative_to(tmp_path / "cache").parts[:-2] for p in entry_files(tmp_path / "cache"))
    assert len(tops) == 2
    assert tops[0][0].startswith("pipeline-") and tops[0][1:] == ("train", "train_a_model")
    assert tops[1][0].startswith("project_name-") and tops[1][1:] == ("pipeline", "train", "train_a_model")


def test_project_ids_two_projects_of_one_name_differ_and_one_project_keeps_its_id(tmp_path, isolated_home):
    one, two = tmp_path / "a" / "proj", tmp_path / "b" / "proj"
    first = ptd.config.project_folder_name(one)
    second = ptd.config.project_folder_name(two)
    assert first.startswith("proj-") and second.startswith("proj-") and first != second
    assert ptd.config.project_folder_name(one) == first
    ptd.config.reset()  # forget what this process remembered: the registry file is the truth
    assert ptd.config.project_folder_name(one) == first
    assert ptd.config.project_folder_name(two) == second
    code = f"import persist_to_disk as p, pathlib; print(p.config.project_folder_name(pathlib.Path({str(one)!r})))"
    out = run_python(["-c", code], cwd=tmp_path)
    assert out.strip() == first, "another process sees the same id"
    registry = (isolated_home / ".cache" / "persist_to_disk" / "project_to_pids.txt").read_text().splitlines()
    assert registry == [f"{one}||{first.rsplit('-', 1)[1]}", f"{two}||{second.rsplit('-', 1)[1]}"]


# -- signatures, methods, async ---------------------------------------------------------------------------------
def test_var_positional_and_var_keyword_functions(cache_root):
    calls = []

    @ptd.persistf
    def f(a, *rest, scale=1, **options):
        calls.append((a, rest, scale, options))
        return (a + sum(rest)) * scale

    assert f(1, 2, 3) == 6 and f(1, 2, 3) == 6
    assert f(1, 2) == 3
    assert f(1, 2, 3, scale=2) == 12
    assert f(1, x=1, y=2) == 1 and f(1, y=2, x=1) == 1
    assert f(1, x=1, y=3) == 1
    assert len(calls) == 5
    assert f(a=1) == 1 and len(calls) == 6, "f(1) with keywords only is a new call (no rest, no options)"
    assert f(1) == 1 and len(calls) == 6, "positional and keyword spelling of one call share the entry"


class Scaler:
    calls: list = []

    def __init__(self, factor):
        self.factor = factor

    @ptd.persistf
    def apply(self, x):
        Scaler.calls.append((self.factor, x))
        return self.factor * x


def test_methods_are_cached_with_the_instance_state_in_the_key(cache_root):
    Scaler.calls = []
    assert Scaler(2).apply(5) == 10
    assert Scaler(2).apply(5) == 10, "an equal instance hits"
    assert Scaler(3).apply(5) == 15
    assert Scaler.calls == [(2, 5), (3, 5)]
    assert Scaler.apply.cache.folder.name == "Scaler.apply"


def test_async_functions_are_cached(cache_root):
    calls = []

    @ptd.persistf
    async def fetch(x):
        calls.append(x)
        await asyncio.sleep(0)
        return {"x": x}

    async def main():
        return [await fetch(1), await fetch(1), await fetch(2)]

    assert asyncio.run(main()) == [{"x": 1}, {"x": 1}, {"x": 2}]
    assert calls == [1, 2]
    assert fetch.cache.get(1) == {"x": 1}


def test_none_results_are_cached(cache_root):
    calls = []

    @ptd.persistf
    def nothing(x):
        calls.append(x)
        return None

    assert nothing(1) is None and nothing(1) is None
    assert calls == [1]
    assert nothing.cache.contains(1) and nothing.cache.get(1) is None


def test_exceptions_are_not_cached(cache_root):
    calls = []

    @ptd.persistf
    def flaky(x):
        calls.append(x)
        if len(calls) < 3:
            raise RuntimeError("not yet")
        return "ok"

    for _ in range(2):
        with pytest.raises(RuntimeError):
            flaky(1)
    assert not flaky.cache.contains(1)
    assert flaky(1) == "ok" and flaky(1) == "ok"
    assert len(calls) == 3


def test_unpicklable_result_is_returned_with_a_warning(cache_root):
    import threading

    @ptd.persistf
    def make_lock(x):
        return threading.Lock()

    with pytest.warns(ptd.CacheWarning):
        lock = make_lock(1)
    assert hasattr(lock, "acquire")
    assert not make_lock.cache.contains(1)
    assert list(Path(cache_root).rglob("*.tmp")) == []


def test_threads_compute_each_key_once(cache_root):
    import threading
    import time

    runs = []

    @ptd.persistf
    def slow_square(x):
        runs.append(x)
        time.sleep(0.02)
        return x * x

    results = []

    def worker(i):
        results.extend(slow_square(k) == k * k for k in [(i + j) % 4 for j in range(4)])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "threads hung"
    assert results == [True] * 24
    assert sorted(runs) == [0, 1, 2, 3]


def test_a_pickled_local_persisted_function_keeps_its_folder(cache_root):
    import pickle

    @ptd.persistf
    def local(x):
        return x + 1

    local(1)
    clone = pickle.loads(pickle.dumps(local))
    assert clone.cache.folder == local.cache.folder
    assert clone.cache.contains(1) and clone(1) == 2


# -- f.cache -------------------------------------------------------------------------------------------
def test_cache_handle_contains_get_invalidate_entries_clear(cache_root):
    calls = []

    @ptd.persistf(groupby=["dataset"])
    def train(dataset, lr=0.1):
        calls.append((dataset, lr))
        return f"{dataset}@{lr}"

    assert not train.cache.contains("mnist")
    with pytest.raises(ptd.NotCachedError):
        train.cache.get("mnist")
    assert calls == [], "the handle never runs the function"

    train("mnist"), train("mnist", lr=0.5), train("cifar")
    assert train.cache.contains("mnist") and train.cache.contains("mnist", 0.1)
    assert train.cache.contains("mnist", lr=0.5)
    assert train.cache.get("mnist", lr=0.5) == "mnist@0.5"
    assert train.cache.path("cifar").is_file()

    entries = train.cache.entries()
    assert len(entries) == 3 == len(train.cache)
    by_args = {(e.header["args"]["dataset"], e.header["args"]["lr"]): e for e in entries}
    assert set(by_args) == {("'mnist'", "0.1"), ("'mnist'", "0.5"), ("'cifar'", "0.1")}
    header = by_args[("'mnist'", "0.1")].header
    for field in ("format", "args", "created", "compute_seconds", "payload_size", "checksum", "code_version"):
        assert field in header, field
    assert all(e.current for e in entries)

    assert train.cache.invalidate("mnist") is True
    assert train.cache.invalidate("mnist") is False
    assert not train.cache.contains("mnist")
    train("mnist")
    assert calls.count(("mnist", 0.1)) == 2

    assert train.cache.clear() == 3
    assert train.cache.entries() == []
    train("cifar")
    assert calls.count(("cifar", 0.1)) == 2


def test_cache_clear_older_versions_only(cache_root):
    def body(x):
        return x

    v1 = ptd.persistf(version="v1")(body)
    v2 = ptd.persistf(version="v2")(body)
    v1(1), v1(2), v2(1)
    assert v2.cache.folder == v1.cache.folder
    assert len(v2.cache.entries()) == 3
    assert sum(bool(e.current) for e in v2.cache.entries()) == 1
    assert v2.cache.clear(older_versions_only=True) == 2
    assert v2.cache.contains(1) and not v1.cache.contains(1)


def test_entry_written_by_the_decorator_survives_corruption_as_a_recompute(cache_root):
    calls = []

    @ptd.persistf
    def f(x):
        calls.append(x)
        return list(range(x))

    f(100)
    path = f.cache.path(100)
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.warns(ptd.CacheWarning):
        assert f(100) == list(range(100))
    assert calls == [100, 100]
    assert f(100) == list(range(100)) and calls == [100, 100], "the recomputed entry replaced the torn one"


# -- code versions ---------------------------------------------------------------------------------------------
MODEL_V1 = """
import os
import persist_to_disk as ptd

@ptd.persistf
def compute(x):
    with open(os.environ["PTD_COUNTER"], "a") as fh:
        fh.write("compute\\n")
    return x * 2
"""

MODEL_V2 = MODEL_V1.replace("return x * 2", "return x * 3")

MODEL_V1_REFORMATTED = '''
import os
import persist_to_disk as ptd


# a new comment above the function
@ptd.persistf
def compute(x):
    """Now the function has a docstring."""
    with open(os.environ["PTD_COUNTER"],   "a") as fh:  # and a trailing comment
        fh.write(
            "compute\\n"
        )
    return (x*2)
'''

PINNED_A = MODEL_V1.replace("@ptd.persistf", '@ptd.persistf(version="v2")')
PINNED_B = MODEL_V2.replace("@ptd.persistf", '@ptd.persistf(version="v2")')
PINNED_C = MODEL_V2.replace("@ptd.persistf", '@ptd.persistf(version="v3")')


def test_code_version_edit_revert_and_cosmetic_changes(tmp_path, cache_root):
    project = tmp_path / "proj"
    model = project / "exp" / "model.py"
    write(project / "exp" / "__init__.py", "")
    runner = write(project / "run.py", """
        from exp.model import compute
        print(compute(5))
    """)
    counter = tmp_path / "counter.txt"

    def run(source: str) -> tuple[str, int]:
        write(model, source)
        out = run_python([str(runner)], cwd=project, env={"PTD_COUNTER": str(counter)})
        return out.strip(), len(counter.read_text().splitlines()) if counter.exists() else 0

    assert run(MODEL_V1) == ("10", 1)
    assert run(MODEL_V1) == ("10", 1), "unchanged code hits"
    assert run(MODEL_V2) == ("15", 2), "an edited body makes a new entry"
    assert run(MODEL_V1) == ("10", 2), "reverting the edit hits the old entry"
    assert run(MODEL_V1_REFORMATTED) == ("10", 2), "comments, docstring and formatting are not edits"
    assert run(MODEL_V2) == ("15", 2), "the edited version's entry is still there too"
    entries = entry_files(cache_root)
    assert len(entries) == 2
    assert len({p.parent.parent for p in entries}) == 1, "all versions live in the function's one folder"

    assert run(PINNED_A) == ("10", 3), "a pinned version is a new key"
    assert run(PINNED_B) == ("10", 3), "with the version pinned, a body edit still hits"
    assert run(PINNED_C) == ("15", 4), "changing the pin makes a new entry"


def test_a_module_imported_before_its_file_was_edited_keeps_its_own_version(tmp_path, monkeypatch):
    """A long-lived process (a notebook) imported m.py; the user edits m.py on disk without re-importing.

    The old code keeps running and must keep its own version: labelling its results with the
    edited version would hand them to the edited code later.
    """
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.setenv("PTD_COUNTER", str(tmp_path / "counter.txt"))
    ptd.config.set_persist_path(tmp_path / "cache")
    ptd.config.set_project_path(tmp_path / "proj")
    module_file = tmp_path / "proj" / "m.py"
    write(module_file, MODEL_V1)
    old = import_file(module_file)
    write(module_file, MODEL_V2)  # same length as V1: only the constant changed
    new = import_file(module_file)
    assert old.compute.cache.folder == new.compute.cache.folder
    assert old.compute.code_version() != new.compute.code_version()
    assert old.compute(5) == 10
    assert new.compute(5) == 15, "the edited code must not get the old code's result"
    assert old.compute(5) == 10
    write(module_file, MODEL_V1_REFORMATTED)
    assert import_file(module_file).compute.code_version() == old.compute.code_version()


# -- bad settings -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options, words",
    [
        ({"lock_granularity": "bucket"}, ["lock_granularity", "bucket"]),
        ({"hashsize": 0}, ["hashsize"]),
        ({"hashsize": -5}, ["hashsize"]),
        ({"hashsize": "many"}, ["hashsize"]),
        ({"groupby": ["nope"]}, ["groupby", "nope"]),
        ({"skip_kwargs": ["nope"]}, ["skip_kwargs", "nope"]),
        ({"groupby": "dataset"}, ["groupby"]),
        ({"hash_method": "md5"}, ["hash_method"]),
    ],
)
def test_bad_options_are_value_errors_at_decoration(options, words):
    def train(dataset, epochs):
        return dataset

    with pytest.raises(ValueError) as info:
        ptd.persistf(**options)(train)
    for word in words:
        assert word in str(info.value)


ESCAPING = ["../x", "/etc", "/", "a/../../b", "..", ".", "../../../../../../tmp/x", "\\..\\x", "C:\\x"]


@pytest.mark.parametrize("value", ESCAPING)
def test_groupby_values_that_would_escape_are_value_errors_at_call_time(tmp_path, value):
    ptd.config.set_persist_path(tmp_path / "cache")
    ptd.config.set_project_path(tmp_path / "proj")
    calls = []

    @ptd.persistf(groupby=["dataset"])
    def train(dataset, epochs):
        calls.append(dataset)
        return dataset

    train("ok", 1)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError) as info:
        train(value, 1)
    assert "dataset" in str(info.value)
    assert calls == ["ok"], "the function must not run"
    after = sorted(str(p) for p in tmp_path.rglob("*"))
    assert after == before, "nothing may be written for a refused call"
    assert not (tmp_path / "x").exists()


def test_odd_groupby_values_become_safe_distinct_folder_names(tmp_path):
    ptd.config.set_persist_path(tmp_path / "cache")
    calls = []

    @ptd.persistf(groupby=["name"])
    def f(name):
        calls.append(name)
        return name

    values = [
        "with spaces",
        "with_spaces",
        "ünïcödé",
        "漢字" * 300,
        "x" * 1000,
        "x" * 1001,
        "a/b",
        "a_b",
        ".hidden",
        "line\nbreak",
        "tab\there",
        "quote\"'*?<>|:",
        3.5,
        None,
    ]
    for v in values:
        assert f(v) == v
        assert f(v) == v
    assert calls == values, "each odd value caches and hits"

    folder = f.cache.folder
    groups = {}
    for parts in rel_entries(folder):
        assert len(parts) == 3, f"one folder level per groupby name: {parts}"
        group = parts[0]
        assert not group.startswith(".")
        assert len(group.encode("utf-8")) <= 255
        assert all(c not in group for c in "/\\\n\t\x00")
        groups.setdefault(group, 0)
        groups[group] += 1
    assert sum(groups.values()) == len(values)
    assert len(groups) == len(values), "different values must not share a folder"
    assert "with_spaces" in groups and "a_b" in groups
    for p in (tmp_path / "cache").rglob("*"):
        assert p.resolve().is_relative_to((tmp_path / "cache").resolve())


def test_switch_kwarg_clashing_with_a_parameter_is_refused():
    def f(x, cache_switch):
        return x

    with pytest.raises(ValueError, match="switch_kwarg"):
        ptd.persistf(f)


def test_store_module_is_what_the_decorator_writes(cache_root):
    """Entries of decorated functions are store entries (the browser and CLI read them the same way)."""

    @ptd.persistf
    def f(x):
        return {"x": x}

    f(3)
    [path] = entry_files(cache_root)
    header = st.read_header_file(path)
    assert header["func"].endswith("f") and header["args"] == {"x": "3"}
    assert st.LocalStore(path.parent).get(path.name) == {"x": 3}


def test_what_f_cache_and_the_cell_pickler_use_of_a_persisted_function(cache_root):
    """The small API ``f.cache`` and ``%%persist``'s pickler go through instead of a function's privates."""
    from persist_to_disk.persister import PersistedFunction

    def train(dataset, lr=0.1):
        return len(dataset)

    f = ptd.persistf(groupby=["dataset"])(train)
    f("mnist")
    call = f.resolve_call(("mnist",), {"cache_switch": ptd.RECACHE})  # a switch argument is not an argument
    assert call.path == f.cache.path("mnist") and call.path.is_file() and call.named == {"dataset": "mnist", "lr": 0.1}
    assert f.store().contains(call.key) and f.options.groupby == ("dataset",)
    assert st.read_header_file(call.path)["func"] == f.function_name, "the name its entries are filed under"
    again = PersistedFunction.rebuilt(train, f.options, "carried-version")
    assert again.code_version() == "carried-version", "unpickled by value: the sender's code version is kept"
    pinned = ptd.persistf(version="v2")(train)
    assert PersistedFunction.rebuilt(train, pinned.options, "carried-version").code_version() == "pinned:v2"
