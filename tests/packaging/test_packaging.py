"""The package a user installs: one version, the license, type information.

Builds the wheel as ``pip install .`` does (an isolated build with the declared backend)
and reads what it holds.
"""

from __future__ import annotations

import email
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import persist_to_disk

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True, timeout=300,
    )
    (built,) = out.glob("persist_to_disk-*.whl")
    return zipfile.ZipFile(built)


def _metadata(wheel: zipfile.ZipFile) -> email.message.Message:
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return email.message_from_bytes(wheel.read(name))


def test_the_version_is_the_package_version(wheel: zipfile.ZipFile) -> None:
    assert _metadata(wheel)["Version"] == persist_to_disk.__version__


def test_license_is_spdx_and_the_file_ships(wheel: zipfile.ZipFile) -> None:
    meta = _metadata(wheel)
    assert meta["License-Expression"] == "MIT"
    assert meta["License-File"] == "LICENSE"
    (license_file,) = [n for n in wheel.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
    text = wheel.read(license_file).decode()
    assert "MIT License" in text and "Copyright (c) 2026 the persist_to_disk authors" in text
    assert not any(c.startswith("License ::") for c in meta.get_all("Classifier"))  # SPDX replaces them


def test_classifiers_and_type_information(wheel: zipfile.ZipFile) -> None:
    classifiers = _metadata(wheel).get_all("Classifier")
    assert "Typing :: Typed" in classifiers and "Framework :: Jupyter" in classifiers
    names = wheel.namelist()
    assert "persist_to_disk/py.typed" in names and "ipython_ext/py.typed" in names
