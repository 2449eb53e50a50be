"""``%%persist`` with ``persist_path = s3://...``: a cell cached on one machine is restored on another.

The S3 server is moto on 127.0.0.1; the second machine is this process with another HOME
(its own local copies), on a real InteractiveShell.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.s3server import MotoS3, set_env


@pytest.fixture
def bucket_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    pytest.importorskip("moto", reason="the S3 tests need the test extra: pip install -e '.[test]'")
    server = MotoS3()
    set_env(monkeypatch, server)
    monkeypatch.setenv("PTD_SECRET_KEY", "cells-secret")
    yield f"s3://{server.new_bucket()}/cells"
    server.stop()


def test_a_cell_cached_in_a_bucket_is_restored_on_another_machine(
    ip, tmp_path: Path, become_machine, bucket_url: str
) -> None:
    log = tmp_path / "ran.txt"
    ip.user_ns["LOG"] = str(log)
    cell = "with open(LOG, 'a') as fh:\n    fh.write('ran\\n')\ndel fh\nanswer = 6 * 7\nprint('computed')\n"
    become_machine("a", bucket_url)
    ip.run_cell_magic("persist", "shared", cell)
    assert log.read_text() == "ran\n"
    del ip.user_ns["answer"]

    home_b = become_machine("b", bucket_url)
    ip.run_cell_magic("persist", "shared", cell)
    assert ip.user_ns["answer"] == 42
    assert log.read_text() == "ran\n"  # restored from the store, not run again
    assert list((home_b / ".cache" / "persist_to_disk" / "copies").rglob("*.ptd"))
