"""``persistf(mmap=False)``: large results copied into fresh memory at load instead of mapped.

By default a large entry is a copy-on-write map of its file (reading is free; the first write
to each 4 KB page faults). A user who rewrites whole results asks for a copy instead; the
result must be the same value, as writable, and just as checked.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import persist_to_disk as ptd
from persist_to_disk import store as st
from persist_to_disk.store import ENOVAL, LocalStore

KEY = "grp/7/0123456789abcdef0123456789abcdef.ptd"
LINUX = sys.platform.startswith("linux")


def mapped_files() -> set[str]:
    """The files this process has memory-mapped (Linux: /proc/self/maps)."""
    with open("/proc/self/maps") as fh:
        return {line.split(None, 5)[5].strip() for line in fh if len(line.split(None, 5)) == 6}


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def wait_for_readers() -> None:
    deadline = time.monotonic() + 10
    while any(t.name == "ptd-read" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def put_entry_file_of(store: LocalStore, file_size: int) -> np.ndarray:
    """Store random bytes whose entry file is exactly ``file_size`` bytes long (header included)."""
    n = file_size - 4096
    for _ in range(5):
        value = np.random.default_rng(file_size).integers(0, 256, n, dtype=np.uint8)
        store.put(KEY, value, {})
        got = os.path.getsize(store.path_of(KEY))
        if got == file_size:
            return value
        n += file_size - got
    raise AssertionError(f"no payload size gives an entry file of {file_size} bytes")


# file sizes around the pieces two threads read: the smallest copied entry, one piece exactly (one
# thread), one piece and a byte (the second thread reads one byte), several pieces with an odd tail
@pytest.mark.parametrize(
    "file_size", [st._MMAP_MIN, st._COPY_STEP, st._COPY_STEP + 1, 3 * st._COPY_STEP + 12345]
)
def test_a_copied_load_is_the_same_value_writable_and_leaves_the_file_alone(store, file_size):
    value = put_entry_file_of(store, file_size)
    path = store.path_of(KEY)
    before = Path(path).read_bytes()

    loaded = store.load(KEY, mmap=False).value
    assert loaded.dtype == value.dtype and np.array_equal(loaded, value)
    assert loaded.flags.writeable
    loaded[:] = 7  # all of it
    assert Path(path).read_bytes() == before, "writing to a loaded result never reaches the entry file"
    assert np.array_equal(store.load(KEY, mmap=False).value, value)


@pytest.mark.skipif(not LINUX, reason="which files are mapped is read from /proc/self/maps (Linux)")
def test_the_default_maps_a_large_entry_and_mmap_false_does_not(store):
    store.put(KEY, np.arange(1_000_000, dtype=np.float64), {})
    path = os.path.realpath(store.path_of(KEY))

    mapped = store.load(KEY).value
    assert path in mapped_files(), "by default a large entry is a map of its file"
    del mapped
    copied = store.load(KEY, mmap=False).value
    assert path not in mapped_files(), "mmap=False holds no map of the entry file"
    assert copied[-1] == 999_999.0


@pytest.mark.parametrize("nbytes", [st._MMAP_MIN, 3 * st._COPY_STEP])
def test_a_corrupt_payload_is_still_a_miss_when_copied(store, nbytes):
    store.put(KEY, np.ones(nbytes, dtype=np.uint8), {})
    path = store.path_of(KEY)
    with open(path, "r+b") as fh:  # one byte of the payload, in the second thread's piece when there is one
        fh.seek(min(os.path.getsize(path) - 1, st._COPY_STEP + 10))
        fh.write(b"\x00")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert store.load(KEY, mmap=False) is ENOVAL
    assert any("checksum" in str(w.message) for w in caught)


@pytest.mark.skipif(not LINUX, reason="open descriptors are counted in /proc/self/fd (Linux)")
def test_a_file_cut_short_while_read_is_a_miss_and_the_reader_threads_close_their_descriptors(store, monkeypatch):
    store.put(KEY, np.ones(3 * st._COPY_STEP, dtype=np.uint8), {})
    real = os.preadv

    def short(fd, buffers, offset):  # the file ends inside the second thread's first piece, and only there
        return 0 if st._COPY_STEP <= offset < 2 * st._COPY_STEP else real(fd, buffers, offset)

    monkeypatch.setattr(os, "preadv", short)
    fds = open_descriptors()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert store.load(KEY, mmap=False) is ENOVAL
    wait_for_readers()
    assert any("truncated" in str(w.message) for w in caught), [str(w.message) for w in caught]
    assert open_descriptors() == fds
    monkeypatch.setattr(os, "preadv", real)
    assert store.load(KEY, mmap=False).value.sum() == 3 * st._COPY_STEP, "the entry itself was kept"


@pytest.mark.skipif(not LINUX, reason="open descriptors are counted in /proc/self/fd (Linux)")
def test_ctrl_c_during_a_copied_load_interrupts_it_and_the_next_load_works(store, monkeypatch):
    store.put(KEY, np.full(3 * st._COPY_STEP, 5, dtype=np.uint8), {})
    real = st._read_pieces

    def interrupted(fd, view, first, stride, stop=None):
        if first == 0:  # the calling thread, while the second one reads
            raise KeyboardInterrupt
        real(fd, view, first, stride, stop)

    monkeypatch.setattr(st, "_read_pieces", interrupted)
    fds = open_descriptors()
    with pytest.raises(KeyboardInterrupt):
        store.load(KEY, mmap=False)
    wait_for_readers()
    assert open_descriptors() == fds, "the second reader closed its own descriptor"
    monkeypatch.setattr(st, "_read_pieces", real)
    assert int(store.load(KEY, mmap=False).value[-1]) == 5


def test_the_second_reader_stops_once_the_load_failed(store, monkeypatch):
    store.put(KEY, np.zeros(6 * st._COPY_STEP, dtype=np.uint8), {})
    real = os.preadv
    second_reads = []

    def failing(fd, buffers, offset):
        if (offset // st._COPY_STEP) % 2:  # the second thread's pieces
            second_reads.append(offset)
            time.sleep(0.2)
        elif offset:
            raise OSError(5, "Input/output error")  # the calling thread's second piece
        return real(fd, buffers, offset)

    monkeypatch.setattr(os, "preadv", failing)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert store.load(KEY, mmap=False) is ENOVAL
    wait_for_readers()
    assert len(second_reads) < 3, f"the second reader went on after the failure: {second_reads}"


def test_without_preadv_or_a_second_thread_a_copy_is_read_all_the_same(store, monkeypatch):
    value = np.arange(3 * st._COPY_STEP // 8, dtype=np.float64)
    store.put(KEY, value, {})
    real_dup = os.dup
    monkeypatch.setattr(os, "dup", lambda fd: (_ for _ in ()).throw(OSError(24, "Too many open files")))
    assert np.array_equal(store.load(KEY, mmap=False).value, value)  # no descriptor for a second reader
    monkeypatch.setattr(os, "dup", real_dup)
    monkeypatch.setattr(st._SecondReader, "start", lambda self: (_ for _ in ()).throw(RuntimeError("no thread")))
    assert np.array_equal(store.load(KEY, mmap=False).value, value)
    monkeypatch.setattr(st, "_PREADV", False)  # a bytearray read, as where os.preadv is missing
    loaded = store.load(KEY, mmap=False).value
    assert np.array_equal(loaded, value) and loaded.flags.writeable


# -- the decorator ---------------------------------------------------------------------------------------
def test_persistf_mmap_false_serves_the_same_entry_as_copies(cache_root):
    calls = []

    def result(n):
        calls.append(n)
        return np.arange(n, dtype=np.float64)

    mapped = ptd.persistf()(result)
    copied = ptd.persistf(mmap=False)(result)
    first = mapped(500_000)
    del first
    again = copied(500_000)
    assert calls == [500_000], "mmap is how a result is loaded, not part of its key"
    assert np.array_equal(again, np.arange(500_000)) and again.flags.writeable
    if LINUX:
        assert os.path.realpath(copied.cache.path(500_000)) not in mapped_files()
    again += 1  # a whole rewrite, the case mmap=False is for
    assert copied.cache.get(500_000)[1] == 1.0, "the entry is untouched"


@pytest.mark.skipif(not LINUX, reason="which files are mapped is read from /proc/self/maps (Linux)")
def test_f_cache_get_follows_the_functions_mmap_setting(cache_root):
    @ptd.persistf(mmap=False)
    def result(n):
        return np.zeros(n)

    result(300_000)
    value = result.cache.get(300_000)
    assert os.path.realpath(result.cache.path(300_000)) not in mapped_files()
    assert value.shape == (300_000,)


def test_a_store_backend_without_the_mmap_option_still_serves_the_default(cache_root, monkeypatch):
    from persist_to_disk import persister, stores

    class OlderBackend(stores.LocalBackend):  # registered before mmap existed: load(key) only
        def load(self, key):
            return super().load(key)

    monkeypatch.setattr(persister.stores, "open_store", lambda folder, root, settings: OlderBackend(folder))
    calls = []

    @ptd.persistf()
    def result(n):
        calls.append(n)
        return np.ones(n)

    assert result(300_000).sum() == result(300_000).sum() == 300_000
    assert calls == [300_000] and result.cache.get(300_000).shape == (300_000,)


@pytest.mark.parametrize("bad", ["no", 0, None])
def test_mmap_must_be_true_or_false(cache_root, bad):
    with pytest.raises(ValueError, match=r"mmap="):
        ptd.persistf(mmap=bad)(lambda x: x)
