"""Sensor benchmark: how long the sensors' ticks take at scale, and how long a document
takes from upload to queryable through a real `dagster-daemon`.

    python benchmarks/sensors.py [--quick] [--json] [--s3-objects N] [--local-files N]
                                 [--parts events,listing,e2e,idle,partitions] [--current-passes 1]
                                 [--sensors listing_sensor,s3_event_sensor] [--documents 3] [--warm-only]

1. s3_event_sensor: 1,000 and 10,000 S3 notifications pending in SQS (real ones: put_object
   into a moto bucket whose notifications go to a queue). The first tick, then ticks until
   the queue is empty: a tick takes at most max_messages_per_tick messages (or
   receive_budget_seconds of receiving) and acknowledges the previous tick's.
2. listing_sensor: a first pass (all new) and a second, unchanged pass over 100,000 files in
   a local folder (--local-files; 1,000,000 for docs/scale.md), then over N objects in a moto
   bucket (--s3-objects; 0: none). A pass takes a tick per max_objects_per_tick objects or
   list_budget_seconds, each judging its span of keys (docs/decisions.md D40); between the
   passes the index is filled with one row a document (from a child process, as runs write
   from theirs). Each tick's row has the process's resident memory after it: a pass that
   held what it walked would grow it tick by tick. --current-passes N: N all-current passes
   (a daemon walks pass after pass), to see whether that memory levels off.
3. End to end: a `dagster-daemon run` subprocess follows a local folder (listing_sensor) and
   a moto bucket through SQS (s3_event_sensor); a small .txt is uploaded and the index polled
   every 0.1 s until it returns the document. One warm-up document, then the median of 3
   (--documents), each uploaded after a random pause (the daemon's loop at any phase), split
   into the wait for the sensor's tick, the tick, the run's start and the run.
4. Idle (--parts idle): the same daemon following an empty source for a minute: its ticks
   and the CPU it and its code server use with nothing to do.
5. Partitions (--parts partitions; --partitions 100,1000000): a process's first tick that
   finds 20 new documents, then its next that finds 20 more, of the listing_sensor (a local
   folder) and of the s3_event_sensor (20 notifications each), on an instance already holding
   N document partitions of another root (docs/scale.md): its seconds, the seconds of its
   reads of the keys (the first reads every key, the next what changed: D39), and the
   process's peak RSS after it (sizes in increasing order, so each peak is that size's).

In 1 and 2 a sensor is evaluated like the daemon does it, with dg.build_sensor_context on a
real DagsterInstance (as rag_assets_tests/test_sensors.py's Harness): the partitions it asks
for are added and its cursor kept; the runs it requests are counted, never executed.

moto serves S3 and SQS from a child process (its CPU work does not share this process's GIL),
with its SQS patched (see patch_moto_sqs). Progress goes to stderr; the tables, and with
--json the figures, to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]  # rag_assets_tests: the live helpers
DAEMON = Path(sys.executable).with_name("dagster-daemon")
T0 = time.monotonic()
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def log(message: str) -> None:
    print(f"[{time.monotonic() - T0:6.0f}s] {message}", file=sys.stderr, flush=True)


def table(title: str, headers: list[str], rows: list[list], notes: list[str]) -> None:
    """Print a titled table (first column left-aligned, the others right-aligned), then notes."""
    cells = [headers] + [["" if c is None else f"{c:.2f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    print(f"\n{title}")
    for n, r in enumerate(cells):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    for note in notes:
        print(note)
    sys.stdout.flush()


# --- moto in a child process, its SQS patched --------------------------------------------


def patch_moto_sqs() -> None:
    """moto's SQS costs grow with the queue's length in ways real SQS does not, which at
    10,000 messages would bury the sensor's own time under moto's:
    - each received message has its retention checked through get_queue_attributes, which
      computes every attribute, three of them scans of the whole queue: O(queue) a message;
    - each deleted message is found by scanning the queue twice for its receipt handle, and
      the queue rebuilt: concurrent deletes (EventQueue.delete sends 8 at a time) undo each
      other, and messages reported deleted come back;
    - its clock (unix_time) is datetime arithmetic, called for each message of each scan.
    Patched: the retention check reads the one attribute, a delete finds its message in an
    index of receipt handles and removes it in place, the clock is time.time(). What is left
    is one O(queue) scan per ReceiveMessage call (moto lists the visible messages): part of
    the receive figures.
    """
    import moto.sqs.models as m

    slow_time, slow_millis = m.unix_time, m.unix_time_millis
    m.unix_time = lambda dt=None: time.time() if dt is None else slow_time(dt)
    m.unix_time_millis = lambda dt=None: time.time() * 1000.0 if dt is None else slow_millis(dt)

    def is_message_valid_based_on_retention_period(self, queue_name, message):
        return int(self.get_queue(queue_name).message_retention_period) + message.sent_timestamp / 1000 > time.time()

    by_handle = {}  # every receipt handle ever given -> its message
    mark_received = m.Message.mark_received

    def mark_received_indexed(self, visibility_timeout=None):
        mark_received(self, visibility_timeout)
        by_handle[self.receipt_handle] = self

    def delete_message(self, receipt_handle):
        if receipt_handle in self.deleted_messages:
            return  # already deleted: fine, as in moto
        message = by_handle.get(receipt_handle)
        try:
            self._messages.remove(message)  # one scan in C, by identity
        except ValueError:
            raise m.ReceiptHandleIsInvalid() from None
        self.pending_messages.discard(message)
        self.deleted_messages.update(message.all_receipt_handles)

    m.SQSBackend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period
    m.Message.mark_received = mark_received_indexed
    m.Queue.delete_message = delete_message


def serve_moto(port: int, stop) -> None:
    """The child process: a patched moto server until `stop` is set."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    patch_moto_sqs()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    stop.wait()
    server.stop()


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Moto:
    """The moto server's child process; boto3 clients for the setup. The AWS_* variables it
    sets in os.environ point this process's boto3 (the sensors') at it."""

    def __init__(self):
        from rag_assets_tests.conftest import free_port

        port = free_port()
        ctx = multiprocessing.get_context("spawn")
        self._stop = ctx.Event()
        self.process = ctx.Process(target=serve_moto, args=(port, self._stop), daemon=True)
        self.process.start()
        deadline = time.monotonic() + 60
        while not port_open(port):
            if time.monotonic() > deadline or not self.process.is_alive():
                raise RuntimeError("the moto server did not start")
            time.sleep(0.1)
        self.env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_DEFAULT_REGION": "us-east-1",
                    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}  # fmt: skip
        os.environ.update(self.env)
        import boto3
        import botocore.config

        self.s3 = boto3.client("s3", config=botocore.config.Config(max_pool_connections=32))
        self.sqs = boto3.client("sqs")

    def stop(self) -> None:
        self._stop.set()
        self.process.join(timeout=15)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)

    def bucket(self, notify: bool) -> tuple[str, str | None]:
        """A new bucket and, with `notify`, the queue its create/remove notifications go to."""
        name = f"bench-{uuid.uuid4().hex[:8]}"
        self.s3.create_bucket(Bucket=name)
        if not notify:
            return name, None
        queue = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]
        self.s3.put_bucket_notification_configuration(
            Bucket=name, NotificationConfiguration={"QueueConfigurations": [{"QueueArn": arn, "Events": events}]}
        )
        return name, queue

    def upload(self, bucket: str, count: int, first: int = 0) -> float:
        """`count` tiny objects acme/docNNNNNN.txt from number `first`, 16 at a time; the seconds it took."""
        def put(i: int) -> None:
            self.s3.put_object(Bucket=bucket, Key=f"acme/doc{i:06}.txt", Body=b"tiny document %d" % i)

        start = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(put, range(first, first + count)))
        return time.perf_counter() - start

    def pending(self, queue: str) -> int:
        """Messages in the queue, visible or in flight."""
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attrs = self.sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=names)["Attributes"]
        return sum(int(attrs[n]) for n in names)


# --- A sensor evaluated like the daemon does, the runs it requests not executed ----------

SPLIT: dict[str, float] = {}  # this tick's time ("x s") and count ("x") per timed call


def timed(name: str, fn, count):
    """`fn`, adding its wall time and `count(result)` to SPLIT."""

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        SPLIT[f"{name} s"] = SPLIT.get(f"{name} s", 0.0) + time.perf_counter() - start
        SPLIT[name] = SPLIT.get(name, 0) + count(out)
        return out

    return wrapper


def instrument() -> None:
    """Time, in this process only, the calls that make the coarse split of a tick."""
    from rag_assets.defs.sync import sensors as s3
    from rag_assets.resources.event_queue import EventQueue
    from rag_assets.resources.object_store import ObjectStore

    EventQueue.receive = timed("receive", EventQueue.receive, len)
    EventQueue.delete = timed("ack", EventQueue.delete, int)
    s3.head_all = timed("HEAD", s3.head_all, len)  # the sensor looks it up in its module
    ObjectStore.list_page = timed("list", ObjectStore.list_page, lambda out: len(out[0]))
    from rag_assets.resources.vector_stores import LanceDBStore

    LanceDBStore.list_key_span = timed("index", LanceDBStore.list_key_span, len)


def new_home(path: Path) -> Path:
    """A DAGSTER_HOME with the project's instance settings (run queue, pools, monitoring)."""
    from rag_assets.settings import INSTANCE_YAML

    path.mkdir(parents=True)
    (path / "dagster.yaml").write_text(INSTANCE_YAML.read_text())
    return path


class Harness:
    """Evaluates a sensor on a real instance, adds the partitions it asks for and keeps its
    cursor, like the daemon; counts its run requests without launching them."""

    def __init__(self, home: Path, sensor, resources: dict):
        import dagster as dg

        self.instance = dg.DagsterInstance.from_config(str(new_home(home)))
        self.sensor, self.resources, self.cursor = sensor, resources, None

    def tick(self) -> dict:
        import dagster as dg

        SPLIT.clear()
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor, resources=self.resources)
        start = time.perf_counter()
        result = self.sensor(context)
        seconds = time.perf_counter() - start
        if isinstance(result, dg.SkipReason):
            raise RuntimeError(f"the sensor skipped: {result.skip_message}")  # noqa: TRY004 - the run failed, no type error
        split = dict(SPLIT)
        start = time.perf_counter()
        partitions = 0
        for request in result.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
            partitions += len(request.partition_keys)
        self.cursor = result.cursor
        record_s = time.perf_counter() - start  # adding the partitions: the daemon's share
        tick = {"seconds": seconds, "runs": len(result.run_requests or []), "partitions": partitions}
        memory = {"rss_mb": rss_mb(), "peak_rss_mb": peak_rss_mb()}
        return tick | {"record_s": record_s, "cursor_kb": len(result.cursor or "") / 1000, **split, **memory}

    def close(self) -> None:
        self.instance.dispose()


def index_resources(root: Path) -> dict:
    """The store (an empty LanceDB: every object is out of date), the model and the pipeline
    the sensors compare the source with."""
    from rag_assets.resources.config import RagConfig
    from rag_assets.resources.embedders import LocalEmbedder
    from rag_assets.resources.vector_stores import LanceDBStore

    return {
        "vector_store": LanceDBStore(uri=str(root / "index")),
        "embedder": LocalEmbedder(),
        "rag_config": RagConfig(),
    }


# --- 1. s3_event_sensor ------------------------------------------------------------------


def bench_events(moto: Moto, root: Path, objects: int) -> dict:
    import dagster as dg

    from rag_assets.defs.sync.sensors import build_s3_event_sensor
    from rag_assets.resources.config import SyncConfig
    from rag_assets.resources.event_queue import EventQueue
    from rag_assets.resources.object_store import ObjectStore

    bucket, queue = moto.bucket(notify=True)
    log(f"events: uploading {objects:,} objects to s3://{bucket}")
    upload_s = moto.upload(bucket, objects)
    pending = moto.pending(queue)
    config = SyncConfig(source_uri=f"s3://{bucket}/acme/", index_uri=str(root / "index"), state_dir=str(root / "state"))
    resources = {
        **index_resources(root),
        "event_queue": EventQueue(queue_url=queue),
        "object_store": ObjectStore(),
        "sync_config": config,
    }
    harness = Harness(root / "dagster_home", build_s3_event_sensor(dg.DefaultSensorStatus.RUNNING), resources)
    ticks = []
    try:
        while len(ticks) < 100 and ((tick := harness.tick()).get("receive") or tick.get("ack")):  # work to do
            ticks.append(tick)
            log(f"events[{pending:,}] tick {len(ticks)}: {tick['seconds']:.1f}s, {tick.get('receive', 0):,} received")
    finally:
        harness.close()
    left = moto.pending(queue)  # 0 unless messages came back
    limits = {k: getattr(config, k) for k in ("max_messages_per_tick", "receive_budget_seconds")}
    return {"pending": pending, "left": left, "upload_per_s": objects / upload_s, **limits, "ticks": ticks}


def print_events(results: list[dict]) -> None:
    rows = []
    for r in results:
        for n, t in enumerate(r["ticks"], 1):
            got = t.get("receive", 0)
            rate = f"{got / t['seconds']:.0f}" if got else "-"
            counts = [f"{x:,}" for x in (got, t.get("ack", 0), t.get("HEAD", 0), t["runs"], t["partitions"])]
            times = [t.get("receive s"), t.get("HEAD s"), t.get("ack s"), t["record_s"]]
            rows.append([f"{r['pending']:,}", n, t["seconds"], rate, *counts, *times, f"{t['cursor_kb']:.0f}"])
    first = results[0]
    notes = [f"  {r['pending']:,} messages pending (one is S3's test event): {len(r['ticks'])} ticks to empty the queue"
             + (f", {r['left']:,} LEFT in it" if r["left"] else "") for r in results]  # fmt: skip
    notes += [
        (
            f"  A tick takes at most max_messages_per_tick {first['max_messages_per_tick']:,} messages (or what it"
            f" receives in receive_budget_seconds {first['receive_budget_seconds']:.0f}) and acknowledges (ack) the"
        ),
        "  previous tick's: the last tick only acknowledges. events/s: messages received / tick s. One HEAD an object.",
        "  record s: adding the partitions (the daemon's share, not in tick s). Uploads (with notifications) ran at "
        + ", ".join(f"{r['upload_per_s']:.0f}/s" for r in results) + ".",
    ]
    headers = ["pending", "tick", "tick s", "events/s", "received", "acked", "HEADs", "runs", "partitions",
               "receive s", "HEAD s", "ack s", "record s", "cursor kB"]  # fmt: skip
    title = "1. s3_event_sensor: every tick until the queue is empty (moto S3 + SQS; runs not executed)"
    table(title, headers, rows, notes)


# --- 2. listing_sensor -------------------------------------------------------------------


def fill_index(resources: dict, source_uri: str, instance) -> float:
    """Write each listed document's rows as its run would have (one row, a random vector), so
    that the index holds the source and the next pass has nothing to do. The first 5,000
    through the store (the table and its indexes made as a run makes them), the rest appended
    in bulk and the indexes brought up to date once (optimize): the rows a run writes, without
    a million merges. Seconds it took."""
    import numpy as np

    from rag_assets.lib.keys import DocRef, split_partition_key
    from rag_assets.lib.reconcile import partitions_by_key, wanted_documents
    from rag_assets.resources.object_store import ObjectStore, source_root
    from rag_assets.resources.vector_stores import VectorRow

    start = time.perf_counter()
    root, listing = source_root(source_uri)
    wanted = sorted(wanted_documents({o.key: o for o in ObjectStore().list(listing)}).values(), key=lambda w: w.key)
    by_key = partitions_by_key(instance.get_dynamic_partitions("documents"), root)
    store, embedder, pipeline = resources["vector_store"], resources["embedder"], resources["rag_config"].pipeline
    model, dimension = embedder.model_id, embedder.dimension
    vector = np.ones(dimension, dtype=np.float32) / np.sqrt(dimension)

    def rows_of(part) -> dict:
        rows = {}
        for w in part:
            ref = DocRef(split_partition_key(by_key[w.key][0]).tenant, root, w.key)
            rows[ref.document_id] = [
                VectorRow(
                    f"r-{w.key}", ref.tenant, ref.document_id, w.key, 0, "text", "h", model, vector,
                    source_etag=w.etag, pipeline=pipeline,
                )
            ]
        return rows

    store.replace_documents(model, dimension, rows_of(wanted[:5_000]))
    table = store._table(model, dimension)
    for i in range(5_000, len(wanted), 50_000):
        table.add(store._arrow([r for rs in rows_of(wanted[i : i + 50_000]).values() for r in rs], dimension))
        log(f"index: {min(i + 50_000, len(wanted)):,} of {len(wanted):,} documents written")
    if len(wanted) > 5_000:
        table.optimize()
    return time.perf_counter() - start


def fill_index_apart(root: Path, source_uri: str, home: str) -> float:
    """fill_index in a child process (as the runs write from theirs), so that what the fill
    holds, a million rows through Arrow, is not counted in this process's memory."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fill_index_in_child, (root, source_uri, home))


def fill_index_in_child(root: Path, source_uri: str, home: str) -> float:
    import dagster as dg

    with dg.DagsterInstance.from_config(home) as instance:
        return fill_index(index_resources(root), source_uri, instance)


def bench_listing(root: Path, source_uri: str, objects: int, current_passes: int = 1) -> dict:
    """Listing passes: the first finds everything new; then the index is filled as the runs
    would fill it, and each of the next `current_passes` finds everything current (more than
    one: whether the process's memory levels off, pass after pass, as a daemon's would)."""
    import dagster as dg

    from rag_assets.defs.sync.sensors import build_listing_sensor
    from rag_assets.resources.config import SyncConfig
    from rag_assets.resources.object_store import ObjectStore

    config = SyncConfig(source_uri=source_uri, index_uri=str(root / "index"), state_dir=str(root / "state"))
    resources = {**index_resources(root), "object_store": ObjectStore(), "sync_config": config}
    harness = Harness(root / "dagster_home", build_listing_sensor(dg.DefaultSensorStatus.RUNNING), resources)
    passes, fill_s = [], None
    try:
        for number in range(1, 2 + current_passes):
            ticks = []
            while not harness.cursor or json.loads(harness.cursor)["pass"] == number:  # the pass ends a tick
                ticks.append(harness.tick())
                log(f"listing {source_uri} pass {number} tick {len(ticks)}: {ticks[-1]['seconds']:.1f}s")
            passes.append(ticks)
            if number == 1:
                fill_s = fill_index_apart(root, source_uri, harness.instance.root_directory)
                log(f"listing {source_uri}: index filled in {fill_s:.1f}s")
    finally:
        harness.close()
    limits = {k: getattr(config, k) for k in ("max_objects_per_tick", "list_budget_seconds")}
    return {"source": source_uri, "objects": objects, "fill_s": fill_s, **limits, "passes": passes}


def print_listing(results: list[dict]) -> None:
    rows = []
    for r in results:
        where = f"{'moto S3' if r['source'].startswith('s3://') else 'local folder'}, {r['objects']:,}"
        for number, ticks in enumerate(r["passes"], 1):
            what = f"{number} ({'all new' if number == 1 else 'all current'})"
            shown = list(enumerate(ticks, 1))
            if len(ticks) > 8:  # a long pass: its first ticks, its slowest, its last, and the whole pass
                slowest = max(shown[3:-2], key=lambda nt: nt[1]["seconds"])
                shown = [*shown[:3], slowest, *shown[-2:]]
            for n, t in shown:
                counts = [f"{t.get('list', 0):,}", t.get("list s"), t.get("index s"), f"{t['runs']:,}"]
                rows.append([where, what, f"{n}/{len(ticks)}", t["seconds"], *counts, f"{t['partitions']:,}",
                             t["record_s"], f"{t['rss_mb']:,.0f}"])  # fmt: skip
            if len(ticks) > 8:
                seconds = [t["seconds"] for t in ticks]
                keys = ("list", "list s", "index s", "runs", "partitions", "record_s")
                whole = [sum(t.get(k, 0) for t in ticks) for k in keys]
                rss = [t["rss_mb"] for t in ticks]
                rows.append([where, what, f"all {len(ticks)}", sum(seconds), f"{whole[0]:,}", whole[1], whole[2],
                             f"{whole[3]:,}", f"{whole[4]:,}", whole[5], ""])  # fmt: skip
                rows.append([where, what, "median / max", f"{statistics.median(seconds):.2f} / {max(seconds):.2f}",
                             "", "", "", "", "", "", f"{statistics.median(rss):,.0f} / {max(rss):,.0f}"])  # fmt: skip
    first = results[0]
    notes = [
        (
            f"  A tick stops paging at max_objects_per_tick {first['max_objects_per_tick']:,} objects or after"
            f" list_budget_seconds {first['list_budget_seconds']:.0f}, checked after each page (S3: 1,000 objects; a "
            "local folder: 10,000). Each tick judges its span of keys: index s is the store's listing of that span."
        ),
        "  Between the passes the index is filled as the runs would fill it (one row a document: "
        + ", ".join(f"{r['fill_s']:.0f} s" for r in results)
        + "): each pass after the first plans every document against it.",
        "  moto's ListObjectsV2 gathers and sorts the whole bucket for every page (S3 does not): on moto, list s grows",
        "  with the bucket; tick s - list s is the sensor's own time. record s: adding the partitions (not in tick s).",
        "  RSS MB: this process's resident memory after the tick: the sensor with the instance, the store and the",
        "  model it holds (the index is filled from a child process). Peak RSS of this process: "
        + ", ".join(f"{r['passes'][-1][-1]['peak_rss_mb']:,.0f} MB" for r in results)
        + ".",
    ]
    headers = ["source, objects", "pass", "tick", "tick s", "listed", "list s", "index s", "runs", "partitions",
               "record s", "RSS MB"]  # fmt: skip
    table("2. listing_sensor: every tick of each pass (runs not executed)", headers, rows, notes)


# --- 5. A tick on an instance holding many partitions ----------------------------------------


def peak_rss_mb() -> float:
    """This process's highest resident memory so far."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    """This process's resident memory now."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def bench_partitions(moto: Moto, root: Path, n: int) -> list[dict]:
    """Two ticks of each sensor, with `n` partitions already held: a process's first, finding 20
    new documents, then the next, finding 20 more (the keys read before are held, D39)."""
    import dagster as dg

    from rag_assets.defs.sync.sensors import build_listing_sensor, build_s3_event_sensor
    from rag_assets.lib.keys import DocRef, encode_partition_key
    from rag_assets.partitions import documents_partitions
    from rag_assets.resources.config import SyncConfig
    from rag_assets.resources.event_queue import EventQueue
    from rag_assets.resources.object_store import ObjectStore

    inbox = root / "inbox"
    (inbox / "acme").mkdir(parents=True)

    def new_documents(sensor: str, first: int) -> None:
        if sensor == "listing_sensor":
            for i in range(first, first + 20):
                (inbox / "acme" / f"doc{i:02}.txt").write_text(f"tiny document {i}")
        else:
            moto.upload(bucket, 20, first)

    bucket, queue = moto.bucket(notify=True)
    others = [encode_partition_key(DocRef("acme", "s3://elsewhere", f"old/{i:07d}.txt")) for i in range(n)]
    out = []
    for name, source in (("listing_sensor", str(inbox)), ("s3_event_sensor", f"s3://{bucket}/acme/")):
        where = root / name
        config = SyncConfig(source_uri=source, index_uri=str(where / "index"), state_dir=str(where / "state"))
        resources = {**index_resources(where), "object_store": ObjectStore(), "sync_config": config}
        if name == "s3_event_sensor":
            resources["event_queue"] = EventQueue(queue_url=queue)
        build = build_listing_sensor if name == "listing_sensor" else build_s3_event_sensor
        harness = Harness(where / "dagster_home", build(dg.DefaultSensorStatus.RUNNING), resources)
        try:
            for start in range(0, n, 10_000):
                harness.instance.add_dynamic_partitions(documents_partitions.name, others[start : start + 10_000])
            read = harness.instance.get_dynamic_partitions
            timed_read = timed("read keys", read, len)
            harness.instance.get_dynamic_partitions = timed_read  # this object only
            new_documents(name, 0)
            first = harness.tick()
            out.append({"sensor": name, "tick": "first", "held": n, **first, "peak_rss_mb": peak_rss_mb()})
            new_documents(name, 20)
            following = harness.tick()
            out.append({"sensor": name, "tick": "next", "held": n, **following, "peak_rss_mb": peak_rss_mb()})
        finally:
            harness.close()
        log(f"partitions[{n:,}] {name}: {first['seconds']:.2f}s then {following['seconds']:.2f}s")
    return out


def print_partitions(results: list[dict]) -> None:
    rows = [
        [r["sensor"], f"{r['held']:,}", r["tick"], r["seconds"], r.get("read keys s", 0.0), f"{r['partitions']:,}",
         r["runs"], f"{r['peak_rss_mb']:,.0f}"]
        for r in results
    ]  # fmt: skip
    notes = [
        "  A process's first tick, finding 20 new documents, then its next, finding 20 more (what it read of the keys",
        "  is held, docs/decisions.md D39), evaluated like the daemon does (runs not executed; the daemon's",
        "  share, creating the runs, is in benchmarks/bookkeeping.py --via daemon). read keys s: the tick's reads of",
        "  dynamic partitions (every document partition once, and the registry of roots). peak RSS: this process's,",
        "  after the tick (sizes in increasing order).",
    ]
    headers = ["sensor", "partitions held", "tick", "tick s", "read keys s", "partitions added", "runs", "peak RSS MB"]
    table("5. A tick on an instance already holding many document partitions", headers, rows, notes)


# --- 3. End to end through dagster-daemon ------------------------------------------------

LATENCY_PARTS = {
    "wait": "upload -> the sensor's tick starts: the daemon's sensor loop comes round every 5 s (Dagster's own "
    "constant) and evaluates a sensor once its minimum_interval_seconds have passed",
    "tick": "the tick: the sensor evaluated in the code server, then the daemon adds the partition, creates the run "
    "(its execution plan, its planned events) and enqueues it",
    "queue": "enqueued -> starting: the QueuedRunCoordinator dequeues every second (dagster.yaml)",
    "launch": "starting -> started: a new Python process (`dagster api execute_run`) imports dagster and loads the "
    "code location",
    "run": "started -> queryable: reading, chunking, embedding (loading the model in every run, unless a warm model "
    "serves it), the LanceDB write, the events of the run's steps",
}


def latency_parts(instance, partition: str, uploaded: float, found: float) -> dict:
    """The document's run (the run whose range starts at its partition): when it finished,
    the latency cut at the start of the sensor tick that asked for it and at the run's events."""
    import dagster as dg

    from rag_assets.dagster_compat import PARTITION_RANGE_START_TAG, TICK_ID_TAG

    runs = dg.RunsFilter(job_name="ingest_documents", tags={PARTITION_RANGE_START_TAG: partition})
    deadline = time.monotonic() + 120
    while not (records := instance.get_run_records(filters=runs, limit=1)) or not records[0].dagster_run.is_finished:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the run of {partition} did not finish")
        time.sleep(0.5)
    run = records[0].dagster_run
    at, steps = {}, {}
    for entry in instance.all_logs(run.run_id):
        if entry.dagster_event is not None:
            at.setdefault(entry.dagster_event.event_type.name, entry.timestamp)
            if entry.step_key and entry.dagster_event.event_type.name in ("STEP_START", "STEP_SUCCESS"):
                steps.setdefault(entry.step_key, []).append(entry.timestamp)
    tick = instance.schedule_storage.get_tick(int(run.tags[TICK_ID_TAG])).timestamp if TICK_ID_TAG in run.tags else None
    cuts = [uploaded, tick, at.get("RUN_ENQUEUED"), at.get("RUN_STARTING"), at.get("RUN_START"), found]
    parts = {name: b - a if a and b else None for name, a, b in zip(LATENCY_PARTS, cuts, cuts[1:])}
    inside = {"before the steps": at["STEP_START"] - at["RUN_START"] if "STEP_START" in at else None}
    inside.update((step, max(t) - min(t)) for step, t in steps.items())
    if "RUN_SUCCESS" in at and steps:
        inside["after the steps"] = at["RUN_SUCCESS"] - max(t for ts in steps.values() for t in ts)
    run_s = at["RUN_SUCCESS"] - at["RUN_START"] if "RUN_SUCCESS" in at else None
    return {**parts, "status": run.status.value, "run_s": run_s, "inside_run": inside}


@contextlib.contextmanager
def running_daemon(root: Path, env: dict):
    """`dagster-daemon run` on the project's definitions, in a process group of its own and
    logging to root/daemon.log, until the block ends (the whole group is stopped)."""
    from rag_assets_tests.live import stop_group

    with open(root / "daemon.log", "wb") as daemon_log:
        daemon = subprocess.Popen(
            [str(DAEMON), "run", "-m", "rag_assets.definitions"],
            cwd=REPO, env=env, stdout=daemon_log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        yield daemon
    finally:
        stop_group(daemon, grace=15)


def bench_e2e(mode: str, root: Path, moto: Moto, documents: int, warm: bool = False) -> dict:
    import dagster as dg

    from rag_assets.defs.resources import build_resources
    from rag_assets.lib.keys import DocRef, encode_partition_key
    from rag_assets.settings import Settings
    from rag_assets_tests.live import embed_service

    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAG_", "AWS_", "DAGSTER_"))}
    env.update(DAGSTER_HOME=str(new_home(root / "dagster_home")), RAG_WORK_DIR=str(root / "rag"),
               RAG_INDEX_URI=str(root / "rag" / "index"), HF_HUB_OFFLINE="1")  # fmt: skip
    if mode == "listing_sensor":
        inbox = root / "inbox"
        (inbox / "acme").mkdir(parents=True)
        env["RAG_SOURCE_URI"], doc_root = str(inbox), str(inbox.resolve())

        def upload(key: str, text: str) -> None:
            hidden = (inbox / key).with_name(f".{Path(key).name}")  # not listed: no half-written file
            hidden.write_text(text)
            hidden.rename(inbox / key)

    else:
        bucket, queue = moto.bucket(notify=True)
        env.update(moto.env, RAG_SOURCE_URI=f"s3://{bucket}/acme/", RAG_SQS_QUEUE_URL=queue)
        doc_root = f"s3://{bucket}"

        def upload(key: str, text: str) -> None:
            moto.s3.put_object(Bucket=bucket, Key=key, Body=text.encode())

    services = contextlib.ExitStack()
    if warm:  # the runs embed through a model loaded once (make dev does the same)
        root.mkdir(parents=True, exist_ok=True)
        env["RAG_EMBED_SERVICE_URL"] = services.enter_context(embed_service(root / "embed_service.log"))
    resources = build_resources(Settings.from_env({k: v for k, v in env.items() if k != "RAG_EMBED_SERVICE_URL"}))
    embedder, store = resources["embedder"], resources["vector_store"]
    model, dimension = embedder.model_id, embedder.dimension
    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    docs = []
    try:
        with running_daemon(root, env) as daemon:
            log(f"e2e {mode}: dagster-daemon pid {daemon.pid}")
            for i in range(documents + 1):  # the first warms up: daemon start, code server, first run
                key, text = f"acme/latency-{i}.txt", f"Latency probe {i}: the walrus {uuid.uuid4().hex} sings."
                vector = embedder.embed([text])[0]
                uploaded = time.time()
                upload(key, text)
                while key not in {h.key for h in store.query(model, dimension, vector, tenant="acme", k=5)}:
                    if daemon.poll() is not None or time.time() - uploaded > 300:
                        tail = (root / "daemon.log").read_text(errors="replace")[-3000:]
                        waited = time.time() - uploaded
                        raise RuntimeError(f"{key} not queryable after {waited:.0f}s; daemon log:\n{tail}")
                    time.sleep(0.1)
                found = time.time()
                partition = encode_partition_key(DocRef("acme", doc_root, key))
                parts = latency_parts(instance, partition, uploaded, found)
                docs.append({"latency_s": found - uploaded, "warmup": i == 0, **parts})
                log(f"e2e {mode}: {key} queryable after {found - uploaded:.1f}s")
                time.sleep(2 + random.uniform(0, 5))  # an idle daemon, its 5 s loop at any phase
    finally:
        services.close()
        instance.dispose()
    measured = [d["latency_s"] for d in docs if not d["warmup"]]
    return {
        "sensor": mode + (", warm model" if warm else ""),
        "median_s": statistics.median(measured),
        "documents": docs,
    }


def print_e2e(results: list[dict]) -> None:
    rows = [[r["sensor"], n or "warm-up", d["latency_s"], *(d[p] for p in LATENCY_PARTS), d["run_s"], d["status"]]
            for r in results for n, d in enumerate(r["documents"])]  # fmt: skip
    notes = []
    for r in results:
        measured = [d for d in r["documents"] if not d["warmup"]]
        parts = {p: statistics.median(d[p] for d in measured if d[p] is not None) for p in LATENCY_PARTS}
        notes.append(
            f"  {r['sensor']}: median {r['median_s']:.1f} s of {len(measured)} (medians of the parts: wait for the tick"
            f" {parts['wait']:.1f} s, tick {parts['tick']:.1f} s, run start {parts['queue'] + parts['launch']:.1f} s"
            f" (queue {parts['queue']:.1f} + launch {parts['launch']:.1f}), run {parts['run']:.1f} s)"
        )
    inside: dict[str, list[float]] = {}
    for r in results:
        for d in r["documents"]:
            if not d["warmup"]:
                for name, seconds in d["inside_run"].items():
                    if seconds is not None:
                        inside.setdefault(name, []).append(seconds)
    notes.append(
        "  Inside the run (all sensors, medians): "
        + ", ".join(f"{k} {statistics.median(v):.2f} s" for k, v in inside.items())
    )
    notes += ["  What the latency is made of (run s: the run's own start to success, in its events):"]
    notes += [f"  - {name}: {text}" for name, text in LATENCY_PARTS.items()]
    headers = ["sensor", "document", "total s", *(f"{p} s" for p in LATENCY_PARTS), "run s", "status"]
    title = "3. End to end: upload -> queryable through `dagster-daemon run`, one small .txt at a time"
    table(title, headers, rows, notes)


# --- 4. What the daemon costs with nothing to do ------------------------------------------


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds (user + system, with their reaped children's) of the live processes of a
    process group: the daemon, its code server, whatever they started."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the name: state, ppid, pgrp, ...
            total += sum(int(f) for f in fields[11:15]) / tick
    return total


def bench_idle(mode: str, root: Path, moto: Moto, seconds: float) -> dict:
    """A daemon following an empty source (a folder, or a bucket through SQS) for `seconds`,
    after a warm-up: its ticks (how many, how long) and the CPU it and its code server used."""
    import dagster as dg

    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAG_", "AWS_", "DAGSTER_"))}
    env.update(DAGSTER_HOME=str(new_home(root / "dagster_home")), RAG_WORK_DIR=str(root / "rag"),
               RAG_INDEX_URI=str(root / "rag" / "index"), HF_HUB_OFFLINE="1")  # fmt: skip
    if mode == "listing_sensor":
        (root / "inbox" / "acme").mkdir(parents=True)
        env["RAG_SOURCE_URI"] = str(root / "inbox")
    else:
        bucket, queue = moto.bucket(notify=True)
        env.update(moto.env, RAG_SOURCE_URI=f"s3://{bucket}/acme/", RAG_SQS_QUEUE_URL=queue)
    instance = dg.DagsterInstance.from_config(env["DAGSTER_HOME"])
    try:
        with running_daemon(root, env) as daemon:
            deadline = time.monotonic() + 300
            while not any(s.instigator_name == mode for s in instance.all_instigator_state()):
                if time.monotonic() > deadline or daemon.poll() is not None:
                    tail = (root / "daemon.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"no tick of {mode}: {tail}")
                time.sleep(1)
            time.sleep(20)  # the code server loaded, the first ticks behind
            start, cpu = time.time(), group_cpu_seconds(daemon.pid)
            time.sleep(seconds)
            cpu, end = group_cpu_seconds(daemon.pid) - cpu, time.time()
            ticks = {}
            for state in instance.all_instigator_state():
                for t in instance.get_ticks(state.instigator_origin_id, state.selector_id, after=start, before=end):
                    if t.end_timestamp:
                        ticks.setdefault(state.instigator_name, []).append(t.end_timestamp - t.timestamp)
    finally:
        instance.dispose()
    log(f"idle {mode}: {cpu:.1f} CPU s in {end - start:.0f} s, ticks {({k: len(v) for k, v in ticks.items()})}")
    return {"sensor": mode, "seconds": end - start, "cpu_s": cpu, "ticks": ticks}


def print_idle(results: list[dict]) -> None:
    rows = []
    for r in results:
        for name, durations in sorted(r["ticks"].items()):
            per_minute = 60 * len(durations) / r["seconds"]
            rows.append(
                [
                    r["sensor"],
                    name,
                    f"{per_minute:.0f}",
                    statistics.median(durations),
                    max(durations),
                    60 * r["cpu_s"] / r["seconds"],
                ]
            )
    notes = [
        "  An empty source: every tick asks for nothing. tick s: the tick's start to its end in the daemon (the",
        "  evaluation in the code server and the tick's records). CPU s a minute: the daemon, its code server and",
        "  whatever they started, all sensors and daemons together (the last column repeats per sensor).",
    ]
    headers = ["source followed", "sensor", "ticks a minute", "median tick s", "max tick s", "CPU s a minute"]
    table("4. The daemon with nothing to do: idle ticks and what they cost", headers, rows, notes)


def bench_listings(moto: Moto, root: Path, local_files: int, s3_objects: int, current_passes: int) -> list[dict]:
    """Both listing benchmarks: a local folder of `local_files`, a moto bucket of `s3_objects`."""
    inbox = root / "listing-local" / "inbox"
    (inbox / "acme").mkdir(parents=True)
    log(f"listing: writing {local_files:,} files")
    for i in range(local_files):
        (inbox / "acme" / f"doc{i:07}.txt").write_bytes(b"tiny document %d" % i)
        if i % 100_000 == 99_999:
            log(f"listing: {i + 1:,} files written")
    results = [bench_listing(root / "listing-local", str(inbox), local_files, current_passes)]
    shutil.rmtree(root / "listing-local")
    if not s3_objects:
        return results
    bucket, _ = moto.bucket(notify=False)
    log(f"listing: uploading {s3_objects:,} objects to s3://{bucket}")
    moto.upload(bucket, s3_objects)
    results.append(bench_listing(root / "listing-s3", f"s3://{bucket}/acme/", s3_objects, current_passes))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--quick", action="store_true", help="small sizes: a few minutes")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--s3-objects", type=int, metavar="N", help="objects listed in S3 (100,000; quick: 20,000)")
    parser.add_argument(
        "--local-files", type=int, metavar="N", help="files listed in a local folder (100,000; quick: 10,000)"
    )
    parser.add_argument(
        "--parts",
        default="events,listing,e2e",
        help="which parts to run: events, listing, e2e, idle, partitions (default: the first three)",
    )
    parser.add_argument(
        "--current-passes", type=int, default=1, metavar="N", help="listing: all-current passes after the fill (1)"
    )
    parser.add_argument("--documents", type=int, default=3, help="end to end: documents measured after the warm-up")
    parser.add_argument("--partitions", default="100,1000000", help="partitions: the sizes held, comma separated")
    parser.add_argument("--warm-only", action="store_true", help="end to end: only with the warm model (as make dev)")
    parser.add_argument(
        "--sensors", default="listing_sensor,s3_event_sensor", help="end to end: which sensors follow the uploads"
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    event_sizes = [200, 2_500] if args.quick else [1_000, 10_000]
    local_files = args.local_files or (10_000 if args.quick else 100_000)
    s3_objects = args.s3_objects if args.s3_objects is not None else (20_000 if args.quick else 100_000)

    import dagster
    import moto as moto_package

    meta = (
        f"rag_assets sensor benchmark ({'quick' if args.quick else 'full'}): {platform.machine()}, {os.cpu_count()} "
        f"CPUs, Python {platform.python_version()}, dagster {dagster.__version__}, moto {moto_package.__version__}"
    )
    print(meta)
    results: dict = {"meta": meta}
    root = Path(tempfile.mkdtemp(prefix="rag-sensor-bench-"))
    moto = None
    try:
        moto = Moto()
        instrument()
        if "events" in parts:
            results["events"] = [bench_events(moto, root / f"events-{n}", n) for n in event_sizes]
            print_events(results["events"])
        if "listing" in parts:
            results["listing"] = bench_listings(moto, root, local_files, s3_objects, args.current_passes)
            print_listing(results["listing"])
        if "idle" in parts:
            results["idle"] = [bench_idle(mode, root / f"idle-{mode}", moto, 60) for mode in args.sensors.split(",")]
            print_idle(results["idle"])
        if "partitions" in parts:
            sizes = sorted(int(x) for x in args.partitions.split(","))
            bench_partitions(moto, root / "partitions-warm-up", 0)  # first imports and loads: not recorded
            results["partitions"] = [r for n in sizes for r in bench_partitions(moto, root / f"partitions-{n}", n)]
            print_partitions(results["partitions"])
        if "e2e" in parts:
            results["e2e"] = [
                bench_e2e(mode, root / f"{mode}{'-warm' if warm else ''}", moto, args.documents, warm)
                for mode in args.sensors.split(",")
                for warm in ((True,) if args.warm_only else (False, True))
            ]
            print_e2e(results["e2e"])
    finally:
        if moto is not None:
            moto.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"\nTotal {time.monotonic() - T0:.0f} s")
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
