import dagster as dg
import pytest

from rag_assets.resources.io_manager import PartitionedPickleIOManager

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


@pytest.fixture
def io(tmp_path):
    return PartitionedPickleIOManager(base_dir=str(tmp_path))


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
