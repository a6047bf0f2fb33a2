"""How long the Dagster UI's partitions page of `vector_index` takes to load in a real
headless browser, with 100 and with 1,000,000 document partitions (docs/scale.md).

    python benchmarks/ui.py [--partitions 100,1000000] [--materialized 500] [--repeat 3] [--json]

Needs Chromium and playwright-core: `make bench-ui` installs both (scripts/install-chromium.sh).
Each size gets a fresh DAGSTER_HOME with that many document partitions registered and the
last `--materialized` of them materialized (reported to the instance, as a run would), then
`dagster dev` serves it and benchmarks/ui/time_page.js opens the page cold `--repeat` times:
until it shows the newest partition's key, and until the network is idle. The first load
also fills Dagster's partition status cache; medians are of the loads after it.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--partitions", default="100,1000000")
    p.add_argument("--materialized", type=int, default=500)
    p.add_argument("--repeat", type=int, default=3, help="loads after the first (which fills the cache)")
    p.add_argument("--workdir", type=Path)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if not (HERE / "ui" / "node_modules" / "playwright-core").exists():
        raise SystemExit("playwright-core is missing: run `make bench-ui` (or scripts/install-chromium.sh)")
    warnings.filterwarnings("ignore")
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="rag-ui-"))).resolve()

    import dagster as dg

    from rag_assets.lib.keys import DocRef, encode_partition_key
    from rag_assets.partitions import documents_partitions
    from rag_assets.settings import INSTANCE_YAML
    from rag_assets_tests.conftest import free_port
    from rag_assets_tests.live import dagster_dev

    results = {}
    for n in (int(x) for x in args.partitions.split(",")):
        home = workdir / f"home-{n}"
        home.mkdir(parents=True)
        shutil.copy(INSTANCE_YAML, home / "dagster.yaml")  # as dagster_dev will
        keys = [
            encode_partition_key(DocRef(tenant="acme", root="s3://bench", key=f"docs/{i:06d}.pdf")) for i in range(n)
        ]
        with dg.DagsterInstance.from_config(str(home)) as instance:
            for start in range(0, n, 10_000):
                instance.add_dynamic_partitions(documents_partitions.name, keys[start : start + 10_000])
            for key in keys[-args.materialized :]:
                instance.report_runless_asset_event(dg.AssetMaterialization("vector_index", partition=key))
        env = {
            **os.environ,
            "RAG_WORK_DIR": str(workdir / f"rag-{n}"),
            "RAG_INDEX_URI": str(workdir / f"rag-{n}" / "index"),
        }
        with dagster_dev(home, free_port(), "rag_assets.definitions", env) as url:
            page = f"{url}/assets/vector_index?view=partitions"
            done = subprocess.run(
                ["node", str(HERE / "ui" / "time_page.js"), page, "docs/", str(args.repeat + 1)],
                capture_output=True,
                text=True,
                check=False,
                env={**os.environ, "SCREENSHOT": str(workdir / f"page-{n}.png")},
            )
            if done.returncode:
                raise SystemExit(f"the browser failed on {page}:\n{done.stderr[-3000:]}")
            loads = json.loads(done.stdout)
        results[n] = {
            "first_shown_s": loads[0]["shown_ms"] / 1000,
            "shown_s": statistics.median(x["shown_ms"] for x in loads[1:]) / 1000,
            "network_idle_s": statistics.median(x["network_idle_ms"] for x in loads[1:]) / 1000,
            "slowest_graphql": loads[-1]["slowest_graphql"],
        }
        print(f"{n:,} partitions: {results[n]}; the page as timed: {workdir / f'page-{n}.png'}", file=sys.stderr)

    print(
        f"vector_index partitions page, headless Chromium, {args.materialized} partitions materialized; medians of "
        f"{args.repeat} cold loads"
    )
    print(f"{'partitions':>11}{'first load s':>14}{'shown s':>10}{'network idle s':>16}  slowest GraphQL queries")
    for n, r in results.items():
        slow = ", ".join(f"{q['name']} {q['ms'] / 1000:.2f} s" for q in r["slowest_graphql"])
        print(f"{n:>11,}{r['first_shown_s']:>14.2f}{r['shown_s']:>10.2f}{r['network_idle_s']:>16.2f}  {slow}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
