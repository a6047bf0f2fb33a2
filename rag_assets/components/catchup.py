"""Catchup sources: the records of a Metabase question or of a CSV export, one daily
partition per date, through the same index pipeline as documents (docs/catchup.md).

For each source NAME of the catchup file (RAG_CATCHUP_CONFIG, default ./catchup.yaml):
`NAME_records -> NAME_chunks -> NAME_embeddings -> NAME_vector_index`, the job
`NAME_catchup`, and the schedule `NAME_daily` (the day before, at 01:00). The component
`CatchupSources` (an instance in rag_assets/defs/catchup/defs.yaml) makes them.
"""

from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

import dagster as dg

from rag_assets.components.index_pipeline import Family, build_index_pipeline
from rag_assets.components.metadata import add_partition_metadata
from rag_assets.lib.catchup import CatchupSource, RecordCounts, catchup_root, load_catchup_config, record_parts
from rag_assets.lib.keys import TENANT_RULE
from rag_assets.lib.parsing import BadDocument, stream_csv
from rag_assets.resources.embedders import embedder_from_spec
from rag_assets.resources.metabase import MetabaseError
from rag_assets.resources.stores import vector_store_from_uri
from rag_assets.resources.vector_stores import store_kind
from rag_assets.settings import Settings, loading_settings


def metabase_rows(context: dg.AssetExecutionContext, name: str, source: CatchupSource, date: str) -> list[dict]:
    try:
        return context.resources.metabase.query_records(source.question_id, {source.date_parameter: date}, source=name)
    except MetabaseError as e:
        raise dg.Failure(description=str(e), allow_retries=False) from None


def csv_rows(
    context: dg.AssetExecutionContext, name: str, source: CatchupSource, date: str
) -> Iterator[Mapping[str, Any]]:
    uri = source.location(date)
    try:
        stream = context.resources.object_store.open_stream(uri)
    except FileNotFoundError:
        raise dg.Failure(
            description=f"catchup source {name!r}: no export for {date} at {uri}", allow_retries=False
        ) from None
    columns = [source.text_column, source.id_column, *([source.tenant_column] if source.tenant_column else [])]
    try:
        with stream:
            yield from stream_csv(uri, stream, columns)
    except BadDocument as e:
        raise dg.Failure(description=f"catchup source {name!r}: {e}", allow_retries=False) from None


def build_records(name: str, source: CatchupSource, partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    reader = metabase_rows if source.kind == "metabase" else csv_rows
    where = f"question {source.question_id}" if source.kind == "metabase" else source.uri

    @dg.asset(
        name=f"{name}_records",
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.multi_run(1),
        group_name=f"catchup_{name}",
        io_manager_key="work_io_manager",
        kinds={"metabase"} if source.kind == "metabase" else {"s3" if where.startswith("s3://") else "csv"},
        required_resource_keys={"metabase" if source.kind == "metabase" else "object_store", "work_area"},
        description=f"The records of {where} for each date, {source.chunk_rows:,} a part.",
    )
    def records(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        out, metadata = {}, {}
        for date in context.partition_keys:
            counts = RecordCounts()
            rows = reader(context, name, source, date)
            out[date] = context.resources.work_area.write_parts(
                context.asset_key, date, record_parts(name, source, date, rows, counts)
            )
            context.log.info(
                f"{date}: {counts.rows} row(s), {counts.records} record(s); skipped {counts.no_text} without text, "
                f"{counts.no_id} without an id, {counts.no_tenant} without a tenant"
                + (f", {counts.bad_tenant} with an invalid tenant ({TENANT_RULE})" if counts.bad_tenant else "")
            )
            metadata[date] = counts.as_metadata()
        add_partition_metadata(context, metadata)
        return dg.MaterializeResult(value=out)

    return records


def records_by_tenant(outcomes) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for o in outcomes:
        counts = out.setdefault(o.tenant, {"records": 0, "written": 0})
        counts["records"] += 1
        counts["written"] += o.status == "ingested"
    return out


def date_record(outcomes, model: str, pipeline: str, deleted: int) -> dict:
    """A date's record: how many records it holds in the index, written, unchanged, and the
    rows of records no longer in its result, deleted."""
    written = sum(o.status == "ingested" for o in outcomes)
    return {
        "records": len(outcomes),
        "records_written": written,
        "records_unchanged": len(outcomes) - written,
        "rows_deleted": deleted,
        "chunks": sum(o.chunks for o in outcomes),
        "vectors_written": sum(o.vectors_written for o in outcomes),
        "tenants": len({o.tenant for o in outcomes}),
        # per tenant: the notifications' addressees (rag_assets.defs.notifications.sensors)
        "records_by_tenant": dg.MetadataValue.json(records_by_tenant(outcomes)),
        "model": model,
        "pipeline": pipeline,
    }


def catchup_definitions(settings: Settings) -> dg.Definitions:
    """Each source of the catchup file: its assets, job and schedule, and its own store and
    embedder when it has them."""
    sources = load_catchup_config(settings.catchup_config)
    assets, jobs, schedules, resources = [], [], [], {}
    for name, source in sources.items():
        end = (
            (source.end_date + timedelta(days=1)).isoformat() if source.end_date else None
        )  # Dagster's end is exclusive
        partitions_def = dg.DailyPartitionsDefinition(start_date=source.start_date.isoformat(), end_date=end)
        store_key, embedder_key = "vector_store", "embedder"
        if source.index_uri:
            store_key = f"{name}_vector_store"
            resources[store_key] = vector_store_from_uri(source.store_uri(settings.index_uri))
        if source.embedder:
            embedder_key = f"{name}_embedder"
            resources[embedder_key] = embedder_from_spec(source.embedder, settings)
        family = Family(
            partitions_def=partitions_def,
            backfill_policy=dg.BackfillPolicy.multi_run(1),
            store_kind=store_kind(source.store_uri(settings.index_uri)),
            prefix=f"{name}_",
            group_name=f"catchup_{name}",
            embedder_key=embedder_key,
            store_key=store_key,
            check_source=False,
            owns=lambda date, name=name: (f"{name}/{date}/", catchup_root(name)),
            describe=date_record,
            parallel_parts=source.parallel_chunks,
            golden_sets=bool(settings.golden_sets),
        )
        records = build_records(name, source, partitions_def)
        family_assets = [records, *build_index_pipeline(source=records, family=family)]
        job = dg.define_asset_job(f"{name}_catchup", selection=family_assets, partitions_def=partitions_def)
        status = dg.DefaultScheduleStatus.RUNNING if source.schedule else dg.DefaultScheduleStatus.STOPPED
        schedules.append(
            dg.build_schedule_from_partitioned_job(job, name=f"{name}_daily", hour_of_day=1, default_status=status)
        )
        assets += family_assets
        jobs.append(job)
    return dg.Definitions(assets=assets, jobs=jobs, schedules=schedules, resources=resources)


class CatchupSources(dg.Component, dg.Resolvable, dg.Model):
    """The sources of the catchup file (RAG_CATCHUP_CONFIG, default ./catchup.yaml), each an
    index family: NAME_records -> NAME_chunks -> NAME_embeddings -> NAME_vector_index, the job
    NAME_catchup and the schedule NAME_daily. Adding a source is one block in that file; it is
    validated when the definitions load (`dg check defs`). The file stays outside the package so
    a deployment changes its sources without a new image (docs/decisions.md D36)."""

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return catchup_definitions(loading_settings())
