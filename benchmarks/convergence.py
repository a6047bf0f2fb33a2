"""Convergence benchmark: how long the index takes to equal the bucket again after each kind
of change, through a real `dagster-daemon` and a moto S3 bucket, with S3 event
notifications through SQS (events) and without (listing).

    python benchmarks/convergence.py [--rounds N] [--json]

For each mode, `--rounds` times (default 3): upload a new small document, delete it,
upload the same bytes again, replace it, put the first bytes back (a revert); then once, a
churn: 60 uploads, and while the first runs work, 30 deletes and 10 replacements. Each
figure is the time from the change (the last one, for the churn) until nothing separates
the index from the bucket (rag_assets_tests.live.drift: nothing missing, nothing deleted
still held, nothing twice, every document from its current bytes), polled every 0.25 s.

The floor beside it is the same work without Dagster or the sensors: read the object,
parse, chunk, embed with the model already loaded, write the rows (or delete them), in
this process. Medians of the rounds; one run, the two side by side.

moto serves S3 and SQS from a child process (benchmarks/sensors.py's Moto). Progress goes
to stderr; the tables, and with --json the figures, to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(Path(__file__).parent)]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from sensors import Moto, log, new_home, table  # benchmarks/sensors.py

CHANGES = ["upload", "delete", "re-upload (same bytes)", "replace", "revert"]


class Scene:
    """A bucket, an environment pointing rag_assets at it, a daemon on its own DAGSTER_HOME."""

    def __init__(self, moto: Moto, root: Path, mode: str):
        from rag_assets.defs.resources import build_resources
        from rag_assets.settings import Settings
        from rag_assets_tests.live import Daemon

        self.moto, self.mode = moto, mode
        self.bucket, queue = moto.bucket(notify=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAG_", "DAGSTER_"))}
        self.home = new_home(root / "dagster_home")
        env.update(moto.env, DAGSTER_HOME=str(self.home), RAG_WORK_DIR=str(root / "rag"),
                   RAG_INDEX_URI=str(root / "rag" / "index"), RAG_SOURCE_URI=f"s3://{self.bucket}/acme/")  # fmt: skip
        if mode == "events":
            env["RAG_SQS_QUEUE_URL"] = queue
        self.settings = Settings.from_env(env)
        resources = build_resources(self.settings)
        self.store, self.embedder, self.pipeline = (
            resources["vector_store"],
            resources["embedder"],
            resources["rag_config"].pipeline,
        )
        self.daemon = Daemon(root / "daemon.log", env=env)

    def put(self, key: str, text: str) -> None:
        self.moto.s3.put_object(Bucket=self.bucket, Key=key, Body=text.encode())

    def delete(self, key: str) -> None:
        self.moto.s3.delete_object(Bucket=self.bucket, Key=key)

    def converge(self, what: str, timeout: float = 600.0) -> float:
        from rag_assets_tests.live import drift, wait_for

        model, dim = self.embedder.model_id, self.embedder.dimension
        seconds = wait_for(
            lambda: not drift(self.settings.source_uri, self.store, model, dim, self.pipeline), what, timeout
        )
        log(f"{self.mode}: {what}: {seconds:.1f}s")
        return seconds


def rounds_of_changes(scene: Scene, rounds: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {c: [] for c in CHANGES}
    for n in range(rounds + 1):  # the first is a warm-up: daemon start, code server, first run
        key, first, second = (
            f"acme/probe-{n}.txt",
            f"Probe {n}: the walrus sings at nine.",
            f"Probe {n}: the walrus sings at eleven.",
        )
        steps = [
            ("upload", lambda key=key, first=first: scene.put(key, first)),
            ("delete", lambda key=key: scene.delete(key)),
            ("re-upload (same bytes)", lambda key=key, first=first: scene.put(key, first)),
            ("replace", lambda key=key, second=second: scene.put(key, second)),
            ("revert", lambda key=key, first=first: scene.put(key, first)),
        ]
        for what, change in steps:
            time.sleep(1.1)  # a new second: S3's LastModified has no finer grain
            change()
            seconds = scene.converge(f"round {n} {what}")
            if n:
                out[what].append(seconds)
    return out


def churn(scene: Scene) -> float:
    import dagster as dg

    from rag_assets_tests.live import runs_started, wait_for

    for n in range(60):
        scene.put(f"acme/churn-{n:02}.txt", f"Churn document {n}, first version, about harbour number {n}.")
    instance = dg.DagsterInstance.from_config(str(scene.home))
    try:
        wait_for(lambda: runs_started(instance) > 0, "the first churn run", timeout=300)
    finally:
        instance.dispose()
    for n in range(30):
        scene.delete(f"acme/churn-{n:02}.txt")
    for n in range(30, 40):
        scene.put(f"acme/churn-{n:02}.txt", f"Churn document {n}, second version, about harbour number {n}.")
    return scene.converge("churn")


def floor(root: Path) -> dict[str, float]:
    """The same work in this process, no Dagster: one document read, parsed, chunked,
    embedded (model loaded) and written; and its rows deleted. Median of 5."""
    from rag_assets.components.index_pipeline import DocumentEmbeddings, document_rows
    from rag_assets.defs.documents.assets import load_document
    from rag_assets.lib.chunking import CHUNK_OVERLAP, CHUNK_TOKENS, chunk_units
    from rag_assets.lib.identity import pipeline_fingerprint
    from rag_assets.lib.keys import DocRef
    from rag_assets.parse_sandbox import ParseSandbox
    from rag_assets.resources.embedders import LocalEmbedder
    from rag_assets.resources.object_store import ObjectStore
    from rag_assets.resources.vector_stores import LanceDBStore

    embedder, store, objects = LocalEmbedder(), LanceDBStore(uri=str(root / "floor-index")), ObjectStore()
    embedder.embed(["warm up"])
    pipeline = pipeline_fingerprint(CHUNK_TOKENS, CHUNK_OVERLAP, "formatted_text")
    (root / "floor" / "acme").mkdir(parents=True)
    write, delete = [], []
    for n in range(6):
        path = root / "floor" / "acme" / "probe.txt"
        path.write_text(f"Probe {n}: the walrus sings at nine.")
        ref = DocRef("acme", str(root / "floor"), "acme/probe.txt")
        start = time.perf_counter()
        doc = load_document(objects, ref, "formatted_text", ParseSandbox(0, 0))  # no limits: read in this process
        chunks = chunk_units(ref.document_id, doc.parsed.units)
        vectors = embedder.embed([c.text for c in chunks])
        emb = DocumentEmbeddings(embedder.model_id, embedder.dimension, vectors, len(chunks), 0, 1)
        store.replace_documents(
            embedder.model_id, embedder.dimension, {ref.document_id: document_rows(doc, chunks, emb, pipeline)}
        )
        middle = time.perf_counter()
        store.delete_documents(embedder.model_id, embedder.dimension, [ref.document_id])
        end = time.perf_counter()
        if n:
            write.append(middle - start)
            delete.append(end - middle)
    return {"write": statistics.median(write), "delete": statistics.median(delete)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    moto = Moto()
    results = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"}
    try:
        with tempfile.TemporaryDirectory(prefix="rag-convergence-") as tmp:
            results["floor"] = floor(Path(tmp))
            for mode in ("events", "listing"):
                scene = Scene(moto, Path(tmp) / mode, mode)
                scene.daemon.start()
                try:
                    results[mode] = {"changes": rounds_of_changes(scene, args.rounds), "churn": churn(scene)}
                finally:
                    scene.daemon.stop()
    finally:
        moto.stop()
    rows = []
    for mode in ("events", "listing"):
        for what, seconds in results[mode]["changes"].items():
            base = results["floor"]["delete" if what == "delete" else "write"]
            median = statistics.median(seconds)
            rows.append([mode, what, median, min(seconds), max(seconds), base, f"{median / base:.0f}x"])
        rows.append([mode, "churn (60 up, 30 del, 10 repl)", results[mode]["churn"], None, None, None, ""])
    notes = [
        f"  {results['machine']}. Medians of {args.rounds} rounds after a warm-up round; churn once.",
        "  Seconds from the change until the index equals the bucket. The floor: the same document read, parsed,",
        "  chunked, embedded (model loaded) and written, or its rows deleted, in one process, no Dagster.",
        "  What the difference is made of: waiting for the sensor's next tick (the daemon's loop comes round every",
        "  5 s), the tick, the run queue (dequeued every second), a new process per run that imports dagster and",
        "  loads the model (no embedding service here), the run's steps and events (benchmarks/sensors.py splits it).",
    ]
    headers = ["sensor", "change", "median s", "min s", "max s", "floor s", "/ floor"]
    table(
        "Convergence: change -> the index equals the bucket, through dagster-daemon (moto S3 + SQS)",
        headers,
        rows,
        notes,
    )
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
