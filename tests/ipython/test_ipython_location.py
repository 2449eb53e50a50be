"""ipython_ext.location: which files are cells, and where a kernel's code caches (no kernel needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

import persist_to_disk as ptd
from ipython_ext import location


@pytest.fixture
def locator(monkeypatch: pytest.MonkeyPatch) -> location.NotebookLocator:
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.delenv("IPYKERNEL_CELL_NAME", raising=False)
    # no IPython namespace and no Jupyter server here: only explicit settings and the cwd count
    monkeypatch.setattr("ipython_ext.notebook._ipython_user_ns", lambda: None)
    monkeypatch.setattr("ipython_ext.notebook._connection_file", lambda: None)
    return location.NotebookLocator()


@pytest.mark.parametrize(
    "filename",
    ["/tmp/ipykernel_1234/3459273429.py", "C:\\Temp\\ipykernel_77\\12.py", "<ipython-input-3-0123456789ab>"],
)
def test_cell_files(filename: str) -> None:
    assert location.is_cell_file(filename)


@pytest.mark.parametrize(
    "filename", ["/proj/notebooks/helpers.py", "<string>", "<stdin>", "<dynamic-code>", "", "/tmp/ipykernel.py"]
)
def test_not_cell_files(filename: str) -> None:
    assert not location.is_cell_file(filename)


def test_custom_cell_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IPYKERNEL_CELL_NAME", "<IPY-INPUT>")
    assert location.is_cell_file("<IPY-INPUT>")


def test_the_working_folder_stands_in(locator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proj = tmp_path / "proj"
    (proj / "analysis" / "deep").mkdir(parents=True)
    (proj / "pyproject.toml").write_text("")
    monkeypatch.chdir(proj / "analysis" / "deep")
    root, parts = locator.locate("<ipython-input-1-abcdefabcdef>")
    assert root == proj.resolve() and parts == ("analysis", "deep", "_ipython")
    assert locator.locate("/somewhere/module.py") is None
    monkeypatch.chdir(proj)  # %cd is followed
    assert locator.locate("<ipython-input-1-abcdefabcdef>") == (proj.resolve(), ("_ipython",))
    info = locator.describe()
    assert info["notebook_path"] is None and info["notebook_how"] == "cwd"
    assert info["notebook_project_how"] == "marker:pyproject.toml"


def test_explicit_notebook_path_and_project_path(locator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proj = tmp_path / "proj"
    (proj / ".git").mkdir(parents=True)
    (proj / "notebooks").mkdir()
    (proj / "notebooks" / "exp.ipynb").write_text("{}")
    monkeypatch.chdir(proj / "notebooks")
    cell = "/tmp/ipykernel_1/1.py"
    assert locator.locate(cell)[1] == ("notebooks", "_ipython")
    ptd.config.set_notebook_path("exp.ipynb")  # relative to the cwd
    assert locator.locate(cell) == (proj.resolve(), ("notebooks", "exp"))
    assert locator.describe()["notebook_how"] == "explicit"
    ptd.config.set_project_path(proj / "notebooks")  # the seed's way to re-root the tree
    assert locator.locate(cell) == (proj / "notebooks", ("exp",))
    ptd.config.set_project_path(None)
    ptd.config.set_notebook_path(None)
    assert locator.locate(cell)[1] == ("notebooks", "_ipython")


def test_config_reports_the_notebook(locator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nb = tmp_path / "proj" / "nb" / "a.ipynb"
    nb.parent.mkdir(parents=True)
    nb.write_text("{}")
    (tmp_path / "proj" / "setup.cfg").write_text("")
    monkeypatch.setattr(ptd.config, "notebook_locator", locator)
    ptd.config.set_notebook_path(nb)
    info = ptd.config.describe()
    assert info["notebook_path"] == str(nb.resolve()) and info["notebook_how"] == "explicit"
    assert info["project_path"] == str((tmp_path / "proj").resolve())
    assert info["project_path_how"] == "marker:setup.cfg above the notebook"
    assert info["notebook_cache_folder"] == "nb/a"


def test_notebook_path_setting_is_checked() -> None:
    with pytest.raises(ValueError, match="notebook_path"):
        ptd.config.set_notebook_path("")
