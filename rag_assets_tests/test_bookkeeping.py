"""The ways around Dagster's per-partition costs (docs/decisions.md D7, D20), through a real
instance: add_partition_metadata gives each partition's materialization its own metadata,
on the fast path and on the public call's; partition_keys_of_the_run answers with the run's
range, read once (D38), and leaves the instance as it was."""

from types import SimpleNamespace

import dagster as dg
import pytest

from rag_assets.components.metadata import add_partition_metadata
from rag_assets.dagster_compat import partition_keys_of_the_run

parts = dg.DynamicPartitionsDefinition(name="things")


@dg.asset(partitions_def=parts, backfill_policy=dg.BackfillPolicy.single_run())
def thing(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    wanted = context.run.tags.get("stray")
    metadata = {key: {"length": len(key), "key": key} for key in context.partition_keys}
    if wanted:
        metadata[wanted] = {"length": 0}
    add_partition_metadata(context, metadata)
    return dg.MaterializeResult(metadata={"batch": len(metadata)})


def run(instance, tags=None):
    instance.add_dynamic_partitions("things", ["a", "bb", "ccc", "dddd"])
    return dg.materialize(
        [thing],
        instance=instance,
        tags={"dagster/asset_partition_range_start": "bb", "dagster/asset_partition_range_end": "dddd", **(tags or {})},
        raise_on_error=False,
    )


@pytest.mark.parametrize("fast_path", [True, False])
def test_each_partition_gets_its_own_metadata(fast_path, monkeypatch):
    if not fast_path:  # Dagster's internals without the accumulator: the public call per key
        monkeypatch.setattr(dg.AssetExecutionContext, "get_step_execution_context", lambda self: SimpleNamespace())
    with dg.instance_for_test() as instance:
        result = run(instance)
        assert result.success
        got = {
            e.materialization.partition: {k: v.value for k, v in e.materialization.metadata.items()}
            for e in result.get_asset_materialization_events()
        }
    assert got == {key: {"length": len(key), "key": key, "batch": 3} for key in ("bb", "ccc", "dddd")}


def test_a_partition_outside_the_run_is_refused():
    with dg.instance_for_test() as instance:
        result = run(instance, tags={"stray": "a"})
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "does not materialize: ['a']" in failure.step_failure_data.error.to_string()


def test_a_runs_keys_are_its_range_read_once_then_the_instance_is_as_it_was():
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("things", ["a", "b", "c", "d"])
        instance.add_dynamic_partitions("others", ["x"])
        reads = []
        storage_read = instance.event_log_storage.get_dynamic_partitions

        def counted(name):
            reads.append(name)
            return storage_read(name)

        instance.event_log_storage.get_dynamic_partitions = counted
        with partition_keys_of_the_run(instance, "things", "b", "c") as keys:
            assert keys == ["b", "c"]
            assert [instance.get_dynamic_partitions("things") for _ in range(3)] == [["b", "c"]] * 3
            assert instance.get_dynamic_partitions("others") == ["x"]
            assert instance.get_dynamic_partitions("others") == ["x"]
        assert reads == ["others", "others"]  # the range is read alone; others are read as before
        assert "get_dynamic_partitions" not in vars(instance)
        instance.add_dynamic_partitions("things", ["e"])
        assert instance.get_dynamic_partitions("things") == ["a", "b", "c", "d", "e"]
