"""One boto3 S3 client per process and settings, for Beam's S3 file system.

Beam 2.77's S3 file system builds a new `boto3.session.Session()` and client for every operation
(each `FileSystems.open / create / match / exists / delete` on an s3:// path). Building a client parses
botocore's service and endpoint JSON again: measured here ~1 s per operation on 2 busy cores, 400
operations in a 4-article run (most of its 12 minutes). boto3 clients are thread-safe and refresh
credentials from the chain themselves, so Beam's client module is given a `boto3` whose sessions hand
out one cached client per set of client arguments. Nothing else changes: same arguments, same
credential chain, same endpoint settings. The cache holds clients only in memory; nothing is logged.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

_clients: dict[tuple, Any] = {}
_lock = threading.Lock()


class _CachingSession:
    """Stands in for `boto3.session.Session()` where Beam builds its S3 client."""

    def client(self, **kwargs: Any) -> Any:
        import boto3

        key = tuple(sorted((k, str(v)) for k, v in kwargs.items()))
        with _lock:
            if key not in _clients:
                _clients[key] = boto3.session.Session().client(**kwargs)
            return _clients[key]


def install() -> None:
    """Make Beam's S3 client module reuse clients (idempotent; a no-op without boto3 / Beam's AWS IO)."""
    try:
        from apache_beam.io.aws.clients.s3 import boto3_client
    except ImportError:
        return
    if getattr(boto3_client, "boto3", None) is None or isinstance(boto3_client.boto3, SimpleNamespace):
        return
    real = boto3_client.boto3
    boto3_client.boto3 = SimpleNamespace(session=SimpleNamespace(Session=_CachingSession), real=real)
