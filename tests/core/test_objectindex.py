"""persist_to_disk/objectindex.py: listing a shared store without one GET per entry.

Requests are counted on the server's side (moto's request log), so what is counted is what
a real store would be asked.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

import persist_to_disk as ptd
from persist_to_disk import objectindex
from persist_to_disk.catalog import Catalog

ROOT = Path(__file__).resolve().parents[2]

WRITER = """
import sys
import persist_to_disk as ptd
ptd.config.set_persist_path(sys.argv[1])
ptd.config.set_project_path(sys.argv[2])

@ptd.persistf()
def square(x):
    return x * x

for x in range(int(sys.argv[3])):
    square(x)
"""


def _write_in_another_machine(url: str, tmp_path: Path, n: int) -> None:
    """Machine a: a process of its own HOME computes n entries into the store, then exits."""
    (tmp_path / "proj").mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(tmp_path / "a"), "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", WRITER, url, str(tmp_path / "proj"), str(n)], env=env, check=True,
                   cwd=str(tmp_path), timeout=300)


def _become_b(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "b").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "b"))
    ptd.config.reset()
    ptd.config.set_persist_path(url)


def _object_gets(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The GETs of objects (not LISTs) the server answered since the log was cleared."""
    lines = [r.getMessage() for r in caplog.records if r.name == "werkzeug"]
    return [line for line in lines if "GET /" in line and "list-type=" not in line]


def _function_node(catalog: Catalog):  # noqa: ANN202
    """The panel's node of the one function the other machine cached."""
    project = catalog.projects()[0]
    (function,) = catalog.functions(project)
    return catalog.function_node(project, function)


def _scan_function(catalog: Catalog):  # noqa: ANN202
    return catalog.scan(_function_node(catalog))


def test_listing_50_entries_reads_one_index_shard_not_50_headers(
    s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _write_in_another_machine(s3_env, tmp_path, 50)
    _become_b(s3_env, tmp_path, monkeypatch)
    caplog.set_level(logging.INFO, logger="werkzeug")
    catalog = Catalog()
    node = _function_node(catalog)
    caplog.clear()  # the requests of the listing alone are counted
    listing = catalog.scan(node)
    assert sorted(e.args["x"] for e in listing.entries) == sorted(str(x) for x in range(50))
    assert {e.status for e in listing.entries} == {"ok"}
    gets = _object_gets(caplog)
    assert len(gets) == 1 and objectindex.INDEX_FOLDER in gets[0]  # machine a's shard, nothing else

    import s3fs  # without the index (its shard deleted), the same listing reads every header

    fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
    for shard in [p for p in fs.find(s3_env) if objectindex.INDEX_FOLDER in p]:
        fs.rm_file(shard)
    caplog.clear()
    listing = Catalog().scan(node)
    assert len(listing.entries) == 50 and {e.status for e in listing.entries} == {"ok"}
    assert len(_object_gets(caplog)) == 50


def test_a_replaced_or_deleted_entry_is_listed_as_the_store_has_it(
    s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows of an index can be stale (another machine replaced the object, or deleted it, without
    rewriting this writer's shard): the listing shows the object that is there."""
    _write_in_another_machine(s3_env, tmp_path, 5)
    _become_b(s3_env, tmp_path, monkeypatch)
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
    listing = _scan_function(Catalog())
    by_x = {e.args["x"]: e for e in listing.entries}
    replaced, deleted = by_x["1"], by_x["2"]
    url = s3_env + "/" + replaced.key
    # another writer replaces entry x=1 with other content under the same key (its own shard is lost),
    # and entry x=2 is deleted with a tool that knows nothing of the index
    body = fs.cat_file(s3_env + "/" + by_x["3"].key)
    fs.pipe_file(url, body)
    fs.rm_file(s3_env + "/" + deleted.key)
    listing = _scan_function(Catalog())
    shown = sorted(e.args["x"] for e in listing.entries)
    assert shown == ["0", "3", "3", "4"]  # x=2 gone; under x=1's key, the object now there (x=3's)
    assert {e.status for e in listing.entries} == {"ok"}


def _shards(fs, url: str) -> dict[str, dict]:  # noqa: ANN001 (an s3fs filesystem)
    """Every index shard under url as the server holds it: path -> {"etag", "size", "rows"}."""
    found = fs.find(url, detail=True)
    return {
        path: {"etag": info["ETag"], "size": info["size"], "rows": len(json.loads(fs.cat_file(path))["rows"])}
        for path, info in found.items()
        if objectindex.INDEX_FOLDER in path
    }


@ptd.persistf()
def describe(text):
    return text


def _long(x: int) -> str:
    """An argument long enough that rows weigh what real headers do."""
    return f"{x}-" + "long argument " * 20


def _x_of(entry) -> int:  # noqa: ANN001 (an EntryInfo)
    return int(entry.args["text"].strip("'").partition("-")[0])


def _become_a_with_shards_of(rows: int, url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """This process as machine a writing into url, shards of ``rows`` rows, flushed only when the test
    says; the s3fs filesystem the test looks at the store with."""
    import s3fs

    monkeypatch.setattr(objectindex, "SHARD_ROWS", rows)
    monkeypatch.setattr(objectindex, "FLUSH_DELAY", 3600.0)
    (tmp_path / "a").mkdir()
    (tmp_path / "proj").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "a"))
    ptd.config.reset()
    ptd.config.set_persist_path(url)
    ptd.config.set_project_path(tmp_path / "proj")
    return s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)


def test_a_busy_writer_rolls_to_new_shards_so_a_flush_stays_bounded(
    s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A flush adds rows to the writer's last shard only, and a full shard is never rewritten: what a
    flush PUTs does not grow with the folder (it did: the writer's one shard, every row, each time).
    Readers read every shard: one GET per shard, every entry right."""
    fs = _become_a_with_shards_of(10, s3_env, tmp_path, monkeypatch)
    put_per_flush = []  # the bytes of the shard bodies each flush PUT
    before: dict[str, dict] = {}
    for x in range(35):
        describe(_long(x))
        if x % 5 == 4:  # a busy writer: a flush every 5 puts
            objectindex.flush_all()
            after = _shards(fs, s3_env)
            put_per_flush.append(sum(s["size"] for p, s in after.items() if before.get(p, {}).get("etag") != s["etag"]))
            before = after

    assert len(before) == 4  # 35 rows: shards of 10, 10, 10 and 5
    assert all(shard["rows"] <= 10 for shard in before.values())
    assert sum(shard["rows"] for shard in before.values()) == 35
    total = sum(shard["size"] for shard in before.values())
    assert max(put_per_flush) < total / 2  # at most a full shard and the start of the next

    _become_b(s3_env, tmp_path, monkeypatch)
    caplog.set_level(logging.INFO, logger="werkzeug")
    catalog = Catalog()
    node = _function_node(catalog)
    caplog.clear()  # the requests of the listing alone are counted
    listing = catalog.scan(node)
    assert sorted(_x_of(e) for e in listing.entries) == list(range(35))
    assert {e.status for e in listing.entries} == {"ok"}
    gets = _object_gets(caplog)
    assert len(gets) == 4 and all(objectindex.INDEX_FOLDER in get for get in gets)


def test_deleted_entries_lose_their_rows_in_whichever_shard_holds_them(
    s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full shard is not written again for new rows, but a deletion still takes its rows out."""
    fs = _become_a_with_shards_of(4, s3_env, tmp_path, monkeypatch)
    for x in range(10):
        describe(_long(x))
        if x % 2 == 1:
            objectindex.flush_all()
    assert sorted(shard["rows"] for shard in _shards(fs, s3_env).values()) == [2, 4, 4]
    assert describe.cache.invalidate(_long(0)) and describe.cache.invalidate(_long(9))  # first and last shard
    objectindex.flush_all()
    assert sorted(shard["rows"] for shard in _shards(fs, s3_env).values()) == [1, 3, 4]

    _become_b(s3_env, tmp_path, monkeypatch)
    listing = _scan_function(Catalog())
    assert sorted(_x_of(e) for e in listing.entries) == list(range(1, 9))
    assert {e.status for e in listing.entries} == {"ok"}
