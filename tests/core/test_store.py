"""The entry file format and LocalStore: values come back intact, bad files are misses.

A cache that returns a wrong value, or raises into the user's call because a file
was torn by a crash, is worse than no cache. Every way a file can be bad here
must give ENOVAL (a miss) and one CacheWarning, and never an exception.
"""

from __future__ import annotations

import mmap
import os
import pickle
import struct
import threading
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xxhash

import persist_to_disk as ptd
from persist_to_disk import entryfile, writing
from persist_to_disk import store as st
from persist_to_disk.store import ENOVAL, LocalStore, read_header_file
from tests.unpickle_spy import UNPICKLED, Spy

KEY = "grp/7/0123456789abcdef0123456789abcdef.ptd"


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _load_with_warnings(store: LocalStore, key: str):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = store.load(key)
    return result, [w for w in caught if issubclass(w.category, ptd.CacheWarning)]


# -- round trips -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value",
    [
        None,
        0,
        "text with ünïcode",
        b"",
        {"nested": [1, (2, 3.5), {"x": None}], "set": {1, 2}},
        ENOVAL.__class__,  # a class, pickled by reference
    ],
    ids=["none", "zero", "str", "empty-bytes", "nested", "class"],
)
def test_round_trip_of_values(store, value):
    store.put(KEY, value, {"args": {"x": "1"}})
    entry = store.load(KEY)
    assert entry is not ENOVAL
    assert entry.value == value
    assert entry.header["args"] == {"x": "1"}


def test_none_is_a_value_not_a_miss(store):
    store.put(KEY, None, {})
    assert store.load(KEY) is not ENOVAL
    assert store.get(KEY) is None
    assert store.contains(KEY)


def test_round_trip_of_pandas_and_small_arrays(store):
    df = pd.DataFrame({"a": np.arange(5), "b": list("abcde")})
    arr = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    store.put(KEY, {"df": df, "arr": arr}, {})
    value = store.get(KEY)
    pd.testing.assert_frame_equal(value["df"], df)
    np.testing.assert_array_equal(value["arr"], arr)


def test_small_array_is_writable(store):
    """Small entries are read as bytes; one with out-of-band buffers is copied so its arrays stay writable."""
    store.put(KEY, {"a": np.arange(1000.0)}, {})
    loaded = store.load(KEY).value["a"]
    assert np.array_equal(loaded, np.arange(1000.0)) and loaded.flags.writeable
    loaded[0] = -1.0


def test_moved_entry_is_refused(store):
    store.put(KEY, 1, {})
    moved = "grp/7/" + "f" * 32 + ".ptd"
    os.replace(store.path_of(KEY), store.path_of(moved))
    result, caught = _load_with_warnings(store, moved)
    assert result is ENOVAL and "moved or copied" in str(caught[0].message)


def test_header_is_parsed_on_demand_and_complete(store):
    header = store.put(KEY, [1, 2], {"args": {"x": "1"}})
    entry = store.load(KEY)
    assert entry.value == [1, 2] and entry.header == header == read_header_file(store.path_of(KEY))
    assert header["format"] == entryfile.FORMAT_VERSION and header["file"] == os.path.basename(KEY)


def test_large_array_round_trip_is_writable_and_read_into_one_buffer(store):
    n = 8 * 1024 * 1024  # 64 MB of float64
    arr = np.arange(n, dtype=np.float64)
    store.put(KEY, arr, {})
    file_size = os.path.getsize(store.path_of(KEY))
    assert arr.nbytes < file_size < arr.nbytes + 64 * 1024

    tracemalloc.start()
    try:
        entry = store.load(KEY)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    loaded = entry.value
    assert isinstance(loaded, np.ndarray) and loaded.dtype == np.float64
    assert np.array_equal(loaded, arr)
    assert loaded.flags.writeable, "a cached array must be usable like the one computed"
    loaded[0] = -1.0  # and really writable

    # the array's memory is the buffer the file was read into: follow the base chain
    base = loaded
    seen = []
    while base is not None and len(seen) < 20:
        seen.append(base)
        base = base.obj if isinstance(base, memoryview) else getattr(base, "base", None)
    # (a large entry is memory-mapped: then its owner is the mapping of the whole file)
    owners = [b for b in seen if isinstance(b, (bytes, bytearray, mmap.mmap))]
    assert owners, f"array memory should come from the file buffer, chain: {[type(b).__name__ for b in seen]}"
    assert len(owners[-1]) == file_size
    # and loading did not hold a second copy of the payload at any moment
    assert peak < 1.5 * arr.nbytes, f"peak {peak / 2**20:.0f} MiB while loading {arr.nbytes / 2**20:.0f} MiB"


def test_header_is_readable_without_loading_the_value(store):
    UNPICKLED.clear()
    big = np.ones(1_000_000)
    store.put(KEY, {"spy": Spy("a"), "big": big}, {"args": {"dataset": "'MNIST'"}, "code_version": "abc"})
    header = read_header_file(store.path_of(KEY))
    assert header["args"] == {"dataset": "'MNIST'"}
    assert header["code_version"] == "abc"
    for field in ("format", "payload_size", "checksum"):
        assert field in header
    assert header["payload_size"] >= big.nbytes
    assert store.read_header(KEY) == header
    assert store.contains(KEY)
    infos = list(store.iter_entries())
    assert [i.key for i in infos] == [KEY] and infos[0].header == header
    assert UNPICKLED == [], "reading headers must not unpickle the value"
    assert store.get(KEY)["spy"].tag == "a"
    assert UNPICKLED == ["a"]


def test_overwrite_replaces_the_value(store):
    store.put(KEY, "old", {})
    store.put(KEY, "new", {})
    assert store.get(KEY) == "new"
    assert _files(Path(store.root)) == [KEY]


# -- bad files are misses -------------------------------------------------------------------------------
def _good_file(store: LocalStore) -> bytes:
    store.put(KEY, {"payload": list(range(1000))}, {"args": {"x": "1"}})
    return Path(store.path_of(KEY)).read_bytes()


def _flip(data: bytes, offset: int) -> bytes:
    b = bytearray(data)
    b[offset] ^= 0x40
    return bytes(b)


def _with_prefix(data: bytes, **changes) -> bytes:
    magic, version, flags, hlen, hsum = struct.unpack_from("<4sHHII", data)
    fields = {"magic": magic, "version": version, "flags": flags, "hlen": hlen, "hsum": hsum, **changes}
    prefix = struct.pack("<4sHHII", fields["magic"], fields["version"], fields["flags"], fields["hlen"], fields["hsum"])
    return prefix + data[16:]


def _garbage_json_header(data: bytes) -> bytes:
    import xxhash

    hlen = struct.unpack_from("<I", data, 8)[0]
    junk = b"{not json" + b" " * (hlen - 9)
    prefix = struct.pack("<4sHHII", b"PTDE", 1, 0, hlen, xxhash.xxh32_intdigest(junk))
    return prefix + junk + data[16 + hlen :]


CORRUPTIONS = {
    "empty": lambda d: b"",
    "truncated-prefix": lambda d: d[:10],
    "truncated-header": lambda d: d[:40],
    "truncated-payload": lambda d: d[:-100],
    "truncated-last-byte": lambda d: d[:-1],
    "appended-bytes": lambda d: d + b"\x00" * 8,
    "flipped-payload-byte": lambda d: _flip(d, len(d) - 50),
    "flipped-header-byte": lambda d: _flip(d, 20),
    "garbage-header": _garbage_json_header,
    "bad-magic": lambda d: _with_prefix(d, magic=b"XXXX"),
    "future-format": lambda d: _with_prefix(d, version=entryfile.FORMAT_VERSION + 1),
    "foreign-pickle": lambda d: pickle.dumps({"seed": "bucket file"}),
    "foreign-text": lambda d: b"hello, I am a text file\n" * 100,
    "random-bytes": lambda d: os.urandom(5000),
}


@pytest.mark.parametrize("corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_bad_file_is_a_miss_with_one_warning_and_never_raises(store, corrupt):
    data = _good_file(store)
    Path(store.path_of(KEY)).write_bytes(corrupt(data))

    result, caught = _load_with_warnings(store, KEY)
    assert result is ENOVAL
    assert len(caught) == 1, [str(w.message) for w in caught]
    assert store.path_of(KEY) in str(caught[0].message)

    # the same bad path warns only once; get and friends agree it is a miss
    result, caught = _load_with_warnings(store, KEY)
    assert result is ENOVAL and caught == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert store.get(KEY) is ENOVAL


@pytest.mark.parametrize("name", ["bad-magic", "future-format", "foreign-pickle", "truncated-header", "garbage-header"])
def test_bad_header_is_not_contained(store, name):
    data = _good_file(store)
    Path(store.path_of(KEY)).write_bytes(CORRUPTIONS[name](data))
    assert not store.contains(KEY)
    assert store.read_header(KEY) is None


def test_unpicklable_payload_is_a_miss(store, tmp_path):
    """A value whose class no longer imports (renamed, module gone) is a miss, not an ImportError."""
    import sys
    import types

    mod = types.ModuleType("ptd_core_vanishing_module")

    class Gone:
        pass

    Gone.__module__ = mod.__name__
    Gone.__qualname__ = "Gone"
    mod.Gone = Gone
    sys.modules[mod.__name__] = mod
    try:
        store.put(KEY, Gone(), {})
    finally:
        del sys.modules[mod.__name__]
    result, caught = _load_with_warnings(store, KEY)
    assert result is ENOVAL
    assert len(caught) == 1


def test_a_directory_in_place_of_an_entry_is_a_miss(store):
    Path(store.path_of(KEY)).mkdir(parents=True)
    result, caught = _load_with_warnings(store, KEY)
    assert result is ENOVAL
    assert len(caught) == 1


def test_warning_comes_again_after_the_entry_was_rewritten_and_broke_again(store):
    data = _good_file(store)
    path = Path(store.path_of(KEY))
    path.write_bytes(data[:-1])
    assert len(_load_with_warnings(store, KEY)[1]) == 1
    store.put(KEY, "fixed", {})
    assert store.get(KEY) == "fixed"
    path.write_bytes(path.read_bytes()[:-1])
    result, caught = _load_with_warnings(store, KEY)
    assert result is ENOVAL and len(caught) == 1


def test_one_bad_entry_does_not_take_its_neighbours_with_it(store):
    keys = [f"g/{i % 3}/{i:032x}.ptd" for i in range(9)]
    for i, key in enumerate(keys):
        store.put(key, i, {})
    Path(store.path_of(keys[4])).write_bytes(b"garbage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = [store.get(k) for k in keys]
    assert values == [0, 1, 2, 3, ENOVAL, 5, 6, 7, 8]


# -- atomic writes -----------------------------------------------------------------------------------
def test_put_leaves_no_temp_file_on_success(store):
    for i in range(5):
        store.put(KEY, list(range(i)), {})
    store.put("other/1/ffff.ptd", np.zeros(100_000), {})
    assert _files(Path(store.root)) == sorted([KEY, "other/1/ffff.ptd"])


@pytest.mark.parametrize(
    "bad_value",
    [lambda: threading.Lock(), lambda: (lambda: None), lambda: [1, 2, (i for i in range(2))]],
    ids=["lock", "lambda", "nested-generator"],
)
def test_pickling_error_propagates_leaves_no_temp_file_and_keeps_the_old_entry(store, bad_value):
    store.put(KEY, "old", {})
    with pytest.raises(Exception):
        store.put(KEY, bad_value(), {})
    assert _files(Path(store.root)) == [KEY]
    assert store.get(KEY) == "old"
    with pytest.raises(Exception):
        store.put("fresh/0/abcd.ptd", bad_value(), {})
    assert _files(Path(store.root)) == [KEY]


def test_failed_rename_leaves_no_temp_file_and_keeps_the_old_entry(store, monkeypatch):
    store.put(KEY, "old", {})

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device (simulated)")

    monkeypatch.setattr(st.os, "replace", broken_replace)
    with pytest.raises(OSError):
        store.put(KEY, "new" * 1000, {})
    monkeypatch.undo()
    assert _files(Path(store.root)) == [KEY]
    assert store.get(KEY) == "old"


def test_put_with_fsync_round_trips(tmp_path):
    store = LocalStore(tmp_path / "s", fsync=True)
    store.put(KEY, {"a": 1}, {})
    assert store.get(KEY) == {"a": 1}
    assert _files(tmp_path / "s") == [KEY]


# -- delete and listing ------------------------------------------------------------------------------
def test_delete_returns_bytes_freed(store):
    store.put(KEY, np.zeros(10_000), {})
    size = os.path.getsize(store.path_of(KEY))
    assert store.delete(KEY) == size
    assert not os.path.exists(store.path_of(KEY))
    assert store.delete(KEY) == 0
    assert store.load(KEY) is ENOVAL


def test_iter_entries_skips_temp_files_and_reports_corrupt_entries(store):
    UNPICKLED.clear()
    good = ["a/1/" + "1" * 32 + ".ptd", "a/2/" + "2" * 32 + ".ptd", "b/1/" + "3" * 32 + ".ptd"]
    for i, key in enumerate(good):
        store.put(key, Spy(str(i)), {"args": {"i": str(i)}})
    root = Path(store.root)
    bad = "b/1/" + "4" * 32 + ".ptd"
    (root / bad).write_bytes(b"not an entry at all")
    # a writer's temp file (in flight or left by a crash), hidden folders and other files
    (root / "a/1" / f".{'5' * 32}.ptd.host-123-abcd.tmp").write_bytes(b"PTDE partial")
    (root / "a/1" / f"{'6' * 32}.ptd.tmp").write_bytes(b"partial")
    (root / ".locks").mkdir()
    (root / ".locks/x.ptd").write_bytes(b"lock")
    (root / "notes.txt").write_text("not an entry")

    infos = {i.key: i for i in store.iter_entries()}
    assert sorted(infos) == sorted(good + [bad])
    for i, key in enumerate(good):
        assert infos[key].status == "ok" and infos[key].reason is None
        assert infos[key].header["args"] == {"i": str(i)}
        assert infos[key].size == os.path.getsize(store.path_of(key))
        assert infos[key].digest == key.rsplit("/", 1)[1][:-4]
    assert infos[bad].header is None
    assert infos[bad].status == "corrupt" and infos[bad].reason
    assert UNPICKLED == [], "listing must not load values"

    under_b = [i.key for i in store.iter_entries("b")]
    assert sorted(under_b) == sorted([good[2], bad])
    no_headers = list(store.iter_entries(headers=False))
    assert len(no_headers) == 4 and all(i.header is None and i.status == "ok" for i in no_headers)


def test_iter_entries_of_a_missing_folder_is_empty(tmp_path):
    assert list(LocalStore(tmp_path / "nothing-here").iter_entries()) == []


@pytest.mark.parametrize("size", [writing._HASH_ALONGSIDE_MIN - 1024, writing._HASH_ALONGSIDE_MIN + 1024])
def test_a_payload_hashed_while_written_is_as_checked_as_one_hashed_first(store, size):
    """Payloads from _HASH_ALONGSIDE_MIN are written while a thread hashes them, the head last:
    the file must be the same format, round-trip, and a flipped payload byte must still be caught."""
    value = {"array": np.arange(size // 8, dtype=np.float64), "label": "x"}
    header = store.put(KEY, value, {"args": {"n": str(size)}})
    path = Path(store.path_of(KEY))
    blob = path.read_bytes()
    start = len(blob) - header["payload_size"]
    assert xxhash.xxh3_128_hexdigest(blob[start:]) == header["checksum"] == read_header_file(path)["checksum"]
    loaded = store.load(KEY)
    assert loaded is not ENOVAL
    np.testing.assert_array_equal(loaded.value["array"], value["array"])
    damaged = bytearray(blob)
    damaged[start + header["payload_size"] // 2] ^= 0x10
    path.write_bytes(bytes(damaged))
    result, caught = _load_with_warnings(store, KEY)
    assert result is ENOVAL and "checksum mismatch" in str(caught[0].message)
