"""Corrupted entries are detected, reported once, recomputed, and never unpickled blindly.

Each test damages the entry file of a decorated call the way disks, crashes and
people do, then calls again: the value must be right, the function must run once
more, exactly one CacheWarning must name the file and the reason, and the next call
must hit quietly. A payload whose checksum does not match is never handed to pickle,
which is shown with a value that records being unpickled.
"""

from __future__ import annotations

import os
import pickle
import random
import struct
import warnings
from pathlib import Path

import pytest

import persist_to_disk as ptd
from persist_to_disk import entryfile
from persist_to_disk import store as st
from tests.unpickle_spy import UNPICKLED, Spy


def _payload(n: int) -> dict:
    return {"n": n, "data": random.Random(n).randbytes(20_000), "rec": Spy(f"value-{n}")}


@pytest.fixture
def cached(persist):
    runs: list[int] = []

    @ptd.persistf
    def value_of(n):
        runs.append(n)
        return _payload(n)

    value_of(7)
    path = value_of.cache.path(7)
    assert path.is_file()
    UNPICKLED.clear()
    return value_of, path, runs


def _call(f, n):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = f(n)
    return value, [str(w.message) for w in caught if issubclass(w.category, ptd.CacheWarning)]


def _flip(data: bytearray, offset: int) -> None:
    data[offset] ^= 0x10


def _truncate_half(b: bytearray) -> bytes:
    return bytes(b[: len(b) // 2])


def _truncate_one(b: bytearray) -> bytes:
    return bytes(b[:-1])


def _bitflip_payload(b: bytearray) -> bytes:
    _flip(b, len(b) - 5000)
    return bytes(b)


def _header_garbage(b: bytearray) -> bytes:
    b[16:48] = random.Random(1).randbytes(32)
    return bytes(b)


def _future_version(b: bytearray) -> bytes:
    struct.pack_into("<H", b, 4, entryfile.FORMAT_VERSION + 1)
    return bytes(b)


def _foreign_pickle(b: bytearray) -> bytes:
    return pickle.dumps(Spy("foreign"))  # a plain pickle someone dropped here: would run code if loaded


def _foreign_text(b: bytearray) -> bytes:
    return b"just some notes, not an entry\n"


def _empty(b: bytearray) -> bytes:
    return b""


def _appended(b: bytearray) -> bytes:
    return bytes(b) + b"\0" * 100


CORRUPTIONS = {
    "truncated to half": (_truncate_half, "truncated"),
    "one byte short": (_truncate_one, "truncated"),
    "payload bit flipped": (_bitflip_payload, "checksum mismatch"),
    "header garbage": (_header_garbage, "header checksum mismatch"),
    "future format": (_future_version, "newer format"),
    "foreign pickle": (_foreign_pickle, "not a persist_to_disk entry"),
    "foreign text": (_foreign_text, "not a persist_to_disk entry"),
    "empty file": (_empty, "shorter than an entry prefix"),
    "bytes appended": (_appended, "header says"),
}


@pytest.mark.parametrize("damage", list(CORRUPTIONS), ids=list(CORRUPTIONS))
def test_corrupt_entry_is_a_miss_reported_once_and_recomputed(rel, cached, damage):
    f, path, runs = cached
    corrupt, reason = CORRUPTIONS[damage]
    path.write_bytes(corrupt(bytearray(path.read_bytes())))
    value, messages = _call(f, 7)
    assert value == _payload(7)
    assert runs == [7, 7], "the damaged entry must be recomputed, once"
    assert len(messages) == 1, messages
    assert str(path) in messages[0] and reason in messages[0]
    assert "foreign" not in UNPICKLED, "a file that is not ours was unpickled"
    assert UNPICKLED == [], "the damaged payload reached pickle"  # the fresh value is returned as computed
    value, messages = _call(f, 7)  # repaired: a quiet hit
    assert value == _payload(7) and messages == [] and runs == [7, 7]
    rel.count(faults=1, operations=2)


def test_a_corrupt_header_shows_in_listings_without_a_warning(rel, cached):
    f, path, runs = cached
    path.write_bytes(_header_garbage(bytearray(path.read_bytes())))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        infos = f.cache.entries()
        assert f.cache.contains(7) is False
    assert len(infos) == 1 and infos[0].status == "corrupt" and infos[0].reason
    rel.count(faults=1, operations=2)


def test_a_checksum_mismatch_never_reaches_pickle(rel, cached, monkeypatch):
    """A flipped bit in a payload that would run code on load: it is not loaded at all."""
    f, path, runs = cached
    path.write_bytes(_bitflip_payload(bytearray(path.read_bytes())))
    with pytest.warns(ptd.CacheWarning, match="payload checksum mismatch"):
        assert st.LocalStore(path.parent).load(path.name) is st.ENOVAL
    assert UNPICKLED == []
    rel.count(faults=1, operations=1)


class _ChecksumAlwaysMatches:
    """Stands in for the xxhash module in entryfile.py: the payload checksum check is switched off."""

    def __getattr__(self, name):
        import xxhash

        return getattr(xxhash, name)

    @staticmethod
    def xxh3_128_digest(data):
        class Same(bytes):
            def __ne__(self, other):
                return False

        return Same(b"")

    xxh3_128_hexdigest = xxh3_128_digest


def test_without_the_checksum_a_bit_flip_returns_a_wrong_value(cached, monkeypatch):
    """Honesty: with the payload checksum check removed, the test above returns a wrong value, silently."""
    f, path, runs = cached
    path.write_bytes(_bitflip_payload(bytearray(path.read_bytes())))
    monkeypatch.setattr(entryfile, "xxhash", _ChecksumAlwaysMatches())
    value, messages = _call(f, 7)
    assert value != _payload(7) and messages == [] and runs == [7]  # a lie, told quietly
    assert UNPICKLED, "and the damaged payload was unpickled"


def test_foreign_files_in_the_tree_are_ignored_and_left_alone(rel, cached):
    f, path, runs = cached
    strays = [
        path.parent / "notes.txt",
        path.parent / ".DS_Store",
        path.parent.parent / "README",
        path.parent.parent / "stray-folder" / "data.bin",
        path.parent / ("0" * 32 + ".ptd.orig"),
    ]
    for stray in strays:
        stray.parent.mkdir(parents=True, exist_ok=True)
        stray.write_bytes(b"not ours")
    value, messages = _call(f, 7)
    assert value == _payload(7) and messages == [] and runs == [7]
    f(8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sorted(i.path.name for i in f.cache.entries()) == sorted([path.name, f.cache.path(8).name])
    assert f.cache.clear() == 2
    assert all(s.read_bytes() == b"not ours" for s in strays), "a file that is not ours was touched"
    rel.count(faults=len(strays), operations=4)


def test_an_entry_moved_to_another_key_is_not_served_for_it(rel, cached):
    """Swapping two intact entries' files: each header names its key, the checksum alone cannot tell."""
    f, path, runs = cached
    f(8)
    other = f.cache.path(8)
    data7, data8 = path.read_bytes(), other.read_bytes()
    path.write_bytes(data8)
    other.write_bytes(data7)
    value, messages = _call(f, 7)
    assert value == _payload(7), "an intact entry of another call was served"
    rel.count(faults=1, operations=1)


def test_entries_do_not_expire_when_the_clock_jumps(rel, cached):
    f, path, runs = cached
    for when in (0, 2**31 - 1, 4102444800):  # 1970, 2038, 2100
        os.utime(path, (when, when))
        value, messages = _call(f, 7)
        assert value == _payload(7) and messages == [] and runs == [7]
    rel.count(faults=3, operations=3)


def test_the_decoder_refuses_what_it_was_not_given(tmp_path: Path):
    payload = entryfile.pickle_payload([1, 2, 3])
    head, _header = entryfile.make_head(payload, {"key": "x"}, payload.checksum())
    blob = bytearray(head + b"".join(bytes(c) for c in payload.chunks))
    assert entryfile.decode(bytearray(blob)).value == [1, 2, 3]
    for bad in (blob[:-1], blob + b"x", b"PTDE" + blob[4:12] + b"\0\0\0\0" + blob[16:]):
        with pytest.raises(entryfile.CorruptEntry):
            entryfile.decode(bytearray(bad))
