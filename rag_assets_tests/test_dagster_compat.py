"""rag_assets.dagster_compat, the one module that reaches past Dagster's public API
(docs/architecture.md, Dagster's private names): each piece still does what rag_assets needs
of it on the installed Dagster, and each workaround is still needed. A Dagster upgrade that
moves or changes one of them fails here, by name, rather than slowing or breaking the
pipeline. Nothing else in the repository imports a private Dagster module."""

import ast
import contextlib
import os
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster_pipes import (
    DAGSTER_PIPES_CONTEXT_ENV_VAR,
    DAGSTER_PIPES_MESSAGES_ENV_VAR,
    PipesMappingParamsLoader,
    encode_param,
    open_dagster_pipes,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag_assets import dagster_compat as compat
from rag_assets.frontends.graphql_client import PARTITION_TAG, RANGE_END_TAG, RANGE_START_TAG
from rag_assets.settings import INSTANCE_YAML

REPO = Path(__file__).resolve().parents[1]
ADAPTER = REPO / "rag_assets" / "dagster_compat.py"
OUTPUTS = {"out", "node_modules", "__pycache__"}  # what the benchmarks and tools write (.gitignore)
PRIVATE_MODULES = ("dagster._", "dagster_pipes._", "dagster_shared._")
# Private names reached through an object, which only the adapter may touch.
PRIVATE_ATTRIBUTES = {"_metadata_accumulator", "get_step_execution_context", "free_concurrency_slots_for_run"}


def test_no_private_dagster_name_outside_the_adapter():
    found = []
    for folder in ("rag_assets", "rag_assets_tests", "benchmarks", "scripts"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path == ADAPTER or not OUTPUTS.isdisjoint(path.relative_to(REPO).parts):
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    modules = [f"{node.module}.{alias.name}" for alias in node.names]
                elif (
                    isinstance(node, ast.Attribute)
                    and node.attr in PRIVATE_ATTRIBUTES
                    and getattr(node.value, "id", "") != "compat"
                ):
                    modules = [node.attr]
                elif (
                    isinstance(node, ast.Attribute)
                    and node.attr == "_instance"
                    and getattr(node.value, "id", "") == "PipesContext"
                ):
                    modules = ["PipesContext._instance"]
                else:
                    continue
                found += [
                    f"{path.relative_to(REPO)}:{node.lineno}: {m}"
                    for m in modules
                    if m.startswith(PRIVATE_MODULES) or m in PRIVATE_ATTRIBUTES or m == "PipesContext._instance"
                ]
    assert found == [], "use rag_assets.dagster_compat (or Dagster's public API):\n" + "\n".join(found)


# --- Run tags -----------------------------------------------------------------------------


def test_the_tag_names_are_dagsters_own():
    ours = {name: getattr(compat, name) for name in compat.DAGSTER_TAG_CONSTANTS}
    assert ours == compat.tags_as_dagster_defines_them()
    # The GraphQL client keeps its own copies (it does not import dagster): the same strings.
    assert (PARTITION_TAG, RANGE_START_TAG, RANGE_END_TAG) == (
        compat.PARTITION_TAG,
        compat.PARTITION_RANGE_START_TAG,
        compat.PARTITION_RANGE_END_TAG,
    )


compat_docs = dg.DynamicPartitionsDefinition(name="compat_docs")
KEYS = [f"doc-{n:02d}" for n in range(12)]
RANGE = KEYS[3:9]


def ranged_run(instance, assets, **tags):
    instance.add_dynamic_partitions(
        compat_docs.name, [k for k in KEYS if not instance.has_dynamic_partition(compat_docs.name, k)]
    )
    return dg.materialize(
        assets,
        instance=instance,
        tags={compat.PARTITION_RANGE_START_TAG: RANGE[0], compat.PARTITION_RANGE_END_TAG: RANGE[-1], **tags},
        raise_on_error=False,
    )


SEEN: dict[str, object] = {}  # what the assets saw in the last run


@pytest.fixture(autouse=True)
def _clear_seen():
    SEEN.clear()


@dg.asset(partitions_def=compat_docs, backfill_policy=dg.BackfillPolicy.single_run())
def ranged(context: dg.AssetExecutionContext) -> None:
    SEEN["keys"] = list(context.partition_keys)
    how = context.run.tags.get("how")
    by_partition = {key: {"key": key, "length": len(key)} for key in context.partition_keys}
    if how == "public":
        for key, metadata in by_partition.items():
            context.add_asset_metadata(metadata, partition_key=key)
    elif how == "adapter":
        SEEN["fast_path"] = compat.add_checked_partition_metadata(context, by_partition)


@dg.asset(partitions_def=compat_docs, backfill_policy=dg.BackfillPolicy.single_run(), deps=[ranged])
def downstream(context: dg.AssetExecutionContext) -> None:
    SEEN["downstream"] = list(context.partition_keys)


def test_a_run_with_the_range_tags_is_a_ranged_run():
    with dg.instance_for_test() as instance:
        result = ranged_run(instance, [ranged])
        assert result.success
        assert SEEN["keys"] == RANGE
        assert sorted(e.materialization.partition for e in result.get_asset_materialization_events()) == RANGE


# --- Per-partition metadata (docs/decisions.md D7) ----------------------------------------


def metadata_by_partition(result):
    return {
        e.materialization.partition: {k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
    }


def test_per_partition_metadata_takes_the_fast_path_and_lands_where_the_public_call_puts_it():
    with dg.instance_for_test() as instance:
        public, adapter = ranged_run(instance, [ranged], how="public"), ranged_run(instance, [ranged], how="adapter")
        assert public.success and adapter.success
        assert SEEN["fast_path"] is True, (
            "Dagster's step context changed shape: D7's fast path is off (the public call per key runs)"
        )
        assert (
            metadata_by_partition(adapter)
            == metadata_by_partition(public)
            == {k: {"key": k, "length": len(k)} for k in RANGE}
        )


def count_key_reads(instance) -> list[str]:
    """The names of the dynamic partitions definitions whose keys storage loads from now on."""
    reads, read = [], instance.event_log_storage.get_dynamic_partitions

    def counted(name):
        reads.append(name)
        return read(name)

    instance.event_log_storage.get_dynamic_partitions = counted
    return reads


def test_the_public_call_still_loads_every_key_per_call():
    """Why D7's fast path exists; when this fails, Dagster checks a key without loading them
    all, and add_checked_partition_metadata can give way to the public call."""
    with dg.instance_for_test() as instance:
        ranged_run(instance, [ranged], how="adapter")
        reads = count_key_reads(instance)
        assert ranged_run(instance, [ranged], how="adapter").success
        baseline = len(reads)
        reads.clear()
        assert ranged_run(instance, [ranged], how="public").success
        assert len(reads) - baseline >= len(RANGE), (baseline, len(reads))


# --- A ranged run reads its own keys (docs/decisions.md D20, D38) --------------------------


@pytest.mark.parametrize(
    "first, last", [(KEYS[3], KEYS[8]), (KEYS[0], KEYS[-1]), (KEYS[5], KEYS[5]), (KEYS[9], KEYS[2])]
)
def test_the_keys_of_a_range_are_dagsters_slice_without_the_others(first, last):
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(compat_docs.name, KEYS)
        instance.delete_dynamic_partition(compat_docs.name, KEYS[4])  # a hole in the storage ids
        instance.add_dynamic_partitions("other", ["doc-05", "x"])  # another definition, same keys
        instance.add_dynamic_partitions(compat_docs.name, ["doc-99"])
        reads = count_key_reads(instance)
        ours = compat.partition_keys_in_range(instance, compat_docs.name, first, last)
        assert reads == []
        with dg.partition_loading_context(dynamic_partitions_store=instance):
            dagsters = compat_docs.get_partition_keys_in_range(dg.PartitionKeyRange(first, last))
        assert ours == dagsters
        ids = compat.partition_storage_ids(instance, compat_docs.name, ["doc-99", KEYS[4], "x", KEYS[0]])
        assert sorted(ids, key=ids.get) == [KEYS[0], "doc-99"]  # the deleted key and the other's are not ours


def test_a_range_with_an_unknown_end_is_left_to_dagster():
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(compat_docs.name, KEYS)
        assert compat.partition_keys_in_range(instance, compat_docs.name, KEYS[0], "nope") is None
        with compat.partition_keys_of_the_run(instance, compat_docs.name, KEYS[0], "nope"):
            assert "get_dynamic_partitions" not in vars(instance)


def test_a_ranged_run_reads_no_key_list_under_partition_keys_of_the_run_and_many_without():
    with dg.instance_for_test() as instance:
        ranged_run(instance, [ranged])
        instance.add_dynamic_partitions("other", ["x"])
        reads = count_key_reads(instance)
        with compat.partition_keys_of_the_run(instance, compat_docs.name, RANGE[0], RANGE[-1]):
            assert instance.get_dynamic_partitions("other") == ["x"]  # other definitions are read as before
            assert ranged_run(instance, [ranged, downstream]).success
        assert SEEN["keys"] == SEEN["downstream"] == RANGE
        assert reads == ["other"], "Dagster no longer loads a run's keys through instance.get_dynamic_partitions"
        assert "get_dynamic_partitions" not in vars(instance)
        reads.clear()
        assert ranged_run(instance, [ranged, downstream]).success
        # Why the workaround exists; when this fails, Dagster resolves a range without every key.
        assert reads.count(compat_docs.name) > 1


def reading_job():
    """A job of `ranged` and `downstream` on the executor the deployment uses (D38)."""
    job = dg.define_asset_job(
        "reading_job", executor_def=compat.in_process_executor_reading_run_keys(compat_docs.name)
    )
    return dg.Definitions(assets=[ranged, downstream], jobs=[job]).resolve_job_def("reading_job")


def plain_job():
    job = dg.define_asset_job("plain_job", executor_def=dg.in_process_executor)
    return dg.Definitions(assets=[ranged, downstream], jobs=[job]).resolve_job_def("plain_job")


def test_the_executor_reads_no_key_list_in_a_runs_steps():
    # dg.execute_job runs the job's own executor in this process, as a launched run's worker does.
    tags = {compat.PARTITION_RANGE_START_TAG: RANGE[0], compat.PARTITION_RANGE_END_TAG: RANGE[-1]}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(compat_docs.name, KEYS)
        reads = count_key_reads(instance)
        with dg.execute_job(dg.reconstructable(plain_job), instance=instance, tags=tags) as result:
            assert result.success
        planned_and_steps = reads.count(compat_docs.name)
        reads.clear()
        with dg.execute_job(dg.reconstructable(reading_job), instance=instance, tags=tags) as result:
            assert result.success
            assert sorted(e.materialization.partition for e in result.get_asset_materialization_events()) == sorted(
                RANGE * 2
            )
            messages = [e.user_message for e in instance.all_logs(result.run_id)]
            assert compat.RANGE_READ_MESSAGE.format(count=len(RANGE)) in messages
        # Left: the planned events, which the run's creation resolves before any executor runs.
        assert 0 < reads.count(compat_docs.name) < planned_and_steps, (reads, planned_and_steps)
        assert "get_dynamic_partitions" not in vars(instance)


# --- One read of a definition's keys per process, kept current (docs/decisions.md D39) -----


@contextlib.contextmanager
def yaml_instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """An instance made as every process makes it: from a DAGSTER_HOME holding dagster.yaml."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text(INSTANCE_YAML.read_text())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def test_dagster_yaml_makes_every_instance_the_key_caching_one(tmp_path):
    with yaml_instance(tmp_path) as instance:
        assert isinstance(instance, compat.KeyCachingInstance)
    deployed = (REPO / "deploy" / "dagster.yaml").read_text()
    assert "module: rag_assets.dagster_compat\n  class: KeyCachingInstance" in deployed


def test_a_read_is_answered_from_what_changed(tmp_path):
    cache = compat.PartitionKeysCache()
    with yaml_instance(tmp_path) as instance:
        storage, truth = instance.event_log_storage, instance.event_log_storage.get_dynamic_partitions

        def read():
            return cache.read(storage, "here", "d")

        instance.add_dynamic_partitions("d", ["a", "b", "c"])
        assert read() == ["a", "b", "c"] and cache.reads == {"unchanged": 0, "added": 0, "whole": 1}
        assert read() == ["a", "b", "c"] and cache.reads["unchanged"] == 1
        instance.add_dynamic_partitions("d", ["e", "a", "f"])
        assert read() == truth("d") == ["a", "b", "c", "e", "f"] and cache.reads["added"] == 1
        instance.delete_dynamic_partition("d", "b")
        assert read() == truth("d") == ["a", "c", "e", "f"] and cache.reads["whole"] == 2
        instance.delete_dynamic_partition("d", "f")  # a delete and an add between two reads
        instance.add_dynamic_partitions("d", ["g"])
        assert read() == truth("d") == ["a", "c", "e", "g"] and cache.reads["whole"] == 3
        mine = read()
        mine.append("changed by a caller")
        assert read() == truth("d")
        assert len(storage.get_dynamic_partitions(compat.PARTITION_ID_MARK)) == 1  # the newest mark alone


def test_dagsters_own_reads_of_a_ranged_run_go_through_the_instance(tmp_path):
    with yaml_instance(tmp_path) as instance:
        instance.add_dynamic_partitions(compat_docs.name, KEYS)
        instance.get_dynamic_partitions(compat_docs.name)
        before = dict(compat.PARTITION_KEYS.reads)
        assert ranged_run(instance, [ranged, downstream]).success
        after = compat.PARTITION_KEYS.reads
        assert SEEN["keys"] == SEEN["downstream"] == RANGE
        # Dagster read the keys many times (planned events, each step); none was a whole read.
        assert after["unchanged"] - before["unchanged"] > 4
        assert after["whole"] == before["whole"], (before, after)


# Operations on one definition: adds and deletes from a small alphabet, so that deleted keys
# come back and the newest rows are deleted, and reads by another process in between.
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.lists(st.sampled_from("abcdefg"), min_size=1, max_size=3, unique=True)),
        st.tuples(st.just("delete"), st.sampled_from("abcdefg")),
        st.tuples(st.just("read"), st.none()),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_another_process_reading_now_and_then_always_reads_what_the_storage_holds(tmp_path, ops):
    name = f"d{uuid.uuid4().hex}"
    cache = compat.PartitionKeysCache()  # another process's: it sees only the states it reads
    with yaml_instance(tmp_path) as instance:
        storage = instance.event_log_storage
        for op, arg in ops + [("read", None)]:
            if op == "add":
                instance.add_dynamic_partitions(name, arg)
            elif op == "delete":
                instance.delete_dynamic_partition(name, arg)
            else:
                assert cache.read(storage, "here", name) == storage.get_dynamic_partitions(name)


def test_sqlite_gives_a_deleted_highest_id_again_which_is_why_deletes_leave_a_mark(tmp_path):
    # Two deletes of the newest keys, two adds, no read between: the same count and highest id.
    def steps(instance) -> tuple[list[str], list[str]]:
        cache = compat.PartitionKeysCache()
        instance.add_dynamic_partitions("d", ["a", "b", "c"])
        cache.read(instance.event_log_storage, "here", "d")
        instance.delete_dynamic_partition("d", "c")
        instance.delete_dynamic_partition("d", "b")
        instance.add_dynamic_partitions("d", ["x", "c"])
        storage = instance.event_log_storage
        return cache.read(storage, "here", "d"), storage.get_dynamic_partitions("d")

    with dg.instance_for_test() as plain:  # Dagster's instance: ids come back, the check is fooled
        held, truth = steps(plain)
        assert truth == ["a", "x", "c"] and held == ["a", "b", "c"], "SQLite no longer reuses ids: the mark is unneeded"
    with yaml_instance(tmp_path) as instance:
        held, truth = steps(instance)
        assert held == truth == ["a", "x", "c"]


# --- A killed process's run gives back its pool slots (docs/decisions.md D14) ---------------


def test_freeing_a_runs_slots_lets_the_pool_go():
    started, release = threading.Event(), threading.Event()

    @dg.op(pool="compat_writers")
    def hold():
        started.set()
        release.wait(60)

    @dg.job
    def holder():
        hold()

    with dg.instance_for_test(
        overrides={"concurrency": {"pools": {"granularity": "op", "default_limit": 1}}}
    ) as instance:
        results = []
        worker = threading.Thread(
            target=lambda: results.append(holder.execute_in_process(instance=instance, raise_on_error=False))
        )
        worker.start()
        try:
            assert started.wait(60), "the op never started"
            (claimed,) = instance.event_log_storage.get_concurrency_info("compat_writers").claimed_slots
            compat.free_concurrency_slots_for_run(instance, claimed.run_id)
            assert instance.event_log_storage.get_concurrency_info("compat_writers").claimed_slots == []
        finally:
            release.set()
            worker.join(60)
        assert results and results[0].success


# --- A warm worker's second Pipes session (dagster-io/dagster#22094) ------------------------


def pipes_params(folder: str) -> PipesMappingParamsLoader:
    data = {
        "asset_keys": None,
        "code_version_by_asset_key": None,
        "provenance_by_asset_key": None,
        "partition_key": None,
        "partition_key_range": None,
        "partition_time_window": None,
        "run_id": "compat",
        "job_name": None,
        "retry_number": 0,
        "extras": {"n": 1},
    }
    return PipesMappingParamsLoader(
        {
            DAGSTER_PIPES_CONTEXT_ENV_VAR: encode_param({"data": data}),
            DAGSTER_PIPES_MESSAGES_ENV_VAR: encode_param({"path": os.path.join(folder, "messages")}),
        }
    )


def test_a_second_pipes_session_needs_the_closed_one_forgotten():
    with tempfile.TemporaryDirectory() as folder:
        try:
            with open_dagster_pipes(params_loader=pipes_params(folder)) as first:
                first.log.info("first")
            with open_dagster_pipes(params_loader=pipes_params(folder)) as again:
                # When this fails, dagster-pipes opens a new session itself: forget_pipes_context can go.
                assert again is first and again.is_closed, "dagster-io/dagster#22094 is fixed"
            compat.forget_pipes_context()
            with open_dagster_pipes(params_loader=pipes_params(folder)) as second:
                assert second is not first and not second.is_closed
                second.log.info("second")
        finally:
            compat.forget_pipes_context()
        messages = Path(folder, "messages").read_text()
    assert messages.count('"method": "opened"') == 2 and '"second"' in messages


# --- For the tests: a run's code origin ---------------------------------------------------


def test_a_module_job_origin_names_the_code_location_and_survives_serialization():
    origin = compat.module_job_origin("rag_assets.definitions", "defs", "ingest_documents", "/usr/local/bin/python")
    assert origin.job_name == "ingest_documents"
    assert origin.repository_origin.executable_path == "/usr/local/bin/python"
    pointer = origin.repository_origin.code_pointer
    assert (pointer.module, pointer.fn_name) == ("rag_assets.definitions", "defs")
    assert dg.deserialize_value(dg.serialize_value(origin)) == origin
    with dg.instance_for_test() as instance:
        run = instance.create_run_for_job(
            dg.GraphDefinition(name="noop", node_defs=[]).to_job(), job_code_origin=origin
        )
        assert instance.get_run_by_id(run.run_id).job_code_origin == origin
