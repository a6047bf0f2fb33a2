"""Reading documents from S3 (boto3, honouring AWS_ENDPOINT_URL) or a local folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import BinaryIO

import dagster as dg


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
    return StoredObject(key, etag, response["ContentLength"], modified, s3_version(etag, modified, response.get("VersionId")))


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


def local_etag(stat: os.stat_result) -> str:
    """Size and modification time: changes when the file does, without reading it."""
    return f"{stat.st_size:x}-{stat.st_mtime_ns:x}"


class ObjectStore(dg.ConfigurableResource):
    """Objects by URI: `s3://bucket/key` through boto3, anything else a local path.

    boto3 reads AWS_ENDPOINT_URL itself, so a moto server or MinIO needs no setting here;
    `endpoint_url` overrides it.
    """

    endpoint_url: str | None = None

    @cached_property
    def _s3(self):
        import boto3

        # A session of its own: boto3's default session is not safe across threads (the
        # sensors HEAD many objects at once).
        return boto3.session.Session().client("s3", endpoint_url=self.endpoint_url or None)

    def read(self, uri: str) -> tuple[bytes, StoredObject]:
        """The object's bytes and what they are (its `key` is the URI). Raises
        FileNotFoundError when it is gone."""
        if uri.startswith("s3://"):
            bucket, key = split_s3_uri(uri)
            try:
                response = self._s3.get_object(Bucket=bucket, Key=key)
            except self._s3.exceptions.NoSuchKey:
                raise FileNotFoundError(uri) from None
            return response["Body"].read(), _s3_object(uri, response)
        path = Path(uri)
        stat = path.stat()  # before reading: a write during the read then shows as a new version
        return path.read_bytes(), _file_object(uri, stat)

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
        try:
            return _file_object(uri, Path(uri).stat())
        except (FileNotFoundError, NotADirectoryError):
            return None

    def open_stream(self, uri: str) -> BinaryIO:
        """The object's bytes as a stream, read a buffer at a time (a large CSV export).
        Raises FileNotFoundError when it does not exist."""
        if uri.startswith("s3://"):
            bucket, key = split_s3_uri(uri)
            try:
                return self._s3.get_object(Bucket=bucket, Key=key)["Body"]
            except self._s3.exceptions.NoSuchKey:
                raise FileNotFoundError(uri) from None
        return open(uri, "rb")  # noqa: SIM115 - the caller closes it

    def write(self, uri: str, data: bytes) -> None:
        """Write an object (a thumbnail). A file is written whole, then renamed into place."""
        if uri.startswith("s3://"):
            bucket, key = split_s3_uri(uri)
            self._s3.put_object(Bucket=bucket, Key=key, Body=data)
            return
        path = Path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")  # listings skip dot files
        partial.write_bytes(data)
        partial.replace(path)

    def delete(self, uri: str) -> None:
        """Delete an object; one that does not exist is no error."""
        if uri.startswith("s3://"):
            bucket, key = split_s3_uri(uri)
            self._s3.delete_object(Bucket=bucket, Key=key)
            return
        Path(uri).unlink(missing_ok=True)

    def read_optional(self, uri: str) -> tuple[bytes, StoredObject] | None:
        try:
            return self.read(uri)
        except (FileNotFoundError, IsADirectoryError):
            return None

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
        """One page of `list` and the token of the next (None at the end). S3 pages hold up to
        1,000 objects; a local folder is one page."""
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
        root = Path(uri)
        page = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                path = Path(dirpath, name)
                try:
                    stat = path.stat()
                except FileNotFoundError:  # deleted while we walked
                    continue
                page.append(_file_object(path.relative_to(root).as_posix(), stat))
        return page, None


def source_root(uri: str) -> tuple[str, str]:
    """(root, listing URI) of a source: `s3://bucket/prefix` -> ("s3://bucket", uri); a folder
    -> (its absolute path, the same)."""
    if uri.startswith("s3://"):
        bucket, _ = split_s3_uri(uri)
        return f"s3://{bucket}", uri
    path = str(Path(uri).resolve())
    return path, path
