"""The store's fast paths keep every guarantee: streamed writes and the last-read refresh.

A large in-band pickle (a torch tensor, bytes, a big dict) goes to the file as it is made.

Only pickles past ``_STREAM_MIN`` stream: the head is written last into room left before the
payload. The entry must be the same format as one built in memory (checksum over the payload,
a flipped byte caught, the header readable alone), memory must never hold a second copy of the
pickle, and out-of-band buffers after a streamed pickle keep their place, however many there are.
"""

from __future__ import annotations

import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import xxhash

import persist_to_disk as ptd
from persist_to_disk import entryfile, writing
from persist_to_disk import store as st
from persist_to_disk.store import ENOVAL, LocalStore, read_header_file

KEY = "grp/7/0123456789abcdef0123456789abcdef.ptd"


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def _assert_checked_entry(store: LocalStore, header: dict) -> None:
    """The payload checksum is right, the header reads alone, and a flipped payload byte is a miss."""
    path = Path(store.path_of(KEY))
    blob = path.read_bytes()
    start = len(blob) - header["payload_size"]
    assert start % entryfile.ALIGN == 0
    assert xxhash.xxh3_128_hexdigest(blob[start:]) == header["checksum"] == read_header_file(path)["checksum"]
    damaged = bytearray(blob)
    damaged[start + header["payload_size"] // 2] ^= 0x10
    path.write_bytes(bytes(damaged))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert store.load(KEY) is ENOVAL
    assert any(issubclass(w.category, ptd.CacheWarning) and "checksum" in str(w.message) for w in caught)


def test_a_large_in_band_value_round_trips_and_stays_checked(store: LocalStore) -> None:
    value = {"blob": np.random.default_rng(1).bytes(3 * writing._STREAM_MIN), "names": [f"n{i}" for i in range(50_000)]}
    header = store.put(KEY, value, {"args": {"n": "1"}})
    assert header["pickle_size"] > writing._STREAM_MIN and header["buffers"] == []
    assert store.load(KEY).value == value
    _assert_checked_entry(store, header)


@pytest.mark.parametrize("arrays", [3, 300], ids=["few buffers", "more buffers than the head room"])
def test_out_of_band_buffers_after_a_streamed_pickle_keep_their_place(store: LocalStore, arrays: int) -> None:
    value = {
        "blob": b"x" * (2 * writing._STREAM_MIN),
        "arrays": [np.full(1000 + i, i, dtype=np.int64) for i in range(arrays)],
    }
    header = store.put(KEY, value, {"args": {}})
    assert len(header["buffers"]) == arrays
    loaded = store.load(KEY).value
    assert loaded["blob"] == value["blob"]
    for got, want in zip(loaded["arrays"], value["arrays"], strict=True):
        np.testing.assert_array_equal(got, want)
    _assert_checked_entry(store, header)


def test_storing_a_large_in_band_value_makes_no_second_copy_of_it(store: LocalStore) -> None:
    value = np.random.default_rng(2).bytes(64 << 20)
    store.put(KEY, b"warm-up", {})  # folders made, modules imported
    tracemalloc.start()
    try:
        store.put(KEY, value, {})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < len(value) // 4, f"storing {len(value)} bytes allocated up to {peak} more"
    assert store.load(KEY).value == value


def test_a_hit_refreshes_an_old_last_read_time_and_leaves_a_recent_one(store: LocalStore) -> None:
    """``prune`` by last read relies on it: refreshed off the hit path, once per _TOUCH_AFTER, and seen
    by any listing of the entries at once."""
    import os
    import time

    store.put(KEY, [1, 2, 3], {})
    path = store.path_of(KEY)
    hour_ago = time.time() - 3600
    os.utime(path, (hour_ago, hour_ago))
    assert store.get(KEY) == [1, 2, 3]
    (listed,) = store.iter_entries()
    assert listed.last_read > hour_ago + 3000
    assert os.stat(path).st_mtime == listed.last_read
    recent = time.time() - st._TOUCH_AFTER / 2
    os.utime(path, (recent, recent))
    assert store.get(KEY) == [1, 2, 3]
    (listed,) = store.iter_entries()
    assert listed.last_read == pytest.approx(recent, abs=1e-3)


def test_the_refreshing_thread_refreshes_a_last_read_time_on_its_own(store: LocalStore) -> None:
    import os
    import time

    store.put(KEY, [1, 2, 3], {})
    path = store.path_of(KEY)
    hour_ago = time.time() - 3600
    os.utime(path, (hour_ago, hour_ago))
    assert store.get(KEY) == [1, 2, 3]
    deadline = time.monotonic() + 30
    while os.stat(path).st_mtime < hour_ago + 3000:  # the thread's pass, a second or so after the hit
        assert time.monotonic() < deadline, "the last-read time was never refreshed"
        time.sleep(0.05)


_EXITING_HIT = """
import os, sys, time
from persist_to_disk.store import LocalStore
store = LocalStore(sys.argv[1])
assert store.get(sys.argv[2]) == [1, 2, 3]
"""


def test_a_process_that_exits_right_after_a_hit_leaves_the_last_read_time_refreshed(
    store: LocalStore, python: str
) -> None:
    import os
    import subprocess
    import time

    store.put(KEY, [1, 2, 3], {})
    path = store.path_of(KEY)
    hour_ago = time.time() - 3600
    os.utime(path, (hour_ago, hour_ago))
    out = subprocess.run([python, "-c", _EXITING_HIT, str(store.root), KEY], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert os.stat(path).st_mtime > hour_ago + 3000


def test_a_plain_torch_tensor_is_stored_out_of_band_and_loads_back_writable(store: LocalStore) -> None:
    torch = pytest.importorskip("torch")
    value = {"weights": torch.arange(4 << 20, dtype=torch.float32).reshape(1024, -1), "step": 3}
    store.put(KEY, {"warm-up": torch.zeros(1)}, {})
    tracemalloc.start()
    try:
        header = store.put(KEY, value, {})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    nbytes = value["weights"].numel() * 4
    assert peak < nbytes // 4, f"storing a {nbytes}-byte tensor allocated up to {peak} more"
    assert [size for _offset, size in header["buffers"]] == [nbytes]
    loaded = store.load(KEY).value
    assert type(loaded["weights"]) is torch.Tensor and torch.equal(loaded["weights"], value["weights"])
    loaded["weights"] += 1  # writable, and the entry is not changed by it
    assert torch.equal(store.load(KEY).value["weights"], value["weights"])


def test_tensors_carrying_more_than_values_keep_torchs_pickling(store: LocalStore) -> None:
    torch = pytest.importorskip("torch")
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    value = {
        "grad": torch.ones(3, requires_grad=True),
        "bfloat16": torch.tensor([1.5, float("nan")], dtype=torch.bfloat16),
        "column": base[:, 1],  # not contiguous
        "parameter": torch.nn.Parameter(torch.zeros(2)),
        "complex_conj": torch.tensor([1 + 2j]).conj(),
    }
    store.put(KEY, value, {})
    loaded = store.load(KEY).value
    assert loaded["grad"].requires_grad and torch.equal(loaded["grad"].detach(), value["grad"].detach())
    assert loaded["bfloat16"].dtype == torch.bfloat16 and loaded["bfloat16"][0] == 1.5
    assert torch.equal(loaded["column"], value["column"]) and loaded["column"].stride() == (6,)
    assert type(loaded["parameter"]) is torch.nn.Parameter
    assert torch.equal(loaded["complex_conj"].resolve_conj(), value["complex_conj"].resolve_conj())


def test_prune_by_last_read_right_after_a_hit_keeps_the_entry_just_read(tmp_path: Path) -> None:
    """The hit's refresh still waits on its thread: the catalog's listing makes it first."""
    import os
    import time

    from persist_to_disk import catalog as cat
    from persist_to_disk.prune import plan_prune

    ptd.config.set_persist_path(str(tmp_path / "cache"))

    @ptd.persistf()
    def echo(x: str) -> str:
        return x

    echo("read"), echo("unread")
    read, unread = echo.cache.path("read"), echo.cache.path("unread")
    for age, path in ((7200, read), (3600, unread)):  # the one about to be read is the older
        os.utime(path, (time.time() - age, time.time() - age))
    assert echo("read") == "read"
    catalog = cat.Catalog(tmp_path / "cache")
    entries = catalog.entry_files(catalog.node_of_folder(echo.cache.folder))
    plan = plan_prune(entries, max_size=max(e.size for e in entries))
    assert [e.path for e in plan.delete] == [unread], "the least recently read entry goes first"


def test_a_hit_leaves_the_files_access_time_alone(store: LocalStore, tmp_path: Path) -> None:
    """Last read is the mtime: a hit does not make the kernel write the inode's atime too."""
    import os
    import time

    probe = tmp_path / "probe"
    probe.write_bytes(b"x")
    old = time.time() - 3600
    os.utime(probe, (old, time.time() - 10))
    probe.read_bytes()
    if os.stat(probe).st_atime == old:
        pytest.skip("this file system does not update access times on reads (noatime)")
    store.put(KEY, [1, 2, 3], {})
    path = store.path_of(KEY)
    recent = time.time() - 10  # fresh: the hit asks no refresh of the mtime
    os.utime(path, (old, recent))
    assert store.get(KEY) == [1, 2, 3]
    assert os.stat(path).st_atime == old


def test_a_listing_waits_for_a_refresh_the_thread_has_already_begun(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listing must never see a last-read time older than a hit it follows, even while the
    refreshing thread holds the path between taking it off the queue and setting its time."""
    import os
    import threading
    import time

    from persist_to_disk import lastread

    store.put(KEY, [1, 2, 3], {})
    path = store.path_of(KEY)
    hour_ago = time.time() - 3600
    os.utime(path, (hour_ago, hour_ago))
    taken, release = threading.Event(), threading.Event()
    real_utime = os.utime

    def slow_utime(target, *args, **kwargs):  # the thread has the path and has not set its time yet
        if threading.current_thread().name == "ptd-last-read":
            taken.set()
            release.wait(10)
        return real_utime(target, *args, **kwargs)

    monkeypatch.setattr(lastread.os, "utime", slow_utime)
    assert store.get(KEY) == [1, 2, 3]
    assert taken.wait(30), "the refreshing thread never took the path"
    threading.Timer(0.5, release.set).start()  # the listing below must wait for it, not pass it by
    (listed,) = list(store.iter_entries())
    assert listed.last_read > hour_ago + 3000
