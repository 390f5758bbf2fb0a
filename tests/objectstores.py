"""Real object-store servers on 127.0.0.1 for the session: moto's S3 server and a GCS emulator.

Nothing in the project is patched: the servers are reached through the SDKs' own endpoint settings
(`AWS_ENDPOINT_URL_S3` for boto3 and so Beam's S3 file system and smart-open; `STORAGE_EMULATOR_HOST`
for google-cloud-storage and so Beam's GCS file system and smart-open), exactly as a user would point
a run at MinIO or fake-gcs-server. Credentials are dummies that the servers accept; they are distinctive
so tests can assert they never reach a log or an output. Buckets are created per test (`new_bucket`).
"""

from __future__ import annotations

import itertools
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

# Dummy credentials the local servers accept; tests grep outputs and logs for them.
S3_KEY_ID = "AKIAH19TESTKEYID0000"
S3_SECRET = "h19-s3-secret-never-logged-4f9c2a"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ObjectStores:
    s3_endpoint: str
    gcs_endpoint: str
    env: dict[str, str]
    _count: itertools.count = field(default_factory=itertools.count)

    def new_bucket(self, scheme: str) -> str:
        """A fresh empty bucket on the S3 (`s3`) or GCS (`gs`) server; returns its root URI."""
        name = f"h19-{scheme}-{next(self._count)}"
        if scheme == "s3":
            import boto3

            boto3.client("s3").create_bucket(Bucket=name)
        else:
            from google.cloud import storage

            storage.Client(project="h19-test").create_bucket(name)
        return f"{scheme}://{name}"


@pytest.fixture(scope="session")
def object_stores() -> Iterator[ObjectStores]:
    """Start both servers, point the SDKs at them through the environment, stop them at the end."""
    pytest.importorskip("moto.server", reason="pip install -e '.[test]' (moto[server])")
    pytest.importorskip("gcp_storage_emulator", reason="pip install -e '.[test]' (gcp-storage-emulator)")
    from gcp_storage_emulator.server import create_server
    from moto.server import ThreadedMotoServer

    logging.getLogger("gcp_storage_emulator").setLevel(logging.ERROR)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    s3_port, gcs_port = free_port(), free_port()
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
    s3.start()
    gcs = create_server("127.0.0.1", gcs_port, in_memory=True)
    gcs.start()
    env = {
        "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{s3_port}",
        "AWS_ACCESS_KEY_ID": S3_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{gcs_port}",
        "GOOGLE_CLOUD_PROJECT": "h19-test",
        "NO_GCE_CHECK": "True",  # no metadata-server probe: this is not a GCE machine
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        mp.delenv("AWS_PROFILE", raising=False)
        try:
            yield ObjectStores(env["AWS_ENDPOINT_URL_S3"], env["STORAGE_EMULATOR_HOST"], env)
        finally:
            s3.stop()
            gcs.stop()
