"""One catchup source, `demo`, shaped as the project's catchup sources are: a daily-partitioned
chain demo_records -> demo_chunks -> demo_embeddings -> demo_vector_index and the asset job
demo_catchup over it (one run per date). demo_vector_index records metadata `records` (the day
of the month); the date FAILING_DATE fails in demo_embeddings with a readable error."""

import dagster as dg

FAILING_DATE = "2025-01-03"
FAILURE_TEXT = f"embedding service rejected the batch of {FAILING_DATE}: quota exceeded"

daily = dg.DailyPartitionsDefinition(start_date="2025-01-01")
one_run_per_date = dg.BackfillPolicy.multi_run(1)


@dg.asset(partitions_def=daily, backfill_policy=one_run_per_date)
def demo_records(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"date": context.partition_key})


@dg.asset(partitions_def=daily, backfill_policy=one_run_per_date, deps=[demo_records])
def demo_chunks() -> dg.MaterializeResult:
    return dg.MaterializeResult()


@dg.asset(partitions_def=daily, backfill_policy=one_run_per_date, deps=[demo_chunks])
def demo_embeddings(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    if context.partition_key == FAILING_DATE:
        raise RuntimeError(FAILURE_TEXT)
    return dg.MaterializeResult()


@dg.asset(partitions_def=daily, backfill_policy=one_run_per_date, deps=[demo_embeddings])
def demo_vector_index(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    day = int(context.partition_key[-2:])
    return dg.MaterializeResult(metadata={"records": dg.MetadataValue.int(day)})


demo_catchup = dg.define_asset_job(
    "demo_catchup",
    selection=[demo_records, demo_chunks, demo_embeddings, demo_vector_index],
    partitions_def=daily,
    # The steps are trivial: one process per run instead of one per step keeps the test fast.
    executor_def=dg.in_process_executor,
)

defs = dg.Definitions(assets=[demo_records, demo_chunks, demo_embeddings, demo_vector_index], jobs=[demo_catchup])
