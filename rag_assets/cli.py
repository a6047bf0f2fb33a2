"""`rag-assets`: ingest documents through Dagster and query the index, for people."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import textwrap
import warnings
from pathlib import Path


def ensure_dagster_home() -> Path:
    """DAGSTER_HOME, defaulting to ./.dagster (as the Makefile sets it) with the project's
    instance settings, so runs and lineage land where `make dev` shows them."""
    from rag_assets.settings import INSTANCE_YAML

    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(INSTANCE_YAML.read_text())
    return home


def _quiet() -> None:
    warnings.filterwarnings("ignore")
    logging.getLogger("dagster").setLevel(logging.ERROR)


def cmd_ingest(args: argparse.Namespace) -> int:
    import dagster as dg
    from tqdm import tqdm

    from rag_assets.definitions import build_definitions
    from rag_assets.ingest import discover, ingest
    from rag_assets.resources.object_store import ObjectStore
    from rag_assets.settings import Settings

    settings = Settings.from_env()
    refs, unfound = discover(args.sources, ObjectStore(), args.tenant, settings.tenant_from_key)
    defs = build_definitions(settings)
    with dg.DagsterInstance.get() as instance, tqdm(
        total=len(refs), unit="doc", desc="ingest", file=sys.stderr, disable=None
    ) as bar:
        report = ingest(refs, defs=defs, instance=instance, batch_size=args.batch_size or settings.batch_size, on_progress=bar.update)
    report.failed = unfound + report.failed
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(
            f"{len(report.ingested)} ingested, {len(report.unchanged)} unchanged, {len(report.failed)} failed; "
            f"{report.chunks} chunks, {report.vectors} vectors written, {report.embedding_calls} embedding call(s)"
        )
        for failure in report.failed:
            print(f"  FAILED {failure['key']}: {failure['reason']}")
        print(f"Runs recorded in {os.environ['DAGSTER_HOME']} ({len(report.runs)} run(s)); see them with `make dev`.")
    return 1 if report.failed else 0


def cmd_query(args: argparse.Namespace) -> int:
    from rag_assets.definitions import build_resources
    from rag_assets.settings import Settings

    resources = build_resources(Settings.from_env())
    embedder, store = resources["embedder"], resources["vector_store"]
    vector = embedder.embed([args.text])[0]
    hits = store.query(embedder.model_id, embedder.dimension, vector, tenant=args.tenant, k=args.k)
    rows = [{"key": h.key, "tenant": h.tenant, "page": h.page, "score": round(h.score, 4), "text": h.text} for h in hits]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no hits for tenant {args.tenant!r}")
    for n, row in enumerate(rows, start=1):
        where = row["key"] + (f" p.{row['page']}" if row["page"] else "")
        snippet = textwrap.shorten(" ".join(row["text"].split()), width=160, placeholder=" ...")
        print(f"{n:2}. {row['score']:.3f}  {where}\n      {snippet}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rag-assets", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    ingest = sub.add_parser("ingest", help="materialize documents (files, folders, s3:// prefixes) through Dagster")
    ingest.add_argument("sources", nargs="+", metavar="SOURCE")
    ingest.add_argument("--tenant", help="tenant of every document (default: read from each key, RAG_TENANT_FROM_KEY)")
    ingest.add_argument("--batch-size", type=int, help="documents per run (default RAG_BATCH_SIZE or 50)")
    ingest.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    ingest.set_defaults(func=cmd_ingest)
    query = sub.add_parser("query", help="top hits of one tenant for a text")
    query.add_argument("text")
    query.add_argument("--tenant", required=True)
    query.add_argument("-k", type=int, default=5)
    query.add_argument("--json", action="store_true")
    query.set_defaults(func=cmd_query)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _quiet()
    ensure_dagster_home()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
