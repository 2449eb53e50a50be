"""A real ``jupyter server`` (or JupyterLab) on 127.0.0.1 for tests, driven through its REST API, and its kernels.

The server runs with this test's temp HOME and Jupyter folders (tests/conftest.py) and the
``python3`` kernelspec of tests/ipython/conftest.py, so its kernels import this checkout.
Kernels are reached directly through their connection files (``jupyter_client``), as a
front end would through the server's websocket. The browser test (tests/browser) runs
JupyterLab with the same class.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

START_TIMEOUT = 90.0
KERNEL_TIMEOUT = 120.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterServer:
    """``jupyter server`` rooted at ``root``; ``request`` speaks its REST API with the token.

    ``app``: the module run (``jupyterlab`` for the full front end), with ``extra_args``;
    ``env``: the server's environment (default: this process's).
    """

    def __init__(
        self,
        root: Path,
        log_path: Path,
        *,
        app: str = "jupyter_server",
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.root = root
        self.port = _free_port()
        self.token = secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        argv = [
            sys.executable, "-m", app, "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
            "--port-retries=0", f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root}",
            *extra_args,
        ]
        if os.name == "posix" and os.getuid() == 0:
            argv.append("--allow-root")
        env = dict(os.environ if env is None else env)
        env.pop("JPY_SESSION_NAME", None)
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(argv, cwd=root, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.request("GET", "/api/status")
                return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"jupyter server did not answer within {START_TIMEOUT} s:\n{self.log_tail()}")

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=KERNEL_TIMEOUT) as response:
            text = response.read()
        return json.loads(text) if text else None

    # -- what JupyterLab does -------------------------------------------------------------------------
    def open_notebook(self, path: str) -> dict:
        """``POST /api/sessions`` as JupyterLab opening ``path``: a session with a new kernel."""
        return self.request("POST", "/api/sessions", {"path": path, "name": path.rsplit("/", 1)[-1],
                                                      "type": "notebook", "kernel": {"name": "python3"}})

    def rename(self, session: dict, new_path: str) -> None:
        """File > Rename: the file, then the session's path, then its name (JupyterLab's three calls)."""
        self.request("PATCH", f"/api/contents/{session['path']}", {"path": new_path})
        self.request("PATCH", f"/api/sessions/{session['id']}", {"path": new_path})
        self.request("PATCH", f"/api/sessions/{session['id']}", {"name": new_path.rsplit("/", 1)[-1]})
        session["path"] = new_path

    def restart(self, session: dict) -> None:
        self.request("POST", f"/api/kernels/{session['kernel']['id']}/restart")

    def kernel(self, session: dict) -> Kernel:
        runtime = Path(os.environ["JUPYTER_RUNTIME_DIR"])
        return Kernel(runtime / f"kernel-{session['kernel']['id']}.json")

    # -- teardown -----------------------------------------------------------------------------------
    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def stop(self) -> list[str]:
        """Shut the server down; the processes that outlived it (killed now), as text."""
        import psutil

        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            children = []
        if self.proc.poll() is None:
            try:
                self.request("POST", "/api/shutdown")
            except OSError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(timeout=10)
        _gone, alive = psutil.wait_procs(children, timeout=15)
        survivors = []
        for child in alive:
            try:
                survivors.append(f"{child.pid} {' '.join(child.cmdline())}")
                child.kill()
            except psutil.Error:
                pass
        self._log.close()
        return survivors


class Kernel:
    """A client of a running kernel: ``run(code)`` returns what the code printed, raising on an error."""

    def __init__(self, connection_file: Path) -> None:
        from jupyter_client import BlockingKernelClient

        self.client = BlockingKernelClient(connection_file=str(connection_file))
        self.client.load_connection_file()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=KERNEL_TIMEOUT)

    def run(self, code: str) -> str:
        out: list[str] = []
        errors: list[str] = []

        def collect(msg: dict) -> None:
            kind, content = msg["header"]["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind == "error":
                errors.append(f"{content['ename']}: {content['evalue']}")

        reply = self.client.execute_interactive(code, timeout=KERNEL_TIMEOUT, output_hook=collect)
        if reply["content"]["status"] != "ok" or errors:
            raise AssertionError(f"the kernel failed on {code!r}: {errors or reply['content']}")
        return "".join(out)

    def close(self) -> None:
        self.client.stop_channels()
