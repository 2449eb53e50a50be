"""``persist_to_disk/manual.py``: entries named by hand in the calling function's folder."""

from __future__ import annotations

from pathlib import Path

import pytest

import persist_to_disk as ptd


def producer(value):
    return ptd.manual_cache("features", value, write=True)


def consumer():
    return ptd.manual_cache("features")


def test_write_read_and_check_in_the_callers_folder(cache_root: Path):
    assert ptd.manual_cache("features") is None, "a missing key reads as None, as in the seed"
    assert ptd.manual_cache("features", checkonly=True) is False
    ptd.manual_cache("features", {"a": 1}, write=True)
    assert ptd.manual_cache("features") == {"a": 1}
    assert ptd.manual_cache("features", checkonly=True) is True
    ptd.manual_cache("empty", None, write=True)
    assert ptd.manual_cache("empty", checkonly=True) is True, "a cached None is told apart from a missing key"
    folder = Path(ptd.get_caller_cache_path())
    assert folder.name == "test_write_read_and_check_in_the_callers_folder"
    assert (folder / "features.ptd").is_file()


def test_each_calling_function_has_its_own_folder(cache_root: Path):
    producer([1, 2])
    assert consumer() is None, "another function's folder"
    assert ptd.manual_cache("features", alt_root=Path(ptd.get_caller_cache_path()).parent / "producer") == [1, 2]


def test_misuse_is_refused_naming_what_is_wrong(cache_root: Path):
    with pytest.raises(ValueError, match="write=True and checkonly=True"):
        ptd.manual_cache("k", 1, write=True, checkonly=True)
    with pytest.raises(ValueError, match="manual_cache key"):
        ptd.manual_cache("../outside", 1, write=True)
