"""Every partitions definition of the project (DESIGN decision 1)."""

import dagster as dg

# One partition per document: the key is lib.keys.encode_partition_key(DocRef).
documents_partitions = dg.DynamicPartitionsDefinition(name="documents")

# One partition per day: the daily reconciliation and, later, tabular catchup sources.
daily_partitions = dg.DailyPartitionsDefinition(start_date="2025-01-01")
