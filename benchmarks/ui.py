"""How long four pages of the Dagster UI about `vector_index` take to load in a real headless
browser, with 100 and with 1,000,000 document partitions (docs/scale.md).

    python benchmarks/ui.py [--partitions 100,1000000] [--pages asset,partitions,document,partition]
                            [--materialized 500] [--repeat 3] [--json]

The pages a person opens, each timed until it shows what is its own:
- asset: the asset's page (`/assets/vector_index`, its overview tab), until it shows the
  asset's description (its first words, as the webserver has it);
- partitions: its partitions page (`?view=partitions`), until it shows a partition key;
- document: one document's record, the asset's events filtered to that document's partition
  (`?view=events&partitions[0]=KEY`, docs/commands.md): every materialization of it, the
  latest selected, until its metadata table shows the document's `document_key`;
- partition: the same document on the partitions page, its partition selected
  (`?view=partitions&partition=KEY`, as clicking it in the list does): the detail panel,
  until its metadata table shows the `document_key` (Dagster 1.13's panel shows the
  partition's latest materialization and that one's metadata).
The document timed is an older one of those materialized, not the newest: the events list
shows the newest event first with no filter, so only a filter that works finds this one.

Needs Chromium and playwright-core: `make bench-ui` installs both (scripts/install-chromium.sh).
Each size gets a fresh DAGSTER_HOME with that many document partitions registered and the
last `--materialized` of them materialized (reported to the instance, as a run would, with
the document's tenant and key as metadata), then `dagster dev` serves it and
benchmarks/ui/time_page.js opens each page cold `--repeat` + 1 times (a new browser context
each time, one that has dismissed Dagster's community dialog): until it is shown, and until
the network is idle. A page's first load may fill Dagster's caches (the partition
status cache is filled by the first page to ask for it, in `--pages` order); medians are of
the loads after it. One row per size and page; a screenshot and the text of each page's
last load are kept in the work directory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

PAGES = ("asset", "partitions", "document", "partition")
DESCRIPTION_QUERY = '{ assetNodeOrError(assetKey: {path: ["vector_index"]}) { ... on AssetNode { description } } }'


def page_to_time(page: str, url: str, description: str, key: str, document_key: str) -> tuple[str, str]:
    """(URL, Playwright selector of what shows the page is there) of one of PAGES."""
    asset = f"{url}/assets/vector_index"
    if page == "asset":
        # The overview's Description section: what only this asset's page says (its first words).
        return asset, "text=" + " ".join(description.split()[:6])
    if page == "partitions":
        return f"{asset}?view=partitions", "text=docs/"
    # The row of the selected materialization's metadata table naming this document (the key
    # alone also shows in the lists).
    names_it = f'tr:has(:text-is("document_key")):has(:text-is("{document_key}"))'
    if page == "document":  # Dagster's events filter, as the query string keeps it (qs arrays)
        return f"{asset}?view=events&partitions%5B0%5D={quote(key, safe='')}", names_it
    return f"{asset}?view=partitions&partition={quote(key, safe='')}", names_it


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--partitions", default="100,1000000")
    p.add_argument("--pages", default=",".join(PAGES), help=f"some of {', '.join(PAGES)}, timed in this order")
    p.add_argument("--materialized", type=int, default=500)
    p.add_argument("--repeat", type=int, default=3, help="loads after the first (which may fill caches)")
    p.add_argument("--workdir", type=Path)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    pages = [x.strip() for x in args.pages.split(",") if x.strip()]
    if not pages or set(pages) - set(PAGES):
        p.error(f"--pages: some of {', '.join(PAGES)}, not {args.pages!r}")
    if {"document", "partition"} & set(pages) and args.materialized < 2:
        p.error("--pages document/partition need two materialized documents (--materialized 2 or more)")
    if not (HERE / "ui" / "node_modules" / "playwright-core").exists():
        raise SystemExit("playwright-core is missing: run `make bench-ui` (or scripts/install-chromium.sh)")
    warnings.filterwarnings("ignore")
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="rag-ui-"))).resolve()

    import dagster as dg

    from rag_assets.frontends import graphql_client
    from rag_assets.lib.keys import DocRef, encode_partition_key
    from rag_assets.partitions import documents_partitions
    from rag_assets.settings import INSTANCE_YAML
    from rag_assets_tests.conftest import free_port
    from rag_assets_tests.live import dagster_dev

    results: dict[int, dict[str, dict]] = {}
    for n in (int(x) for x in args.partitions.split(",")):
        home = workdir / f"home-{n}"
        home.mkdir(parents=True)
        shutil.copy(INSTANCE_YAML, home / "dagster.yaml")  # as dagster_dev will
        refs = [DocRef(tenant="acme", root="s3://bench", key=f"docs/{i:06d}.pdf") for i in range(n)]
        keys = [encode_partition_key(ref) for ref in refs]
        with dg.DagsterInstance.from_config(str(home)) as instance:
            for start in range(0, n, 10_000):
                instance.add_dynamic_partitions(documents_partitions.name, keys[start : start + 10_000])
            for ref, key in list(zip(refs, keys, strict=True))[-args.materialized :]:
                instance.report_runless_asset_event(
                    dg.AssetMaterialization(
                        "vector_index", partition=key, metadata={"tenant": ref.tenant, "document_key": ref.key}
                    )
                )
        env = {
            **os.environ,
            "RAG_WORK_DIR": str(workdir / f"rag-{n}"),
            "RAG_INDEX_URI": str(workdir / f"rag-{n}" / "index"),
        }
        results[n] = {}
        with dagster_dev(home, free_port(), "rag_assets.definitions", env) as url:
            description = graphql_client.execute(url, DESCRIPTION_QUERY)["assetNodeOrError"].get("description")
            if "asset" in pages and not description:
                raise SystemExit("vector_index has no description for the asset page to show")
            for name in pages:
                # An older materialized document: the newest is what every events list shows first.
                page, shown = page_to_time(name, url, description or "", keys[-2], refs[-2].key)
                picture, text = workdir / f"{name}-{n}.png", workdir / f"{name}-{n}.txt"
                done = subprocess.run(
                    ["node", str(HERE / "ui" / "time_page.js"), page, shown, str(args.repeat + 1)],
                    capture_output=True,
                    text=True,
                    check=False,
                    env={**os.environ, "SCREENSHOT": str(picture), "PAGE_TEXT": str(text)},
                )
                if done.returncode:
                    raise SystemExit(f"the browser failed on {page} (waiting for {shown}):\n{done.stderr[-3000:]}")
                loads = json.loads(done.stdout)
                results[n][name] = {
                    "url": page,
                    "shown_when": shown,
                    "first_shown_s": loads[0]["shown_ms"] / 1000,
                    "shown_s": statistics.median(x["shown_ms"] for x in loads[1:]) / 1000,
                    "network_idle_s": statistics.median(x["network_idle_ms"] for x in loads[1:]) / 1000,
                    "slowest_graphql": loads[-1]["slowest_graphql"],
                }
                print(f"{n:,} partitions, {name}: {results[n][name]}; as timed: {picture}, {text}", file=sys.stderr)

    print(
        f"vector_index pages, headless Chromium, the newest {args.materialized:,} partitions (or all) materialized; "
        f"medians of {args.repeat} cold loads after the first"
    )
    print(
        f"{'partitions':>11}  {'page':<11}{'first load s':>12}{'shown s':>10}{'network idle s':>16}"
        "  slowest GraphQL queries"
    )
    for n, by_page in results.items():
        for name, r in by_page.items():
            slow = ", ".join(f"{q['name']} {q['ms'] / 1000:.2f} s" for q in r["slowest_graphql"])
            print(
                f"{n:>11,}  {name:<11}{r['first_shown_s']:>12.2f}{r['shown_s']:>10.2f}{r['network_idle_s']:>16.2f}"
                f"  {slow}"
            )
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
