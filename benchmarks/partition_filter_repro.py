"""A minimal reproduction, for Dagster upstream, of docs/decisions.md D41: in Dagster 1.13 the
asset's Events tab, opened on one partition (`?view=events&partitions[0]=KEY`), asks for
every partition key of the asset (FullPartitionsQuery, to fill its Partition filter's list)
beside the one partition's events it shows. At a million dynamic partitions that one answer
is tens of MB, and the webserver spends its time completing a million list items while the
page's own query waits behind it.

    python benchmarks/partition_filter_repro.py [--partitions 1000,100000,1000000] [--repeat 3]

Nothing of rag_assets is used: one asset on a dynamic partitions definition, N keys added,
one partition materialized, a plain `dagster-webserver` on a fresh SQLite instance. Printed
a size, medians of --repeat over HTTP after one warm-up each:
- events s: the one partition's events (assetEventHistory(partitions: [KEY]), as the tab
  asks), alone;
- full s / MB: FullPartitionsQuery (partitionKeysByDimension), alone, and its answer's size;
- both s: the events query when sent together with FullPartitionsQuery, as the page sends
  them (the time until the events answer arrives);
- paged s: the first 100 keys through the schema's existing
  `partitionKeyConnection(limit: 100, ascending: false)`.
What upstream could do: fill the filter from a paged or searched connection (the field
exists) instead of every key, or ask for the keys only when the filter is opened.
"""

import argparse
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

DEFS = textwrap.dedent(
    """
    import dagster as dg

    docs = dg.DynamicPartitionsDefinition(name="docs")

    @dg.asset(partitions_def=docs)
    def record(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata={"key": context.partition_key})

    defs = dg.Definitions(assets=[record])
    """
)
EVENTS = """query Events($partitions: [String!]) {
  assetOrError(assetKey: {path: ["record"]}) { ... on Asset {
    assetEventHistory(limit: 25, partitions: $partitions,
                      eventTypeSelectors: [MATERIALIZATION, FAILED_TO_MATERIALIZE, OBSERVATION]) {
      results { ... on MaterializationEvent { runId partition timestamp } }
    } } } }"""
FULL = """query FullPartitionsQuery {
  assetNodeOrError(assetKey: {path: ["record"]}) { ... on AssetNode {
    id partitionKeysByDimension { name type partitionKeys } } } }"""
PAGED = """query Paged {
  assetNodeOrError(assetKey: {path: ["record"]}) { ... on AssetNode {
    partitionKeyConnection(limit: 100, ascending: false) { results cursor hasMore } } } }"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port: int, query: str, variables: dict | None = None) -> tuple[float, int, dict]:
    """Seconds, bytes and the decoded answer of one GraphQL request."""
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", body, {"Content-Type": "application/json"}
    )
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=600) as response:
        raw = response.read()
    seconds = time.perf_counter() - started
    answer = json.loads(raw)
    if answer.get("errors"):
        raise RuntimeError(f"GraphQL errors: {answer['errors']}")
    return seconds, len(raw), answer


def wait_ready(port: int, server: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"dagster-webserver exited with {server.returncode}")
        try:
            post(port, PAGED)
            return
        except (OSError, RuntimeError):
            time.sleep(0.5)
    raise TimeoutError("dagster-webserver did not answer")


def prepare(home: Path, n: int) -> str:
    """An instance holding `n` keys, one of them (the middle one) materialized; its key."""
    import dagster as dg

    spec = importlib.util.spec_from_file_location("repro_defs", home / "repro_defs.py")
    defs = importlib.util.module_from_spec(spec)  # the file the webserver loads, this size's own copy
    spec.loader.exec_module(defs)
    keys = [f"doc-{i:07d}" for i in range(n)]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for start in range(0, n, 10_000):
            instance.add_dynamic_partitions("docs", keys[start : start + 10_000])
        picked = keys[n // 2]
        quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
        dg.materialize([defs.record], instance=instance, partition_key=picked, run_config=quiet)
    return picked


def measure(port: int, picked: str, repeat: int) -> dict:
    variables = {"partitions": [picked]}
    found = post(port, EVENTS, variables)[2]["data"]["assetOrError"]["assetEventHistory"]["results"]
    if [r["partition"] for r in found] != [picked]:
        raise RuntimeError(f"the events query did not find {picked}'s one materialization: {found}")
    post(port, FULL)  # warm-up: the webserver's first read of the keys
    runs: dict[str, list[float]] = {"events": [], "full": [], "both": [], "paged": []}
    size = 0
    for _ in range(repeat):
        runs["events"].append(post(port, EVENTS, variables)[0])
        seconds, size, _ = post(port, FULL)
        runs["full"].append(seconds)
        with ThreadPoolExecutor(2) as pool:  # the page sends both; which is taken first is the server's
            full = pool.submit(post, port, FULL)
            time.sleep(0.01)
            events = pool.submit(post, port, EVENTS, variables)
            runs["both"].append(events.result()[0])
            full.result()
        runs["paged"].append(post(port, PAGED)[0])
    return {k: statistics.median(v) for k, v in runs.items()} | {"full_mb": size / 1e6}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--partitions", default="1000,100000,1000000")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    import dagster as dg

    webserver = Path(sys.executable).with_name("dagster-webserver")
    print(f"dagster {dg.__version__}; medians of {args.repeat}, seconds over HTTP to a local dagster-webserver")
    print(f"{'partitions':>11}{'events s':>10}{'full s':>8}{'full MB':>9}{'both s':>8}{'paged s':>9}")
    for n in (int(x) for x in args.partitions.split(",")):
        with tempfile.TemporaryDirectory(prefix="filter-repro-") as tmp:
            home = Path(tmp)
            (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
            (home / "repro_defs.py").write_text(DEFS)
            picked = prepare(home, n)
            port = free_port()
            env = {**os.environ, "DAGSTER_HOME": str(home)}
            cmd = [str(webserver), "-h", "127.0.0.1", "-p", str(port), "-f", str(home / "repro_defs.py")]
            server = subprocess.Popen(cmd, env=env, cwd=home, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_ready(port, server)
                r = measure(port, picked, args.repeat)
            finally:
                server.terminate()
                server.wait(30)
        print(f"{n:>11,}{r['events']:>10.3f}{r['full']:>8.2f}{r['full_mb']:>9.2f}{r['both']:>8.2f}{r['paged']:>9.3f}")


if __name__ == "__main__":
    main()
