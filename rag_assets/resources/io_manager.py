"""Intermediate values of partitions: one object per partition, even in ranged runs, and a
partition's many items in parts a step writes and the next reads one at a time.

They live under a work location (RAG_WORK_URI): a local folder, or `s3://bucket/prefix` so
that steps on other machines (ECS tasks, the Lambda embed step) read each other's outputs.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import shutil
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from rag_assets.resources.object_store import split_s3_uri


def s3_client():
    """One S3 client per process and endpoint (clients are thread-safe), built by dagster-aws
    with its retries; AWS_ENDPOINT_URL names a moto server or MinIO."""
    return _s3_client(os.environ.get("AWS_ENDPOINT_URL") or None)


@functools.cache
def _s3_client(endpoint_url: str | None):
    from dagster_aws.s3.utils import construct_s3_client

    return construct_s3_client(max_attempts=5, endpoint_url=endpoint_url)


def join(base: str, *parts: str) -> str:
    """A location below `base` (a folder or an s3:// prefix)."""
    return "/".join([base.rstrip("/"), *parts]) if base.startswith("s3://") else str(Path(base, *parts))


def write_bytes(uri: str, data: bytes) -> None:
    """Write an object whole: a reader never sees half of it (S3 PUTs are atomic; a file is
    written beside and renamed)."""
    if uri.startswith("s3://"):
        bucket, key = split_s3_uri(uri)
        s3_client().put_object(Bucket=bucket, Key=key, Body=data)
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)  # atomic: a killed run never leaves half a file


def read_bytes(uri: str) -> bytes:
    """An object's bytes; FileNotFoundError when there is none."""
    if uri.startswith("s3://"):
        bucket, key = split_s3_uri(uri)
        client = s3_client()
        try:
            return client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except client.exceptions.NoSuchKey:
            raise FileNotFoundError(uri) from None
    return Path(uri).read_bytes()


def remove(uri: str, keep: str | None = None) -> None:
    """The object at `uri` and everything below it, but for what is below `keep`."""
    if uri.startswith("s3://"):
        bucket, key = split_s3_uri(uri)
        client, kept = s3_client(), split_s3_uri(keep)[1] + "/" if keep else None
        client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key}], "Quiet": True})
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key + "/"):
            doomed = [{"Key": o["Key"]} for o in page.get("Contents", []) if not (kept and o["Key"].startswith(kept))]
            if doomed:
                client.delete_objects(Bucket=bucket, Delete={"Objects": doomed, "Quiet": True})
        return
    path = Path(uri)
    if path.is_dir():
        for child in path.iterdir():
            if keep is None or child != Path(keep):
                shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)
        if keep is None:
            shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def partition_uri(base: str, asset_key: dg.AssetKey, partition_key: str) -> str:
    """Where an asset's value for a partition is kept (its parts below `<it>.parts/`)."""
    digest = hashlib.sha256(partition_key.encode("utf-8")).hexdigest()[:40]
    return join(base, *asset_key.path, digest[:2], digest + ".pkl")


def write_pickle(uri: str, obj) -> None:
    write_bytes(uri, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


@dataclass(frozen=True)
class Parts:
    """A partition's items in objects of a few thousand each: iterating gives one part (a
    list) at a time, so a date of 100,000 records is never in memory whole."""

    files: tuple[str, ...]  # their locations: paths or s3:// URIs

    def __iter__(self) -> Iterator[list]:
        for file in self.files:
            yield pickle.loads(read_bytes(file))


def parts_of(items: list | Parts) -> Iterator[list]:
    """The parts of a partition's items, whether they are in memory (one part) or in files."""
    return iter([items]) if isinstance(items, list) else iter(items)


class WorkArea(dg.ConfigurableResource):
    """The work location (RAG_WORK_URI), for steps that write a partition's items in parts
    (the IO manager keeps only their list) and for what remote steps exchange."""

    base_uri: str

    def write_parts(self, asset_key: dg.AssetKey, partition_key: str, parts: Iterable[list]) -> Parts:
        """Each list of `parts` in an object of its own, under a new folder that then replaces
        the partition's earlier parts."""
        home = partition_uri(self.base_uri, asset_key, partition_key).removesuffix(".pkl") + ".parts"
        folder = join(home, uuid.uuid4().hex)
        files = []
        for n, part in enumerate(parts):
            files.append(join(folder, f"part-{n:05}.pkl"))
            write_pickle(files[-1], part)
        remove(home, keep=folder)
        return Parts(tuple(files))

    def scratch(self, *names: str) -> str:
        """A location for what a step and its remote workers exchange (`_pipes/...`): the
        deployment expires it after a few days (deploy/storage.tf)."""
        return join(self.base_uri, "_pipes", *names)


class PartitionedPickleIOManager(dg.ConfigurableIOManager):
    """Stores a `{partition_key: value}` output one pickle per partition, and loads an input's
    partitions back as such a dict. Dagster's UPath IO managers (and dagster-aws's S3 one)
    refuse ranged (single-run) outputs; this one exists to allow them."""

    base_uri: str

    def _uri(self, asset_key: dg.AssetKey, partition_key: str) -> str:
        return partition_uri(self.base_uri, asset_key, partition_key)

    def handle_output(self, context: dg.OutputContext, obj: dict) -> None:
        expected = set(context.asset_partition_keys)
        if set(obj) != expected:
            raise ValueError(
                f"{context.asset_key.to_user_string()}: output keys {sorted(obj)[:3]} differ from the run's partitions"
            )
        for key, value in obj.items():
            write_pickle(self._uri(context.asset_key, key), value)

    def delete_partition(self, asset_keys: list[dg.AssetKey], partition_key: str) -> None:
        """Forget a partition's values and parts (its document was purged): nothing is left behind."""
        for asset_key in asset_keys:
            uri = self._uri(asset_key, partition_key)
            remove(uri)
            remove(uri.removesuffix(".pkl") + ".parts")

    def load_input(self, context: dg.InputContext) -> dict:
        values = {}
        for key in context.asset_partition_keys:
            try:
                values[key] = pickle.loads(read_bytes(self._uri(context.asset_key, key)))
            except FileNotFoundError:
                raise FileNotFoundError(
                    f"{context.asset_key.to_user_string()}[{key}] has not been materialized"
                ) from None
        return values
