"""The notification sensor: reads what Dagster recorded since its cursor (runs queued, started
and failed, vector_index materializations and purges) and tells each tenant what happened to
its documents through the Notifier (docs/architecture.md, Notifications).

Sending from a sensor is Dagster's own pattern for notifications (its Slack and Teams
run-failure sensors do it). The cursor is one storage id: it moves only past events whose
messages went out, or were dropped and counted, so a restarted daemon sends again what a
lost tick sent (the same message ids: at least once).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping

import dagster as dg

from rag_assets.dagster_compat import (
    PARTITION_RANGE_END_TAG,
    PARTITION_RANGE_START_TAG,
    PARTITION_TAG,
    partition_keys_in_range,
)
from rag_assets.defs.documents.assets import ingest_documents_job
from rag_assets.ingest import failed_documents
from rag_assets.lib.catchup import load_catchup_config
from rag_assets.lib.display import printable
from rag_assets.lib.errors import error_chain, error_summary
from rag_assets.lib.keys import split_partition_key
from rag_assets.lib.notifications import (
    DELETED,
    FAILED,
    INGESTED,
    QUEUED,
    STARTED,
    UNCHANGED,
    Notification,
    notification,
    ordered_messages,
    run_failure_reason,
    safe_cursor,
)
from rag_assets.partitions import documents_partitions
from rag_assets.resources.notifiers import Notifier
from rag_assets.settings import loading_settings

EVENTS_PER_TYPE = 500  # per event type and tick
SEND_BUDGET_SECONDS = 20.0  # what a tick may spend delivering; the rest is dropped and counted
RUN_EVENTS = {
    dg.DagsterEventType.RUN_ENQUEUED: QUEUED,
    dg.DagsterEventType.RUN_START: STARTED,
    dg.DagsterEventType.RUN_FAILURE: FAILED,
}
DOCUMENT_INDEX = dg.AssetKey("vector_index")


class Reader:
    """Turns event records into notifications; looks each run up once."""

    def __init__(self, instance: dg.DagsterInstance, catchup: Mapping[str, str | None]):
        self.instance, self.catchup = instance, catchup  # catchup source -> its fixed tenant (or None)
        self._runs: dict[str, dg.DagsterRun | None] = {}
        self._ranges: dict[tuple[str, str], list[str]] = {}  # a run's range -> its partitions, in order
        self._starts: dict[str, float | None] = {}

    def run(self, run_id: str) -> dg.DagsterRun | None:
        if run_id not in self._runs:
            self._runs[run_id] = self.instance.get_run_by_id(run_id)
        return self._runs[run_id]

    def documents_of(self, run: dg.DagsterRun) -> list[tuple[str, str, str]]:
        """(partition, tenant, key) of each document an ingest run works on."""
        tags = run.tags
        if PARTITION_RANGE_START_TAG in tags:
            span = (tags[PARTITION_RANGE_START_TAG], tags[PARTITION_RANGE_END_TAG])
            if span not in self._ranges:  # the range's keys alone, not the million others (D38)
                self._ranges[span] = partition_keys_in_range(self.instance, documents_partitions.name, *span) or []
            partitions = self._ranges[span]
        else:
            partitions = [tags[PARTITION_TAG]] if PARTITION_TAG in tags else []
        out = []
        for partition in partitions:
            parts = split_partition_key(partition)
            out.append((partition, parts.tenant, parts.key))
        return out

    def catchup_of(self, run: dg.DagsterRun) -> tuple[str, str, str | None] | None:
        """(source, date, fixed tenant) of a catchup run."""
        name = run.job_name.removesuffix("_catchup")
        if run.job_name.endswith("_catchup") and name in self.catchup and PARTITION_TAG in run.tags:
            return name, run.tags[PARTITION_TAG], self.catchup[name]
        return None

    def messages(self, record) -> Iterator[Notification]:
        entry = record.event_log_entry
        event, sid, at = entry.dagster_event, record.storage_id, entry.timestamp
        run = self.run(entry.run_id)
        if run is None or event is None:
            return
        kind = event.event_type
        if kind in RUN_EVENTS:
            yield from self._run_event(run, RUN_EVENTS[kind], sid, at, entry)
        elif kind == dg.DagsterEventType.ASSET_MATERIALIZATION:
            yield from self._materialization(run, event.event_specific_data.materialization, sid, at)
        elif kind == dg.DagsterEventType.ASSET_OBSERVATION:
            observation = event.event_specific_data.asset_observation
            meta = {k: v.value for k, v in observation.metadata.items()}
            if observation.asset_key == DOCUMENT_INDEX and str(meta.get("status", "")).startswith("purged"):
                for tenant in meta.get("tenants") or []:
                    yield notification(
                        sid,
                        DELETED,
                        tenant,
                        meta["document_key"],
                        run.run_id,
                        at,
                        rows_deleted=meta.get("rows_deleted", 0),
                    )

    def _run_event(self, run: dg.DagsterRun, kind: str, sid: int, at: float, entry) -> Iterator[Notification]:
        if run.job_name == ingest_documents_job.name:
            documents = self.documents_of(run)
            if kind == FAILED:
                named = failed_documents(self.instance, run.run_id)
                if named is not None:  # unreadable documents, named; the others were written in the same run
                    for failed in named:  # each reason is its own document's, to its tenant only
                        tenant, reason = split_partition_key(failed["partition"]).tenant, printable(failed["reason"])
                        yield notification(sid, FAILED, tenant, failed["key"], run.run_id, at, reason=reason)
                    return
                # The run's error may quote any of its documents: told only to a run of one tenant.
                error = printable(self.run_error(run.run_id))
                reason = run_failure_reason(run.run_id, error, {tenant for _, tenant, _ in documents})
                done = self._materialized(run.run_id)
                for partition, tenant, key in documents:
                    if partition not in done:
                        yield notification(sid, FAILED, tenant, key, run.run_id, at, reason=reason)
                return
            for n, (_, tenant, key) in enumerate(documents, start=1):
                yield notification(sid, kind, tenant, key, run.run_id, at, documents=len(documents), position=n)
        elif (catchup := self.catchup_of(run)) and catchup[2]:  # a date of a source of one tenant
            name, date, tenant = catchup
            detail = {"reason": printable(self.run_error(run.run_id))} if kind == FAILED else {}  # one tenant's run
            yield notification(sid, kind, tenant, f"{name}/{date}", run.run_id, at, **detail)

    def _materialization(self, run: dg.DagsterRun, materialization, sid: int, at: float) -> Iterator[Notification]:
        meta = {k: v.value for k, v in materialization.metadata.items()}
        started = self.started(run.run_id)
        seconds = round(at - started, 3) if started else None
        if materialization.asset_key == DOCUMENT_INDEX and materialization.partition:
            status = meta.get("status")
            if status in (INGESTED, UNCHANGED):
                tenant = split_partition_key(materialization.partition).tenant
                detail = {"chunks": meta.get("chunks"), "vectors": meta.get("vectors_written"), "seconds": seconds}
                yield notification(
                    sid,
                    status,
                    tenant,
                    meta.get("document_key") or split_partition_key(materialization.partition).key,
                    run.run_id,
                    at,
                    **detail,
                )
            return
        name = materialization.asset_key.path[-1].removesuffix("_vector_index")
        if name in self.catchup and materialization.partition and "records_by_tenant" in meta:
            for tenant, counts in sorted(meta["records_by_tenant"].items()):
                status = INGESTED if counts.get("written") else UNCHANGED
                yield notification(
                    sid,
                    status,
                    tenant,
                    f"{name}/{materialization.partition}",
                    run.run_id,
                    at,
                    **counts,
                    seconds=seconds,
                )

    def started(self, run_id: str) -> float | None:
        """When the run began (its documents' `seconds` count from there)."""
        if run_id not in self._starts:
            record = self.instance.get_run_record_by_id(run_id)
            self._starts[run_id] = record.start_time if record else None
        return self._starts[run_id]

    def run_error(self, run_id: str) -> str:
        """What a person can act on: the first failed step's error."""
        for record in self.instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records:
            error = record.event_log_entry.dagster_event.step_failure_data.error
            if error is not None:
                return error_summary(error_chain(error)) or "the run failed"
        return "the run failed"

    def _materialized(self, run_id: str) -> set[str]:
        records = self.instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
        return {
            r.event_log_entry.dagster_event.partition
            for r in records
            if r.event_log_entry.dagster_event.asset_key == DOCUMENT_INDEX
        }


def watched_pages(
    instance: dg.DagsterInstance, index_keys: list[dg.AssetKey], after: int | None, limit: int
) -> dict[str, list]:
    """The events a tick reads, by kind, ascending from storage id `after` (None: only the
    newest of each). Run status changes and asset events are in the same index of the event
    log (one sequence of storage ids), which run-sharded SQLite storage can also query."""
    ascending = after is not None

    def runs(kind):
        records_filter = dg.RunStatusChangeRecordsFilter(event_type=kind, after_storage_id=after)
        return instance.fetch_run_status_changes(records_filter, limit=limit, ascending=ascending).records

    def assets(fetch, key):
        return fetch(
            dg.AssetRecordsFilter(asset_key=key, after_storage_id=after), limit=limit, ascending=ascending
        ).records

    pages = {kind.value: runs(kind) for kind in RUN_EVENTS}
    pages.update(
        {f"materialized {key.to_user_string()}": assets(instance.fetch_materializations, key) for key in index_keys}
    )
    pages["observed vector_index"] = assets(instance.fetch_observations, DOCUMENT_INDEX)
    return pages


def build_notification_sensor(
    catchup: Mapping[str, str | None], default_status: dg.DefaultSensorStatus
) -> dg.SensorDefinition:
    @dg.sensor(
        name="notifications",
        minimum_interval_seconds=2,
        default_status=default_status,
        description=(
            "Tells each tenant what happens to its documents (RAG_NOTIFY): queued, started, ingested, "
            "unchanged, failed, deleted."
        ),
    )
    def notifications(context: dg.SensorEvaluationContext, notifier: Notifier) -> dg.SensorResult | dg.SkipReason:
        if not notifier.enabled:
            return dg.SkipReason("RAG_NOTIFY is not set: nothing to send")
        instance = context.instance
        index_keys = [DOCUMENT_INDEX, *(dg.AssetKey(f"{name}_vector_index") for name in catchup)]
        if context.cursor is None:  # a new sensor starts from now, not from the instance's history
            newest = max(
                (r.storage_id for page in watched_pages(instance, index_keys, None, 1).values() for r in page),
                default=0,
            )
            return dg.SensorResult(cursor=str(newest), skip_reason="started from the newest event")
        after = int(context.cursor)
        pages = watched_pages(instance, index_keys, after, EVENTS_PER_TYPE)
        until = safe_cursor({k: [r.storage_id for r in page] for k, page in pages.items()}, EVENTS_PER_TYPE, after)
        reader = Reader(instance, catchup)
        messages = ordered_messages(
            (r.storage_id, m)
            for page in pages.values()
            for r in page
            if r.storage_id <= until
            for m in reader.messages(r)
        )
        delivery = notifier.send(messages, time.monotonic() + SEND_BUDGET_SECONDS)
        summary = f"{delivery.sent} message(s) sent, {delivery.dropped} not delivered (dropped)"
        if delivery.dropped:
            context.log.warning(f"{summary}: {'; '.join(delivery.errors)}")
        elif messages:
            context.log.info(summary)
        return dg.SensorResult(cursor=str(until), skip_reason=summary if messages else None)

    return notifications


@dg.definitions
def defs() -> dg.Definitions:
    """The notification sensor: running when RAG_NOTIFY is set."""
    settings = loading_settings()
    catchup = {name: source.tenant for name, source in load_catchup_config(settings.catchup_config).items()}
    status = dg.DefaultSensorStatus.RUNNING if settings.notify else dg.DefaultSensorStatus.STOPPED
    return dg.Definitions(sensors=[build_notification_sensor(catchup, status)])
