"""A cold start stays light: importing the package loads no module only some calls need, and the
first call writes nothing it flushes to the disk (with the default ``fsync = false``)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

# Each costs milliseconds to import and only some calls need it: async functions (asyncio),
# hashing arrays (numpy), a shared store (s3fs), the panel; the decorator's machinery (hashing, the
# store, locks, dataclasses and inspect) comes with the first decoration, before any call runs (a
# module first imported inside a call could be cut by a Ctrl-C there: see test_rel_hardening).
LOADED_WHEN_NEEDED = (
    "asyncio", "numpy", "s3fs", "fsspec", "ipywidgets", "IPython", "filelock",
    "persist_to_disk.persister", "persist_to_disk.store", "persist_to_disk.keys", "persist_to_disk.locks",
    "dataclasses", "inspect", "logging", "pickle",
)

_IMPORT = f"""
import json, sys
import persist_to_disk
print(json.dumps([m for m in {LOADED_WHEN_NEEDED!r} if m in sys.modules]))
"""


def test_importing_the_package_loads_nothing_only_some_calls_need(python: str) -> None:
    out = subprocess.run([python, "-c", _IMPORT], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


_PUBLIC_NAMES = """
import persist_to_disk as ptd
from persist_to_disk import ENOVAL, PersistedFunction, get_caller_cache_path, manual_cache, persistf
assert ptd.persistf is persistf and ptd.ENOVAL is ENOVAL
assert isinstance(persistf()(lambda x: x), PersistedFunction)
assert {"persistf", "PersistedFunction", "manual_cache", "get_caller_cache_path", "ENOVAL"} <= set(dir(ptd))
try:
    ptd.no_such_name
except AttributeError as exc:
    print(exc)
"""


def test_every_public_name_is_there_though_loaded_at_first_use(python: str, tmp_path: Path) -> None:
    out = subprocess.run([python, "-c", _PUBLIC_NAMES], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "module 'persist_to_disk' has no attribute 'no_such_name'"


_FIRST_CALL = """
import json, os, sys
synced = []
real_fsync = os.fsync
def spy(fd):
    synced.append(os.readlink(f"/proc/self/fd/{fd}"))
    return real_fsync(fd)
os.fsync = spy
import persist_to_disk as ptd
if sys.argv[2] == "on":
    ptd.config.set_fsync(True)

@ptd.persistf()
def inc(x):
    return x + 1

assert inc(1) == 2
print(json.dumps(synced))
"""


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads /proc to name the files")
@pytest.mark.parametrize("fsync", ["off", "on"])
def test_the_first_call_flushes_to_disk_only_with_the_fsync_setting(
    python: str, tmp_path: Path, isolated_home: Path, fsync: str
) -> None:
    """A first call on a fresh HOME registers the project and writes its entry: neither is flushed to
    the disk unless the ``fsync`` setting asks for it (then both are)."""
    out = subprocess.run(
        [python, "-c", _FIRST_CALL, str(tmp_path), fsync], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    synced = json.loads(out.stdout)
    assert (isolated_home / ".cache" / "persist_to_disk" / "project_to_pids.txt").is_file()
    if fsync == "off":
        assert synced == []
    else:
        assert any(p.endswith("project_to_pids.txt") for p in synced), synced
        assert any(p.endswith(".ptd") or ".tmp" in p for p in synced), synced
