"""What rag_assets needs of Dagster beyond its public API, in this one module
(docs/architecture.md, Dagster's private names).

Everywhere else rag_assets uses `import dagster as dg` and `dagster_pipes`' documented names.
What is here reaches past them, each piece for a reason written beside it, with the upstream
issue, and with a test in rag_assets_tests/test_dagster_compat.py that fails when a Dagster
upgrade moves or changes what the piece relies on, or makes the piece unnecessary. Written
against Dagster 1.13.27 (setup.py pins it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dagster as dg

# --- Run tags ------------------------------------------------------------------------------
# Dagster's system tags, as strings. The strings are Dagster's interface (the UI shows them,
# its docs name them, a run launched with the two range tags is a ranged run), but `dagster`
# exports no constants for them: they live in dagster._core.storage.tags. No upstream issue
# asks for them to be exported (dagster-io/dagster#12256 documented the system tags,
# #10441 introduced the range tags). The test compares each with Dagster's own constant.
PARTITION_TAG = "dagster/partition"
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"
RUN_KEY_TAG = "dagster/run_key"
SENSOR_NAME_TAG = "dagster/sensor_name"
TICK_ID_TAG = "dagster/tick"

# Our name -> the name of Dagster's constant in dagster._core.storage.tags.
DAGSTER_TAG_CONSTANTS = {
    "PARTITION_TAG": "PARTITION_NAME_TAG",
    "PARTITION_RANGE_START_TAG": "ASSET_PARTITION_RANGE_START_TAG",
    "PARTITION_RANGE_END_TAG": "ASSET_PARTITION_RANGE_END_TAG",
    "RUN_KEY_TAG": "RUN_KEY_TAG",
    "SENSOR_NAME_TAG": "SENSOR_NAME_TAG",
    "TICK_ID_TAG": "TICK_ID_TAG",
}


def tags_as_dagster_defines_them() -> dict[str, str]:
    """Our tag name -> the value of Dagster's own constant (for the test: the only reader)."""
    from dagster._core.storage import tags

    return {ours: getattr(tags, theirs) for ours, theirs in DAGSTER_TAG_CONSTANTS.items()}


# --- Per-partition metadata in one check (docs/decisions.md D7) -----------------------------
# `context.add_asset_metadata(metadata, partition_key=key)` loads every key of a dynamic
# partitions definition to check its one key (dagster/_core/execution/context/system.py,
# add_asset_metadata -> get_partition_keys_in_range): a step of K documents pays K loads of
# all keys. There is no public call that adds metadata for many partitions at once
# (MaterializeResult has no partition; a yielded AssetMaterialization would be a second event
# per partition). Not reported upstream yet (benchmarks/add_asset_metadata_repro.py is the
# reproduction to file); the closest, dagster-io/dagster#14384 (closed by #14965), spared only
# one-key ranges. So the caller checks every key once and the metadata goes to the step's
# accumulator, as the public call does after its check: `get_step_execution_context()` is
# documented `:meta private:`, `_metadata_accumulator` is private.


def add_checked_partition_metadata(
    context: dg.AssetExecutionContext, by_partition: Mapping[str, Mapping[str, Any]]
) -> bool:
    """Metadata for each partition's materialization of this step's asset, for keys the caller
    has already checked against `context.partition_keys`. Returns True when it took the fast
    path; if Dagster's internals have changed shape, each key takes the public call (slower,
    never wrong) and it returns False."""
    step = context.get_step_execution_context()
    accumulator = getattr(step, "_metadata_accumulator", None)
    if not hasattr(accumulator, "with_additional_asset_metadata"):
        for key, metadata in by_partition.items():
            context.add_asset_metadata(metadata, partition_key=key)
        return False
    for key, metadata in by_partition.items():
        accumulator = accumulator.with_additional_asset_metadata(
            asset_key=context.asset_key, partition_key=key, metadata=metadata
        )
    step._metadata_accumulator = accumulator  # what add_asset_metadata assigns
    return True


# --- A ranged run reads its own keys, not the definition's (docs/decisions.md D20, D38) -----
# Dagster resolves a ranged run's keys ~26 times in one run (4 planned events, each step's input
# and output contexts), each by loading every key of the definition through
# `instance.get_dynamic_partitions` (a public method) and slicing from the range's first key to
# its last: 0.2 s a load at 100,000 documents, 2.0 s at 1,000,000 (SQLite). The slice is the
# keys whose storage id lies between the first key's and the last's, which one indexed query of
# Dagster's `dynamic_partitions` table answers (its schema is internal). Shadowing the method on
# the one instance object relies on Dagster's internal loads going through it; nothing public
# lets a run share one read. Inside, the definition holds only the run's keys: the run reads
# and writes only those (a run adds no partition; its range is registered before it starts).
# Upstream: no issue yet asks for ranged runs that do not load every key; the same family as
# dagster-io/dagster#14384 (one-key ranges only). Storages that are not SQL fall back to
# Dagster's own load, sliced.

IN_CHUNKS = 500  # keys per IN (...) query, well under SQLite's limit on bound parameters


def _sql_storage(instance: dg.DagsterInstance):
    from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage

    storage = instance.event_log_storage
    return storage if isinstance(storage, SqlEventLogStorage) else None


def partition_storage_ids(instance: dg.DagsterInstance, name: str, keys: Sequence[str]) -> dict[str, int]:
    """key -> its storage id, for those of `keys` the definition `name` holds; ids order the keys
    as Dagster does (ascending)."""
    storage = _sql_storage(instance)
    if storage is None:
        position = {k: i for i, k in enumerate(instance.get_dynamic_partitions(name))}
        return {k: position[k] for k in keys if k in position}
    from dagster._core.storage.event_log.schema import DynamicPartitionsTable as table

    out: dict[str, int] = {}
    keys = list(dict.fromkeys(keys))
    with storage.index_connection() as conn:
        for start in range(0, len(keys), IN_CHUNKS):
            query = table.select().with_only_columns(table.c.partition, table.c.id)
            chunk = keys[start : start + IN_CHUNKS]
            query = query.where(table.c.partitions_def_name == name, table.c.partition.in_(chunk))
            out.update(conn.execute(query).fetchall())
    return out


def partition_keys_between(
    instance: dg.DagsterInstance, name: str, low: int, high: int, limit: int | None = None
) -> list[str]:
    """The keys of `name` whose storage id is in [low, high], in Dagster's order (at most `limit`)."""
    storage = _sql_storage(instance)
    if storage is None:
        return list(instance.get_dynamic_partitions(name)[low : high + 1][:limit])
    from dagster._core.storage.event_log.schema import DynamicPartitionsTable as table

    query = table.select().with_only_columns(table.c.partition)
    query = query.where(table.c.partitions_def_name == name, table.c.id >= low, table.c.id <= high)
    query = query.order_by(table.c.id).limit(limit)
    with storage.index_connection() as conn:
        return [row[0] for row in conn.execute(query).fetchall()]


def partition_keys_in_range(instance: dg.DagsterInstance, name: str, first: str, last: str) -> list[str] | None:
    """Dagster's answer for the range first..last of `name` (the keys from first to last in
    its order), without loading the others; None when either end is not a key of `name`."""
    ids = partition_storage_ids(instance, name, [first, last])
    if first not in ids or last not in ids:
        return None
    return partition_keys_between(instance, name, ids[first], ids[last])


@contextlib.contextmanager
def partition_keys_of_the_run(
    instance: dg.DagsterInstance, name: str, first: str, last: str
) -> Iterator[list[str] | None]:
    """While this process runs one ranged run over first..last of `name`: the instance answers
    `get_dynamic_partitions(name)` with the range's keys, read once. Dagster slices each range it
    resolves from that answer, so it gets the same keys; other definitions are read as before.
    Gives the range's keys (None, and nothing changed, when it is not a range of `name`)."""
    keys = partition_keys_in_range(instance, name, first, last)
    if keys is None:  # not a range of this definition: Dagster reports it as it would
        yield None
        return
    read = instance.get_dynamic_partitions

    def get_dynamic_partitions(partitions_def_name: str) -> Sequence[str]:
        return keys if partitions_def_name == name else read(partitions_def_name)

    instance.get_dynamic_partitions = get_dynamic_partitions  # this object only, for this run
    try:
        yield keys
    finally:
        del instance.get_dynamic_partitions


RANGE_READ_MESSAGE = "the steps see the {count} partitions of the run's range, read alone (docs/decisions.md D38)"


class RangedRunExecutor(dg.Executor):
    """An executor that runs `inner`'s steps under `partition_keys_of_the_run` when the run is
    a range of the `name` definition: what a run worker the daemon launched needs, since the
    run worker is Dagster's process, not ours. The plan's orchestration context carries the
    run's instance object, which every step context of an in-process executor shares."""

    def __init__(self, inner: dg.Executor, name: str):
        self._inner, self._name = inner, name

    @property
    def retries(self):
        return self._inner.retries

    @property
    def step_dependency_config(self):
        return self._inner.step_dependency_config

    def execute(self, plan_context, execution_plan) -> Iterator[dg.DagsterEvent]:
        tags = plan_context.dagster_run.tags
        first, last = tags.get(PARTITION_RANGE_START_TAG), tags.get(PARTITION_RANGE_END_TAG)
        if first is None or last is None or first == last:  # Dagster reads no key for these
            yield from self._inner.execute(plan_context, execution_plan)
            return
        with partition_keys_of_the_run(plan_context.instance, self._name, first, last) as keys:
            if keys is not None:
                plan_context.log.debug(RANGE_READ_MESSAGE.format(count=len(keys)))
            yield from self._inner.execute(plan_context, execution_plan)


def in_process_executor_reading_run_keys(name: str) -> dg.ExecutorDefinition:
    """Dagster's in_process executor (same name, same config), whose ranged runs of `name` read
    their own keys (`RangedRunExecutor`)."""
    inner = dg.in_process_executor

    @dg.executor(name=inner.name, config_schema=inner.config_schema, requirements=inner.get_requirements)
    def in_process(init_context: dg.InitExecutorContext) -> dg.Executor:
        return RangedRunExecutor(inner.executor_creation_fn(init_context), name)

    return in_process


# --- A killed process's run gives back its pool slots (docs/decisions.md D14) ---------------
# The command line fails the runs of its own killed processes; their op concurrency slots stay
# taken until freed. Dagster frees them from its run monitoring daemon
# (`free_slots_after_run_end_seconds`, undocumented: dagster-io/dagster#32560, open), from the
# UI and GraphQL (freeConcurrencySlotsForRun), or through the event log storage, which the
# docs list among the internal APIs. The command line runs without a daemon or webserver, so
# it calls the storage, as the daemon does.


def free_concurrency_slots_for_run(instance: dg.DagsterInstance, run_id: str) -> None:
    """Free the op concurrency slots (pools) a run holds."""
    instance.event_log_storage.free_concurrency_slots_for_run(run_id)


# --- A warm worker's second Pipes session (docs/architecture.md, Remote steps) --------------
# dagster-pipes keeps one context per process (PipesContext._instance) and
# open_dagster_pipes hands the closed one to the next session: a warm Lambda's second
# invocation fails with "Cannot send message after pipes context is closed"
# (dagster-io/dagster#22094, open; the workaround its thread gives is this one).


def forget_pipes_context() -> None:
    """After a Pipes session is closed: the next open_dagster_pipes opens a new one."""
    from dagster_pipes import PipesContext

    PipesContext._instance = None


# --- For the tests only: a run's code origin, as a code server gives it ---------------------
# rag_assets_tests/test_deploy_instance.py hands the production run launcher (ECS) a run whose
# origin is the code location of deploy/ (module rag_assets.definitions, attribute defs), as the
# daemon's runs have it. Dagster's public API makes such an origin only from a gRPC code server
# (a workspace) or `dg.reconstructable` (a function's module, not the code location's);
# CodePointer and RepositoryPythonOrigin are internal. No upstream issue.


def module_job_origin(module: str, attribute: str, job_name: str, executable_path: str):
    """The JobPythonOrigin of job `job_name` of the Definitions at `module`.`attribute`."""
    from dagster._core.code_pointer import CodePointer
    from dagster._core.origin import RepositoryPythonOrigin

    pointer = CodePointer.from_module(module, attribute, None)
    return RepositoryPythonOrigin(executable_path=executable_path, code_pointer=pointer).get_job_origin(job_name)
