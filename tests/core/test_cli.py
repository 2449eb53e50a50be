"""``python -m persist_to_disk`` / ``ptd``: run as a user would, in subprocesses.

The cache is filled in this process by real persisted functions; the CLI finds it
through config.ini in the temp HOME (as a user's terminal would) or ``--root``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import persist_to_disk as ptd


@pytest.fixture
def cache(tmp_path: Path, isolated_home: Path) -> Path:
    """persist_path set in config.ini of the temp HOME, so a plain `ptd ls` finds it."""
    root = tmp_path / "cache"
    settings = isolated_home / ".cache" / "persist_to_disk"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "config.ini").write_text(f"[global_settings]\npersist_path = {root}\n", encoding="utf-8")
    ptd.config.reset()
    (tmp_path / "proj").mkdir()
    ptd.config.set_project_path(tmp_path / "proj")
    return root


@pytest.fixture
def filled(cache: Path):
    calls: list = []

    @ptd.persistf(groupby=["dataset"])
    def train(dataset, lr):
        calls.append((dataset, lr))
        return [0] * 1000

    @ptd.persistf()
    def square(x):
        calls.append(x)
        return x * x

    for dataset in ("MNIST", "CIFAR"):
        for lr in (0.1, 0.01):
            train(dataset, lr)
    for x in range(3):
        square(x)
    return train, square, calls


def ptd_cli(*args: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: PLW1510 (the exit code is what is tested)
        [sys.executable, "-m", "persist_to_disk", *args],
        capture_output=True,
        text=True,
        input=stdin if stdin is not None else "",
        timeout=60,
        cwd=cwd,
        env=os.environ.copy(),
    )


def files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.ptd"))


def rel(folder: Path, cache: Path) -> str:
    return "/".join(folder.relative_to(cache).parts[1:])


def project_name(cache: Path) -> str:
    (name,) = [p.name for p in cache.iterdir() if not p.name.startswith(".")]
    return name


# ------------------------------------------------------------------------------------------------ ls
def test_ls_lists_projects_functions_and_entries(filled, cache, tmp_path):
    train, _square, _ = filled
    name = project_name(cache)
    out = ptd_cli("ls")
    assert out.returncode == 0, out.stderr
    assert f"persist path: {cache}" in out.stdout
    assert name in out.stdout and str(tmp_path / "proj") in out.stdout and " 7 " in out.stdout

    out = ptd_cli("ls", name)
    assert out.returncode == 0, out.stderr
    assert "train" in out.stdout and "square" in out.stdout and "dataset" in out.stdout
    assert "total: 7 entries" in out.stdout

    out = ptd_cli("ls", name, rel(train.folder(), cache))
    assert out.returncode == 0, out.stderr
    assert "dataset='MNIST', lr=0.1" in out.stdout and "current" in out.stdout
    assert "total: 4 entries" in out.stdout

    out = ptd_cli("ls", name, rel(train.folder(), cache) + "/CIFAR", "--filter", "0.01")
    assert out.stdout.count("dataset='CIFAR', lr=0.01") == 1 and "total: 1 entry" in out.stdout


def test_ls_json_and_limit(filled, cache):
    _train, square, _ = filled
    name = project_name(cache)
    out = ptd_cli("ls", "--json")
    data = json.loads(out.stdout)
    assert data["projects"][0]["entries"] == 7
    out = ptd_cli("ls", name, rel(square.folder(), cache), "--json", "-n", "2")
    data = json.loads(out.stdout)
    assert data["kind"] == "function" and len(data["entries"]) == 2
    assert {e["status"] for e in data["entries"]} == {"ok"} and data["entries"][0]["args"]["x"] in {"0", "1", "2"}
    out = ptd_cli("ls", name, rel(square.folder(), cache), "-n", "1")
    assert "2 more not shown" in out.stdout


def test_ls_root_option_and_empty_cache(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = ptd_cli("ls", "--root", str(empty))
    assert out.returncode == 0 and "no projects cached yet" in out.stdout
    out = ptd_cli("ls", "--root", str(tmp_path / "missing"))
    assert out.returncode == 3 and "no such folder" in out.stderr


def test_unknown_project_or_path_exits_3_and_says_what_exists(filled, cache):
    name = project_name(cache)
    out = ptd_cli("ls", "nope")
    assert out.returncode == 3 and f"projects there: {name}" in out.stderr and out.stdout == ""
    out = ptd_cli("ls", name, "no/such/function")
    assert out.returncode == 3 and "nothing is cached at 'no/such/function'" in out.stderr


def test_usage_errors_exit_2(filled):
    assert ptd_cli().returncode == 2
    out = ptd_cli("prune")
    assert out.returncode == 2 and "at least one of --older-than" in out.stderr
    out = ptd_cli("prune", "--max-size", "10Q")
    assert out.returncode == 2 and "e.g. 10G" in out.stderr
    out = ptd_cli("prune", "--older-than", "soon")
    assert out.returncode == 2 and "e.g. 30d" in out.stderr


# ---------------------------------------------------------------------------------------------- info
def test_info_settings_node_and_entry(filled, cache):
    train, _square, _ = filled
    name = project_name(cache)
    out = ptd_cli("info")
    assert out.returncode == 0 and str(cache) in out.stdout and "config_file" in out.stdout
    out = ptd_cli("info", name, rel(train.folder(), cache), "--json")
    data = json.loads(out.stdout)
    assert data["kind"] == "function" and data["entries"] == 4 and data["groupby"] == ["dataset"]
    entry = files(train.folder())[0]
    out = ptd_cli("info", str(entry), "--json")
    data = json.loads(out.stdout)
    assert out.returncode == 0 and data["header"]["func"].endswith("train") and data["status"] == "ok"
    entry.write_bytes(b"PTDE broken")
    out = ptd_cli("info", str(entry))
    assert out.returncode == 1 and "corrupt" in out.stdout


# --------------------------------------------------------------------------------------------- clear
def test_clear_needs_yes_without_a_terminal_and_deletes_with_it(filled, cache):
    train, square, calls = filled
    name = project_name(cache)
    path = rel(train.folder(), cache)
    out = ptd_cli("clear", name, path)
    assert out.returncode == 1 and "refusing without --yes" in out.stderr
    assert len(files(train.folder())) == 4
    out = ptd_cli("clear", name, path, "--dry-run")
    assert out.returncode == 0 and "would delete 4 entries" in out.stdout and len(files(train.folder())) == 4
    out = ptd_cli("clear", name, path, "--yes")
    assert out.returncode == 0, out.stderr
    assert "Deleted 4 entries, freed" in out.stdout
    assert not train.folder().exists() and len(files(square.folder())) == 3
    before = len(calls)
    train("MNIST", 0.1)  # invalidated: computed again
    assert len(calls) == before + 1
    out = ptd_cli("clear", "--yes")
    assert out.returncode == 3 and "clear needs a PROJECT" in out.stderr


def test_clear_whole_project(filled, cache):
    name = project_name(cache)
    out = ptd_cli("clear", name, "-y")
    assert out.returncode == 0 and "Deleted 7 entries" in out.stdout
    assert files(cache) == []


# --------------------------------------------------------------------------------------------- prune
def test_prune_older_than_uses_last_read(filled, cache):
    _train, square, _ = filled
    victims = files(square.folder())[:2]
    old = time.time() - 40 * 86400
    for path in victims:
        os.utime(path, (old, old))
    out = ptd_cli("prune", "--older-than", "30d", "--dry-run")
    assert out.returncode == 0 and "would delete 2 entries" in out.stdout and all(p.exists() for p in victims)
    out = ptd_cli("prune", "--older-than", "30d", "--yes")
    assert out.returncode == 0 and "Deleted 2 entries" in out.stdout
    assert not any(p.exists() for p in victims) and len(files(cache)) == 5
    out = ptd_cli("prune", "--older-than", "30d", "--yes")
    assert out.returncode == 0 and "nothing to prune" in out.stdout


def test_prune_max_size_removes_least_recently_read_first(filled, cache):
    all_files = files(cache)
    now = time.time()
    for i, path in enumerate(all_files):  # all_files[0] is the least recently read
        os.utime(path, (now - 1000 + i, now - 1000 + i))
    sizes = [p.stat().st_size for p in all_files]
    limit = sum(sizes[3:])
    out = ptd_cli("prune", "--max-size", str(limit), "--yes")
    assert out.returncode == 0, out.stderr
    assert [p.exists() for p in all_files] == [False] * 3 + [True] * (len(all_files) - 3)
    assert sum(p.stat().st_size for p in files(cache)) <= limit


def test_prune_old_versions(cache):
    calls: list = []

    def make(version):
        @ptd.persistf(version=version)
        def f(x):
            calls.append(x)
            return x

        return f

    old, new = make("1"), make("2")
    old(1)
    old(2)
    time.sleep(0.01)
    new(1)
    name = project_name(cache)
    out = ptd_cli("prune", name, "--old-versions", "--yes")
    assert out.returncode == 0 and "Deleted 2 entries" in out.stdout, out.stdout + out.stderr
    assert new.cache.contains(1) and not old.cache.contains(1) and len(files(cache)) == 1


def test_prune_old_versions_removes_entries_of_an_older_key_format(cache, previous_key_format):
    """Entries kept from before an upgrade that changed the key format are never hit again: they are of
    an old version even when their code is not, and `ls` says so; the entry written since stays."""

    def make():
        @ptd.persistf()
        def f(x):
            return x

        return f

    with previous_key_format():
        before = make()
        before(1)
        before(2)
    f = make()
    f(1)
    assert len(files(cache)) == 3
    name = project_name(cache)
    listed = json.loads(ptd_cli("ls", name, rel(f.folder(), cache), "--json").stdout)
    assert sorted(e["current"] for e in listed["entries"]) == [False, False, True]
    out = ptd_cli("prune", name, "--old-versions", "--yes")
    assert out.returncode == 0 and "Deleted 2 entries" in out.stdout, out.stdout + out.stderr
    assert f.cache.contains(1) and not f.cache.contains(2) and len(files(cache)) == 1


def test_declining_at_the_prompt_deletes_nothing(filled, cache):
    """With a terminal the CLI asks; `n` keeps everything (run under a pseudo-terminal)."""
    pty = pytest.importorskip("pty")
    name = project_name(cache)
    before = files(cache)
    pid, fd = pty.fork()
    if pid == 0:  # child: the CLI with the pty as its terminal
        os.execve(sys.executable, [sys.executable, "-m", "persist_to_disk", "clear", name], os.environ.copy())
    output = b""
    deadline = time.monotonic() + 30
    while b"[y/N]" not in output and time.monotonic() < deadline:
        try:
            output += os.read(fd, 1024)
        except OSError:
            break
    os.write(fd, b"n\n")
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    assert b"Delete 7 entries" in output and b"nothing deleted" in output
    assert os.waitstatus_to_exitcode(status) == 1
    assert files(cache) == before


def test_console_script_runs_the_same_main(filled, cache):
    """`ptd` (pyproject's [project.scripts]) is cli.main; run it when the package is installed."""
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text(encoding="utf-8")
    assert 'ptd = "persist_to_disk.cli:main"' in pyproject
    script = Path(sys.executable).parent / ("ptd.exe" if os.name == "nt" else "ptd")
    if not script.exists():
        pytest.skip(f"the package is not installed into {Path(sys.executable).parent} (pip install -e .)")
    out = subprocess.run(
        [str(script), "ls"], check=False, capture_output=True, text=True, timeout=60, env=os.environ.copy()
    )
    assert out.returncode == 0 and project_name(cache) in out.stdout


def test_help_lists_the_commands():
    out = ptd_cli("--help")
    assert out.returncode == 0
    for command in ("ls", "info", "clear", "prune"):
        assert command in out.stdout
    assert "Exit codes" in out.stdout


# ------------------------------------------------------------------------------- one vocabulary with the panel
def test_a_groupby_folder_is_named_argument_equals_value_as_in_the_panel(filled, cache):
    train, _square, _calls = filled
    project = project_name(cache)
    grouped = rel(train.folder(), cache) + "/dataset=MNIST"  # what the panel's tree shows
    out = ptd_cli("ls", project, grouped)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].startswith(f"{project} {grouped} (group)")
    assert out.stdout.count("dataset='MNIST'") == 2 and "CIFAR" not in out.stdout
    assert ptd_cli("ls", project, rel(train.folder(), cache) + "/MNIST").stdout == out.stdout  # the folder too
    assert ptd_cli("clear", project, grouped, "--dry-run").stdout.startswith("would delete 2 entries (")
    assert f"in {project} {grouped}" in ptd_cli("clear", project, grouped, "--dry-run").stdout


def test_functions_and_cells_are_named_as_in_the_panel(filled, cache):
    from persist_to_disk.store import LocalStore

    _train, square, _calls = filled
    project = project_name(cache)
    header = {"func": "features", "kind": "cell", "args": {"window": "3"}, "names": ["X", "summary"],
              "code_version": "c1", "created": time.time(), "compute_seconds": 11520.0, "groupby": []}
    LocalStore(cache / project).put("nb/features/1/" + "c" * 32 + ".ptd", "v", header)
    listing = ptd_cli("ls", project).stdout
    assert "cell features" in listing and "square()" in listing and "train()" in listing
    entries = ptd_cli("ls", project, "nb", "--filter", "window").stdout
    assert "FUNCTION" in entries.splitlines()[1] and "cell features" in entries  # rows of several: whose is each
    assert "window=3 → X, summary" in entries and "3 h 12 min" in entries
    assert "3 h 12 min to recompute" in entries.splitlines()[-1]
    one = ptd_cli("ls", project, rel(square.folder(), cache)).stdout
    assert "FUNCTION" not in one and "current" in one
