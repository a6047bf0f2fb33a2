"""The work location's IO manager and parts, on a folder and on S3 (a moto server)."""

import uuid
from pathlib import Path

import dagster as dg
import pytest

from rag_assets.resources.io_manager import PartitionedPickleIOManager, WorkArea, s3_client
from rag_assets.resources.object_store import split_s3_uri

PARTS = dg.StaticPartitionsDefinition(["acme|s3://b|a.pdf", "acme|s3://b|b%2C.pdf", "globex|/srv|c.txt"])
A, B, C = PARTS.get_partition_keys()
KEY = dg.AssetKey(["docs", "chunks"])


def out_ctx(first, last=None, key=KEY):
    return dg.build_output_context(
        asset_key=key, asset_partitions_def=PARTS, asset_partition_key_range=dg.PartitionKeyRange(first, last or first)
    )


def in_ctx(first, last=None, key=KEY):
    return dg.build_input_context(
        asset_key=key, asset_partitions_def=PARTS, asset_partition_key_range=dg.PartitionKeyRange(first, last or first)
    )


@pytest.fixture(params=["folder", "s3"])
def io(request, tmp_path):
    """The IO manager on each kind of work location: a folder, and an S3 prefix (moto)."""
    if request.param == "folder":
        return PartitionedPickleIOManager(base_uri=str(tmp_path))
    s3 = request.getfixturevalue("s3_env")
    bucket = f"work-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    return PartitionedPickleIOManager(base_uri=f"s3://{bucket}/rag/work")


def test_round_trip_ranged(io, tmp_path):
    values = {A: [1, 2], B: {"x": "y"}, C: None}
    io.handle_output(out_ctx(A, C), values)
    assert io.load_input(in_ctx(A, C)) == values
    assert io.load_input(in_ctx(B)) == {B: {"x": "y"}}  # a later single-partition run reads its part
    assert not list(tmp_path.rglob("*.tmp"))


def test_single_partitions_then_ranged_read(io):
    for key in (A, B, C):
        io.handle_output(out_ctx(key), {key: key.upper()})
    assert io.load_input(in_ctx(A, C)) == {k: k.upper() for k in (A, B, C)}


def test_rerun_replaces_value(io):
    io.handle_output(out_ctx(A), {A: "old"})
    io.handle_output(out_ctx(A), {A: "new"})
    assert io.load_input(in_ctx(A)) == {A: "new"}


def test_asset_keys_do_not_share_files(io):
    io.handle_output(out_ctx(A), {A: "chunks"})
    io.handle_output(out_ctx(A, key=dg.AssetKey(["docs", "embeddings"])), {A: "embeddings"})
    assert io.load_input(in_ctx(A)) == {A: "chunks"}


@pytest.mark.parametrize("obj", [{A: 1}, {A: 1, B: 2, C: 3}, {A: 1, "other": 2}, {}])
def test_output_keys_must_match_the_run(io, obj):
    with pytest.raises(ValueError, match="differ from the run's partitions"):
        io.handle_output(out_ctx(A, B), obj)


def test_missing_partition(io):
    io.handle_output(out_ctx(A), {A: 1})
    with pytest.raises(FileNotFoundError, match="has not been materialized"):
        io.load_input(in_ctx(A, B))


def listing(base_uri: str) -> list[str]:
    """Every object below a work location, relative to it."""
    if base_uri.startswith("s3://"):
        bucket, prefix = split_s3_uri(base_uri)
        pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
        return sorted(o["Key"][len(prefix) + 1 :] for page in pages for o in page.get("Contents", []))
    return sorted(str(p.relative_to(base_uri)) for p in Path(base_uri).rglob("*") if p.is_file())


def test_parts_replace_the_earlier_ones_and_are_purged_with_the_partition(io):
    area = WorkArea(base_uri=io.base_uri)
    first = area.write_parts(KEY, A, [[1, 2], [3]])
    assert list(first) == [[1, 2], [3]]
    second = area.write_parts(KEY, A, [["x"]])
    assert list(second) == [["x"]]
    assert len([f for f in listing(io.base_uri) if "part-" in f]) == 1  # the first parts are gone
    io.handle_output(out_ctx(A), {A: second})
    assert list(io.load_input(in_ctx(A))[A]) == [["x"]]
    io.delete_partition([KEY], A)
    assert listing(io.base_uri) == []
    with pytest.raises(FileNotFoundError):
        list(second)
