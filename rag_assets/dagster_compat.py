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
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

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


# --- One read of a definition's keys per process, kept current (docs/decisions.md D39) -----
# Dagster reads every key of a dynamic definition wherever it needs one: 4 times to create a
# ranged run (its planned events, in the daemon), once a tick in each sensor that asks, in the
# webserver's partition pages. Each read is 2.0-2.4 s at 1,000,000 keys on SQLite. The keys
# change by a few between two reads, so each process keeps the last list it read and brings
# it up to date from what the storage says changed. On SQLite the table's highest id (the
# primary key's last entry, milliseconds) changes whenever a row is added or, through this
# class, deleted; while it holds, nothing changed. Else (and always on PostgreSQL, whose
# concurrent writers may commit ids out of order) one query gives the definition's count and highest id
# (0.08 s at a million, a scan of its index): a higher id means keys were added, read alone;
# a count that then disagrees means some were deleted, and the whole list is read again.
# That reasoning needs a definition's ids never to come back. PostgreSQL's sequence never
# gives an id twice; SQLite gives a new row the table's highest id plus one, so a deleted row's
# id returns when that row was the highest. So the instance adds a marker key
# (PARTITION_ID_MARK, a definition of its own) before it deletes a key, above every id in the
# table, and one after, which moves the table's highest id once the delete is done; then it
# deletes the older markers: every id below the newest stays spent.
# Dagster reads through `instance.get_dynamic_partitions` (public) and deletes through
# `instance.delete_dynamic_partition` (public; the daemon's sensor requests and the UI's
# deletePartitions call it), so the instance class that dagster.yaml names
# (`instance_class`, which Dagster reads from dagster.yaml) sees every read and delete.
# Nothing upstream asks for the read to be incremental; the nearest is Dagster's own
# CachingDynamicPartitionsLoader, which memoizes per tick, not across ticks.

PARTITION_ID_MARK = "rag_assets_partition_id_mark"


class _Held(NamedTuple):
    keys: list[str]
    top: int  # the highest storage id among keys
    table_top: int  # the highest id of the whole table when the keys were read (SQLite; else 0)


def _table_top(conn) -> int:
    import sqlalchemy as sa
    from dagster._core.storage.event_log.schema import DynamicPartitionsTable as table

    return conn.execute(sa.select(sa.func.max(table.c.id))).scalar() or 0


class PartitionKeysCache:
    """The last keys read of each (storage, definition), brought up to date at each read; at
    most `size` definitions are held (the least recently read goes first). Thread-safe: the
    webserver and the daemon read from many threads."""

    def __init__(self, size: int = 8):
        self._size = size
        self._held: OrderedDict[tuple[Any, str], _Held] = OrderedDict()
        self._lock = threading.Lock()
        self.reads = {"unchanged": 0, "added": 0, "whole": 0}  # how each read was answered

    def read(self, storage, where: Any, name: str) -> list[str]:
        """The keys of `name` in Dagster's order (by storage id), as `storage` holds them now.
        `where` names the storage (two instances of one database share what is held)."""
        with self._lock, storage.index_connection() as conn:
            # SQLite commits its writes one at a time, in the order of their ids; PostgreSQL may
            # commit id 100 after 101, which the table's highest id would not show: there it is
            # not asked for.
            fast = conn.dialect.name == "sqlite"
            table_top = _table_top(conn) if fast else 0  # first: a change after it shows at the next read
            held = self._held.get((where, name))
            if fast and held is not None and held.table_top == table_top:
                self.reads["unchanged"] += 1
            else:
                held = self._changed(conn, name, held, table_top)
            self._held[(where, name)] = held
            self._held.move_to_end((where, name))
            while len(self._held) > self._size:
                self._held.popitem(last=False)
            return list(held.keys)  # a copy: a caller may change its list, never the one held

    def _changed(self, conn, name: str, held: _Held | None, table_top: int) -> _Held:
        import sqlalchemy as sa
        from dagster._core.storage.event_log.schema import DynamicPartitionsTable as table

        mine = table.c.partitions_def_name == name
        count, top = conn.execute(sa.select(sa.func.count(), sa.func.max(table.c.id)).where(mine)).one()
        if held is not None and held.top == (top or 0) and len(held.keys) == count:
            self.reads["unchanged"] += 1
            return held._replace(table_top=table_top)
        query = sa.select(table.c.id, table.c.partition).order_by(table.c.id)
        if held is not None and top is not None and top > held.top:
            added = _fetch(conn, query.where(mine, table.c.id > held.top))
            if added and len(held.keys) + len(added) == count:
                self.reads["added"] += 1
                return _Held(held.keys + [row[1] for row in added], added[-1][0], table_top)
        rows = _fetch(conn, query.where(mine))
        self.reads["whole"] += 1
        return _Held([row[1] for row in rows], rows[-1][0] if rows else 0, table_top)


def _fetch(conn, query) -> list[tuple]:
    """The rows of `query` as plain tuples, through the driver's own cursor: a million rows in
    0.7 s, where SQLAlchemy's Row objects take 2.0 s."""
    compiled = query.compile(dialect=conn.dialect)
    params = [compiled.params[name] for name in compiled.positiontup] if compiled.positional else compiled.params
    cursor = conn.connection.cursor()
    try:
        cursor.execute(str(compiled), params)
        return cursor.fetchall()
    finally:
        cursor.close()


PARTITION_KEYS = PartitionKeysCache()  # one per process


class KeyCachingInstance(dg.DagsterInstance):
    """Dagster's instance, but a dynamic definition's keys come from this process's
    `PARTITION_KEYS`, and a deleted key's storage id is never given again (see above).
    dagster.yaml names it (`instance_class`); storages that are not SQL read as Dagster does."""

    # What Dagster asks of an `instance_class` (dagster/_core/instance/ref.py, from_dir): its own
    # config keys (none) and the defaults of a plain instance.
    @classmethod
    def config_schema(cls) -> dict:
        return {}

    @staticmethod
    def config_defaults(base_dir: str):
        from dagster._core.instance.ref import InstanceRef

        return InstanceRef.config_defaults(base_dir)

    def get_dynamic_partitions(self, partitions_def_name: str) -> Sequence[str]:
        storage = _sql_storage(self)
        if storage is None:
            return super().get_dynamic_partitions(partitions_def_name)
        return PARTITION_KEYS.read(storage, self.get_ref().event_storage_data, partitions_def_name)

    def delete_dynamic_partition(self, partitions_def_name: str, partition_key: str) -> None:
        if _sql_storage(self) is None or not super().has_dynamic_partition(partitions_def_name, partition_key):
            super().delete_dynamic_partition(partitions_def_name, partition_key)
            return
        self.add_dynamic_partitions(PARTITION_ID_MARK, [uuid.uuid4().hex])  # above every id, before the delete
        super().delete_dynamic_partition(partitions_def_name, partition_key)
        mark = uuid.uuid4().hex  # and after it: the table's highest id changes once the delete is done
        self.add_dynamic_partitions(PARTITION_ID_MARK, [mark])
        for older in self.event_log_storage.get_dynamic_partitions(PARTITION_ID_MARK):
            if older == mark:
                break
            super().delete_dynamic_partition(PARTITION_ID_MARK, older)


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
