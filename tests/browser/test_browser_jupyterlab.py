"""The cache browser in a real browser: JupyterLab 4 in headless Chromium, driven by Playwright.

A person's path, in a 1,000 px wide window: a notebook fills a cache with two persisted
functions (one counts its real computations in a file) and a ``%%persist`` cell, and shows
``ptd.browse()``. In the page: nothing in the panel scrolls sideways (measured with
JavaScript, in the light and the dark theme), a header click sorts the table, a click on
a row shows its full arguments; then we open ``slow()`` in the tree, tick one entry,
press "Invalidate selected", confirm and see the bytes freed; the entry's file is gone on
disk, and re-running the call recomputes it (the counter grows by one).

Needs Debian's Chromium and the ``browser`` extras (``bash .ci/install-browser.sh`` as
root, ``pip install -e '.[test]'``). Without them it is skipped with the reason in the
summary on a developer's machine, and FAILS in CI (``CI`` set) unless ``PTD_SKIP_BROWSER=1``.
Screenshots (light and dark) go to ``tests/browser/artifacts/``; on failure also a Playwright
trace and the server log's tail. ``PTD_UPDATE_SCREENSHOT=1`` also writes the README's
picture, ``docs/panel.png``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ipython.live_server import JupyterServer

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
DOCS_SCREENSHOT = ROOT / "docs" / "panel.png"
VIEWPORT = {"width": 1000, "height": 1300}
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
        f"""%load_ext persist_to_disk
import pathlib, time
import persist_to_disk as ptd
WORK = pathlib.Path({str(work)!r})
ptd.config.set_persist_path(WORK / "cache")
ptd.config.set_project_path(WORK / "proj")
COUNTER = WORK / "counter.txt"
WINDOW = 25
SEED = 7""",
        """@ptd.persistf()
def slow(x):
    with open(COUNTER, "a") as fh:  # one line per real computation
        fh.write(f"{x}\\n")
    return x * 10

@ptd.persistf(groupby=["dataset"])
def train(dataset, lr, epochs=10, layers=(512, 256, 128), optimizer="adamw", augment="random-crop+flip+colour-jitter"):
    time.sleep(0.2 + lr)  # a (short) training run
    return {"dataset": dataset, "lr": lr, "seed": SEED}

for x in (1, 2, 3):
    slow(x)
for dataset in ("mnist", "cifar10"):
    for lr in (0.1, 0.01):
        train(dataset, lr)""",
        """%%persist features
signal = [((i * 7919) % 1000) / 1000 for i in range(20_000)]
smoothed = [sum(signal[i:i + WINDOW]) / WINDOW for i in range(0, len(signal), WINDOW)]
time.sleep(0.5)""",
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


@pytest.fixture
def lab(tmp_path: Path, isolated_home: Path) -> Iterator[tuple[JupyterServer, Path]]:
    work = isolated_home / "work"  # as a user's: the panel shows its paths as ~/work/...
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
    server = JupyterServer(
        work,
        work / "jupyter-server.log",
        app="jupyterlab",
        extra_args=(
            "--LabApp.extension_manager=readonly",  # no registry look-ups from the extension manager
            "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: the test switches themes with its commands
        ),
        env=env,
    )
    try:
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


# What scrolls sideways: the panel, anything in it, and the output area and notebook around it.
# A table cell that cuts its text with an ellipsis (overflow hidden) does not scroll: its full
# text is its tooltip and in the details; those are counted apart, and must be cells.
_OVERFLOW_JS = """panel => {
  const name = el => el.tagName.toLowerCase() + (el.className && typeof el.className === 'string'
      ? '.' + el.className.trim().split(/\\s+/).join('.') : '');
  const around = [];
  for (let el = panel.parentElement; el && !el.classList.contains('jp-NotebookPanel'); el = el.parentElement) {
    around.push(el);
  }
  const scrolls = [], clipped = [], outside = [];
  const right = panel.getBoundingClientRect().right + 0.5;
  for (const el of [panel, ...panel.querySelectorAll('*'), ...around]) {
    if (el.scrollWidth > el.clientWidth && el.clientWidth > 0) {
      const style = getComputedStyle(el);
      if (['hidden', 'clip'].includes(style.overflowX) && style.textOverflow === 'ellipsis') {
        clipped.push(name(el));
      } else if (el.tagName !== 'OPTION') {
        scrolls.push(`${name(el)}: scrollWidth ${el.scrollWidth} > clientWidth ${el.clientWidth}`);
      }
    }
    const box = el.getBoundingClientRect();
    if (panel.contains(el) && box.width > 0 && box.right > right) {
      outside.push(`${name(el)} ends ${(box.right - right).toFixed(1)} px right of the panel`);
    }
  }
  return {scrolls, clipped, outside, width: panel.getBoundingClientRect().width};
}"""


def _no_sideways_scroll(panel) -> dict:
    found = panel.evaluate(_OVERFLOW_JS)
    assert found["scrolls"] == [] and found["outside"] == [], found
    for name in found["clipped"]:  # cut on purpose: table cells, and the tree's list (long labels)
        assert name.startswith("select") or "ptd-cellbutton" in name or "ptd-head" in name, found["clipped"]
    return found


def _switch_theme(page, theme: str) -> None:
    page.evaluate("theme => window.jupyterapp.commands.execute('apputils:change-theme', {theme})", theme)


# ------------------------------------------------------------------------------------------------ test
def test_invalidate_an_entry_in_jupyterlab(lab: tuple[JupyterServer, Path], request: pytest.FixtureRequest) -> None:
    from playwright.sync_api import expect, sync_playwright

    server, work = lab
    cache = work / "cache"
    expect.set_options(timeout=UI_TIMEOUT_MS)
    ARTIFACTS.mkdir(exist_ok=True)
    name = request.node.name
    started = time.monotonic()

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport=VIEWPORT)
        context.set_default_timeout(UI_TIMEOUT_MS)
        context.tracing.start(screenshots=True, snapshots=True)
        page = context.new_page()
        try:
            page.goto(f"{server.base}/lab/tree/nb.ipynb?token={server.token}&reset")
            expect(page.locator(".jp-KernelName").first).to_contain_text("Python")
            expect(page.locator(".jp-Notebook-ExecutionIndicator").first).to_have_attribute("data-status", "idle")
            page.keyboard.press("Control+b")  # the notebook takes the window's width, as most people work
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
            expect(page.locator(".jp-CodeCell .jp-InputPrompt").first).to_contain_text("[1]:")
            last_output = page.locator(".jp-CodeCell").nth(4).locator(".jp-OutputArea-output")
            expect(last_output).to_contain_text("RUNS 3 RESULT 20")

            panel = page.locator(".ptd-browser")
            expect(panel).to_be_visible()
            status = panel.locator(".ptd-status")
            expect(status).to_contain_text("8 entries in")
            before = _entries(cache)
            assert sorted(before) == ["x=1", "x=2", "x=3"], before
            table = panel.locator(".ptd-table")
            expect(panel.locator(".ptd-totals")).to_contain_text("to recompute")
            expect(table.locator("button.ptd-col-function", has_text="cell features")).to_have_count(1)
            expect(table.locator("button.ptd-col-function", has_text="train()")).to_have_count(4)
            expect(table.locator("button.ptd-col-arguments", has_text="→ signal, smoothed")).to_have_count(1)
            _no_sideways_scroll(panel)

            # the tree: open the notebook's folder (its functions and the cell show below it)
            tree = panel.locator(".ptd-tree select")
            tree.select_option(index=_option_index(tree, "▸"))
            expect(tree.locator("option", has_text="slow()")).to_have_count(1)
            expect(tree.locator("option", has_text="cell features")).to_have_count(1)
            expect(status).to_contain_text("8 entries in")

            # sort by compute time: the cell (0.5 s) and the training runs come first
            table.locator("button.ptd-head", has_text="Compute").click()
            expect(table.locator("button.ptd-head", has_text="Compute ▼")).to_have_count(1)
            expect(table.locator("button.ptd-col-function").first).to_have_text("cell features")
            expect(table.locator("button.ptd-col-function").nth(1)).to_have_text("train()")

            # a click on a row: its full arguments, however long
            table.locator("button.ptd-col-arguments", has_text="dataset='mnist', lr=0.01").click()
            details = panel.locator(".ptd-details")
            expect(details).to_contain_text("augment = 'random-crop+flip+colour-jitter'")
            expect(details).to_contain_text("layers = (512, 256, 128)")
            expect(details).to_contain_text("global SEED")  # what else the key depends on
            _no_sideways_scroll(panel)
            page.mouse.move(0, 0)  # no hover highlight in the picture
            panel.screenshot(path=str(ARTIFACTS / "panel-light.png"))
            if os.environ.get("PTD_UPDATE_SCREENSHOT") == "1":
                shutil.copyfile(ARTIFACTS / "panel-light.png", DOCS_SCREENSHOT)

            # the dark theme: the panel's colours follow it, and it still fits
            light = table.evaluate("el => getComputedStyle(el).backgroundColor")
            _switch_theme(page, "JupyterLab Dark")
            expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false")
            expect(table).not_to_have_css("background-color", light)
            _no_sideways_scroll(panel)
            panel.screenshot(path=str(ARTIFACTS / "panel-dark.png"))
            _switch_theme(page, "JupyterLab Light")
            expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "true")

            # open slow() in the tree
            tree.select_option(index=_option_index(tree, "slow()"))
            expect(status).to_contain_text("3 entries in")
            expect(panel.locator(".ptd-totals")).to_contain_text("slow()")
            expect(table.locator("button.ptd-col-function")).to_have_count(0)  # one function: no such column

            # tick x=2, invalidate, confirm
            rows = table.locator("button.ptd-col-arguments")
            expect(rows).to_have_count(3)
            row = next(i for i, text in enumerate(rows.all_inner_texts()) if text == "x=2")
            table.locator(".ptd-row-check input").nth(row).check()
            expect(panel.locator(".ptd-page")).to_contain_text("1 selected")
            panel.locator("button.ptd-invalidate-selected").click()
            confirm = panel.locator(".ptd-confirm-box")
            expect(confirm).to_be_visible()
            expect(confirm).to_contain_text("Delete 1 selected entry")
            assert before["x=2"].exists(), "deleted before the confirmation"
            _no_sideways_scroll(panel)
            panel.screenshot(path=str(ARTIFACTS / "panel-confirm.png"))
            panel.locator("button.ptd-confirm").click()
            expect(status).to_contain_text("Deleted 1 entry, freed")
            expect(confirm).to_be_hidden()
            expect(rows).to_have_count(2)

            after = _entries(cache)
            assert sorted(after) == ["x=1", "x=3"] and not before["x=2"].exists()
            assert _counter(work) == ["1", "2", "3"]

            # the next call recomputes: run the last cell again
            page.locator(".jp-CodeCell").nth(4).locator(".jp-InputArea-editor").click()
            page.keyboard.press("Shift+Enter")
            expect(last_output).to_contain_text("RUNS 4 RESULT 20")
            assert _counter(work) == ["1", "2", "3", "2"]
            assert before["x=2"].exists(), "the recomputed entry was not stored again"
            # ... and the panel, watching the disk, lists it again on its own
            expect(rows).to_have_count(3)
            expect(status).to_contain_text("changed on disk")
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
