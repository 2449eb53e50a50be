"""A full disk, a read-only cache folder, a persist_path that is a file.

The user's call always returns its computed value, with exactly one CacheWarning
saying the result was not cached, and no half-written file stays behind. The disk
fills for real on a tiny tmpfs mounted in a private mount namespace (``unshare -m``,
root only) and, everywhere, through the ``PTD_TEST_FAULT=middle:enospc`` hook, which
raises ENOSPC after half of the value was written.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest

import persist_to_disk as ptd

BIG = 2 * 1024 * 1024
SMALL = 8 * 1024


@functools.cache
def _can_unshare_mounts() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt && umount /mnt"],
        capture_output=True,
    )
    return probe.returncode == 0


def _tmpfs(folder: Path, size: str) -> list[str]:
    """Run the worker with a tiny tmpfs mounted on folder, seen by that process only."""
    return ["unshare", "-m", "sh", "-c", f'mount -t tmpfs -o size={size} tmpfs "$0" && exec "$@"', str(folder)]


def _read_only(folder: Path) -> list[str]:
    return ["unshare", "-m", "sh", "-c", 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"',
            str(folder)]


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def test_enospc_mid_write_returns_the_value_with_one_warning_and_leaves_nothing(rel, tmp_path, persist):
    log = tmp_path / "log"
    args = {"persist": str(persist), "size": BIG, "log": str(log), "sizes": {"keep": SMALL}}
    rel.run("call", {**args, "keys": ["keep"]})
    before = _files(persist)
    out = rel.run("call", {**args, "keys": ["keep", "new"]}, env={"PTD_TEST_FAULT": "middle:enospc"})
    assert out["results"] == [{"key": "keep", "ok": True}, {"key": "new", "ok": True}]
    assert len(out["warnings"]) == 1, out["warnings"]
    assert "rel_big was not cached" in out["warnings"][0] and "No space left on device" in out["warnings"][0]
    after = _files(persist)
    assert {k: v for k, v in after.items() if not k.endswith(".lock")} == {
        k: v for k, v in before.items() if not k.endswith(".lock")
    }, "something half-written stayed"
    assert rel.temp_files(persist) == []
    again = rel.run("call", {**args, "keys": ["keep", "new"]})  # space again: computed and cached
    assert again["warnings"] == [] and all(r["ok"] for r in again["results"])
    assert [k for _, k in rel.worker.read_log(log)] == ["keep", "new", "new"]
    rel.count(faults=1, operations=5)


@pytest.mark.skipif(not _can_unshare_mounts(), reason="needs root and unshare -m to mount a tmpfs")
def test_a_really_full_tmpfs(rel, tmp_path, persist):
    persist.mkdir(parents=True)
    log = tmp_path / "log"
    args = {"persist": str(persist), "size": BIG, "log": str(log), "sizes": {"small": SMALL}, "list_tree": True}
    out = rel.run("call", {**args, "keys": ["small", "big", "small", "big"]}, prefix=_tmpfs(persist, "512k"))
    assert [r["ok"] for r in out["results"]] == [True] * 4
    assert len(out["warnings"]) == 2, out["warnings"]  # one per call of big: each call says it was not cached
    assert all("No space left on device" in w for w in out["warnings"])
    assert not [f for f in out["tree"] if f.endswith(".tmp")], out["tree"]
    assert len([f for f in out["tree"] if f.endswith(".ptd")]) == 1  # small, intact; nothing of big
    assert [k for _, k in rel.worker.read_log(log)] == ["small", "big", "big"]  # small hit the second time
    rel.count(faults=2, operations=4)


@pytest.mark.skipif(not _can_unshare_mounts(), reason="needs root and unshare -m to mount a tmpfs")
def test_a_full_disk_loses_the_seeds_whole_bucket(rel, tmp_path, persist):
    """Honesty: the seed's in-place bucket rewrite, hit by the same ENOSPC, loses the entry already there."""
    persist.mkdir(parents=True)
    log = tmp_path / "log"
    args = {"persist": str(persist), "size": BIG, "log": str(log), "sizes": {"small": SMALL}, "design": "seed"}
    rel.run("call", {**args, "keys": ["small", "big", "small"]}, prefix=_tmpfs(persist, "512k"))
    assert [k for _, k in rel.worker.read_log(log)] == ["small", "big", "small"]  # small was lost: recomputed


def test_read_only_cache_folder(rel, tmp_path, persist):
    log = tmp_path / "log"
    args = {"persist": str(persist), "size": SMALL, "log": str(log)}
    rel.run("call", {**args, "keys": ["keep"]})
    before = _files(persist)
    if _can_unshare_mounts():
        prefix = _read_only(persist)
    elif os.geteuid() != 0:
        prefix = None
        for folder in [persist, *[p for p in persist.rglob("*") if p.is_dir()]]:
            folder.chmod(0o500)
    else:
        pytest.skip("root without unshare -m: a read-only folder cannot be made")
    try:
        out = rel.run("call", {**args, "keys": ["keep", "new", "new"]}, prefix=prefix)
    finally:
        for folder in [persist, *[p for p in persist.rglob("*") if p.is_dir()]]:
            folder.chmod(0o700)
    assert [r["ok"] for r in out["results"]] == [True, True, True]
    assert len(out["warnings"]) == 2, out["warnings"]  # one for each call of "new"; the hit says nothing
    assert "runs without the cache" in out["warnings"][0]
    assert _files(persist) == before
    assert [k for _, k in rel.worker.read_log(log)] == ["keep", "new", "new"]
    rel.count(faults=1, operations=3)


def test_persist_path_that_is_a_file(rel, tmp_path):
    afile = tmp_path / "not-a-folder"
    afile.write_text("mine")
    ptd.config.set_persist_path(afile)

    @ptd.persistf
    def double(x):
        return 2 * x

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert double(21) == 42
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and issubclass(caught[0].category, ptd.CacheWarning)
    assert str(afile) in messages[0] and "a file is in the way" in messages[0]
    assert afile.read_text() == "mine"
    rel.count(faults=1, operations=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ptd.manual_cache("k") is None  # a read finds nothing there, quietly
