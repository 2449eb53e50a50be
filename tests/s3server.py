"""An S3 server on 127.0.0.1 for the tests: moto's, in a thread of the test process.

Only loopback is ever contacted: the server binds 127.0.0.1 on a free port, and the
tests point ``AWS_ENDPOINT_URL`` at it with the dummy credentials moto accepts.
"""

from __future__ import annotations

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
