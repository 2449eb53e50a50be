"""persist_to_disk/objectindex.py: listing a shared store without one GET per entry.

Requests are counted on the server's side (moto's request log), so what is counted is what
a real store would be asked.
"""

from __future__ import annotations

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


def _scan_function(catalog: Catalog):  # noqa: ANN202
    project = catalog.projects()[0]
    (function,) = catalog.functions(project)
    return catalog.scan(catalog.function_node(project, function))


def test_listing_50_entries_reads_one_index_shard_not_50_headers(
    s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _write_in_another_machine(s3_env, tmp_path, 50)
    _become_b(s3_env, tmp_path, monkeypatch)
    caplog.set_level(logging.INFO, logger="werkzeug")
    catalog = Catalog()
    project = catalog.projects()[0]
    (function,) = catalog.functions(project)
    node = catalog.function_node(project, function)
    caplog.clear()
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
