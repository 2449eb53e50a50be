"""``ptd.browse`` fails in a way that says what to do: a missing ipywidgets, an unknown project."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import persist_to_disk as ptd


def test_without_ipywidgets_the_error_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # `import ipywidgets` now fails as if not installed
    for name in [m for m in sys.modules if m.startswith("ipython_ext.browser")]:  # the panel's modules, imported anew
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ImportError, match=r"pip install ipywidgets"):
        ptd.browse()


def test_an_unknown_project_is_one_line_listing_the_projects(ip, cache_root: Path, capsys) -> None:
    for name in ("alpha-1", "beta-2"):
        (cache_root / name).mkdir(parents=True)
    result = ip.run_cell("import persist_to_disk as ptd\nptd.browse('no-such-project')")
    assert type(result.error_in_exec).__name__ == "CatalogError"
    shown = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)  # without colours
    (line,) = [text for text in shown.splitlines() if "CatalogError" in text and "no-such-project" in text]
    assert "projects there: alpha-1, beta-2" in line
    # the user's own line is shown, the library's insides are not
    assert "browse('no-such-project')" in shown
    assert "catalog.py" not in shown and "browser.py" not in shown
