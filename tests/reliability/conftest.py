"""Helpers of the reliability suite: worker processes, waiting on conditions, and the figures.

Every fault a test injects and every cache operation a test runs is counted in
``FIGURES``; the terminal summary prints them (they are the figures the README's
reliability section quotes). ``lost`` counts entries that should have survived
and did not: the suite asserts it stays 0.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
WORKER = HERE / "_rel_worker.py"
FIGURES: dict[str, int] = {"faults": 0, "operations": 0, "lost": 0, "processes": 0}


def count(faults: int = 0, operations: int = 0, lost: int = 0) -> None:
    FIGURES["faults"] += faults
    FIGURES["operations"] += operations
    FIGURES["lost"] += lost


def load_worker() -> Any:
    """The worker module, loaded by path (its checkers and SeedBucketStore)."""
    mod = sys.modules.get("_rel_worker")
    if mod is None:
        spec = importlib.util.spec_from_file_location("_rel_worker", WORKER)
        mod = importlib.util.module_from_spec(spec)
        sys.modules["_rel_worker"] = mod
        spec.loader.exec_module(mod)
    return mod


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, what: str = "a condition") -> Any:
    """Poll ``condition`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)


def worker_cmd(mode: str, args: dict[str, Any], prefix: list[str] | None = None) -> list[str]:
    return [*(prefix or []), sys.executable, str(WORKER), mode, json.dumps(args)]


def start(mode: str, args: dict[str, Any], env: dict[str, str] | None = None, prefix: list[str] | None = None):
    FIGURES["processes"] += 1
    return subprocess.Popen(
        worker_cmd(mode, args, prefix),
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 60.0) -> dict[str, Any]:
    """Wait for a worker (bounded) and return its JSON; fail with its stderr if it failed."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"worker did not finish within {timeout}s:\n{err[-3000:]}") from None
    assert proc.returncode == 0, f"worker failed ({proc.returncode}):\n{err[-3000:]}"
    return json.loads(out.strip().splitlines()[-1])


def run(mode: str, args: dict[str, Any], env: dict[str, str] | None = None, timeout: float = 60.0,
        prefix: list[str] | None = None) -> dict[str, Any]:
    return finish(start(mode, args, env, prefix), timeout)


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL a worker and reap it (a zombie would still look alive to the temp-file sweep)."""
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)


def assert_still_running(proc: subprocess.Popen, seconds: float) -> None:
    """A bounded look at a process that must be blocked: it must not exit within ``seconds``."""
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return
    out, err = proc.communicate()
    raise AssertionError(f"the process should still be waiting but exited {proc.returncode}:\n{out}\n{err[-3000:]}")


def tree_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def temp_files(root: Path) -> list[Path]:
    return [p for p in tree_files(root) if p.name.endswith(".tmp")]


@pytest.fixture
def rel() -> Any:
    """The helpers above, for tests (conftest modules are not importable under --import-mode=importlib)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        count=count, wait_for=wait_for, start=start, finish=finish, run=run, kill=kill,
        assert_still_running=assert_still_running,
        tree_files=tree_files, temp_files=temp_files, worker=load_worker(), figures=FIGURES,
    )


@pytest.fixture
def persist(tmp_path: Path) -> Path:
    """A persist_path for this test, set in this process too."""
    import persist_to_disk as ptd
    from persist_to_disk import trust

    folder = tmp_path / "cache"
    ptd.config.set_persist_path(folder)
    trust.forget()
    return folder


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if any(FIGURES.values()):
        terminalreporter.write_line(
            "reliability figures: {faults} faults injected, {operations} cache operations, "
            "{processes} worker processes, entries lost: {lost}".format(**FIGURES)
        )
        out = os.environ.get("PTD_REL_FIGURES")
        if out:
            Path(out).write_text(json.dumps(FIGURES))
