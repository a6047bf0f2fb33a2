"""Catchup benchmark: one date of a large CSV export through a catchup source, beside the
same work without Dagster or rag_assets.

    python benchmarks/catchup.py [--rows 100000] [--sample 5000] [--json]

1. `--rows` records (default 100,000) through the OpenAI embedder (text-embedding-3-small,
   1536 dimensions, the real `openai` client against the local fake, 20 requests/s and
   10,000,000 tokens/min: RAG_OPENAI_TOKENS_PER_MINUTE) into Pinecone (the real `pinecone`
   client against the local fake), as the catchup pipeline did: rows/s, peak RSS. The floor:
   read the CSV with the csv module, embed 256 texts a request under the same two limits with
   the openai client, upsert 100 vectors a request with the pinecone client, in one loop.
   (At the default 1,000,000 tokens/min the token limit binds instead: ~86 tokens a record
   by the embedder's estimate, ~9 minutes a 100,000-row date, pipeline and floor alike.)
2. A `--sample` of them (default 5,000) through the local model (all-MiniLM-L6-v2) into
   LanceDB. The floor: read, `model.encode` in batches of 64, one LanceDB `add`.
Each measurement runs in a process of its own (peak RSS is that process's); the fakes serve
from child processes of their own (their CPU is not this process's). Progress goes to
stderr; the table, and with --json the figures, to stdout.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import platform
import resource
import socket
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(Path(__file__).parent)]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
DATE = "2025-01-01"
TOKENS_PER_MINUTE = 10_000_000  # an account of OpenAI's higher tiers: the 20 requests/s bind, as in the legacy pipeline
WORDS = [
    "harbour", "crane", "container", "vessel", "berth", "pallet", "customs", "invoice", "freight", "route", "schedule",
    "delay", "storm", "tide", "dock", "manifest", "cargo", "quay", "tugboat", "warehouse", "forklift", "clearance",
    "tariff", "carrier", "booking", "transit", "arrival", "departure",
]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def write_export(path: Path, rows: int) -> None:
    """`rows` records: id, tenant (three), and a 25-40 word formatted_text, some HTML in it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["id", "tenant", "formatted_text"])
        for n in range(rows):
            words = [WORDS[(n * 7 + i * 13) % len(WORDS)] for i in range(25 + n % 16)]
            out.writerow([f"r{n:07d}", ("acme", "globex", "initech")[n % 3], f"<p>Record {n}: {' '.join(words)}.</p>"])


def serve(kind: str, port: int, stop) -> None:
    """A fake (OpenAI or Pinecone) in a child process until `stop` is set."""
    from rag_assets_tests.fakes.openai_server import FakeOpenAIServer
    from rag_assets_tests.fakes.pinecone_server import FakePineconeServer

    server = (
        FakeOpenAIServer(port=port)
        if kind == "openai"
        else FakePineconeServer("bench", 1536, api_key="bench", port=port)
    )
    with server:
        try:
            stop.wait()
        except KeyboardInterrupt:  # the parent's Ctrl-C reaches the children too
            pass


class Fakes:
    def __init__(self):
        ctx = multiprocessing.get_context("spawn")
        self._stop = ctx.Event()
        from rag_assets_tests.conftest import free_port

        self.ports = {kind: free_port() for kind in ("openai", "pinecone")}
        self.procs = [ctx.Process(target=serve, args=(k, p, self._stop), daemon=True) for k, p in self.ports.items()]
        for p in self.procs:
            p.start()
        for port in self.ports.values():
            deadline = time.monotonic() + 60
            while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
                if time.monotonic() > deadline:
                    raise RuntimeError("a fake did not start")
                time.sleep(0.1)

    def env(self) -> dict:
        return {
            "RAG_OPENAI_TOKENS_PER_MINUTE": str(TOKENS_PER_MINUTE),
            "OPENAI_API_KEY": "sk-bench",
            "OPENAI_BASE_URL": f"http://127.0.0.1:{self.ports['openai']}/v1",
            "PINECONE_API_KEY": "bench",
        }

    def stop(self) -> None:
        self._stop.set()
        for p in self.procs:
            p.join(timeout=10)


# --- one measurement a process --------------------------------------------------------------------


def measure(kind: str, root: str, csv_path: str, env: dict, pinecone_url: str | None, namespace: str) -> dict:
    os.environ.update(env)
    start = time.perf_counter()
    rows = (pipeline if kind.startswith("pipeline") else floor)(kind, Path(root), csv_path, pinecone_url, namespace)
    seconds = time.perf_counter() - start
    return {
        "kind": kind,
        "rows": rows,
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "peak_rss_mib": peak_rss_mib(),
    }


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pipeline(kind: str, root: Path, csv_path: str, pinecone_url: str | None, namespace: str) -> int:
    """One date of a catchup source through Dagster: records, chunks, embeddings, vector_index."""
    import dagster as dg

    from rag_assets.definitions import build_definitions
    from rag_assets.settings import INSTANCE_YAML, Settings

    home = root / f"home-{kind}"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(INSTANCE_YAML.read_text())
    source = {
        "kind": "csv",
        "uri": csv_path.replace(DATE, "{date}"),
        "start_date": DATE,
        "id_column": "id",
        "tenant_column": "tenant",
    }
    if kind == "pipeline-openai":
        source |= {
            "embedder": "openai:text-embedding-3-small",
            "index_uri": f"pinecone://bench?host={pinecone_url}",
            "namespace": namespace,
        }
    config = root / f"catchup-{kind}.yaml"
    config.write_text(json.dumps({"sources": {"bench": source}}))
    os.environ.update(DAGSTER_HOME=str(home), RAG_WORK_DIR=str(root / f"work-{kind}"),
                      RAG_INDEX_URI=str(root / f"index-{kind}"), RAG_CATCHUP_CONFIG=str(config))  # fmt: skip
    defs = build_definitions(Settings.from_env())
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def("bench_catchup").execute_in_process(instance=instance, partition_key=DATE)
        (mat,) = [m for m in result.asset_materializations_for_node("bench_vector_index")]
        return mat.metadata["records"].value


def floor(kind: str, root: Path, csv_path: str, pinecone_url: str | None, namespace: str) -> int:
    """The same work in one loop, without Dagster or rag_assets."""
    with open(csv_path, newline="") as f:
        rows = [(r["id"], r["tenant"], r["formatted_text"]) for r in csv.DictReader(f)]
    if kind == "floor-openai":
        import openai
        from pinecone import Pinecone

        from rag_assets.resources.embedders import RateLimiter

        client = openai.OpenAI()
        index = Pinecone(host=pinecone_url).Index(host=Pinecone(host=pinecone_url).describe_index("bench").host)
        limiter = RateLimiter(20, TOKENS_PER_MINUTE)  # the same limits, and the same token estimate, as the pipeline's
        vectors = []
        for start in range(0, len(rows), 256):
            batch = rows[start : start + 256]
            limiter.acquire(sum(len(t) for _, _, t in batch) // 3 + len(batch))
            response = client.embeddings.create(model="text-embedding-3-small", input=[t for _, _, t in batch])
            vectors += [
                {"id": rid, "values": d.embedding, "metadata": {"tenant": tenant, "text": text}}
                for (rid, tenant, text), d in zip(batch, response.data, strict=True)
            ]
            while len(vectors) >= 100:
                index.upsert(vectors=vectors[:100], namespace=namespace)
                vectors = vectors[100:]
        if vectors:
            index.upsert(vectors=vectors, namespace=namespace)
        return len(rows)
    import lancedb
    from sentence_transformers import SentenceTransformer

    from rag_assets.resources.embedders import default_local_model_path

    model = SentenceTransformer(default_local_model_path("all-MiniLM-L6-v2"), device="cpu")
    embedded = model.encode([t for _, _, t in rows], batch_size=64, normalize_embeddings=True)
    table = lancedb.connect(str(root / "floor-index")).create_table(
        "rows",
        data=[
            {"id": r, "tenant": t, "text": x, "vector": v.tolist()} for (r, t, x), v in zip(rows, embedded, strict=True)
        ],
    )
    return table.count_rows()


def run(kind: str, root: Path, csv_path: Path, env: dict, pinecone_url: str | None) -> dict:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        log(f"{kind}: {csv_path.name}")
        out = pool.apply(measure, (kind, str(root), str(csv_path), env, pinecone_url, f"ns-{kind}"))
    log(
        f"{kind}: {out['rows']:,} rows in {out['seconds']:.1f} s ({out['rows_per_s']:.0f} rows/s), peak RSS "
        f"{out['peak_rss_mib']:.0f} MiB"
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=5_000)
    parser.add_argument("--only", choices=["floor", "pipeline"], help="one side of each pair (to profile it)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"}
    with tempfile.TemporaryDirectory(prefix="rag-catchup-bench-") as tmp:
        root = Path(tmp)
        big, small = root / "big" / f"{DATE}.csv", root / "small" / f"{DATE}.csv"
        write_export(big, args.rows)
        write_export(small, args.sample)
        log(f"exports: {args.rows:,} rows ({big.stat().st_size / 1e6:.0f} MB), {args.sample:,} rows")
        results["openai"] = []
        for kind in [k for k in ("floor-openai", "pipeline-openai") if not args.only or k.startswith(args.only)]:
            fakes = Fakes()  # fresh fakes each: 100,000 vectors of 1536 floats are ~7 GB in the fake
            try:
                results["openai"].append(run(kind, root, big, fakes.env(), f"http://127.0.0.1:{fakes.ports['pinecone']}"))
            finally:
                fakes.stop()
        results["local"] = [
            run(k, root, small, {}, None)
            for k in ("floor-local", "pipeline-local")
            if not args.only or k.startswith(args.only)
        ]
    if args.only:
        return 0
    rows = []
    for name, (base, ours) in (
        ("OpenAI -> Pinecone (fakes)", results["openai"]),
        ("local model -> LanceDB", results["local"]),
    ):
        rows.append([name, f"{ours['rows']:,}", f"{base['seconds']:.1f}", f"{ours['seconds']:.1f}",
                     f"{ours['seconds'] / base['seconds']:.2f}x", f"{base['rows_per_s']:.0f}",
                     f"{ours['rows_per_s']:.0f}", f"{base['peak_rss_mib']:.0f}",
                     f"{ours['peak_rss_mib']:.0f}"])  # fmt: skip
    headers = [
        "path", "rows", "floor s", "pipeline s", "ratio", "floor rows/s", "pipeline rows/s", "floor RSS MiB",
        "pipeline RSS MiB",
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]
    print(f"\nCatchup: one date of a CSV export ({results['machine']})")
    for n, row in enumerate([headers, *rows]):
        print(
            "  ".join(
                str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))
    print("  The floor: the same rows read, embedded and written in one loop, without Dagster or rag_assets (the")
    print(
        "  OpenAI path under the same 20 requests/s). Peak RSS of the process that did the work; the fakes run apart."
    )
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
