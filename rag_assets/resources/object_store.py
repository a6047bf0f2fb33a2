"""Reading documents from S3 (boto3, honouring AWS_ENDPOINT_URL) or a local folder (through
lib.folders: no symbolic link is ever followed)."""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import dagster as dg

from rag_assets.lib import folders


@dataclass(frozen=True)
class StoredObject:
    """An object as the source lists it. `etag` names its content (a file's size+mtime);
    `version` changes with every write, even of the same bytes: S3's VersionId where
    versioning is on, else ETag@LastModified; a file's size+mtime."""

    key: str
    etag: str
    size: int
    last_modified: float = 0.0  # seconds since the epoch
    version: str = ""


def s3_version(etag: str, last_modified: float, version_id: str | None = None) -> str:
    return version_id if version_id and version_id != "null" else f"{etag}@{int(last_modified)}"


def _s3_object(key: str, response: dict) -> StoredObject:
    """A HEAD or GET response as a StoredObject."""
    etag, modified = response["ETag"].strip('"'), response["LastModified"].timestamp()
    return StoredObject(
        key, etag, response["ContentLength"], modified, s3_version(etag, modified, response.get("VersionId"))
    )


def _file_object(key: str, stat: os.stat_result) -> StoredObject:
    etag = local_etag(stat)
    return StoredObject(key, etag, stat.st_size, stat.st_mtime, etag)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix")."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri!r}")
    return bucket, prefix


LOCAL_PAGE = 10_000  # files a page of a local folder's listing (a tick lists up to max_objects_per_tick)

# What a boto3 client takes from the environment when it is made: a client is kept per value.
AWS_ENVIRONMENT = (
    "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SESSION_TOKEN",
)


def aws_client(service: str, endpoint_url: str | None = None):
    """One boto3 client per process, service, endpoint and AWS environment (clients are
    thread-safe). Making one reads botocore's service models, ~0.1-0.3 s of CPU, and Dagster
    builds a sensor's resources anew at every tick: a client kept on the resource was made
    again at every tick (docs/decisions.md D33)."""
    return _aws_client(service, endpoint_url, tuple(os.environ.get(name) for name in AWS_ENVIRONMENT))


@functools.cache
def _aws_client(service: str, endpoint_url: str | None, environment: tuple):
    import boto3

    # A session of its own: boto3's default session is not safe across threads.
    return boto3.session.Session().client(service, endpoint_url=endpoint_url)


def local_etag(stat: os.stat_result) -> str:
    """Size and modification time: changes when the file does, without reading it."""
    return f"{stat.st_size:x}-{stat.st_mtime_ns:x}"


class ObjectStore(dg.ConfigurableResource):
    """Objects by URI: `s3://bucket/key` through boto3, anything else a local path.

    boto3 reads AWS_ENDPOINT_URL itself, so a moto server or MinIO needs no setting here;
    `endpoint_url` overrides it.
    """

    endpoint_url: str | None = None

    @property
    def _s3(self):
        return aws_client("s3", self.endpoint_url or None)  # thread-safe: the sensors HEAD many objects at once

    def read(self, uri: str, max_bytes: int | None = None) -> tuple[bytes, StoredObject]:
        """The object's bytes and what they are (its `key` is the URI). Raises
        FileNotFoundError when it is gone, folders.TooLarge past `max_bytes` (before reading),
        folders.NotFollowed for a file reached through a link."""
        if uri.startswith("s3://"):
            bucket, key = split_s3_uri(uri)
            try:
                response = self._s3.get_object(Bucket=bucket, Key=key)
            except self._s3.exceptions.NoSuchKey:
                raise FileNotFoundError(uri) from None
            if max_bytes is not None and response["ContentLength"] > max_bytes:
                response["Body"].close()
                raise folders.TooLarge(uri, response["ContentLength"], max_bytes)
            return response["Body"].read(), _s3_object(uri, response)
        data, stat = folders.read_file(uri, max_bytes)
        return data, _file_object(uri, stat)

    def head(self, uri: str) -> StoredObject | None:
        """The object as it is now (its `key` is the URI), or None when it does not exist."""
        if uri.startswith("s3://"):
            bucket, key = split_s3_uri(uri)
            try:
                return _s3_object(uri, self._s3.head_object(Bucket=bucket, Key=key))
            except self._s3.exceptions.ClientError as e:
                if e.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                    return None
                raise
        stat = folders.entry_status(uri)  # a link's own status: reading it is refused
        return None if stat is None else _file_object(uri, stat)

    def open_stream(self, uri: str) -> BinaryIO:
        """The object's bytes as a stream, read a buffer at a time (a large CSV export).
        Raises FileNotFoundError when it does not exist."""
        if uri.startswith("s3://"):
            bucket, key = split_s3_uri(uri)
            try:
                return self._s3.get_object(Bucket=bucket, Key=key)["Body"]
            except self._s3.exceptions.NoSuchKey:
                raise FileNotFoundError(uri) from None
        return open(uri, "rb")  # the caller closes it

    def write(self, uri: str, data: bytes) -> None:
        """Write an object (a thumbnail). A file is written whole, then renamed into place;
        no folder on the way may be a link."""
        if uri.startswith("s3://"):
            bucket, key = split_s3_uri(uri)
            self._s3.put_object(Bucket=bucket, Key=key, Body=data)
            return
        folders.write_file(uri, data)

    def delete(self, uri: str) -> None:
        """Delete an object; one that does not exist is no error (a link is deleted itself)."""
        if uri.startswith("s3://"):
            bucket, key = split_s3_uri(uri)
            self._s3.delete_object(Bucket=bucket, Key=key)
            return
        folders.remove_file(uri)

    def read_optional(self, uri: str, max_bytes: int | None = None) -> tuple[bytes, StoredObject] | None:
        """`read`, or None when there is no such object, including a name no object can have
        (too long for a file name or an S3 key)."""
        try:
            return self.read(uri, max_bytes)
        except (FileNotFoundError, IsADirectoryError):
            return None
        except Exception as e:
            too_long = getattr(e, "errno", None) == errno.ENAMETOOLONG  # a file name of more than 255 bytes
            too_long |= (getattr(e, "response", None) or {}).get("Error", {}).get(
                "Code"
            ) == "KeyTooLongError"  # S3: 1,024
            if too_long:
                return None
            raise

    def list(self, uri: str) -> Iterator[StoredObject]:
        """Every object below `uri` (an S3 prefix or a folder), keys relative to the root:
        the S3 key for S3, the path below the folder for a local folder."""
        token = None
        while True:
            page, token = self.list_page(uri, token)
            yield from page
            if token is None:
                return

    def list_page(self, uri: str, token: str | None = None) -> tuple[list[StoredObject], str | None]:
        """One page of `list` and the token of the next (None at the end), in key order. S3 pages
        hold up to 1,000 objects; a local folder's up to LOCAL_PAGE, its token the last key
        listed (each page walks again from it: the folder holding it is read again, the files
        before it are not looked at)."""
        if uri.startswith("s3://"):
            bucket, prefix = split_s3_uri(uri)
            kwargs = {"Bucket": bucket, "Prefix": prefix, **({"ContinuationToken": token} if token else {})}
            response = self._s3.list_objects_v2(**kwargs)
            page = []
            for o in response.get("Contents", []):
                if not o["Key"].endswith("/"):
                    etag, modified = o["ETag"].strip('"'), o["LastModified"].timestamp()
                    page.append(StoredObject(o["Key"], etag, o["Size"], modified, s3_version(etag, modified)))
            return page, response.get("NextContinuationToken") if response.get("IsTruncated") else None
        try:
            with contextlib.closing(folders.list_files(uri, after=token or "")) as walk:  # its folders closed at once
                files = list(itertools.islice(walk, LOCAL_PAGE + 1))
        except (FileNotFoundError, NotADirectoryError):
            return [], None
        page = [_file_object(key, stat) for key, stat in files[:LOCAL_PAGE]]
        return page, page[-1].key if len(files) > LOCAL_PAGE else None


def source_root(uri: str) -> tuple[str, str]:
    """(root, listing URI) of a source: `s3://bucket/prefix` -> ("s3://bucket", uri); a folder
    -> (its absolute path, the same)."""
    if uri.startswith("s3://"):
        bucket, _ = split_s3_uri(uri)
        return f"s3://{bucket}", uri
    path = str(Path(uri).resolve())
    return path, path
