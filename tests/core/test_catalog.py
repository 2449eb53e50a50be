"""The catalog: the one listing, deletion and prune layer under the panel and the CLI.

Caches are made by real persisted functions (so the layout is the decorator's, not a
copy of it) plus entries written with the store directly for what a function cannot
make on demand: cells, corrupt files, old code versions at chosen times.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from pathlib import Path

import pytest

import persist_to_disk as ptd
from persist_to_disk.catalog import Catalog, CatalogError, function_folder_of
from persist_to_disk.header import EntryHeader
from persist_to_disk.prune import parse_duration, plan_prune
from persist_to_disk.store import ENOVAL, LocalStore


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    root = tmp_path / "cache"
    ptd.config.set_persist_path(root)
    ptd.config.set_project_path(tmp_path / "proj")
    (tmp_path / "proj").mkdir()
    return root


def make_train(calls: list, version: str = "v1"):
    @ptd.persistf(groupby=["dataset", "epochs"], version=version)
    def train(dataset, epochs, lr=0.1):
        calls.append((dataset, epochs, lr))
        return f"model-{dataset}-{epochs}-{lr}-{version}"

    return train


def make_square(calls: list):
    @ptd.persistf()
    def square(x):
        calls.append(x)
        return x * x

    return square


def put(root: Path, rel: str, header: dict, value: object = "v", mtime: float | None = None) -> Path:
    """An entry written with the store at ``root/rel``."""
    store = LocalStore(root)
    store.put(rel, value, header)
    path = root / rel
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def entries_on_disk(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.ptd") if not p.name.startswith("."))


@pytest.fixture
def filled(cache: Path):
    """train(): 2 datasets x 2 epochs; square(): 5 entries; manual_cache: one key."""
    calls: list = []
    train, square = make_train(calls), make_square(calls)
    for dataset in ("MNIST", "CIFAR"):
        for epochs in (10, 20):
            train(dataset, epochs)
    for x in range(5):
        square(x)
    ptd.manual_cache("weights", [1, 2, 3], write=True)
    return train, square, calls


def project_of(catalog: Catalog):
    (project,) = catalog.projects()
    return project


# ------------------------------------------------------------------------------------------ the tree
def test_projects_and_functions_are_found_from_the_folders(filled, cache, tmp_path):
    train, square, _ = filled
    catalog = Catalog()
    assert catalog.root == cache
    project = project_of(catalog)
    assert project.name.startswith("proj-") and project.source == str(tmp_path / "proj")
    functions = {f.folder: f for f in catalog.functions(project)}
    assert set(functions) >= {train.folder(), square.folder()}
    t = functions[train.folder()]
    assert (t.kind, t.groupby, t.name) == (
        "function",
        ("dataset", "epochs"),
        train.__qualname__.replace(".<locals>", ""),
    )
    assert functions[square.folder()].groupby == ()
    manual = [f for f in functions.values() if f.kind == "manual"]
    assert len(manual) == 1 and manual[0].folder.name == "filled"


def test_tree_children_project_source_function_groups(filled):
    train, square, _ = filled
    catalog = Catalog()
    project = project_of(catalog)
    root = catalog.project_node(project)
    sources = catalog.children(root)
    assert [s.kind for s in sources] == ["source"]
    functions = catalog.children(sources[0])
    by_folder = {f.folder: f for f in functions}
    tnode = by_folder[train.folder()]
    assert tnode.kind == "function" and tnode.label.endswith("()")
    groups = catalog.children(tnode)
    assert [g.label for g in groups] == ["dataset=CIFAR", "dataset=MNIST"]
    inner = catalog.children(groups[1])
    assert [g.label for g in inner] == ["epochs=10", "epochs=20"] and inner[0].level == 2
    assert catalog.children(inner[0]) == []  # the buckets are not nodes
    assert catalog.children(by_folder[square.folder()]) == []


def test_node_resolves_paths_inside_a_project(filled):
    train, _square, _ = filled
    catalog = Catalog()
    project = project_of(catalog)
    fpath = train.folder().relative_to(project.folder).as_posix()
    assert catalog.node(project, "").kind == "project"
    assert catalog.node(project.name, fpath).kind == "function"
    group = catalog.node(project, fpath + "/MNIST/10")
    assert group.kind == "group" and group.label == "epochs=10" and group.function.folder == train.folder()
    source = catalog.node(project, str(Path(fpath).parent))
    assert source.kind == "source" and train.folder() in source.scope
    assert catalog.node(project, str(Path(fpath).parent) + ".py").id == source.id
    assert catalog.node_of_folder(train.folder()).kind == "function"
    with pytest.raises(CatalogError, match="nothing is cached at 'nope'"):
        catalog.node(project, "nope")
    with pytest.raises(CatalogError, match="projects there: proj-"):
        catalog.project("other")


def test_project_by_bare_name_folder_and_current(filled, tmp_path):
    catalog = Catalog()
    project = project_of(catalog)
    assert catalog.project("proj") == project
    assert catalog.project(tmp_path / "proj") == project
    assert catalog.current_project() == project


# ------------------------------------------------------------------------------------------ entries
def test_scan_reads_headers_not_values(filled):
    train, _square, _ = filled
    catalog = Catalog()
    listing = catalog.scan(catalog.node_of_folder(train.folder()))
    assert len(listing.entries) == 4 and listing.complete
    e = next(e for e in listing.entries if e.args.get("dataset") == "'MNIST'" and e.args.get("epochs") == "10")
    assert e.args_text == "dataset='MNIST', epochs=10, lr=0.1"
    assert e.status == "ok" and e.kind == "function" and e.current is True
    assert e.created and e.compute_seconds is not None and e.size == e.path.stat().st_size
    assert e.code_version == "pinned:v1"
    assert e.matches("mnist") and not e.matches("imagenet")
    assert listing.totals.entries == 4 and listing.totals.bytes == sum(
        p.stat().st_size for p in entries_on_disk(train.folder())
    )


def test_corrupt_and_vanished_entries_are_marked_not_raised(filled):
    _train, square, _ = filled
    files = entries_on_disk(square.folder())
    files[0].write_bytes(b"PTDE garbage")
    catalog = Catalog()
    node = catalog.node_of_folder(square.folder())
    listed = catalog.entry_files(node)
    files[1].unlink()
    catalog.store.fill_headers(listed)
    statuses = sorted(e.status for e in listed)
    assert statuses == ["corrupt", "ok", "ok", "ok", "vanished"]
    corrupt = next(e for e in listed if e.status == "corrupt")
    assert corrupt.reason and corrupt.error == f"corrupt: {corrupt.reason}"  # as the CLI and the panel say it
    assert next(e.error for e in listed if e.status == "vanished") == "vanished"
    listing = catalog.scan(node)  # a rescan simply no longer sees the vanished one
    assert sorted(e.status for e in listing.entries) == ["corrupt", "ok", "ok", "ok"]


def test_cells_and_manual_entries_have_their_kind(cache, tmp_path):
    project = cache / "proj-1" / "notebooks" / "exp"
    header = {"func": "load data", "kind": "cell", "args": {"path": "'a.csv'"}, "code_version": "c1", "created": 1.0}
    put(cache, "proj-1/notebooks/exp/load data/12/" + "a" * 32 + ".ptd", header)
    put(cache, "proj-1/notebooks/exp/helper/k.ptd", {"func": "helper", "manual": True, "args": {"key": "'k'"}})
    catalog = Catalog()
    (proj,) = catalog.projects()
    kinds = {f.folder.name: (f.kind, f.source) for f in catalog.functions(proj)}
    assert kinds == {"load data": ("cell", ("notebooks", "exp")), "helper": ("manual", ("notebooks", "exp"))}
    node = catalog.node(proj, "notebooks/exp/load data")
    assert node.label == "cell load data"
    assert [(e.kind, e.owner) for e in catalog.scan(node).entries] == [("cell", "cell load data")]
    (helper,) = catalog.scan(catalog.node(proj, "notebooks/exp/helper")).entries
    assert helper.owner == "helper (manual_cache)"
    assert project.is_dir()


def test_function_folder_of_uses_groupby_header_then_name(tmp_path):
    proj = tmp_path / "p-1"
    # a module train.py whose function is also called train, grouped by a value "train" too
    path = proj / "pkg" / "train" / "train" / "train" / "7" / "d.ptd"
    exact = EntryHeader(func="train", groupby=(("split", "train"),))
    assert function_folder_of(path, exact, proj) == proj / "pkg" / "train" / "train"
    assert function_folder_of(path, EntryHeader(func="train"), proj) == proj / "pkg" / "train" / "train" / "train"
    assert function_folder_of(path, EntryHeader(func="other"), proj) == path.parent.parent
    assert function_folder_of(path, None, proj) == path.parent.parent
    assert function_folder_of(proj / "f" / "k.ptd", EntryHeader(func="f", kind="manual"), proj) == proj / "f"


# ------------------------------------------------------------------------------------ code versions
def test_current_version_is_the_most_recently_used_unless_a_live_one_is_given(cache):
    calls: list = []
    old, new = make_train(calls, "v1"), make_train(calls, "v2")
    old("MNIST", 10)
    old("MNIST", 20)
    new("MNIST", 10)
    folder = new.folder()
    assert folder == old.folder()
    now = time.time()
    for path in entries_on_disk(folder):  # make the v2 entry the most recently used
        t = (
            now - 1000
            if LocalStore(folder).read_header(path.relative_to(folder).as_posix())["code_version"] == "pinned:v1"
            else now
        )
        os.utime(path, (t, t))
    catalog = Catalog()
    listing = catalog.scan(catalog.node_of_folder(folder))
    assert listing.versions[folder] == "pinned:v2"
    assert sorted((e.code_version, e.current) for e in listing.entries) == [
        ("pinned:v1", False),
        ("pinned:v1", False),
        ("pinned:v2", True),
    ]
    # a group node sees only part of the folder (MNIST/20 holds only a v1 entry): the whole folder decides
    group = catalog.node_of_folder(folder / "MNIST" / "20")
    assert [e.current for e in catalog.scan(group).entries] == [False]
    # reverting the edit: a hit on the stale v1 entry refreshes its last-read time, so v1 is current again
    old("MNIST", 20)
    listing = Catalog().scan(catalog.node_of_folder(folder))
    assert listing.versions[folder] == "pinned:v1"
    # a live function's version wins over the times
    live = Catalog(versions={folder: "pinned:v2"})
    listing = live.scan(live.node_of_folder(folder))
    assert sorted((e.code_version, e.current) for e in listing.entries) == [
        ("pinned:v1", False),
        ("pinned:v1", False),
        ("pinned:v2", True),
    ]


def test_an_entry_of_an_older_key_format_is_not_current_even_of_the_live_code(cache, previous_key_format):
    """The panel's marking: an entry kept from before the key format changed has the code version of the
    code that runs now, yet no call can hit it; it is shown as of an older version."""

    def make():
        @ptd.persistf()
        def f(x):
            return x

        return f

    with previous_key_format():
        make()(1)
    f = make()
    f(2)
    folder = f.folder()
    live = Catalog(versions={folder: f.code_version()})
    listing = live.scan(live.node_of_folder(folder))
    assert sorted((e.args["x"], e.code_version == f.code_version(), e.current) for e in listing.entries) == [
        ("1", True, False),
        ("2", True, True),
    ]


# ------------------------------------------------------------------------------------------ deleting
def test_delete_reports_bytes_and_the_next_call_recomputes(filled):
    train, _square, calls = filled
    catalog = Catalog()
    listing = catalog.scan(catalog.node_of_folder(train.folder()))
    victim = next(e for e in listing.entries if e.args["dataset"] == "'CIFAR'" and e.args["epochs"] == "20")
    size = victim.size
    result = catalog.delete([victim])
    assert (result.entries, result.bytes, result.missing, result.failed) == (1, size, 0, [])
    assert not victim.path.exists()
    again = catalog.delete([victim])
    assert (again.entries, again.missing) == (0, 1) and "already gone" in again.describe()
    before = len(calls)
    train("CIFAR", 20)
    assert len(calls) == before + 1
    train("MNIST", 10)
    assert len(calls) == before + 1


def test_delete_refuses_files_that_are_not_entries_under_the_root(filled, tmp_path):
    catalog = Catalog()
    outside = tmp_path / "precious.ptd"
    outside.write_text("x")
    inside = next(iter(catalog.root.rglob("*.ptd"))).with_name("notes.txt")
    inside.write_text("x")
    result = catalog.delete([outside, inside])
    assert result.entries == 0 and len(result.failed) == 2
    assert outside.exists() and inside.exists()
    assert "could not be deleted" in result.describe()


def test_delete_node_removes_entries_and_empty_folders(filled):
    train, square, calls = filled
    catalog = Catalog()
    size = sum(p.stat().st_size for p in entries_on_disk(train.folder()))
    result = catalog.delete_node(catalog.node_of_folder(train.folder()))
    assert (result.entries, result.bytes) == (4, size)
    assert not train.folder().exists()
    assert len(entries_on_disk(square.folder())) == 5
    project = project_of(catalog)
    assert train.folder() not in {f.folder for f in catalog.functions(project)}
    before = len(calls)
    train("MNIST", 10)
    assert len(calls) == before + 1


def test_delete_a_group_keeps_the_rest_of_the_function(filled):
    train, _square, _ = filled
    catalog = Catalog()
    result = catalog.delete_node(catalog.node_of_folder(train.folder() / "MNIST"))
    assert result.entries == 2
    assert sorted(p.relative_to(train.folder()).parts[:2] for p in entries_on_disk(train.folder())) == [
        ("CIFAR", "10"),
        ("CIFAR", "20"),
    ]


def test_deleting_while_others_write_and_read_never_corrupts(tmp_path):
    store = LocalStore(tmp_path / "c")
    key = "proj-1/m/f/3/" + "b" * 32 + ".ptd"
    value = list(range(2000))
    stop = threading.Event()
    bad: list = []

    def writer():
        while not stop.is_set():
            store.put(key, value, {"func": "f", "groupby": []})

    def reader():
        while not stop.is_set():
            got = store.get(key)
            if got is not ENOVAL and got != value:
                bad.append(got)

    catalog = Catalog(tmp_path / "c")
    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for t in threads:
            t.start()
        deadline = time.monotonic() + 1.0
        deleted = 0
        while time.monotonic() < deadline:
            deleted += catalog.delete([tmp_path / "c" / key]).entries
        stop.set()
        for t in threads:
            t.join()
        final = store.get(key)  # whichever came last, a delete or a whole write
    assert not bad and deleted > 0
    assert final is ENOVAL or final == value
    assert not [w for w in caught if issubclass(w.category, ptd.CacheWarning)]  # never a torn or corrupt file


def test_prune_on_a_real_cache_uses_last_read_times(filled):
    _train, square, _ = filled
    catalog = Catalog()
    files = entries_on_disk(square.folder())
    old = time.time() - 90 * 86400
    os.utime(files[0], (old, old))
    node = catalog.project_node(project_of(catalog))
    plan = plan_prune(catalog.entry_files(node), older_than=parse_duration("30d"))
    assert [e.path for e in plan.delete] == [files[0]]
    result = catalog.delete(plan.delete)
    assert result.entries == 1 and not files[0].exists()
