"""The contract every store backend keeps: what the decorator, ``%%persist`` and ``manual_cache`` rely on.

The same tests run against each backend (``backend`` fixture): the local folder, and an S3
object store on moto and on SeaweedFS, both bound to 127.0.0.1 (tests/s3server.py), where a
second store stands for another machine: its own local copies, the same bucket.
"""

from __future__ import annotations

import os
import pickle
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from persist_to_disk.store import ENOVAL
from persist_to_disk.stores import LocalBackend, Store

KEY = "g/7/0123456789abcdef0123456789abcdef.ptd"
OTHER = "g/8/fedcba9876543210fedcba9876543210.ptd"


def _local(tmp_path: Path) -> tuple[Callable[[str], Store], None]:
    root = tmp_path / "shared"
    return (lambda machine: LocalBackend(root)), None


@pytest.fixture(params=["local", "s3-moto", "s3-seaweedfs"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], Store]:
    """A function (machine name) -> a store of one shared folder, as that machine sees it."""
    if request.param == "local":
        return _local(tmp_path)[0]
    return request.getfixturevalue("s3_folder" if request.param == "s3-moto" else "seaweed_folder")


def _header(**extra: object) -> dict:
    return {"func": "f", "args": {"x": "1"}, "created": 1.0, **extra}


def test_put_then_load_returns_value_and_header(backend: Callable[[str], Store]) -> None:
    store = backend("a")
    assert store.load(KEY) is ENOVAL and store.get(KEY) is ENOVAL
    written = store.put(KEY, {"v": [1, 2]}, _header())
    entry = store.load(KEY)
    assert entry.value == {"v": [1, 2]}
    assert entry.header["args"] == {"x": "1"} and entry.header["checksum"] == written["checksum"]
    assert store.get(KEY) == {"v": [1, 2]}


def test_none_is_a_value_not_a_miss(backend: Callable[[str], Store]) -> None:
    store = backend("a")
    store.put(KEY, None, _header())
    assert store.contains(KEY)
    assert store.get(KEY) is None


def test_large_array_round_trip(backend: Callable[[str], Store]) -> None:
    store = backend("a")
    array = np.arange(600_000, dtype=np.float64)  # 4.8 MB: out-of-band buffers, memory-mapped on load
    store.put(KEY, array, _header())
    loaded = store.get(KEY)
    np.testing.assert_array_equal(loaded, array)
    loaded[0] = -1  # writable, as a freshly computed array
    assert store.get(KEY)[0] == 0


def test_a_large_entry_loaded_with_mmap_false_is_a_writable_copy(backend: Callable[[str], Store]) -> None:
    array = np.arange(600_000, dtype=np.float64)
    backend("a").put(KEY, array, _header())
    for store in (backend("a"), backend("b")):  # the writer, and a machine that has no copy yet
        loaded = store.load(KEY, mmap=False).value
        np.testing.assert_array_equal(loaded, array)
        if sys.platform.startswith("linux"):  # a copy: no map of the entry file (by default there is one)
            with open("/proc/self/maps") as fh:
                assert os.path.realpath(store.path_of(KEY)) not in fh.read()
        loaded[:] = -1
        assert store.get(KEY)[0] == 0


def test_entries_seen_by_another_machine(backend: Callable[[str], Store]) -> None:
    backend("a").put(KEY, "from a", _header())
    other = backend("b")
    assert other.contains(KEY)
    assert other.get(KEY) == "from a"


def test_contains_delete_and_bytes_freed(backend: Callable[[str], Store]) -> None:
    store = backend("a")
    assert not store.contains(KEY)
    assert store.delete(KEY) == 0
    store.put(KEY, b"x" * 1000, _header())
    assert store.contains(KEY)
    assert store.delete(KEY) > 1000
    assert not store.contains(KEY) and store.load(KEY) is ENOVAL


def test_iter_entries_lists_keys_with_headers(backend: Callable[[str], Store]) -> None:
    store = backend("a")
    store.put(KEY, 1, _header(args={"x": "1"}))
    store.put(OTHER, 2, _header(args={"x": "2"}))
    listed = {info.key: info for info in backend("b").iter_entries()}
    assert sorted(listed) == [KEY, OTHER]
    assert listed[OTHER].header["args"] == {"x": "2"}
    assert listed[KEY].size > 0
    assert [info.key for info in store.iter_entries("g/8")] == [OTHER]


def test_the_tree_a_catalog_walks(backend: Callable[[str], Store]) -> None:
    """list_folder gives one level (folders, then entries with sizes, headers unread); fill_headers reads
    them; after a delete, tidy leaves no empty folder of this machine's behind."""
    backend("a").put(KEY, "x", _header())
    backend("a").put(OTHER, "y", _header(args={"x": "2"}))
    store = backend("b")  # another machine: nothing of its own yet
    assert store.list_folder("") == (["g"], [])
    assert store.list_folder("g")[0] == ["7", "8"]
    folders, entries = store.list_folder("g/7")
    assert folders == [] and [e.key for e in entries] == [KEY]
    assert entries[0].size > 0 and entries[0].header is None
    store.fill_headers(entries)
    assert entries[0].status == "ok" and entries[0].args == {"x": "1"}
    assert store.list_folder("nothing/here") == ([], [])
    assert store.delete(KEY) > 0
    store.tidy("g")
    assert store.list_folder("g")[0] == ["8"]
    assert not Path(store.path_of(KEY)).parent.exists()


def test_replace_overwrites(backend: Callable[[str], Store]) -> None:
    store = backend("a")
    store.put(KEY, "first", _header())
    store.put(KEY, "second", _header(), replace=True)
    assert backend("b").get(KEY) == "second"
    assert store.get(KEY) == "second"


def test_custom_dumps_is_used(backend: Callable[[str], Store]) -> None:
    calls = []

    def dumps(value: object, **kwargs: object) -> bytes:
        calls.append(value)
        return pickle.dumps(value, **kwargs)

    store = backend("a")
    store.put(KEY, [3], _header(), dumps=dumps)
    assert calls == [[3]] and store.get(KEY) == [3]


def test_path_is_local_and_url_names_the_shared_place(backend: Callable[[str], Store]) -> None:
    store = backend("a")
    store.put(KEY, 1, _header())
    assert Path(store.path_of(KEY)).is_file()
    assert store.url_of(KEY).endswith(KEY)


def test_a_lease_lets_its_holder_compute(backend: Callable[[str], Store]) -> None:
    store = backend("a")
    with store.lease(KEY, lambda: store.get(KEY)) as found:
        assert found is ENOVAL
        store.put(KEY, "computed", _header())
    assert backend("b").get(KEY) == "computed"
