"""What Dagster's bookkeeping costs as the instance grows: the same small batch of documents
ingested into instances that already hold 100 and 1,000,000 document partitions.

    python benchmarks/bookkeeping.py [--docs 40] [--partitions 100,1000000] [--repeat 2] [--via cli|daemon] [--json]

Each instance is a fresh SQLite DAGSTER_HOME with that many document partitions registered
beforehand (not timed); then `rag_assets.ingest` runs the batch (short text documents, the
model loaded beforehand, so that bookkeeping is most of the work). Sizes alternate within a
repetition, medians quoted. Printed a size: seconds, per document, events per document, and
the seconds spent loading partition keys and storing events (cProfile of the same run) and
per event stored, so the ratio between sizes shows what grows with the partition count
(docs/decisions.md D7, D20); then the events by kind (planned, materializations, step
events, log messages...) per ingest and per document (D33).

With --via daemon the batch goes the way production's does: a `dagster-daemon run` follows a
local folder holding the documents (listing_sensor), asks for ranged runs and launches them,
each in a run worker process of its own (D38). Two batches go through one daemon: its first,
whose processes read every key once, then the next, when they read only the keys that
changed (D39). Printed a size and batch: the tick that asked for them,
from its start to its end (the sensor's evaluation, then the daemon creating the runs), the
runs' wait in the queue and launch (from the tick's end to RUN_START), the runs themselves
(RUN_START to RUN_SUCCESS), and the whole, from the tick's start to the last run's end,
against the first size.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import os
import pstats
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def seconds_in(profile: cProfile.Profile, function: str, file: str = "") -> float:
    """Cumulative seconds in `function` (of a file whose path ends with `file`)."""
    stats = pstats.Stats(profile)
    return sum(v[3] for (path, _, name), v in stats.stats.items() if name == function and path.endswith(file))


KINDS = {
    "ASSET_MATERIALIZATION_PLANNED": "planned",
    "ASSET_MATERIALIZATION": "materializations",
    "ASSET_OBSERVATION": "observations",
    "ASSET_CHECK_EVALUATION_PLANNED": "asset checks",
    "ASSET_CHECK_EVALUATION": "asset checks",
}


def event_kind(entry) -> str:
    """An event log entry's kind, as the table counts them: log messages, planned events,
    materializations, observations, asset checks, step events and run events."""
    if entry.dagster_event is None:
        return "log messages"
    name = entry.dagster_event.event_type_value
    return KINDS.get(name) or ("step events" if entry.dagster_event.step_key else "run events")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=40)
    p.add_argument("--partitions", default="100,1000000", help="partitions already in the instance, comma separated")
    p.add_argument("--via", choices=["cli", "daemon"], default="cli", help="the command line, or a daemon's runs")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--workdir", type=Path)
    p.add_argument("--json", action="store_true")
    p.add_argument("--profile", type=int, default=0, help="print the N costliest calls of the last ingest of each size")
    args = p.parse_args(argv)
    sizes = [int(n) for n in args.partitions.split(",")]
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="rag-bookkeeping-"))).resolve()
    os.environ.update(DAGSTER_HOME=str(workdir / "unused"), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    warnings.filterwarnings("ignore")
    logging.getLogger("dagster").setLevel(logging.ERROR)
    if args.via == "daemon":
        return through_the_daemon(args, sizes, workdir)

    import corpora
    import dagster as dg
    from ingest import write_dagster_home
    from tqdm import tqdm

    from rag_assets.definitions import build_definitions
    from rag_assets.ingest import discover, ingest
    from rag_assets.partitions import documents_partitions
    from rag_assets.resources.embedders import embedder_from_spec
    from rag_assets.resources.object_store import ObjectStore
    from rag_assets.settings import Settings

    corpus = workdir / "corpus" / "acme"
    corpus.mkdir(parents=True, exist_ok=True)
    for name, text in list(corpora.pydoc_documents().items())[: args.docs]:
        (corpus / f"{name}.txt").write_text(text[:600])
    base = Settings.from_env()
    embedder_from_spec(base.embedder, base).embed(["load the model before any timer"])

    results: dict[int, dict[str, list[float]]] = {n: {} for n in sizes}
    bar = tqdm(total=args.repeat * len(sizes) + 1, desc="ingests", file=sys.stderr)
    # Repetition -1 warms the process up (first imports, first run) and is not recorded.
    for rep in range(-1, args.repeat):
        for n in ([0] if rep < 0 else sizes if rep % 2 == 0 else sizes[::-1]):
            run_dir = workdir / f"rep{rep}-{n}"
            home = write_dagster_home(run_dir / "home")
            settings = Settings.from_env(
                {"RAG_WORK_DIR": str(run_dir / "rag"), "RAG_INDEX_URI": str(run_dir / "rag" / "index")}
            )
            defs = build_definitions(settings)
            with dg.DagsterInstance.from_config(str(home)) as instance:
                fill(instance, n, str(workdir / "elsewhere"))
                refs, _ = discover([str(corpus.parent)], ObjectStore(), None, settings.tenant_from_key)
                profile = cProfile.Profile()
                started = time.perf_counter()
                profile.enable()
                report = ingest(refs, defs=defs, instance=instance, batch_size=settings.batch_size)
                profile.disable()
                seconds = time.perf_counter() - started
                if report.failed or len(report.ingested) != args.docs:
                    raise SystemExit(f"{n} partitions: {len(report.ingested)} ingested, failures {report.failed[:2]}")
                logs = [entry for run_id in report.runs for entry in instance.all_logs(run_id)]
                events = len(logs)
                if rep < 0:
                    bar.update()
                    continue
                figures = results[n]
                if args.profile and rep == args.repeat - 1:
                    print(f"--- {n:,} partitions: by cumulative time", file=sys.stderr)
                    pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(args.profile)
                figures.setdefault("seconds", []).append(seconds)
                keys = seconds_in(
                    profile, "get_dynamic_partitions", "sql_event_log.py"
                )  # the storage's reads (D7, D20)
                figures.setdefault("loading_keys", []).append(keys)
                figures.setdefault("store_event", []).append(seconds_in(profile, "store_event"))
                figures.setdefault("events", []).append(events)
                for kind, count in Counter(map(event_kind, logs)).items():
                    figures.setdefault(f"events: {kind}", []).append(count)
                figures.setdefault("partitions_after", []).append(
                    len(instance.get_dynamic_partitions(documents_partitions.name))
                )
            bar.update()
    bar.close()

    medians = {n: {k: statistics.median(v) for k, v in f.items()} for n, f in results.items()}
    print(
        f"{args.docs} text documents (600 characters each) ingested into an instance already holding N partitions; "
        f"medians of {args.repeat}"
    )
    print(
        f"{'N':>9}{'seconds':>10}{'ms/doc':>9}{'events/doc':>12}{'loading keys':>14}{'in store_event':>16}"
        f"{'ms/event':>10}{'vs first N':>12}"
    )
    first = medians[sizes[0]]["seconds"]
    for n in sizes:
        m = medians[n]
        print(
            f"{n:>9,}{m['seconds']:>10.2f}{1000 * m['seconds'] / args.docs:>9.0f}{m['events'] / args.docs:>12.1f}"
            f"{m['loading_keys']:>12.2f} s{m['store_event']:>14.2f} s{1000 * m['store_event'] / m['events']:>10.1f}"
            f"{m['seconds'] / first:>11.2f}x"
        )
    kinds = sorted(
        {k for m in medians.values() for k in m if k.startswith("events: ")}, key=lambda k: -medians[sizes[0]].get(k, 0)
    )
    print("Events stored, by kind (all runs of an ingest; per document in brackets):")
    for n in sizes:
        m = medians[n]
        print(
            f"{n:>9,}  "
            + ", ".join(
                f"{k.removeprefix('events: ')} {m.get(k, 0):.0f} ({m.get(k, 0) / args.docs:.2f})" for k in kinds
            )
        )
    if args.json:
        print(json.dumps({"docs": args.docs, "medians": medians, "all": results}, indent=2))
    return 0


def fill(instance, n: int, elsewhere: str) -> None:
    """`n` document partitions of another root, registered as a sensor would (in pieces: one
    call of 100,000 is one huge statement)."""
    from rag_assets.lib.keys import DocRef, encode_partition_key
    from rag_assets.partitions import documents_partitions

    filler = [encode_partition_key(DocRef(tenant="acme", root=elsewhere, key=f"old/{i:07d}.txt")) for i in range(n)]
    for start in range(0, n, 10_000):
        instance.add_dynamic_partitions(documents_partitions.name, filler[start : start + 10_000])


def daemon_batches(root: Path, n: int, texts: dict[str, str]) -> dict[str, dict[str, float]]:
    """Two batches through one daemon on an instance holding `n` partitions: its first, whose
    processes read every key once, then the next, when they read only what changed (D39).
    The figures of each batch's tick and runs, read from the instance once its runs have ended."""
    import dagster as dg
    from sensors import new_home, running_daemon

    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAG_", "AWS_", "DAGSTER_"))}
    inbox = root / "inbox"
    env.update(DAGSTER_HOME=str(new_home(root / "home")), RAG_WORK_DIR=str(root / "rag"),
               RAG_INDEX_URI=str(root / "rag" / "index"), RAG_SOURCE_URI=str(inbox), HF_HUB_OFFLINE="1")  # fmt: skip
    (inbox / "acme").mkdir(parents=True)
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        fill(instance, n, str(root / "elsewhere"))
        figures, seen = {}, set()
        with running_daemon(root, env) as daemon:
            for batch in ("first", "next"):
                for name, text in texts.items():
                    (inbox / "acme" / f"{batch}-{name}.txt").write_text(text)
                records = wait_for_batch(instance, daemon, root, n, seen, len(texts))
                seen |= {r.dagster_run.run_id for r in records}
                figures[batch] = batch_figures(instance, n, records)
    return figures


def wait_for_batch(instance, daemon, root: Path, n: int, seen: set[str], count: int) -> list:
    """The records of the ingest runs not in `seen`, once all have ended and indexed `count` documents."""
    import dagster as dg

    deadline = time.monotonic() + 900
    while True:
        records = [
            r
            for r in instance.get_run_records(dg.RunsFilter(job_name="ingest_documents"))
            if r.dagster_run.run_id not in seen
        ]
        done = [r for r in records if r.dagster_run.is_finished]
        materialized = sum(
            1
            for r in done
            for e in instance.all_logs(r.dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
            if e.dagster_event.asset_key.path[-1] == "vector_index"
        )
        if records and len(done) == len(records) and materialized >= count:
            return records
        if daemon.poll() is not None or time.monotonic() > deadline:
            tail = (root / "daemon.log").read_text(errors="replace")[-3000:]
            raise SystemExit(f"{n:,} partitions: {materialized} of {count} indexed; daemon log:\n{tail}")
        time.sleep(1)


def batch_figures(instance, n: int, records: list) -> dict[str, float]:
    """A batch's tick and runs, from the instance's records of them."""
    import dagster as dg

    from rag_assets.dagster_compat import TICK_ID_TAG

    runs = []
    for record in records:
        run = record.dagster_run
        if run.status != dg.DagsterRunStatus.SUCCESS:
            raise SystemExit(f"{n:,} partitions: run {run.run_id} {run.status.value}")
        at = {}
        for entry in instance.all_logs(run.run_id):
            if entry.dagster_event is not None:
                at.setdefault(entry.dagster_event.event_type.name, entry.timestamp)
        runs.append((instance.schedule_storage.get_tick(int(run.tags[TICK_ID_TAG])), at))
    ticks = {tick.tick_id: tick for tick, _ in runs}.values()  # the daemon's own record of its ticks
    return {
        "runs": len(runs),
        # The tick: the sensor's evaluation, then the daemon creating its runs.
        "tick": sum(t.end_timestamp - t.timestamp for t in ticks),
        # From the tick's end to each run's start: the queue, the launch, the run worker's start.
        "launch": sum(at["RUN_START"] - tick.end_timestamp for tick, at in runs),
        "run": sum(at["RUN_SUCCESS"] - at["RUN_START"] for _, at in runs),
        # From the first tick's start to the last run's end.
        "total": max(at["RUN_SUCCESS"] for _, at in runs) - min(t.timestamp for t in ticks),
    }


def through_the_daemon(args, sizes: list[int], workdir: Path) -> int:
    import corpora

    texts = {name: text[:600] for name, text in list(corpora.pydoc_documents().items())[: args.docs]}
    results: dict[tuple[int, str], dict[str, list[float]]] = {}
    for rep in range(args.repeat):
        for n in sizes if rep % 2 == 0 else sizes[::-1]:
            print(f"repetition {rep + 1}: {n:,} partitions", file=sys.stderr, flush=True)
            for batch, figures in daemon_batches(workdir / f"daemon-{rep}-{n}", n, texts).items():
                for name, value in figures.items():
                    results.setdefault((n, batch), {}).setdefault(name, []).append(value)
    medians = {key: {k: statistics.median(v) for k, v in f.items()} for key, f in results.items()}
    print(
        f"{args.docs} text documents (600 characters each) ingested by a dagster-daemon (listing_sensor, ranged runs, "
        f"a run worker each) into an instance already holding N partitions, twice: the daemon's first batch, then its "
        f"next; medians of {args.repeat}"
    )
    print(
        f"{'N':>9}{'batch':>7}{'runs':>6}{'tick s':>9}{'queue+launch s':>16}{'runs s':>9}{'tick to end s':>15}"
        f"{'vs first N':>12}"
    )
    for batch in ("first", "next"):
        base = medians[(sizes[0], batch)]["total"]
        for n in sizes:
            m = medians[(n, batch)]
            print(
                f"{n:>9,}{batch:>7}{m['runs']:>6.0f}{m['tick']:>9.2f}{m['launch']:>16.2f}{m['run']:>9.2f}"
                f"{m['total']:>15.2f}{m['total'] / base:>11.2f}x"
            )
    if args.json:
        flat = {f"{n} {batch}": m for (n, batch), m in medians.items()}
        print(json.dumps({"docs": args.docs, "via": "daemon", "medians": flat}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
