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
from collections.abc import Set as AbstractSet
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


# --- A ranged run reads the dynamic partitions' keys once (docs/decisions.md D20) -----------
# Dagster resolves a ranged run's keys ~30 times in one run (planned events, each step's input
# and output contexts), each by loading every key of the definition through
# `instance.get_dynamic_partitions` (a public method): 0.3 s a time at 100,000 documents.
# Shadowing that method on the one instance object relies on Dagster's internal loads going
# through it; nothing public lets a run share one read. No upstream issue; the same family as
# #14384 (one-key ranges only).


@contextlib.contextmanager
def partition_keys_read_once(instance: dg.DagsterInstance, names: AbstractSet[str]) -> Iterator[None]:
    """While this process runs one ranged run, the keys of the `names` dynamic partitions
    definitions as they were when it started. The run adds no partition and needs none added
    after it started (its range is registered before), so one read is the same answer."""
    read = instance.get_dynamic_partitions
    memo: dict[str, Sequence[str]] = {}

    def get_dynamic_partitions(partitions_def_name: str) -> Sequence[str]:
        if partitions_def_name not in names:
            return read(partitions_def_name)
        if partitions_def_name not in memo:
            memo[partitions_def_name] = read(partitions_def_name)
        return memo[partitions_def_name]

    instance.get_dynamic_partitions = get_dynamic_partitions  # this object only, for this run
    try:
        yield
    finally:
        del instance.get_dynamic_partitions


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
