"""Reading documents from S3 (boto3, honouring AWS_ENDPOINT_URL) or a local folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import dagster as dg


@dataclass(frozen=True)
class StoredObject:
    key: str
    etag: str
    size: int


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

        return boto3.client("s3", endpoint_url=self.endpoint_url or None)

    def read(self, uri: str) -> tuple[bytes, str]:
        """The object's bytes and ETag. Raises FileNotFoundError when it is gone."""
        if uri.startswith("s3://"):
            bucket, key = split_s3_uri(uri)
            try:
                response = self._s3.get_object(Bucket=bucket, Key=key)
            except self._s3.exceptions.NoSuchKey:
                raise FileNotFoundError(uri) from None
            return response["Body"].read(), response["ETag"].strip('"')
        path = Path(uri)
        data = path.read_bytes()
        return data, local_etag(path.stat())

    def read_optional(self, uri: str) -> bytes | None:
        try:
            return self.read(uri)[0]
        except (FileNotFoundError, IsADirectoryError):
            return None

    def list(self, uri: str) -> Iterator[StoredObject]:
        """Every object below `uri` (an S3 prefix or a folder), keys relative to the root:
        the S3 key for S3, the path below the folder for a local folder."""
        if uri.startswith("s3://"):
            bucket, prefix = split_s3_uri(uri)
            paginator = self._s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    if not item["Key"].endswith("/"):
                        yield StoredObject(item["Key"], item["ETag"].strip('"'), item["Size"])
            return
        root = Path(uri)
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                path = Path(dirpath, name)
                stat = path.stat()
                yield StoredObject(path.relative_to(root).as_posix(), local_etag(stat), stat.st_size)
