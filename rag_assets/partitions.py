"""Every partitions definition of the project (docs/architecture.md, Partitions)."""

from collections.abc import Iterable

import dagster as dg

from rag_assets.lib.keys import S3_ALIAS, parse_root_registry, root_alias, root_registry_key

# One partition per document: the key is lib.keys.encode_partition_key(DocRef).
documents_partitions = dg.DynamicPartitionsDefinition(name="documents")

# Not the partitions of any asset: the registry of folder roots, `ALIAS|ROOT`, so a document
# partition key can name its root by a short alias and still be decoded anywhere the
# instance is (S3 roots are their own alias and are not registered).
ROOT_REGISTRY = "document_roots"

# One partition per day, today's included (a record of the day so far): the daily record of
# what the sensors repaired.
daily_partitions = dg.DailyPartitionsDefinition(start_date="2025-01-01", end_offset=1)


def known_roots(instance: dg.DagsterInstance) -> dict[str, str]:
    """alias -> root of every registered folder root."""
    return parse_root_registry(instance.get_dynamic_partitions(ROOT_REGISTRY))


def unregistered_roots(roots: Iterable[str], known: dict[str, str]) -> list[str]:
    """Registry entries to add so that every root in `roots` can be decoded."""
    return sorted(
        {root_registry_key(r) for r in roots if not root_alias(r).startswith(S3_ALIAS) and root_alias(r) not in known}
    )


def register_roots(instance: dg.DagsterInstance, roots: Iterable[str]) -> None:
    entries = unregistered_roots(roots, known_roots(instance))
    if entries:
        instance.add_dynamic_partitions(ROOT_REGISTRY, entries)
