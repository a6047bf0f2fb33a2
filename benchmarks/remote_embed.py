"""Remote embedding benchmark: what a batch costs through Lambda and Dagster Pipes beside the
same batch embedded in-process, and what the shared embedding cache saves a fresh worker.

    python benchmarks/remote_embed.py [--sizes 16,64,256] [--repeats 5] [--json]

1. Per batch (`--sizes` texts of ~120 words from Python's own documentation), inside one
   Dagster step: the floor, `embedder.embed(texts)` in the step's process (the model warm),
   and the same texts through `LambdaEmbedRunner.embed_batch`: texts to S3 (moto), the real
   PipesLambdaClient and boto3 invoking the local Lambda (tests' lambda_server: a warm worker
   process running rag_assets.frontends.pipes_embed.lambda_handler), vectors back from S3, the
   report through Pipes' S3 messages. Medians of `--repeats`, after one cold start (reported
   apart). Both run on this machine's CPUs: the difference is the path's overhead, not
   Lambda's speed.
2. The embedding cache on a fresh worker (an ECS run task starts with an empty disk): a
   partition's texts looked up and embedded as the step does (`embed_with_cache`), with a
   worker-local SQLite cache that starts empty, and with the shared PostgreSQL cache that
   an earlier run filled.
Progress goes to stderr; the table, and with --json the figures, to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(Path(__file__).parent)]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def passages(count: int, words: int = 120, stride: int = 40) -> list[str]:
    """Distinct windows of `words` words, `stride` apart (a chunk's length)."""
    from corpora import pydoc_documents as documents

    out = []
    for text in documents().values():
        tokens = text.split()
        out += [" ".join(tokens[i : i + words]) for i in range(0, len(tokens) - words, stride)]
        if len(out) >= count:
            return out[:count]
    raise SystemExit(f"the corpus has fewer than {count} passages")


def batch_figures(sizes: list[int], repeats: int, work: Path) -> dict:
    import dagster as dg

    from rag_assets.resources.embedders import embedder_from_spec
    from rag_assets.resources.remote_embedding import LambdaEmbedRunner
    from rag_assets_tests.fakes.lambda_server import FakeLambdaServer

    texts = passages(max(sizes) * 2)
    embedder = embedder_from_spec("local:all-MiniLM-L6-v2")
    figures: dict = {}
    with FakeLambdaServer() as server:
        server.add_function(
            "rag-embed", "rag_assets.frontends.pipes_embed.lambda_handler", {"RAG_WORK_DIR": str(work / "lambda")}
        )
        os.environ["AWS_ENDPOINT_URL_LAMBDA"] = server.url
        runner = LambdaEmbedRunner(function_name="rag-embed", work_uri="s3://bench-work/rag", parallel_calls=1)

        @dg.asset
        def batches(context):
            started = time.perf_counter()
            runner.embed_batch(context, embedder, texts[:8])
            figures["cold_start_s"] = time.perf_counter() - started
            embedder.embed(texts[:8])  # the step's own model, loaded
            for size in sizes:
                local, remote = [], []
                for n in range(repeats):
                    batch = texts[(n % 2) * size : (n % 2) * size + size]
                    t = time.perf_counter()
                    floor = embedder.embed(batch)
                    local.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    vectors, _ = runner.embed_batch(context, embedder, batch)
                    remote.append(time.perf_counter() - t)
                    assert abs(vectors - floor).max() < 1e-4
                figures[size] = {"in_process_s": statistics.median(local), "lambda_s": statistics.median(remote)}
                log(
                    f"{size} texts: in-process {figures[size]['in_process_s']:.2f} s, through Lambda "
                    f"{figures[size]['lambda_s']:.2f} s"
                )
            return dg.MaterializeResult()  # Dagster asks a step that opened Pipes sessions for a result

        dg.materialize([batches], instance=dg.DagsterInstance.ephemeral())
    return figures


def cache_figures(count: int) -> dict:
    from rag_assets.resources.embedders import embed_with_cache, embedder_from_spec, embedding_cache_from_uri
    from rag_assets_tests.pg_server import TemporaryPostgres

    texts = passages(count)
    embedder = embedder_from_spec("local:all-MiniLM-L6-v2")
    embedder.embed(texts[:8])
    out = {}
    with tempfile.TemporaryDirectory() as tmp, TemporaryPostgres() as pg:
        shared = embedding_cache_from_uri(pg.dsn)
        embed_with_cache(embedder, shared, texts)  # an earlier run filled it
        for name, cache in (
            ("fresh_sqlite", embedding_cache_from_uri(str(Path(tmp) / "fresh.sqlite"))),
            ("shared_postgres", shared),
        ):
            started = time.perf_counter()
            _, _stats, fresh = embed_with_cache(embedder, cache, texts)
            out[name] = {"seconds": time.perf_counter() - started, "embedded": int(fresh.sum())}
            log(f"{count} texts, {name}: {out[name]['seconds']:.2f} s, {out[name]['embedded']} embedded")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="16,64,256")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cache-texts", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    from moto.server import ThreadedMotoServer

    from rag_assets_tests.conftest import free_port

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    moto.start()
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    import boto3

    boto3.client("s3").create_bucket(Bucket="bench-work")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            batches = batch_figures(sizes, args.repeats, Path(tmp))
        cache = cache_figures(args.cache_texts)
    finally:
        moto.stop()

    print(f"Lambda cold start (worker process, model load, first batch of 8): {batches['cold_start_s']:.2f} s")
    print(f"{'texts':>6} | {'in-process (floor)':>18} | {'through Lambda':>14} | {'overhead':>8} | ratio")
    for size in sizes:
        f = batches[size]
        print(
            f"{size:>6} | {f['in_process_s']:>16.2f} s | {f['lambda_s']:>12.2f} s | "
            f"{f['lambda_s'] - f['in_process_s']:>6.2f} s | {f['lambda_s'] / f['in_process_s']:.2f}x"
        )
    print()
    print(f"{args.cache_texts} texts on a fresh worker | seconds | embedded")
    for name, f in cache.items():
        print(f"{name:>26} | {f['seconds']:>7.2f} | {f['embedded']}")
    if args.json:
        print(json.dumps({"batches": {str(k): v for k, v in batches.items()}, "cache": cache}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
