"""The object-store backend beyond the contract: write-once races, signatures, faults.

Against moto on 127.0.0.1; ``s3_folder("a")`` and ``s3_folder("b")`` are one folder of the
bucket seen from two machines (their own local copies).
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from persist_to_disk import signing
from persist_to_disk.errors import CacheWarning, UntrustedCacheError
from persist_to_disk.objectlease import lost_race
from persist_to_disk.store import ENOVAL

KEY = "7/0123456789abcdef0123456789abcdef.ptd"


def _header() -> dict:
    return {"func": "f", "args": {}, "created": 1.0}


@pytest.mark.parametrize("server", ["s3_folder", "seaweed_folder"])
def test_write_once_the_loser_keeps_the_winners_entry(server: str, request: pytest.FixtureRequest) -> None:
    s3_folder = request.getfixturevalue(server)  # moto and SeaweedFS raise different errors for the loser
    a, b = s3_folder("a"), s3_folder("b")
    a.put(KEY, "first", _header())
    header = b.put(KEY, "second", {**_header(), "created": 2.0})
    assert header["created"] == 1.0  # the winner's header
    assert b.get(KEY) == "first" and a.get(KEY) == "first"
    assert s3_folder("c").get(KEY) == "first"


def test_both_lost_race_errors_are_recognised() -> None:
    moto_style = FileExistsError("s3://b/k")
    refused = ClientError({"Error": {"Code": "PreconditionFailed"}, "ResponseMetadata": {"HTTPStatusCode": 412}},
                          "PutObject")
    seaweed_style = OSError("precondition failed")
    seaweed_style.__cause__ = refused
    assert lost_race(moto_style) and lost_race(seaweed_style)
    other = OSError("connection reset")
    other.__cause__ = ClientError({"Error": {"Code": "InternalError"}}, "PutObject")
    assert not lost_race(other)


def _upload_as_is(store, key: str, body: bytes) -> None:
    store.fs.pipe_file(store.url_of(key), body)


def test_an_unsigned_entry_is_never_unpickled(s3_folder, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unpickle_spy import UNPICKLED, Spy

    a = s3_folder("a")
    a.put(KEY, Spy("unsigned"), _header())
    with open(a.path_of(KEY), "rb") as fh:
        entry = fh.read()
    _upload_as_is(a, KEY, entry)  # the same entry without its signature
    UNPICKLED.clear()
    with pytest.raises(UntrustedCacheError, match="it is not signed.*PTD_SECRET_KEY.*trust_shared") as refused:
        s3_folder("b").load(KEY)
    assert refused.value.path == a.url_of(KEY)
    assert UNPICKLED == []
    assert s3_folder("c", trust_shared=True).load(KEY) is not ENOVAL  # the explicit opt-out


def test_an_entry_moved_to_another_key_is_refused(s3_folder) -> None:
    a = s3_folder("a")
    a.put(KEY, 1, _header())
    other = "8/" + KEY.split("/")[1]
    _upload_as_is(a, other, a.fs.cat_file(a.url_of(KEY)))
    with pytest.raises(UntrustedCacheError, match="signature does not match"):
        s3_folder("b").load(other)


def test_a_reader_without_the_secret_is_told_to_set_it(s3_folder, monkeypatch: pytest.MonkeyPatch) -> None:
    s3_folder("a").put(KEY, 1, _header())
    monkeypatch.delenv(signing.SECRET_ENV)
    with pytest.raises(UntrustedCacheError, match="PTD_SECRET_KEY is not set"):
        s3_folder("b").load(KEY)


def test_a_writer_without_the_secret_stores_nothing(s3_folder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(signing.SECRET_ENV)
    a = s3_folder("a")
    with pytest.raises(UntrustedCacheError, match="PTD_SECRET_KEY is not set"):
        a.put(KEY, 1, _header())
    assert not a.fs.exists(a.url_of(KEY))
    assert a.copies.load(KEY) is ENOVAL


def test_a_corrupt_object_is_a_miss_with_one_warning(s3_folder) -> None:
    a = s3_folder("a")
    a.put(KEY, 1, _header())
    body = bytearray(a.fs.cat_file(a.url_of(KEY)))
    body[20] ^= 0xFF  # in the header: its checksum fails
    _upload_as_is(a, KEY, bytes(body))
    b = s3_folder("b")
    with pytest.warns(CacheWarning, match="header checksum"):
        assert b.load(KEY) is ENOVAL


def test_a_failed_upload_leaves_no_copy(s3_folder, monkeypatch: pytest.MonkeyPatch) -> None:
    a = s3_folder("a")

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("the store refused the upload")

    monkeypatch.setattr(a.fs, "pipe_file", refuse)
    with pytest.raises(OSError, match="refused"):
        a.put(KEY, 1, _header())
    assert a.copies.load(KEY) is ENOVAL


def test_a_lease_makes_another_machine_wait_and_read(s3_folder) -> None:
    import threading

    a, b = s3_folder("a"), s3_folder("b")
    results: list = []
    with a.lease(KEY, lambda: a.get(KEY)) as found:
        assert found is ENOVAL  # a computes
        waiter = threading.Thread(target=lambda: results.append(_through_lease(b)))
        waiter.start()
        a.put(KEY, "a's result", _header())
    waiter.join(timeout=60)
    assert results == ["a's result"]
    assert not a.fs.exists(a.url_of(KEY) + ".lease")  # released


def test_a_lease_taken_after_the_holder_finished_finds_its_entry(s3_folder) -> None:
    """The window between a machine's look and its lease: the other machine computed, stored and
    let its lease go in it. The lease, taken at once, still looks again: nothing computes twice."""
    a, b = s3_folder("a"), s3_folder("b")
    assert b.get(KEY) is ENOVAL  # b looks: a miss
    with a.lease(KEY, lambda: a.get(KEY)) as found:  # then a computes it, stores it and is done
        assert found is ENOVAL
        a.put(KEY, "a's result", _header())
    with b.lease(KEY, lambda: b.get(KEY)) as found:  # b's lease is free at once
        assert found == "a's result"


def _through_lease(store) -> object:
    """What a miss does (miss.compute_once): look, then take the lease (waiting), then look again."""
    if store.get(KEY) is not ENOVAL:
        return store.get(KEY)
    with store.lease(KEY, lambda: store.get(KEY)) as found:
        return found if found is not ENOVAL else "computed again"


def test_an_expired_lease_is_taken_over(s3_folder) -> None:
    import json
    import time

    a = s3_folder("a")
    a.fs.pipe_file(a.url_of(KEY) + ".lease", json.dumps({"holder": "dead", "expires": time.time() - 1}).encode())
    with a.lease(KEY, lambda: a.get(KEY)) as found:
        assert found is ENOVAL
        assert json.loads(a.fs.cat_file(a.url_of(KEY) + ".lease"))["holder"] != "dead"


def test_a_stopped_server_lists_nothing_and_copies_still_serve(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.core.conftest import machines_of
    from tests.s3server import MotoS3, set_env

    server = MotoS3()
    set_env(monkeypatch, server)
    monkeypatch.setenv("PTD_SECRET_KEY", "k")
    machine = machines_of(f"s3://{server.new_bucket()}/t", tmp_path)
    a = machine("a", refresh_seconds=0)
    a.put(KEY, "kept", _header())
    server.stop()
    with pytest.warns(CacheWarning, match="cannot reach the store"):
        assert a.get(KEY) == "kept"  # the copy, though it could not be checked
    assert list(a.iter_entries()) == []
    assert a.load(OTHER_KEY) is ENOVAL


OTHER_KEY = "9/ffffffffffffffffffffffffffffffff.ptd"


def test_a_truncated_object_is_a_miss_not_a_trust_error(s3_folder) -> None:
    a = s3_folder("a")
    a.put(KEY, b"x" * 5000, _header())
    _upload_as_is(a, KEY, a.fs.cat_file(a.url_of(KEY))[:3000])
    with pytest.warns(CacheWarning, match="truncated"):
        assert s3_folder("b").load(KEY) is ENOVAL
