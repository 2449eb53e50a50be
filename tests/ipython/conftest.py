"""Fixtures for the Jupyter face: a real IPython shell, and real notebooks run by real kernels.

Kernels are started by nbclient with the kernelspec ``python3`` written into this test's
JUPYTER_DATA_DIR, pointing at the Python running the tests; they inherit the test's
environment (temp HOME, PYTHONPATH with the checkout, see tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

KERNEL_TIMEOUT = 120  # seconds per cell: a hang fails the test instead of stalling the run


# ----------------------------------------------------------------------------- a shell in this process


@pytest.fixture(scope="module")
def _shell_instance() -> Iterator[Any]:
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    saved_main = sys.modules.get("__main__")
    saved_hooks = (sys.displayhook, sys.excepthook)
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    shell.run_line_magic("load_ext", "persist_to_disk")
    try:
        yield shell
    finally:
        import persist_to_disk as ptd

        shell.run_line_magic("unload_ext", "persist_to_disk")
        InteractiveShell.clear_instance()
        ptd.config.notebook_locator = None
        sys.modules["__main__"] = saved_main  # type: ignore[assignment]
        sys.displayhook, sys.excepthook = saved_hooks


@pytest.fixture
def ip(_shell_instance: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The shell with ``%load_ext persist_to_disk`` done, cwd in a temp folder; user_ns cleaned after."""
    monkeypatch.chdir(tmp_path)
    shell = _shell_instance
    before = set(shell.user_ns)
    try:
        yield shell
    finally:
        for name in set(shell.user_ns) - before:
            del shell.user_ns[name]


# ----------------------------------------------------------------------------- notebooks in kernels


@pytest.fixture
def kernelspec(isolated_home: Path) -> Path:
    """``python3`` in this test's JUPYTER_DATA_DIR: this Python, so kernels import what the tests do."""
    folder = Path(os.environ["JUPYTER_DATA_DIR"]) / "kernels" / "python3"
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (tests)",
        "language": "python",
    }
    (folder / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    return folder


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """``proj/`` with a ``.git`` folder and an empty ``notebooks/``."""
    proj = tmp_path / "proj"
    (proj / ".git").mkdir(parents=True)
    (proj / "notebooks").mkdir()
    return proj


def write_notebook(path: Path, cells: list[str]) -> Any:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return nb


def execute_notebook(path: Path, *, session_name: bool = True, allow_errors: bool = False,
                     env: dict[str, str] | None = None, server_connection_file: bool = False) -> Any:
    """Run a notebook file in a fresh kernel, cwd its folder; write the outputs back; return it.

    ``session_name``: set JPY_SESSION_NAME as Jupyter Server does, so the kernel knows
    its notebook; without it the kernel is headless (nbclient/papermill) and falls back
    to its working folder. ``server_connection_file``: name the connection file
    ``<runtime dir>/kernel-<id>.json`` as Jupyter Server does (nbclient uses a temp name),
    so the kernel looks for its notebook among the running servers' sessions.
    """
    import uuid

    import nbformat
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    nb = nbformat.read(str(path), as_version=4)
    kernel_env = dict(os.environ)
    kernel_env.pop("JPY_SESSION_NAME", None)
    if session_name:
        kernel_env["JPY_SESSION_NAME"] = str(path)
    kernel_env.update(env or {})
    extra: dict[str, Any] = {}
    if server_connection_file:
        runtime = Path(os.environ["JUPYTER_RUNTIME_DIR"])
        runtime.mkdir(parents=True, exist_ok=True)
        extra["km"] = AsyncKernelManager(
            kernel_name="python3", connection_file=str(runtime / f"kernel-{uuid.uuid4()}.json")
        )
    client = NotebookClient(
        nb,
        **extra,
        kernel_name="python3",
        timeout=KERNEL_TIMEOUT,
        startup_timeout=60,
        allow_errors=allow_errors,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute(env=kernel_env)
    nbformat.write(nb, str(path))
    return nb


@pytest.fixture
def run_notebook(kernelspec: Path) -> Callable[..., Any]:
    """``run_notebook(path, cells=None, **options)``: write (if cells given) and execute a notebook."""

    def run(path: Path, cells: list[str] | None = None, **options: Any) -> Any:
        if cells is not None:
            write_notebook(path, cells)
        return execute_notebook(path, **options)

    return run


def cell_text(cell: Any) -> str:
    """Everything a cell showed as text: streams, text/plain of displays and results, errors."""
    out = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream":
            out.append(output["text"])
        elif output["output_type"] in ("display_data", "execute_result"):
            out.append(output["data"].get("text/plain", ""))
        elif output["output_type"] == "error":
            out.append(f"{output['ename']}: {output['evalue']}")
    return "".join(out)


@pytest.fixture
def nbtools() -> Any:
    """Helpers for tests: write_notebook, execute_notebook, cell_text."""

    class Tools:
        pass

    tools = Tools()
    tools.write_notebook = write_notebook  # type: ignore[attr-defined]
    tools.execute_notebook = execute_notebook  # type: ignore[attr-defined]
    tools.cell_text = cell_text  # type: ignore[attr-defined]
    return tools
