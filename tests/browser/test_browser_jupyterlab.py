"""The cache browser in a real browser: JupyterLab 4 in headless Chromium, driven by Playwright.

A person's path: a notebook fills a cache with a persisted function whose body appends
to a counter file, shows ``ptd.browse()``; in the page we open the function in the tree,
select one entry, press "Invalidate selected", confirm, see the bytes freed; the entry's
file is gone on disk, and re-running the call recomputes it (the counter grows by one).

Needs Debian's Chromium and the ``browser`` extras (``bash .ci/install-browser.sh`` as
root, ``pip install -e '.[test]'``). Without them it is skipped with the reason in the
summary on a developer's machine, and FAILS in CI (``CI`` set) unless ``PTD_SKIP_BROWSER=1``. On failure a screenshot, a Playwright trace and the
server log's tail are kept in ``tests/browser/artifacts/``. ``PTD_UPDATE_SCREENSHOT=1``
also writes the README's picture, ``docs/cache-browser.png``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
DOCS_SCREENSHOT = ROOT / "docs" / "cache-browser.png"
CHROMIUM = os.environ.get("PTD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_START_TIMEOUT = 90
UI_TIMEOUT_MS = 60_000


def _missing() -> list[str]:
    missing = []
    for module, package in (("playwright", "playwright"), ("jupyterlab", "jupyterlab>=4,<5")):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"the Python package {package}")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        missing.append(f"Chromium at {CHROMIUM}")
    return missing


@pytest.fixture(scope="module", autouse=True)
def browser_prerequisites() -> None:
    missing = _missing()
    if not missing:
        return
    why = (
        f"the real-browser test needs {', '.join(missing)}: run `bash .ci/install-browser.sh` as root "
        "(Debian's chromium) and `pip install -e '.[test]'`"
    )
    if os.environ.get("CI") and os.environ.get("PTD_SKIP_BROWSER") != "1":
        pytest.fail(why + " (CI must run this test)", pytrace=False)
    pytest.skip(why)  # on a developer's machine: shown in the summary (-ra), never silent


# ------------------------------------------------------------------------------------------- notebook
def _notebook(work: Path) -> dict:
    cells = [
        f"""import pathlib
import persist_to_disk as ptd
WORK = pathlib.Path({str(work)!r})
ptd.config.set_persist_path(WORK / "cache")
ptd.config.set_project_path(WORK / "proj")
COUNTER = WORK / "counter.txt\"""",
        """@ptd.persistf()
def slow(x):
    with open(COUNTER, "a") as fh:  # one line per real computation
        fh.write(f"{x}\\n")
    return x * 10

@ptd.persistf(groupby=["dataset"])
def train(dataset, lr, epochs=10):
    return {"dataset": dataset, "lr": lr}

for x in (1, 2, 3):
    slow(x)
for dataset in ("mnist", "cifar"):
    for lr in (0.1, 0.01):
        train(dataset, lr)""",
        "panel = ptd.browse()\npanel",
        'result = slow(2)\nprint("RUNS", len(COUNTER.read_text().splitlines()), "RESULT", result)',
    ]
    return {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": f"cell{i}",
                "metadata": {},
                "outputs": [],
                "source": src,
            }
            for i, src in enumerate(cells)
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


# --------------------------------------------------------------------------------------------- server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


class Server:
    def __init__(self, work: Path, env: dict[str, str]) -> None:
        self.port = _free_port()
        self.token = secrets.token_hex(16)
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = work / "jupyter-server.log"
        argv = [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--port-retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={work}",
            "--LabApp.extension_manager=readonly",  # no registry look-ups from the extension manager
        ]
        if os.name == "posix" and os.getuid() == 0:
            argv.append("--allow-root")
        self.log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            argv,
            cwd=work,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if _get(f"{self.base}/api/status?token={self.token}", timeout=2) == 200:
                    return
            except OSError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"jupyter lab did not answer within {SERVER_START_TIMEOUT} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def descendants(self) -> list:
        import psutil

        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            return []

    def stop(self) -> list[str]:
        """Shut the server down; return the processes that had to be killed (kernels left behind)."""
        import psutil

        children = self.descendants()
        if self.proc.poll() is None:
            request = urllib.request.Request(
                f"{self.base}/api/shutdown", method="POST", headers={"Authorization": f"token {self.token}"}
            )
            try:
                urllib.request.urlopen(request, timeout=10).close()
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
        self.log.close()
        return survivors


@pytest.fixture
def lab(tmp_path: Path, isolated_home: Path) -> Iterator[tuple[Server, Path]]:
    work = tmp_path / "work"
    (work / "proj").mkdir(parents=True)
    (work / "nb.ipynb").write_text(json.dumps(_notebook(work), indent=1), encoding="utf-8")
    env = os.environ.copy()  # the temp HOME, PYTHONPATH with the checkout (tests/conftest.py)
    dirs = {
        name: tmp_path / "jupyter" / name.lower()
        for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "IPYTHONDIR")
    }
    for name, folder in dirs.items():
        folder.mkdir(parents=True, exist_ok=True)
        env[name] = str(folder)
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    env.pop("JPY_SESSION_NAME", None)
    settings = dirs["JUPYTER_CONFIG_DIR"] / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
    kernel = dirs["JUPYTER_DATA_DIR"] / "kernels" / "python3"  # this Python, so the kernel imports the checkout
    kernel.mkdir(parents=True)
    (kernel / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (ipykernel)",
                "language": "python",
            }
        )
    )
    server = Server(work, env)
    try:
        server.wait_ready()
        yield server, work
    finally:
        survivors = server.stop()
        if survivors:
            pytest.fail("processes outlived the Jupyter server (killed now): " + "; ".join(survivors))


# ---------------------------------------------------------------------------------------------- helpers
def _entries(cache: Path) -> dict[str, Path]:
    """{readable arguments: entry file} of slow() on disk."""
    from persist_to_disk.store import read_header_file

    found = {}
    for path in cache.rglob("*.ptd"):
        header = read_header_file(path)
        if header.get("func") == "slow":
            found[", ".join(f"{k}={v}" for k, v in header["args"].items())] = path
    return found


def _counter(work: Path) -> list[str]:
    path = work / "counter.txt"
    return path.read_text().split() if path.exists() else []


def _option_index(select, text: str) -> int:
    labels = select.locator("option").evaluate_all("els => els.map(e => e.textContent)")
    for i, label in enumerate(labels):
        if text in label.replace("\xa0", " "):  # ipywidgets shows spaces as no-break spaces
            return i
    raise AssertionError(f"no option with {text!r} among {labels}")


# ------------------------------------------------------------------------------------------------ test
def test_invalidate_an_entry_in_jupyterlab(lab: tuple[Server, Path], request: pytest.FixtureRequest) -> None:
    from playwright.sync_api import expect, sync_playwright

    server, work = lab
    cache = work / "cache"
    ARTIFACTS.mkdir(exist_ok=True)
    name = request.node.name
    started = time.monotonic()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1500, "height": 1100})
        context.set_default_timeout(UI_TIMEOUT_MS)
        context.tracing.start(screenshots=True, snapshots=True)
        page = context.new_page()
        try:
            page.goto(f"{server.base}/lab/tree/nb.ipynb?token={server.token}&reset")
            expect(page.locator(".jp-KernelName").first).to_contain_text("Python")
            expect(page.locator(".jp-Notebook-ExecutionIndicator").first).to_have_attribute("data-status", "idle")

            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
            expect(page.locator(".jp-CodeCell .jp-InputPrompt").first).to_contain_text("[1]:")
            last_output = page.locator(".jp-CodeCell").nth(3).locator(".jp-OutputArea-output")
            expect(last_output).to_contain_text("RUNS 3 RESULT 20")

            panel = page.locator(".ptd-browser")
            expect(panel).to_be_visible()
            status = panel.locator(".ptd-status")
            expect(status).to_contain_text("7 entries in")
            before = _entries(cache)
            assert sorted(before) == ["x=1", "x=2", "x=3"], before

            # the tree: open the source, then slow()
            tree = panel.locator(".ptd-tree select")
            tree.select_option(index=1)
            expect(tree.locator("option", has_text="slow()")).to_have_count(1)
            tree.select_option(index=_option_index(tree, "slow()"))
            expect(status).to_contain_text("3 entries in")
            expect(panel.locator(".ptd-totals")).to_contain_text("slow()")

            # select x=2, invalidate, confirm
            rows = panel.locator(".ptd-entries select")
            expect(rows.locator("option")).to_have_count(3)
            rows.select_option(index=_option_index(rows, "x=2 "))
            expect(panel.locator(".ptd-details")).to_contain_text("x = 2")
            expect(panel.locator(".ptd-details")).to_contain_text(str(before["x=2"]))
            panel.locator("button.ptd-invalidate-selected").click()
            confirm = panel.locator(".ptd-confirm-box")
            expect(confirm).to_be_visible()
            expect(confirm).to_contain_text("Delete 1 selected entry")
            assert before["x=2"].exists(), "deleted before the confirmation"
            panel.screenshot(path=str(ARTIFACTS / "cache-browser.png"))
            if os.environ.get("PTD_UPDATE_SCREENSHOT") == "1":
                shutil.copyfile(ARTIFACTS / "cache-browser.png", DOCS_SCREENSHOT)
            panel.locator("button.ptd-confirm").click()
            expect(status).to_contain_text("Deleted 1 entry, freed")
            expect(confirm).to_be_hidden()
            expect(rows.locator("option")).to_have_count(2)

            after = _entries(cache)
            assert sorted(after) == ["x=1", "x=3"] and not before["x=2"].exists()
            assert _counter(work) == ["1", "2", "3"]

            # the next call recomputes: run the last cell again
            page.locator(".jp-CodeCell").nth(3).locator(".jp-InputArea-editor").click()
            page.keyboard.press("Shift+Enter")
            expect(last_output).to_contain_text("RUNS 4 RESULT 20")
            assert _counter(work) == ["1", "2", "3", "2"]
            assert before["x=2"].exists(), "the recomputed entry was not stored again"
            errors = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
            assert "Traceback" not in " ".join(errors.all_inner_texts())
        except BaseException:
            shot = ARTIFACTS / f"{name}-failure.png"
            trace = ARTIFACTS / f"{name}-trace.zip"
            log = ARTIFACTS / f"{name}-server.log"
            try:
                page.screenshot(path=str(shot), full_page=True)
                context.tracing.stop(path=str(trace))
            finally:
                log.write_text(server.log_tail(200))
                print(f"\nbrowser test failed after {time.monotonic() - started:.1f} s; kept {shot}, {trace}, {log}")
                print("server log tail:\n" + server.log_tail(40))
            raise
        else:
            context.tracing.stop()
        finally:
            context.close()
            browser.close()
