"""Nobody presses a button: a real `dagster-daemon` runs the sensors while the test uploads,
changes and deletes documents, and `rag-assets query` follows each change."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from rag_assets.definitions import build_resources
from rag_assets.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DAEMON = Path(sys.executable).with_name("dagster-daemon")


def wait_for(predicate, what: str, timeout: float = 240.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def cli_query(text: str) -> list[dict]:
    done = subprocess.run(
        [sys.executable, "-m", "rag_assets.cli", "query", text, "--tenant", "acme", "--json"],
        capture_output=True, text=True, timeout=120, check=True,
    )
    return json.loads(done.stdout)


@pytest.fixture
def daemon(rag_env, tmp_path):
    """Starts dagster-daemon on the test's DAGSTER_HOME; yields a function reading its log."""
    log = tmp_path / "daemon.log"
    started = []

    def start():
        with open(log, "w") as out:
            started.append(
                subprocess.Popen(
                    [str(DAEMON), "run", "-w", "workspace.yaml"],
                    cwd=REPO, env=os.environ.copy(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                )
            )

    yield start
    for proc in started:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def follow_changes(put, delete):
    """Upload, change, delete one document; the index follows each step by itself."""
    resources = build_resources(Settings.from_env())
    embedder, store = resources["embedder"], resources["vector_store"]

    def texts(query: str) -> list[str]:
        hits = store.query(embedder.model_id, embedder.dimension, embedder.embed([query])[0], tenant="acme", k=5)
        return [h.text for h in hits if h.key == "acme/notes.txt"]

    put("acme/notes.txt", "The harbour office opens at nine in the morning.")
    wait_for(lambda: any("nine" in t for t in texts("when does the office open")), "the upload to be indexed")
    assert cli_query("when does the office open")[0]["key"] == "acme/notes.txt"

    put("acme/notes.txt", "The harbour office now opens at eleven, after the renovation.")
    wait_for(lambda: any("eleven" in t for t in texts("when does the office open")), "the change to be indexed")
    assert not any("nine" in t for t in texts("when does the office open"))

    delete("acme/notes.txt")
    wait_for(lambda: not texts("when does the office open"), "the delete to purge the vectors")
    assert all(hit["key"] != "acme/notes.txt" for hit in cli_query("when does the office open"))


def test_a_local_folder_followed_by_the_listing_sensor(rag_env, daemon, tmp_path, monkeypatch):
    inbox = tmp_path / "inbox"
    monkeypatch.setenv("RAG_SOURCE_URI", str(inbox))
    daemon()

    def put(key: str, text: str):
        path = inbox / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    follow_changes(put, lambda key: (inbox / key).unlink())


def test_an_s3_bucket_followed_through_sqs_notifications(rag_env, daemon, s3_env, monkeypatch):
    import boto3

    s3, sqs, name = s3_env, boto3.client("sqs"), f"live-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    queue = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=name,
        NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}]},
    )
    monkeypatch.setenv("RAG_SOURCE_URI", f"s3://{name}/acme/")
    monkeypatch.setenv("RAG_SQS_QUEUE_URL", queue)
    daemon()
    follow_changes(
        lambda key, text: s3.put_object(Bucket=name, Key=key, Body=text.encode()),
        lambda key: s3.delete_object(Bucket=name, Key=key),
    )
