"""A cache shared through an S3 store: machines are processes with their own HOME and checkout.

The machine tests run on two S3 servers on 127.0.0.1 (tests/s3server.py), started and stopped
by the tests: moto (one per test) and SeaweedFS (one per module; the server-stopped test runs
on moto only, what it tests is the client's). ``persist_path`` is ``s3://<bucket>/team`` on
every machine, set with ``ptd.config.set_persist_path``. Each machine keeps its local copies
under its own HOME.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.core import _machine
from tests.core.conftest import SECRET
from tests.s3server import HoldingProxy, MotoS3, SeaweedS3, set_env

ROOT = Path(__file__).resolve().parents[2]


class Machine:
    """A long-lived process standing for one machine; ``ask`` sends one command and returns its answer."""

    def __init__(
        self, name: str, base: Path, url: str, server: Server, secret: str | None = SECRET, gate: Path | None = None
    ) -> None:
        home = base / name / "home"
        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        env = {**os.environ, **server.env(), "HOME": str(home), "MACHINE": name}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        env.pop("PTD_SECRET_KEY", None)
        env.pop("GATE", None)
        if gate is not None:
            env["GATE"] = str(gate)
        if secret is not None:
            env["PTD_SECRET_KEY"] = secret
        checkout = _machine.checkout(base / name / "src")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.core._machine", url, str(checkout)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=str(ROOT),
        )

    def ask(self, op: str, **args: object) -> dict:
        self.send(op, **args)
        return self.receive()

    def send(self, op: str, **args: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()

    def receive(self) -> dict:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"machine exited with {self.proc.wait()}"
        return json.loads(line)

    def log_says(self, text: str) -> bool:
        log = self.home / "log.txt"
        return log.is_file() and text in log.read_text()

    def computed(self) -> list[str]:
        done = self.home / "computed.txt"
        return done.read_text().split() if done.is_file() else []

    def close(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


Server = MotoS3 | SeaweedS3


@pytest.fixture(params=["moto", "seaweedfs"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """The test's S3 server: a moto of its own (a test may stop it), or the session's SeaweedFS (one per test run)."""
    if request.param == "seaweedfs":
        yield request.getfixturevalue("seaweed_server")  # the session's (tests/core/conftest.py)
        return
    pytest.importorskip("moto", reason="the S3 tests need the test extra: pip install -e '.[test]'")
    started = MotoS3()
    yield started
    started.stop()


@pytest.fixture
def machines(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    set_env(monkeypatch, server)
    url = f"s3://{server.new_bucket()}/team"
    made: list[Machine] = []

    def make(name: str, secret: str | None = SECRET, gate: Path | None = None) -> Machine:
        made.append(Machine(name, tmp_path, url, server, secret, gate))
        return made[-1]

    yield make
    for machine in made:
        machine.close()


def test_a_result_computed_on_one_machine_is_a_hit_on_another(machines) -> None:
    a, b = machines("a"), machines("b")
    assert a.ask("call", x=2)["computed"] == ["2"]
    got = b.ask("call", x=2)
    assert got["by"] == "a" and got["size"] == 2 * 4096 * 256
    assert got["computed"] == [] and got["warnings"] == []
    path = Path(b.ask("copy_path", x=2)["path"])
    assert path.is_file() and str(path).startswith(str(b.home))  # b's local copy, under b's own HOME
    assert b.ask("call", x=2)["computed"] == []


@pytest.mark.parametrize("server", ["moto"], indirect=True)  # what is tested is the client's: no SeaweedFS restart
def test_local_copies_serve_hits_with_the_server_stopped(machines, server: Server) -> None:
    a, b = machines("a"), machines("b")
    a.ask("call", x=1)
    b.ask("call", x=1)  # b copies the entry
    b.close()
    server.stop()
    b = machines("b")  # a new process of machine b (same HOME), the server gone
    got = b.ask("call", x=1)
    assert got["by"] == "a" and got["computed"] == []
    assert [w for w in got["warnings"] if "cannot reach the store" in w]
    got = b.ask("call", x=5)  # a miss computes and returns its value; it is not shared
    assert got["by"] == "b" and got["computed"] == ["5"]
    assert any("not cached" in w for w in got["warnings"])


def _wait_for(condition, what: str, timeout: float = 60.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_computation_running_on_one_machine_is_not_started_on_another(machines, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    a, b = machines("a", gate=gate), machines("b")
    a.send("call", x=4)
    _wait_for(lambda: a.computed() == ["4"], "a to start computing")
    b.send("call", x=4)
    _wait_for(lambda: b.log_says("waiting for it"), "b to wait for a's lease")
    gate.touch()
    got_a, got_b = a.receive(), b.receive()
    assert got_a["by"] == got_b["by"] == "a"
    assert a.computed() == ["4"] and b.computed() == []


def test_an_async_computation_running_on_one_machine_is_not_started_on_another(machines, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    a, b = machines("a", gate=gate), machines("b")
    a.send("acall", x=3)
    _wait_for(lambda: a.computed() == ["3"], "a to start computing")
    b.send("acall", x=3)
    _wait_for(lambda: b.log_says("waiting for it"), "b to wait for a's lease")
    gate.touch()
    got_a, got_b = a.receive(), b.receive()
    assert got_a["by"] == got_b["by"] == "a" and got_b["size"] == 3 * 4096 * 256
    assert a.computed() == ["3"] and b.computed() == []


def test_a_killed_holder_is_taken_over_after_lease_seconds(machines, tmp_path: Path) -> None:
    a, b = machines("a", gate=tmp_path / "never"), machines("b")
    a.ask("lease", seconds=1.5)
    b.ask("lease", seconds=1.5)
    a.send("call", x=2)
    _wait_for(lambda: a.computed() == ["2"], "a to start computing")
    b.send("call", x=2)
    _wait_for(lambda: b.log_says("waiting for it"), "b to wait for a's lease")
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(timeout=30)
    got = b.receive()  # a's lease is no longer renewed: b takes over and computes
    assert got["by"] == "b" and got["computed"] == ["2"]
    assert b.log_says("expired; taking over")


def test_an_upload_torn_by_a_killed_writer_leaves_no_entry(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Machine a is SIGKILLed while half of a 20 MB entry has reached the server: no object is
    left, and machine b misses and computes."""
    import s3fs

    set_env(monkeypatch, server)
    url = f"s3://{server.new_bucket()}/team"
    proxy = HoldingProxy(server.endpoint, hold_after=10 << 20)
    a = Machine("a", tmp_path, url, proxy)  # type: ignore[arg-type]  # (its env() is all a machine needs)
    try:
        a.ask("lease", seconds=1.5)
        a.send("call", x=20)
        _wait_for(proxy.held.is_set, "half of a's upload to reach the server")
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(timeout=30)
    finally:
        a.proc.kill()
        proxy.stop()
    fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
    assert not [p for p in fs.find(url) if p.endswith(".ptd")]
    b = Machine("b", tmp_path, url, server)
    try:
        b.ask("lease", seconds=1.5)  # a's lease, never renewed again, expires
        got = b.ask("call", x=20)
        assert got["by"] == "b" and got["computed"] == ["20"] and got["warnings"] == []
    finally:
        b.close()


def test_a_wrong_secret_is_refused(machines) -> None:
    a, b = machines("a"), machines("b", secret="another-team")
    a.ask("call", x=1)
    got = b.ask("call", x=1)
    assert got["error"] == "UntrustedCacheError"
    assert "PTD_SECRET_KEY" in got["message"] and "signature does not match" in got["message"]
    assert got["computed"] == []  # nothing unpickled, nothing computed in its place


def test_an_invalidation_is_seen_by_another_machine_after_the_refresh_interval(machines) -> None:
    a, b = machines("a"), machines("b")
    a.ask("call", x=3)
    b.ask("refresh", seconds=3600)
    assert b.ask("call", x=3)["computed"] == []  # copied from the store, checked now
    assert a.ask("invalidate", x=3)["removed"] is True
    assert b.ask("call", x=3)["computed"] == []  # within the interval: the copy, no network
    b.ask("refresh", seconds=0)
    got = b.ask("call", x=3)  # checked against the store: gone, so computed again
    assert got["computed"] == ["3"] and got["by"] == "b"
    assert a.ask("call", x=3)["by"] == "b" and a.ask("call", x=3)["computed"] == ["3"]


def test_a_recache_replaces_the_entry_for_every_machine(machines) -> None:
    a, b = machines("a"), machines("b")
    a.ask("refresh", seconds=3600)
    a.ask("call", x=1)
    assert b.ask("call", x=1)["by"] == "a"
    b.ask("call", x=1, switch="recache")
    assert b.ask("call", x=1)["by"] == "b"
    assert a.ask("call", x=1)["by"] == "a"  # within a's interval: a's own copy
    a.ask("refresh", seconds=0)
    got = a.ask("call", x=1)  # the object's ETag changed: a takes b's entry
    assert got["by"] == "b" and got["computed"] == ["1"]  # (a computed only its first call)


# ------------------------------------------------------------------- in this process: settings and manual_cache


def _step(write: bool) -> object:
    import persist_to_disk as ptd

    return ptd.manual_cache("table", {"rows": 3}, write=write)


def test_manual_cache_goes_through_the_store(s3_env: str, become_machine) -> None:
    become_machine("a", s3_env)
    _step(write=True)
    home_b = become_machine("b", s3_env)
    assert _step(write=False) == {"rows": 3}
    assert list((home_b / ".cache" / "persist_to_disk" / "copies").rglob("table.ptd"))


def test_the_setting_takes_a_url_and_says_where_copies_go(s3_env: str) -> None:
    import persist_to_disk as ptd

    assert ptd.config.set_persist_path(s3_env + "/") == s3_env
    described = ptd.config.describe()
    assert described["persist_path"] == s3_env
    bucket_and_prefix = s3_env.split("://")[1]
    assert described["local_copies"].endswith("/.cache/persist_to_disk/copies/s3/" + bucket_and_prefix)
    assert described["remote_refresh_seconds"] == 10.0
    with pytest.raises(ValueError, match="persist_path='s3://'.*must name a bucket"):
        ptd.config.set_persist_path("s3://")
    with pytest.raises(ValueError, match="remote_refresh_seconds"):
        ptd.config.set_remote_refresh_seconds(-1)


def test_remote_refresh_seconds_in_config_ini(isolated_home: Path) -> None:
    import persist_to_disk as ptd

    ini = isolated_home / ".cache" / "persist_to_disk" / "config.ini"
    ini.parent.mkdir(parents=True, exist_ok=True)
    ini.write_text("[global_settings]\npersist_path = s3://team-bucket/ml\nremote_refresh_seconds = 2.5\n")
    ini.chmod(0o600)
    ptd.config.reload()
    settings = ptd.config.settings()
    assert settings.remote_url == "s3://team-bucket/ml" and settings.remote_refresh_seconds == 2.5
    copies = isolated_home / ".cache" / "persist_to_disk" / "copies"
    assert settings.persist_path == copies / "s3" / "team-bucket" / "ml"
    assert settings.persist_path_local == isolated_home / ".cache" / "persist_to_disk" / "cache"


SENDER = """
import sys, cloudpickle
import persist_to_disk as ptd
ptd.config.set_persist_path(sys.argv[1])
ptd.config.set_project_path(sys.argv[3])

@ptd.persistf()
def square(x):
    return x * x

with open(sys.argv[2], "wb") as fh:
    cloudpickle.dump(square, fh)
"""

WORKER = """
import pickle, sys
with open(sys.argv[1], "rb") as fh:
    square = pickle.load(fh)
print(square(7), square.cache.path(7))
"""


def test_a_function_sent_to_a_worker_caches_into_the_shared_store(
    s3_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A function pickled by value (as Dask or a spawn pool sends one) caches into the bucket from a
    worker with another HOME, through the worker's own local copies."""
    import s3fs

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    (tmp_path / "proj").mkdir()
    env["HOME"] = str(tmp_path / "driver")
    subprocess.run([sys.executable, "-c", SENDER, s3_env, str(tmp_path / "f.pkl"), str(tmp_path / "proj")],
                   env=env, check=True, cwd=str(tmp_path))
    env["HOME"] = str(tmp_path / "worker")
    run = subprocess.run([sys.executable, "-c", WORKER, str(tmp_path / "f.pkl")], env=env,
                         capture_output=True, text=True, cwd=str(tmp_path))
    assert run.returncode == 0, run.stderr
    out = run.stdout.split()
    assert out[0] == "49" and out[1].startswith(str(tmp_path / "worker"))
    fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
    assert [p for p in fs.find(s3_env) if p.endswith(".ptd")]


def test_a_dask_cluster_of_machines_computes_each_key_once_and_the_driver_hits(
    s3_env: str, tmp_path: Path
) -> None:
    pytest.importorskip("distributed", reason="the Dask test needs the test extra: pip install -e '.[test]'")
    (tmp_path / "proj").mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path / "driver")}
    run = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "core" / "_dask_driver.py"), s3_env, str(tmp_path / "proj"),
         str(tmp_path / "workers")],
        env=env, capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["results"] == out["driver"] == [x * 10 for x in range(8)]
    computed = []
    for home in out["homes"]:
        done = Path(home) / "computed.txt"
        computed += done.read_text().split() if done.is_file() else []
    assert sorted(computed, key=int) == [str(x) for x in range(8)]  # each key once, on the workers
    assert not (tmp_path / "driver" / "computed.txt").exists()  # the driver hit every one
