"""The fault suite: nobody presses a button. A real `dagster-daemon` follows a moto bucket
(S3 event notifications through SQS, or listing) while the tests upload, delete, re-upload,
revert, churn, switch the index or the chunking, and kill the daemon mid-tick and mid-run;
after each, the index must equal the bucket (lib.reconcile's terms: nothing missing, no
rows of a deleted object, nothing twice, every document from its current bytes). The runs
are the daemon's, through Dagster's run queue and its run-key de-duplication."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import boto3
import dagster as dg
import pytest

from rag_assets.defs.resources import build_resources
from rag_assets.settings import Settings
from rag_assets_tests.live import Daemon, drift, event_bucket, runs_started, wait_for

pytestmark = pytest.mark.slow


class Scene:
    """A bucket (with its event queue), the environment pointing rag_assets at it, a daemon."""

    def __init__(self, s3, instance: dg.DagsterInstance, mode: str, tmp_path, monkeypatch):
        # The instance's SQLite storage exists before the daemon starts: two processes
        # creating it at the same moment race on its schema.
        self.s3, self.instance, self.mode = s3, instance, mode
        self.bucket, self.queue = event_bucket(s3, boto3.client("sqs"))
        self.monkeypatch = monkeypatch
        monkeypatch.setenv("RAG_SOURCE_URI", f"s3://{self.bucket}/acme/")
        if mode == "events":
            monkeypatch.setenv("RAG_SQS_QUEUE_URL", self.queue)
        else:
            monkeypatch.delenv("RAG_SQS_QUEUE_URL", raising=False)
        self.daemon = Daemon(tmp_path / "daemon.log")
        self.times: dict[str, float] = {}

    def put(self, key: str, text: str) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=text.encode())

    def delete(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=key)

    def drift(self) -> list[str]:
        r = build_resources(Settings.from_env())
        embedder = r["embedder"]
        return drift(
            Settings.from_env().source_uri,
            r["vector_store"],
            embedder.model_id,
            embedder.dimension,
            r["rag_config"].pipeline,
        )

    def converge(self, what: str, timeout: float = 240.0) -> float:
        """Seconds until the index equals the bucket (and still does once no run is left)."""
        try:
            seconds = wait_for(lambda: not self.drift(), what, timeout)
            wait_for(lambda: not in_flight(self.instance), "the runs to end", timeout)
            assert self.drift() == [], what
        except AssertionError as e:
            raise AssertionError(
                f"{e}\ndrift: {self.drift()[:10]}\ndaemon log tail:\n{self.daemon.read_log()[-3000:]}"
            ) from None
        self.times[what] = round(seconds, 1)
        return seconds

    def texts(self, key: str, about: str) -> list[str]:
        r = build_resources(Settings.from_env())
        embedder, store = r["embedder"], r["vector_store"]
        hits = store.query(embedder.model_id, embedder.dimension, embedder.embed([about])[0], tenant="acme", k=1000)
        return [h.text for h in hits if h.key == key]


def in_flight(instance: dg.DagsterInstance) -> list:
    statuses = [
        dg.DagsterRunStatus.QUEUED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
        dg.DagsterRunStatus.NOT_STARTED,
    ]
    return instance.get_run_records(dg.RunsFilter(statuses=statuses))


@pytest.fixture
def scene(instance, s3_env, tmp_path, monkeypatch):
    scenes = []

    def make(mode: str) -> Scene:
        scenes.append(Scene(s3_env, instance, mode, tmp_path, monkeypatch))
        return scenes[-1]

    yield make
    for s in scenes:
        s.daemon.stop()
        print(f"\n[{s.mode}] convergence seconds: {json.dumps(s.times)}")


def cli_query(text: str) -> list[dict]:
    done = subprocess.run(
        [sys.executable, "-m", "rag_assets.frontends.cli", "query", text, "--tenant", "acme", "--json"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return json.loads(done.stdout)


NINE = "The harbour office opens at nine in the morning."
ELEVEN = "The harbour office now opens at eleven, after the renovation."


@pytest.mark.parametrize("mode", ["events", "listing"])
def test_objects_that_come_back_are_indexed_again(scene, mode):
    s = scene(mode)
    s.daemon.start()
    s.put("acme/notes.txt", NINE)
    s.converge("upload")
    assert cli_query("when does the office open")[0]["key"] == "acme/notes.txt"

    s.delete("acme/notes.txt")
    s.converge("delete")
    assert s.texts("acme/notes.txt", "office") == []

    s.put("acme/notes.txt", NINE)  # the same bytes again: the same ETag
    s.converge("re-upload")
    assert s.texts("acme/notes.txt", "office") == [NINE]

    s.put("acme/notes.txt", ELEVEN)
    s.converge("replace")
    s.put("acme/notes.txt", NINE)  # a revert: back to bytes indexed before
    s.converge("revert")
    assert s.texts("acme/notes.txt", "office") == [NINE]


def test_churn_while_the_first_runs_work(scene, rag_env):
    s = scene("events")
    s.daemon.start()
    for n in range(60):
        s.put(f"acme/churn-{n:02}.txt", f"Churn document {n}, first version, about harbour number {n}.")
    wait_for(lambda: runs_started(s.instance) > 0, "the first run to start")
    for n in range(30):
        s.delete(f"acme/churn-{n:02}.txt")
    for n in range(30, 40):
        s.put(f"acme/churn-{n:02}.txt", f"Churn document {n}, second version, about harbour number {n}.")
    s.converge("churn: 60 uploads, 30 deletes and 10 replacements", timeout=420)
    for n in range(30, 40):
        assert s.texts(f"acme/churn-{n:02}.txt", f"harbour number {n}") == [
            f"Churn document {n}, second version, about harbour number {n}."
        ]


def test_a_new_index_and_a_new_chunking_are_filled_from_the_source(scene, monkeypatch, tmp_path):
    s = scene("events")
    s.daemon.start()
    long_text = " ".join(f"Sentence {i} of a long report on harbour logistics and cranes." for i in range(40))
    for n in range(5):
        s.put(f"acme/report-{n}.txt", f"Report {n}. {long_text}")
    s.converge("first index")
    s.daemon.stop()

    monkeypatch.setenv("RAG_INDEX_URI", str(tmp_path / "another-index"))  # nothing in the bucket changes
    assert len(s.drift()) == 5
    s.daemon.start()
    s.converge("a new RAG_INDEX_URI")
    s.daemon.stop()

    r = build_resources(Settings.from_env())
    before = r["vector_store"].list_documents(r["embedder"].model_id, r["embedder"].dimension)
    monkeypatch.setenv("RAG_CHUNK_TOKENS", "48")
    assert len(s.drift()) == 5
    s.daemon.start()
    s.converge("a new RAG_CHUNK_TOKENS")
    after = r["vector_store"].list_documents(r["embedder"].model_id, r["embedder"].dimension)
    assert all(after[d].rows > before[d].rows and after[d].chunk_digest != before[d].chunk_digest for d in before)


def test_a_daemon_killed_mid_tick_and_mid_run_loses_nothing(scene, tmp_path):
    s = scene("events")
    sqs = boto3.client("sqs")

    def received() -> int:  # messages a tick has taken and not yet acknowledged
        attrs = sqs.get_queue_attributes(QueueUrl=s.queue, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])
        return int(attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"])

    for n in range(80):
        s.put(f"acme/doc-{n:02}.txt", f"Document {n} about harbour crane number {n}.")
    # Mid-tick: killed once the event sensor has taken the 80 events from the queue, before
    # its result is recorded (they stay hidden for the queue's 300 s visibility timeout).
    s.daemon.start()
    wait_for(lambda: received() > 0, "a tick to take the events", every=0.02)
    s.daemon.kill()
    s.daemon.start()
    # Mid-run: killed while a run works (the run's own process goes on, orphaned).
    wait_for(lambda: runs_started(s.instance) > 0, "a run to start")
    s.daemon.kill()
    for n in range(75, 80):
        s.delete(f"acme/doc-{n:02}.txt")
    for n in range(80, 85):
        s.put(f"acme/doc-{n:02}.txt", f"Document {n} about harbour crane number {n}.")
    time.sleep(2)
    s.daemon.start()
    s.converge("after two kills", timeout=420)
    assert "of a tick whose result was lost are visible again" in s.daemon.read_log()


def sensor_ticks(instance: dg.DagsterInstance, name: str) -> list:
    """The daemon's record of sensor `name`'s ticks, newest first."""
    state = next(s for s in instance.all_instigator_state() if s.name == name)
    return instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1000)


def test_a_daemon_over_an_instance_holding_many_partitions(scene):
    # A million documents (docs/decisions.md D38), scaled to what make test's time allows: the
    # instance already holds 100,000 document partitions of another root. The daemon's ranged
    # runs read their own keys, not the definition's, and every tick completes.
    from rag_assets.dagster_compat import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG, RANGE_READ_MESSAGE
    from rag_assets.lib.keys import DocRef, encode_partition_key, split_partition_key
    from rag_assets.partitions import documents_partitions

    s = scene("events")
    others = [encode_partition_key(DocRef("acme", "s3://elsewhere", f"old/{i:06d}.txt")) for i in range(100_000)]
    for start in range(0, len(others), 10_000):
        s.instance.add_dynamic_partitions(documents_partitions.name, others[start : start + 10_000])
    for n in range(6):  # all in the queue before the first tick: one ranged run
        s.put(f"acme/crane-{n}.txt", f"Crane {n} lifts containers at berth {n}.")
    s.daemon.start()
    s.converge("six documents among 100,000 partitions")

    runs = s.instance.get_run_records(dg.RunsFilter(job_name="ingest_documents"))
    assert runs and all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    ranged = [r.dagster_run for r in runs if r.dagster_run.tags.get(PARTITION_RANGE_START_TAG)]
    ranged = [run for run in ranged if run.tags[PARTITION_RANGE_START_TAG] != run.tags[PARTITION_RANGE_END_TAG]]
    assert ranged, "the six documents were not asked for together"
    for run in ranged:
        logs = s.instance.all_logs(run.run_id)
        events = [e.dagster_event for e in logs if e.dagster_event and e.dagster_event.is_step_materialization]
        written = {e.partition for e in events if e.asset_key.path == ["vector_index"]}
        # The run worker's executor served the steps the range's keys alone, and they were these.
        assert RANGE_READ_MESSAGE.format(count=len(written)) in [e.user_message for e in logs], run.run_id
    # The newest document goes, then another comes: on Dagster's plain SQLite instance the new
    # partition could take the deleted one's storage id. The daemon's, the code server's and
    # the run workers' held keys follow both (docs/decisions.md D39).
    newest = s.instance.get_dynamic_partitions(documents_partitions.name)[-1]
    s.delete(split_partition_key(newest).key)  # the object key under the bucket
    s.converge("the newest of six deleted")
    s.put("acme/crane-6.txt", "Crane 6 lifts containers at berth 6.")
    s.converge("another added")
    held = s.instance.get_dynamic_partitions(documents_partitions.name)
    assert newest not in held and len(held) == len(others) + 6
    assert held == s.instance.event_log_storage.get_dynamic_partitions(documents_partitions.name)
    ticks = sensor_ticks(s.instance, "s3_event_sensor")
    assert ticks and not [t for t in ticks if t.status.value == "FAILURE"], [t.error for t in ticks]
    longest = max(t.end_timestamp - t.timestamp for t in ticks if t.end_timestamp)
    print(f"\ns3_event_sensor with 100,000 partitions: {len(ticks)} ticks, the longest {longest:.2f} s")
