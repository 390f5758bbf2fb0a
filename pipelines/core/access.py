"""Checked before a run touches a bucket: does it exist, may we list it, may we write to it.

A missing bucket or a denied permission is the user's to fix, so it is one line naming the bucket and
the permission (exit code 2), raised before any stage starts, never a traceback from deep inside Beam
after half a run. Only the error class and the server's error code are shown: never a credential.
"""

from __future__ import annotations

import logging
import os
import re
from contextlib import contextmanager

from apache_beam.io.filesystems import FileSystems

from pipelines.core import uris

# The permission each probe needs, per scheme, as the providers' IAM documentation names them.
PERMISSIONS = {
    "s3": {"list": "s3:ListBucket", "read": "s3:GetObject", "write": "s3:PutObject + s3:DeleteObject"},
    "gs": {
        "list": "storage.objects.list",
        "read": "storage.objects.get",
        "write": "storage.objects.create + storage.objects.delete",
    },
}
_MISSING = re.compile(r"NoSuchBucket|bucket does not exist|\b404\b|NotFound", re.IGNORECASE)
_DENIED = re.compile(
    r"AccessDenied|Forbidden|\b403\b|\b401\b|InvalidAccessKeyId|SignatureDoesNotMatch|"
    r"does not have .* access|Unauthorized|ExpiredToken",
    re.IGNORECASE,
)


class StorageError(ValueError):
    """A bucket that is missing or refuses an operation (a user error: exit code 2)."""


def bucket_of(uri: str) -> str:
    scheme, _, rest = uri.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def explain(error: BaseException, uri: str, action: str) -> StorageError | None:
    """A one-line StorageError for a missing bucket or denied access, else None (not ours to explain)."""
    text = _chain_text(error)
    scheme = uri.partition("://")[0].lower()
    permission = PERMISSIONS.get(scheme, {}).get(action, action)
    if _DENIED.search(text):
        code = _code(text)
        return StorageError(
            f"access denied to {bucket_of(uri)} ({action} {uri}{code}): the credentials in use need "
            f"{permission} (credentials come from the SDK's standard chain: see docs/scale-out.md)"
        )
    if _MISSING.search(text):  # listing a missing prefix is empty, not 404: the bucket is missing
        return StorageError(f"bucket {bucket_of(uri)} does not exist (or is not visible): {action} {uri}")
    return None


def _chain_text(error: BaseException) -> str:
    parts, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        parts.append(f"{type(error).__name__}: {error}")
        error = error.__cause__ or error.__context__
    return " | ".join(parts)


def _code(text: str) -> str:
    found = re.search(r"\((AccessDenied|InvalidAccessKeyId|SignatureDoesNotMatch|ExpiredToken)\)", text)
    if found:
        return f", {found.group(1)}"
    found = re.search(r"\b(401|403)\b", text)
    return f", HTTP {found.group(1)}" if found else ""


@contextmanager
def _quiet_beam():
    """Beam logs a traceback at ERROR for a failed upload before raising; the one-line error is ours."""
    logging.disable(logging.ERROR)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _head_s3_bucket(uri: str) -> None:
    """Beam's S3 listing treats a missing bucket as an empty one: ask S3 about the bucket itself, with
    the client Beam's S3 file system builds from the same options (endpoint, region, credentials)."""
    from apache_beam.io.aws.clients.s3 import boto3_client

    client = boto3_client.Client(FileSystems._pipeline_options)  # noqa: SLF001 - set by uris.configure
    client.client.head_bucket(Bucket=bucket_of(uri).partition("://")[2])


def check_readable(uri: str) -> None:
    """The bucket of an input URI exists and we may list it (the input itself may be a glob)."""
    uris.ensure_configured()
    try:
        if uri.lower().startswith("s3://"):
            _head_s3_bucket(uri)
        FileSystems.match([uri if any(c in uri for c in "*?[") else uri.rstrip("/") + "*"], limits=[1])
    except Exception as e:  # noqa: BLE001 - classified below; anything else is not ours to explain
        raise explain(e, uri, "list") or e from None


def check_writable(root: str) -> None:
    """We may create and delete objects under `root`: a probe object written and removed at once."""
    uris.ensure_configured()
    probe = uris.join(root, f"_write_probe-{os.getpid()}")
    try:
        with _quiet_beam(), FileSystems.create(probe) as f:
            f.write(b"probe")  # not empty: Beam's S3 writer cannot create an empty object
        FileSystems.delete([probe])
    except Exception as e:  # noqa: BLE001 - classified below
        raise explain(e, root, "write") or e from None


def check_run_paths(inputs: list[str], output: str) -> None:
    """Every bucket a run reads or writes, before its first stage."""
    for uri in inputs:
        if uris.is_remote(uri):
            check_readable(uri)
    if uris.is_remote(output):
        check_readable(output)
        check_writable(output)
