"""``persist_to_disk/header.py``: the entry header record and its JSON round trip."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import pytest

import persist_to_disk as ptd
from persist_to_disk.errors import HeaderError
from persist_to_disk.header import EntryHeader, header_of
from persist_to_disk.listing import EntryInfo
from persist_to_disk.store import LocalStore, read_header_file

# Headers as the previous release wrote them (read back from its entry files): a decorated call
# with a groupby folder, a %%persist cell, a manual_cache entry.
OLD_FUNCTION = (
    '{"func":"train","module":"work","key":"5d98053a22d32f92b7637332ec35b704","args":{"dataset":"\'mnist\'",'
    '"lr":"0.01"},"code_version":"1e3766d8c41667c7","created":1796064651.9602826,"compute_seconds":4e-06,'
    '"groupby":[["dataset","mnist"]],"dependencies":[["function","train","mk.py:11","6447a007121bec11"],'
    '["global","SCALE","__main__ = 3","29769192c7af9e97a9fd7c167505b5bb"]],"arg_digests":{"dataset":'
    '"0204caa4f5a665f405bb481b76b35c32","lr":"1c70e038b65f9e0a97797e562e5d08d5"},"file":'
    '"5d98053a22d32f92b7637332ec35b704.ptd","format":1,"pickle_size":21,"buffers":[],"payload_size":21,'
    '"checksum":"190f872bedde990ce577c4d184cee258"}'
)
OLD_CELL = (
    '{"func":"cell-029c7271","kind":"cell","module":"__main__","key":"6628e1dd20efdb08aec8b945a4d63216",'
    '"args":{"window":"3"},"code_version":"029c7271ff111684","created":1796064652.3552778,"compute_seconds":5.7e-05,'
    '"groupby":[],"names":["X","summary"],"source":"X = list(range(window))\\nsummary = len(X)\\n","file":'
    '"6628e1dd20efdb08aec8b945a4d63216.ptd","format":1,"pickle_size":288,"buffers":[],"payload_size":288,'
    '"checksum":"7d9b6bf2d7c4bc632ff48b7a80f7c2ec"}'
)
OLD_MANUAL = (
    '{"func":"<module>","key":"weights","args":{"key":"\'weights\'"},"manual":true,"created":1796064651.9611692,'
    '"file":"weights.ptd","format":1,"pickle_size":21,"buffers":[],"payload_size":21,'
    '"checksum":"0247cd2b67a70c5fa939a8d9137ad476"}'
)


@pytest.mark.parametrize("text", [OLD_FUNCTION, OLD_CELL, OLD_MANUAL], ids=["function", "cell", "manual"])
def test_headers_of_the_previous_release_parse_and_are_written_back_the_same(text):
    data = json.loads(text)
    header = EntryHeader.from_json(data)
    assert header.to_json() == data
    assert header.extra == {}


def test_an_old_header_reads_as_typed_fields():
    function = EntryHeader.from_json(json.loads(OLD_FUNCTION))
    assert function.kind == "function" and function.func == "train" and function.module == "work"
    assert function.args == {"dataset": "'mnist'", "lr": "0.01"}
    assert function.groupby == (("dataset", "mnist"),)
    assert function.dependencies[1] == ("global", "SCALE", "__main__ = 3", "29769192c7af9e97a9fd7c167505b5bb")
    assert function.created == 1796064651.9602826 and function.compute_seconds == 4e-06
    assert function.buffers == () and function.format == 1 and function.file.endswith(".ptd")
    cell = EntryHeader.from_json(json.loads(OLD_CELL))
    assert cell.kind == "cell" and cell.names == ("X", "summary") and cell.groupby == ()
    assert EntryHeader.from_json(json.loads(OLD_MANUAL)).kind == "manual"


def test_a_header_round_trips_through_json_text():
    header = EntryHeader(
        func="features", key="ab" * 16, args={"window": "3"}, created=1.5, kind="cell", module="__main__",
        code_version="c1", compute_seconds=0.25, groupby=(), names=("X",), unpicklable=("conn",), source="X = 1\n",
    )
    text = json.dumps(header.to_json())
    assert EntryHeader.from_json(json.loads(text)) == header
    assert EntryHeader.from_json(EntryHeader().to_json()) == EntryHeader()


def test_every_field_set_round_trips_and_is_written_as_plain_json():
    """to_json gives what json.loads gives back (lists, dicts): the same object whether a header is
    written now or read from a file, and every field comes back equal."""
    header = EntryHeader(
        func="f", key="ab" * 16, args={"x": "1"}, created=2.0, kind="function", module="m", code_version="c",
        compute_seconds=0.5, groupby=(("dataset", "mnist"),), dependencies=(("function", "g", "m", "d1"),),
        arg_digests={"x": "d2"}, key_format="ptd-key-3", names=("X",), unpicklable=("conn",), source="s",
        file="k.ptd", format=2, pickle_size=10, buffers=((64, 8), (72, 8)), payload_size=80, checksum="e" * 32,
    )
    unset = [f.name for f in dataclasses.fields(EntryHeader) if getattr(header, f.name) in (None, {})]
    assert unset == ["extra"]  # this test sets every field: a new one joins it
    data = header.to_json()
    assert data == json.loads(json.dumps(data))
    assert EntryHeader.from_json(data) == header


def test_unknown_keys_of_a_newer_version_are_kept_and_written_back(tmp_path: Path):
    data = {**json.loads(OLD_FUNCTION), "shard": {"host": "gpu-3", "rank": [0, 1]}, "kind": "notebook-function"}
    header = EntryHeader.from_json(data)
    assert header.extra == {"shard": {"host": "gpu-3", "rank": [0, 1]}, "kind": "notebook-function"}
    assert header.kind == "function", "an unknown kind reads as a function's entry, as the catalog always did"
    assert header.to_json() == data
    store = LocalStore(tmp_path)  # and through an entry file: written, read, parsed, nothing lost
    store.put("f/0/x.ptd", 1, header.to_json())
    again = EntryHeader.from_json(read_header_file(tmp_path / "f" / "0" / "x.ptd"))
    assert again.extra == header.extra and again.args == header.args and again.file == "x.ptd"


@pytest.mark.parametrize(
    ("field", "value"),
    [("created", "yesterday"), ("args", ["x"]), ("groupby", [["dataset"]]), ("manual", "yes"),
     ("dependencies", [["function", "f", "m.py:1"]]), ("names", "X"), ("compute_seconds", True)],
)
def test_a_field_of_the_wrong_type_is_a_clear_error_naming_it(field, value):
    data = {**json.loads(OLD_FUNCTION), field: value}
    with pytest.raises(HeaderError, match=repr(field)) as caught:
        EntryHeader.from_json(data)
    assert caught.value.field == field and isinstance(caught.value, ValueError)
    assert header_of(data) is None
    with pytest.raises(HeaderError, match="JSON object"):
        EntryHeader.from_json([1, 2])  # type: ignore[arg-type]


def test_a_listing_shows_an_entry_with_an_unreadable_header_as_unknown_not_a_crash(tmp_path: Path):
    header = {**json.loads(OLD_FUNCTION), "created": "yesterday"}
    entry = EntryInfo("x.ptd", tmp_path / "x.ptd", 10, time.time(), header)
    assert entry.status == "ok" and entry.created is None and entry.args == {} and entry.owner == "?"
    assert entry.code_version is None and entry.kind == "unknown" and entry.matches("")


@pytest.mark.parametrize("face", ["decorator", "manual_cache"])
def test_the_faces_write_the_keys_the_previous_release_wrote(cache_root: Path, face: str):
    """On disk nothing moves: the same keys, with values of the same types, and the key format added
    (old readers read new entries)."""

    def train(dataset, lr=0.1):
        return len(dataset)

    if face == "decorator":
        ptd.persistf(groupby=["dataset"])(train)("mnist", lr=0.01)
        old = json.loads(OLD_FUNCTION)
    else:
        ptd.manual_cache("weights", {"w": 1}, write=True)
        old = json.loads(OLD_MANUAL)
    [path] = [p for p in cache_root.rglob("*.ptd") if not p.name.startswith(".")]
    new = read_header_file(path)
    assert new.pop("key_format") == "ptd-key-3"  # the one key added since: older readers keep it as unknown
    assert list(new) == list(old)
    assert {k: type(v) for k, v in new.items()} == {k: type(v) for k, v in old.items()}
    assert os.path.basename(path) == new["file"]
