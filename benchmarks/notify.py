"""Notification delay: from the Dagster event to the message at a webhook, under a real daemon.

    python benchmarks/notify.py [--docs 20] [--waves 2] [--json]

A fresh instance with the project's settings (run queue, pools), a folder the listing
sensor follows, `RAG_NOTIFY=webhook:` a local receiver (rag_assets_tests/fakes), and
`dagster-daemon run`. Each wave drops `--docs` text files under two tenants, waits for their
`ingested` messages, changes half of them, waits again; then every file is deleted and the
`deleted` messages awaited. The delay of a message is its arrival time minus its `at` (when
Dagster recorded the event). The floor: the same messages POSTed straight to the receiver
by the webhook notifier, one at a time (what delivery costs without the sensor's polling).
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

SECRET = "benchmark-secret"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20)
    parser.add_argument("--waves", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import dagster as dg
    from sensors import new_home

    from rag_assets.lib.notifications import Notification
    from rag_assets.resources.notifiers import WebhookNotifier
    from rag_assets_tests.fakes.webhook_receiver import WebhookReceiver
    from rag_assets_tests.live import Daemon, sensor_has_ticked, wait_for

    receiver = WebhookReceiver(SECRET)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        inbox = work / "inbox"
        home = new_home(work / "home")
        (work / "catchup.yaml").write_text("sources: {}\n")
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "RAG_WORK_DIR": str(work / "rag"),
            "RAG_INDEX_URI": str(work / "rag" / "index"),
            "RAG_SOURCE_URI": str(inbox),
            "RAG_CATCHUP_CONFIG": str(work / "catchup.yaml"),
            "RAG_NOTIFY": f"webhook:{receiver.url}",
            "RAG_NOTIFY_SECRET": SECRET,
        }
        os.environ.update(env)
        for tenant in ("acme", "globex"):
            (inbox / tenant).mkdir(parents=True)
        with dg.DagsterInstance.get() as instance:  # the storage exists before the daemon starts
            daemon = Daemon(work / "daemon.log", env)
            daemon.start()
            try:
                wait_for(
                    lambda: sensor_has_ticked(instance, "notifications"),
                    "the notification sensor's first tick",
                    timeout=180,
                )
                files = [inbox / ("acme" if n % 2 else "globex") / f"note-{n:03}.txt" for n in range(args.docs)]

                def count(kind: str) -> int:
                    return sum(m["type"] == kind for m in receiver.messages)

                for wave in range(args.waves):
                    for n, path in enumerate(files):
                        path.write_text(
                            f"Wave {wave}: note {n} about harbour cranes, tides and ferries number {n * 7}."
                        )
                    target = (wave + 1) * args.docs + wave * (args.docs // 2)
                    wait_for(lambda t=target: count("ingested") >= t, f"wave {wave} ingested", timeout=600)
                    log(f"wave {wave}: {args.docs} documents ingested")
                    for path in files[: args.docs // 2]:
                        path.write_text(path.read_text() + " Changed.")
                    target += args.docs // 2
                    wait_for(lambda t=target: count("ingested") >= t, f"wave {wave} changes ingested", timeout=600)
                    log(f"wave {wave}: {args.docs // 2} changes ingested")
                for path in files:
                    path.unlink()
                wait_for(lambda: count("deleted") >= args.docs, "deletes", timeout=600)
                log(f"{args.docs} documents deleted")
            finally:
                daemon.stop()

    delays = [arrived - m["at"] for m, arrived in zip(receiver.messages, receiver.arrived, strict=True)]
    by_type: dict[str, list[float]] = {}
    for m, d in zip(receiver.messages, delays, strict=True):
        by_type.setdefault(m["type"], []).append(d)

    # The floor: the same messages straight to the receiver, no sensor in between.
    floor_receiver = WebhookReceiver(SECRET)
    notifier = WebhookNotifier(url=floor_receiver.url, secret=SECRET)
    floor = []
    for m in receiver.messages:
        sent = time.time()
        notifier.send([Notification(**m)], time.monotonic() + 10)
        floor.append(floor_receiver.arrived[-1] - sent)
    receiver.stop()
    floor_receiver.stop()

    print(
        f"{len(delays)} messages ({args.waves} wave(s) of {args.docs} documents, half changed, all deleted), "
        f"rejected: {receiver.rejected}"
    )
    print(f"{'':>24} | {'median':>7} | {'p95':>7} | {'max':>7}")
    for name, values in [("all messages", delays), *sorted(by_type.items())]:
        print(
            f"{name:>24} | {statistics.median(values):>6.2f}s | {percentile(values, 0.95):>6.2f}s | "
            f"{max(values):>6.2f}s"
        )
    print(
        f"{'floor: a direct POST':>24} | {statistics.median(floor) * 1000:>5.1f}ms | "
        f"{percentile(floor, 0.95) * 1000:>5.1f}ms | {max(floor) * 1000:>5.1f}ms"
    )
    if args.json:
        figures = {"median_s": statistics.median(delays), "p95_s": percentile(delays, 0.95), "messages": len(delays)}
        print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
