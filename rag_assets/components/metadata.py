"""Per-partition metadata of a step that materializes many partitions (docs/decisions.md D7)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

from rag_assets.dagster_compat import add_checked_partition_metadata


def add_partition_metadata(context: dg.AssetExecutionContext, by_partition: Mapping[str, Mapping[str, Any]]) -> None:
    """Metadata for each partition's materialization of this step, as
    `context.add_asset_metadata(metadata, partition_key=key)` would add it, with every key
    checked once against the step's partitions.

    Dagster 1.13's call loads every key of a dynamic partitions definition to check its one
    key: a cost per document that grows with the number of documents. The check is what costs,
    so it is made here once for all keys; the metadata then goes where the call puts it
    (rag_assets.dagster_compat, which falls back to the public call per key if Dagster's
    internals change shape)."""
    targeted = set(context.partition_keys)
    stray = [key for key in by_partition if key not in targeted]
    if stray:
        raise dg.DagsterInvariantViolationError(
            f"metadata for partition(s) this step does not materialize: {stray[:3]}"
        )
    add_checked_partition_metadata(context, by_partition)
