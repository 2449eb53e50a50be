"""``ptd ls / prune / clear`` and the catalog on a shared store: they list the bucket and delete objects.

Machine a fills the bucket (this process, its own HOME); machine b is a fresh HOME with
nothing copied yet, running ``ptd`` in a subprocess as a user's terminal would, with
``persist_path = s3://...`` in its config.ini. The S3 server is moto on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import persist_to_disk as ptd
from persist_to_disk import objectindex

ROOT = Path(__file__).resolve().parents[2]


@ptd.persistf(groupby=["dataset"])
def train(dataset, lr):
    return [lr] * 1000


@ptd.persistf()
def square(x):
    return x * x


def _fill(become_machine: Callable[[str, str], Path], tmp_path: Path, url: str) -> Path:
    """Machine a caches 4 calls of train (grouped by dataset) and 3 of square; returns a's HOME."""
    (tmp_path / "proj").mkdir()
    home = become_machine("a", url)
    for dataset in ("MNIST", "CIFAR"):
        for lr in (0.1, 0.01):
            train(dataset, lr)
    for x in range(3):
        square(x)
    objectindex.flush_all()  # as a's process would at exit: its index shards are written
    return home


def _machine_b(tmp_path: Path, url: str) -> dict[str, str]:
    """The environment of machine b's terminal: its own HOME, persist_path in its config.ini."""
    home = tmp_path / "b"
    settings = home / ".cache" / "persist_to_disk"
    settings.mkdir(parents=True)
    (settings / "config.ini").write_text(f"[global_settings]\npersist_path = {url}\n", encoding="utf-8")
    return {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT)}


def ptd_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: PLW1510 (the exit code is what is tested)
        [sys.executable, "-m", "persist_to_disk", *args], capture_output=True, text=True, env=env, timeout=120,
    )


def _objects(url: str) -> list[str]:
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
    return sorted(p for p in fs.find(url) if p.endswith(".ptd"))


def _files(folder: Path) -> list[Path]:
    """The files of a tree of local copies (the kernel lock files of ``.locks`` aside)."""
    found = folder.rglob("*") if folder.exists() else []
    return sorted(p for p in found if not p.is_dir() and ".locks" not in p.parts)


def test_ptd_ls_on_another_machine_lists_the_bucket(s3_env: str, tmp_path: Path, become_machine) -> None:
    _fill(become_machine, tmp_path, s3_env)
    env = _machine_b(tmp_path, s3_env)
    run = ptd_cli(env, "ls")
    assert run.returncode == 0, run.stderr
    assert f"persist path: {s3_env}" in run.stdout
    assert "proj-1" in run.stdout and " 7 " in run.stdout  # b has copied nothing, yet sees a's 7 entries
    run = ptd_cli(env, "ls", "proj-1", "--json")
    functions = {f["name"]: f for f in json.loads(run.stdout)["functions"]}
    assert functions["train"]["entries"] == 4 and functions["train"]["groupby"] == ["dataset"]
    assert functions["square"]["entries"] == 3
    path = next(f["path"] for f in functions.values() if f["name"] == "train")
    run = ptd_cli(env, "ls", "proj-1", path + "/dataset=MNIST", "--json")
    assert run.returncode == 0, run.stderr
    entries = json.loads(run.stdout)["entries"]
    assert sorted(e["args"]["lr"] for e in entries) == ["0.01", "0.1"]
    assert {e["status"] for e in entries} == {"ok"} and {e["current"] for e in entries} == {True}
    copies = tmp_path / "b" / ".cache" / "persist_to_disk" / "copies"
    assert not list(copies.rglob("*.ptd"))  # listing reads headers, it does not download entries


def test_ptd_clear_on_another_machine_deletes_the_objects(s3_env: str, tmp_path: Path, become_machine) -> None:
    _fill(become_machine, tmp_path, s3_env)
    env = _machine_b(tmp_path, s3_env)
    run = ptd_cli(env, "clear", "proj-1", "--yes")
    assert run.returncode == 0, run.stderr
    assert "Deleted 7 entries" in run.stdout
    assert _objects(s3_env) == []
    assert ptd_cli(env, "ls").stdout.endswith("no projects cached yet\n")


def test_clear_and_prune_leave_no_local_copy_nor_sidecar(s3_env: str, tmp_path: Path, become_machine) -> None:
    """The writing machine has a local copy of each entry and an .etag sidecar beside it: a prune and a
    clear on it remove the objects, the copies and the sidecars, and the folders left empty."""
    home = _fill(become_machine, tmp_path, s3_env)
    copies = home / ".cache" / "persist_to_disk" / "copies"
    assert [p.name for p in _files(copies) if p.name.endswith(".etag")]
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT)}
    settings = home / ".cache" / "persist_to_disk"
    (settings / "config.ini").write_text(f"[global_settings]\npersist_path = {s3_env}\n", encoding="utf-8")
    train_path = json.loads(ptd_cli(env, "ls", "proj-1", "--json").stdout)["functions"]
    train = next(f["path"] for f in train_path if f["name"] == "train")
    run = ptd_cli(env, "prune", "proj-1", train, "--older-than", "0s", "--yes")
    assert run.returncode == 0, run.stderr
    assert "Deleted 4 entries" in run.stdout
    assert len(_objects(s3_env)) == 3
    assert not [p for p in _files(copies) if train.split("/")[-1] in p.parts]  # no copy, no sidecar
    run = ptd_cli(env, "clear", "proj-1", "--yes")
    assert run.returncode == 0, run.stderr
    assert _objects(s3_env) == [] and _files(copies) == []


def test_the_panel_on_another_machine_lists_and_invalidates_in_the_bucket(
    s3_env: str, tmp_path: Path, become_machine
) -> None:
    """ptd.browse() headless on machine b (nothing copied): a's entries, and "Invalidate all" deletes objects."""
    pytest.importorskip("ipywidgets", reason="the panel needs ipywidgets")
    _fill(become_machine, tmp_path, s3_env)
    become_machine("b", s3_env)
    panel = ptd.browse(project="proj-1", background=False)
    assert s3_env in panel.title.value  # the panel names the bucket, not this machine's copies
    assert len(panel.state.entries) == 7 and "7 entries" in panel.totals.value
    assert {e.status for e in panel.state.entries} == {"ok"}
    panel.invalidate_node_button.click()
    assert "Delete all 7 entries in proj-1" in panel.confirm_message.value
    panel.confirm_button.click()
    assert "Deleted 7 entries" in panel.status.value
    assert _objects(s3_env) == []
