"""Real Dagster processes for end-to-end tests: `dagster-daemon` following a moto bucket
(through SQS events or by listing), `dagster dev` (webserver + daemon) for the GraphQL API,
and the measure of convergence: what still separates the index from the bucket. Used by the
fault suite, the GraphQL and catchup tests, and benchmarks/convergence.py."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from rag_assets.lib.reconcile import wanted_documents
from rag_assets.resources.object_store import ObjectStore
from rag_assets.resources.vector_stores import MIXED

REPO = Path(__file__).resolve().parents[1]
DAEMON = Path(sys.executable).with_name("dagster-daemon")


def wait_for(predicate, what: str, timeout: float = 240.0, every: float = 0.25) -> float:
    """Seconds until `predicate()` is true; fails after `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def event_bucket(s3, sqs, name: str | None = None) -> tuple[str, str]:
    """A bucket whose create/remove notifications go to a queue of its own: (bucket, queue URL)."""
    name = name or f"live-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]
    s3.put_bucket_notification_configuration(
        Bucket=name, NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": events}]}
    )
    return name, queue


class Daemon:
    """`dagster-daemon run` on DAGSTER_HOME as the environment sets it, in a session of its
    own. `kill()` kills the daemon process alone (its code server and runs are orphaned, as
    when the daemon crashes); `stop()` kills the whole session."""

    def __init__(self, log: Path, env: dict | None = None):
        self.log, self.env = log, env
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        with open(self.log, "a") as out:
            self.procs.append(
                subprocess.Popen(
                    [str(DAEMON), "run", "-w", "workspace.yaml"],
                    cwd=REPO, env=self.env or os.environ.copy(), stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )  # fmt: skip

    def kill(self) -> None:
        proc = self.procs[-1]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    def stop(self) -> None:
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)

    def read_log(self) -> str:
        return self.log.read_text(errors="replace")


def stop_group(proc: subprocess.Popen, grace: float = 10) -> None:
    """A process and everything it started (its own process group): SIGTERM, then SIGKILL
    what is left after `grace` seconds."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


@contextmanager
def embed_service(log_path: Path, timeout: float = 120) -> Iterator[str]:
    """`python -m rag_assets.frontends.embed_service` on a free port, in a process group of its own;
    yields its URL once the model is loaded (GET /health answers)."""
    import httpx

    from rag_assets_tests.conftest import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rag_assets.frontends.embed_service", "--port", str(port)],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"the embedding service did not start:\n{log_path.read_text(errors='replace')[-2000:]}"
                )
            time.sleep(0.3)
        yield url
    finally:
        stop_group(proc)


@contextmanager
def dagster_dev(home: Path, port: int, module: str, env: dict, timeout: float = 180) -> Iterator[str]:
    """`dagster dev` (webserver + daemon) serving `module` on 127.0.0.1:port, DAGSTER_HOME
    `home` with the project's instance settings; yields its URL once the code is loaded."""
    from rag_assets.frontends import graphql_client
    from rag_assets.settings import INSTANCE_YAML

    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(INSTANCE_YAML, home / "dagster.yaml")
    url, log_path = f"http://127.0.0.1:{port}", home / "dagster_dev.log"
    command = [
        str(Path(sys.executable).with_name("dagster")),
        "dev",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-m",
        module,
        "-d",
        str(REPO),
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=home,
            env={**env, "DAGSTER_HOME": str(home)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline, problem = time.monotonic() + timeout, "no answer"
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"dagster dev exited ({proc.returncode}):\n{log_path.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"dagster dev at {url} not ready after {timeout:g} s ({problem}):\n{log_path.read_text()[-4000:]}"
                )
            try:
                entries = (
                    graphql_client.execute(url, graphql_client.WORKSPACE_QUERY)["workspaceOrError"].get(
                        "locationEntries"
                    )
                    or []
                )
                if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                    errors = [e for e in entries if e["locationOrLoadError"]["__typename"] != "RepositoryLocation"]
                    if errors:
                        raise AssertionError(f"the code location failed to load: {errors[0]['locationOrLoadError']}")
                    break
                problem = f"locations: {[(e['name'], e['loadStatus']) for e in entries]}"
            except graphql_client.DagsterUnreachable as exc:
                problem = str(exc)
            time.sleep(0.5)
        yield url
    finally:
        stop_group(proc)


def drift(source_uri: str, store, model_id: str, dimension: int, pipeline: str) -> list[str]:
    """What separates the index from the source, one line a document (nothing: converged):
    rows of a deleted object, a document missing, held twice, from another version, from
    another pipeline, or half-written."""
    objects = {o.key: o for o in ObjectStore().list(source_uri)}
    wanted = wanted_documents(objects)
    prefix = source_uri.split("://", 1)[1].split("/", 1)[1] if source_uri.startswith("s3://") else ""
    held = defaultdict(list)
    for doc in store.list_documents(model_id, dimension).values():
        if doc.document_key.startswith(prefix):
            held[doc.document_key].append(doc)
    problems = []
    for key in sorted(set(wanted) | set(held)):
        docs = held.get(key, [])
        if key not in wanted:
            problems.append(f"{key}: rows of a deleted object")
        elif not docs:
            problems.append(f"{key}: missing")
        elif len(docs) > 1:
            problems.append(f"{key}: held {len(docs)} times")
        elif MIXED in (docs[0].content_hash, docs[0].source_etag):
            problems.append(f"{key}: half-written")
        elif docs[0].source_etag != wanted[key].etag:
            problems.append(f"{key}: holds {docs[0].source_etag}, the source has {wanted[key].etag}")
        elif docs[0].pipeline != pipeline:
            problems.append(f"{key}: made by another pipeline")
    return problems


def sensor_has_ticked(instance: dg.DagsterInstance, name: str) -> bool:
    """Whether the daemon has recorded a tick of sensor `name` that set its cursor."""
    states = [s for s in instance.all_instigator_state() if s.name == name]
    return bool(states and states[0].instigator_data and states[0].instigator_data.cursor)


def runs_started(instance: dg.DagsterInstance, job: str = "ingest_documents") -> int:
    return len(instance.get_run_records(dg.RunsFilter(job_name=job, statuses=[dg.DagsterRunStatus.STARTED])))


def guard_evaluations(instance: dg.DagsterInstance) -> list[bool]:
    """The deletion guard's check evaluations (index_reconciliation's deletion_guard), oldest
    first: passed or not."""
    key = dg.AssetCheckKey(dg.AssetKey("index_reconciliation"), "deletion_guard")
    records = instance.event_log_storage.get_asset_check_execution_history(key, limit=100)
    return [r.event.dagster_event.event_specific_data.passed for r in reversed(records)]
