"""Read-only access to ``s3://`` inputs: parse a URI, list its objects, stage them on disk.

The clean job downloads an S3 batch next to its output and reads the local copy, so the
checks it runs on local inputs (CSV header, Parquet schema, empty file) run on S3 inputs
too, and Spark needs no hadoop-aws jars (see README, "Reading from S3").

The client is built from the standard AWS environment (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_PROFILE``, ``AWS_ENDPOINT_URL``,
instance or pod roles); ``AIMASS_S3_ENDPOINT_URL``, when set, overrides the endpoint (for
MinIO, Ceph or a test server).

boto3 is imported inside the functions: DAG files import ``aimass`` and must stay cheap
to parse.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from aimass.platform.errors import ConfigError, StageError

log = logging.getLogger(__name__)

SCHEMES = ("s3://", "s3a://")
ENDPOINT_ENV = "AIMASS_S3_ENDPOINT_URL"
# Bucket names: 3-63 characters; upper case and "_" only in legacy (pre-2018) buckets.
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]$")
# Error codes that mean "these credentials may not do this" rather than "not there".
_DENIED = {
    "AccessDenied",
    "AllAccessDisabled",
    "ExpiredToken",
    "InvalidAccessKeyId",
    "InvalidToken",
    "SignatureDoesNotMatch",
}
_HIDDEN = (".", "_")


def is_s3_uri(path: str) -> bool:
    """Whether ``path`` is an ``s3://`` or ``s3a://`` URI."""
    return path.startswith(SCHEMES)


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key: one object, or a prefix read like a folder."""

    bucket: str
    key: str = ""

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def prefix(self) -> str:
        """The key as a folder prefix: ``""`` for the whole bucket, else ending in ``/``."""
        return self.key if not self.key or self.key.endswith("/") else f"{self.key}/"

    def contains(self, other: S3Location) -> bool:
        """Whether ``other`` is this location or lies under it as under a folder."""
        return other.bucket == self.bucket and (
            other.key.rstrip("/") == self.key.rstrip("/") or other.key.startswith(self.prefix)
        )


@dataclass(frozen=True)
class S3Object:
    """One object of an input: its key, size and the file name it is staged under."""

    bucket: str
    key: str
    size: int
    name: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_s3_uri(uri: str) -> S3Location:
    """``s3://bucket/key`` (``s3a://`` names the same object) as a location.

    Raises:
        ConfigError: not an S3 URI, no valid bucket name, or a ``.``/``..`` key segment
            (some servers resolve those, which would step out of an allowed prefix).
    """
    scheme = next((s for s in SCHEMES if uri.startswith(s)), None)
    if scheme is None:
        raise ConfigError(f"{uri!r} is not an S3 URI; write it as s3://bucket/key")
    bucket, _, key = uri.removeprefix(scheme).partition("/")
    if not _BUCKET.match(bucket):
        raise ConfigError(
            f"{uri!r} has no valid bucket name ({bucket!r}); write it as s3://bucket/key with "
            "a bucket name of 3-63 letters, digits, '.' or '-'"
        )
    if any(part in (".", "..") for part in key.split("/")):
        raise ConfigError(
            f"{uri!r} has a '.' or '..' segment in its key; write the key as it is stored in "
            "the bucket, without relative parts"
        )
    return S3Location(bucket, key)


def endpoint_url() -> str | None:
    """The endpoint set in the environment (``AIMASS_S3_ENDPOINT_URL`` first), else None."""
    for name in (ENDPOINT_ENV, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"):
        if os.environ.get(name):
            return os.environ[name]
    return None


def make_client() -> Any:
    """A boto3 S3 client from the AWS environment, with retries for transient failures."""
    import boto3
    from botocore.config import Config

    endpoint = endpoint_url()
    options: dict[str, Any] = {
        "connect_timeout": 10,
        "read_timeout": 60,
        # Standard mode retries throttling, 5xx and connection errors with backoff.
        "retries": {"mode": "standard", "max_attempts": 3},
    }
    if endpoint:
        # MinIO, Ceph and test servers serve buckets as paths, not as subdomains.
        options["s3"] = {"addressing_style": "path"}
    # boto3 reads AWS_ENDPOINT_URL itself; passing the endpoint also covers ours.
    return boto3.session.Session().client("s3", endpoint_url=endpoint, config=Config(**options))


@contextmanager
def _translated(location: S3Location, client: Any, action: str) -> Iterator[None]:
    """Turn botocore errors into project errors that say what to fix."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    endpoint = client.meta.endpoint_url
    try:
        yield
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise ConfigError(
            f"cannot {action} {location.uri}: no AWS credentials ({exc}); set "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or give the machine "
            "a role) in the environment that runs the clean job"
        ) from exc
    except (EndpointConnectionError, ConnectTimeoutError) as exc:
        raise ConfigError(
            f"cannot {action} {location.uri}: the S3 endpoint {endpoint} is unreachable "
            f"({exc}); check {ENDPOINT_ENV} or AWS_ENDPOINT_URL (leave both unset for AWS) "
            "and that the endpoint is up and reachable from this machine"
        ) from exc
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        detail = f"{code}: {error.get('Message', '')}".strip(": ")
        if code == "NoSuchBucket":
            raise ConfigError(
                f"cannot {action} {location.uri}: bucket '{location.bucket}' does not exist "
                f"at {endpoint}; fix the bucket name in the input, or create the bucket and "
                "upload the batch"
            ) from exc
        if code in _DENIED or status == 403:
            raise ConfigError(
                f"cannot {action} {location.uri}: access denied at {endpoint} ({detail}); "
                "check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or "
                f"AWS_PROFILE) and that their policy allows s3:ListBucket on bucket "
                f"'{location.bucket}' and s3:GetObject on its keys"
            ) from exc
        raise StageError(
            f"cannot {action} {location.uri}: S3 at {endpoint} answered HTTP {status} "
            f"({detail}); retry, or check the endpoint"
        ) from exc
    except BotoCoreError as exc:
        raise StageError(f"cannot {action} {location.uri} at {endpoint}: {exc}") from exc


def _head(client: Any, location: S3Location) -> S3Object | None:
    """The object ``location`` names, or None when there is none (it may be a prefix)."""
    from botocore.exceptions import ClientError

    try:
        head = client.head_object(Bucket=location.bucket, Key=location.key)
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            return None
        raise
    name = PurePosixPath(location.key).name
    return S3Object(location.bucket, location.key, int(head["ContentLength"]), name)


def list_objects(uri: str, *, client: Any | None = None) -> list[S3Object]:
    """The objects of an input: the one ``uri`` names, or those directly under it as a prefix.

    A prefix is read like a local folder: objects whose name starts with ``.`` or ``_``
    (``_SUCCESS``, ``.crc`` files) are skipped, and so are sub-folders, as a Spark read of
    a folder skips them.

    Raises:
        ConfigError: a bad URI, a missing bucket, no objects, no credentials, access denied
            or an unreachable endpoint, each with what to fix.
    """
    location = parse_s3_uri(uri)
    s3 = client if client is not None else make_client()
    with _translated(location, s3, "list"):
        single = None
        if location.key and not location.key.endswith("/"):
            single = _head(s3, location)
        hidden: list[str] = []
        folders: list[str] = []
        if single is not None:
            objects = [single]
        else:
            objects, hidden, folders = _list_prefix(s3, location)
    if not objects:
        under = f"s3://{location.bucket}/{location.prefix}"
        if hidden or folders:
            detail = f"{under} holds only hidden objects {hidden} and sub-folders {folders}"
        elif location.key and not location.key.endswith("/"):
            detail = f"there is no object {location.uri} and no objects under {under}"
        else:
            detail = f"there are no objects under {under}"
        raise ConfigError(
            f"input {location.uri}: {detail} (bucket '{location.bucket}' at "
            f"{s3.meta.endpoint_url}); upload the batch's CSV or Parquet files there, or fix "
            "the input path (a sub-folder is read only when it is given itself)"
        )
    total = sum(o.size for o in objects)
    log.info("s3 input %s: %d object(s), %d bytes", uri, len(objects), total)
    if folders:
        log.warning("s3 input %s: sub-folders %s are not part of the batch; ignored", uri, folders)
    return objects


def _list_prefix(client: Any, location: S3Location) -> tuple[list[S3Object], list[str], list[str]]:
    """Objects directly under the prefix, hidden names and sub-folders (each sorted)."""
    prefix = location.prefix
    objects: list[S3Object] = []
    hidden: list[str] = []
    folders: list[str] = []
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=location.bucket, Prefix=prefix, Delimiter="/"
    )
    for page in pages:
        for item in page.get("Contents", []):
            name = item["Key"][len(prefix) :]
            if not name:  # the "folder" marker some tools write
                continue
            if name.startswith(_HIDDEN):
                hidden.append(name)
                continue
            objects.append(S3Object(location.bucket, item["Key"], int(item["Size"]), name))
        for sub in page.get("CommonPrefixes", []):
            name = sub["Prefix"][len(prefix) :]
            if not name.startswith(_HIDDEN):
                folders.append(name)
    return sorted(objects, key=lambda o: o.key), sorted(hidden), sorted(folders)


def download(objects: Sequence[S3Object], dest: Path, *, client: Any | None = None) -> list[Path]:
    """Download ``objects`` (from :func:`list_objects`) into ``dest`` under their names.

    Returns:
        The local files, in the order of ``objects``.

    Raises:
        ConfigError: as :func:`list_objects`.
        StageError: an object changed or vanished while it was downloaded.
    """
    s3 = client if client is not None else make_client()
    dest.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    files: list[Path] = []
    for obj in objects:
        target = dest / obj.name
        with _translated(S3Location(obj.bucket, obj.key), s3, "download"):
            s3.download_file(obj.bucket, obj.key, str(target))
        size = target.stat().st_size
        if size != obj.size:
            raise StageError(
                f"{obj.uri} was {obj.size} bytes when listed but {size} bytes when downloaded: "
                "it changed during the run; rerun once the upload has finished"
            )
        files.append(target)
    log.info(
        "staged %d object(s), %d bytes, in %s (%.1f s)",
        len(files),
        sum(o.size for o in objects),
        dest,
        time.monotonic() - started,
    )
    return files


def stage(uri: str, dest: Path, *, client: Any | None = None) -> list[Path]:
    """List the input ``uri`` and download its objects into ``dest``; the local files."""
    s3 = client if client is not None else make_client()
    return download(list_objects(uri, client=s3), dest, client=s3)
