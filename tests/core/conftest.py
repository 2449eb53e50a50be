"""Fixtures for the store backends: an S3 server on loopback, and stores of one bucket seen from two machines."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.s3server import MotoS3, set_env

SECRET = "team-secret-for-tests"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoS3]:
    pytest.importorskip("moto", reason="the S3 tests need the test extra: pip install -e '.[test]'")
    server = MotoS3()
    yield server
    server.stop()


@pytest.fixture
def s3_env(moto_server: MotoS3, monkeypatch: pytest.MonkeyPatch) -> str:
    """The AWS variables pointing at the loopback server, PTD_SECRET_KEY set; the URL of a fresh bucket."""
    set_env(monkeypatch, moto_server)
    monkeypatch.setenv("PTD_SECRET_KEY", SECRET)
    return f"s3://{moto_server.new_bucket()}/team"


@pytest.fixture
def s3_folder(s3_env: str, tmp_path: Path) -> Callable[[str], object]:
    """machine name -> the store of one folder of the bucket, with that machine's own local copies."""
    from persist_to_disk.objectstore import ObjectStore, _s3_filesystem
    from persist_to_disk.stores import LocalBackend

    def machine(name: str, *, refresh_seconds: float = 10.0, trust_shared: bool = False) -> ObjectStore:
        copies = LocalBackend(tmp_path / name / "copies" / "proj-1" / "f", trust_root=tmp_path / name / "copies")
        return ObjectStore(
            _s3_filesystem(), f"{s3_env}/proj-1/f", "proj-1/f", copies,
            refresh_seconds=refresh_seconds, trust_shared=trust_shared,
        )

    return machine
