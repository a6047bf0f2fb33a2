"""Per-partition metadata of a step that materializes many partitions (docs/decisions.md D7)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg


def add_partition_metadata(context: dg.AssetExecutionContext, by_partition: Mapping[str, Mapping[str, Any]]) -> None:
    """Metadata for each partition's materialization of this step, as
    `context.add_asset_metadata(metadata, partition_key=key)` would add it, with every key
    checked once against the step's partitions.

    Dagster 1.13's call loads every key of a dynamic partitions definition to check its one
    key: a cost per document that grows with the number of documents. The check is what costs,
    so it is made here once for all keys; the metadata then goes to the step's accumulator,
    the same as the call does. If Dagster's internals change shape, each key takes the public
    call (slower, never wrong)."""
    targeted = set(context.partition_keys)
    stray = [key for key in by_partition if key not in targeted]
    if stray:
        raise dg.DagsterInvariantViolationError(f"metadata for partition(s) this step does not materialize: {stray[:3]}")
    step = context.get_step_execution_context()
    accumulator = getattr(step, "_metadata_accumulator", None)
    if not hasattr(accumulator, "with_additional_asset_metadata"):
        for key, metadata in by_partition.items():
            context.add_asset_metadata(metadata, partition_key=key)
        return
    for key, metadata in by_partition.items():
        accumulator = accumulator.with_additional_asset_metadata(asset_key=context.asset_key, partition_key=key, metadata=metadata)
    step._metadata_accumulator = accumulator  # noqa: SLF001 - what add_asset_metadata assigns
