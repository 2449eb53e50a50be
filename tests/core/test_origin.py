"""Project identity across machines: a project with a git origin is named by that URL, everywhere."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import persist_to_disk as ptd
from persist_to_disk.origin import git_origin, normalized_url, origin_id


def _clone(where: Path, origin: str | None) -> Path:
    root = where / "proj"
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    if origin is not None:
        subprocess.run(["git", "-C", str(root), "remote", "add", "origin", origin], check=True)
    return root


def _on_machine(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(home))
    ptd.config.reset()


@pytest.mark.parametrize(
    "url",
    [
        "git@github.com:Lab/sim.git",
        "https://github.com/Lab/sim",
        "https://user@GitHub.com/Lab/sim.git/",
        "ssh://git@github.com:22/Lab/sim.git",
    ],
)
def test_one_repository_however_its_url_is_spelled(url: str) -> None:
    assert normalized_url(url) == "github.com/Lab/sim"


def test_checkouts_on_two_machines_share_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = "git@github.com:lab/proj.git"
    a = _clone(tmp_path / "alice" / "src", url)
    b = _clone(tmp_path / "bob" / "work" / "checkouts", "https://github.com/lab/proj")
    _on_machine(tmp_path / "alice", monkeypatch)
    ptd.config.project_folder_name(_clone(tmp_path / "alice" / "other", None))  # alice saw another project first
    name_a = ptd.config.project_folder_name(a)
    _on_machine(tmp_path / "bob", monkeypatch)
    assert ptd.config.project_folder_name(b) == name_a == f"proj-{origin_id(a)}"
    assert git_origin(b) == "https://github.com/lab/proj"


def test_two_projects_of_one_name_never_share(tmp_path: Path) -> None:
    a = _clone(tmp_path / "a", "git@github.com:lab/proj.git")
    b = _clone(tmp_path / "b", "git@github.com:other-lab/proj.git")
    c = _clone(tmp_path / "c", None)
    names = {ptd.config.project_folder_name(p) for p in (a, b, c)}
    assert len(names) == 3 and "proj-1" in names  # without an origin: numbered, as before


def test_an_existing_id_is_kept(tmp_path: Path, isolated_home: Path) -> None:
    root = _clone(tmp_path, "git@github.com:lab/proj.git")
    registry = isolated_home / ".cache" / "persist_to_disk" / "project_to_pids.txt"
    registry.parent.mkdir(parents=True, exist_ok=True)
    registry.write_text(f"{root}||7\n")
    assert ptd.config.project_folder_name(root) == "proj-7"


def test_a_worktree_reads_its_repository_origin(tmp_path: Path) -> None:
    root = _clone(tmp_path, "git@github.com:lab/proj.git")
    subprocess.run(["git", "-C", str(root), "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q",
                    "--allow-empty", "-m", "first"], check=True)
    tree = tmp_path / "tree"
    subprocess.run(["git", "-C", str(root), "worktree", "add", "-q", str(tree)], check=True)
    assert origin_id(tree) == origin_id(root) is not None
