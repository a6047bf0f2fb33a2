"""`rag-assets`: ingest documents through Dagster and query the index, for people."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import textwrap
import time
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
    rows = [
        {"key": h.key, "tenant": h.tenant, "page": h.page, "score": round(h.score, 4), "text": h.text}
        | ({"thumbnail": thumbnail_uri(h)} if "thumbnail_key" in (h.metadata or {}) else {})
        for h in hits
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no hits for tenant {args.tenant!r}")
    for n, row in enumerate(rows, start=1):
        where = row["key"] + (f" p.{row['page']}" if row["page"] else "")
        snippet = textwrap.shorten(" ".join(row["text"].split()), width=160, placeholder=" ...")
        print(f"{n:2}. {row['score']:.3f}  {where}\n      {snippet}")
        if "thumbnail" in row:
            print(f"      thumbnail: {row['thumbnail']}")
    return 0


def thumbnail_uri(hit) -> str:
    """Where an image hit's thumbnail is: under the project's prefix of the image's root,
    derived from the hit's own tenant and key (a document id is `tenant:uri`), never taken from
    its metadata."""
    from rag_assets.lib.images import thumbnail_key

    uri = hit.document_id[len(hit.tenant) + 1 :]
    return uri[: len(uri) - len(hit.key)] + thumbnail_key(hit.tenant, hit.key)


DEFAULT_DAGSTER_URL = "http://127.0.0.1:3000"  # `make dev`


def _dagster_url(args: argparse.Namespace) -> str:
    return args.url or os.environ.get("RAG_DAGSTER_URL") or DEFAULT_DAGSTER_URL


def _date_range(start: str, end: str | None) -> list[str]:
    """YYYY-MM-DD dates from start to end inclusive; ValueError with a message for people."""
    import re
    from datetime import date, timedelta

    def parse(option: str, text: str) -> date:
        try:
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
                return date.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"{option} {text!r} is not a date: {exc}") from None
        raise ValueError(f"{option} {text!r} is not a date (YYYY-MM-DD)")

    first = parse("--start-date", start)
    last = parse("--end-date", end) if end else first
    if last < first:
        raise ValueError(f"--end-date {last} is before --start-date {first}")
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def _remote_error(command: str, exc: Exception) -> int:
    from rag_assets.graphql_client import DagsterUnreachable

    hint = " (is `make dev` running? else give --url or RAG_DAGSTER_URL)" if isinstance(exc, DagsterUnreachable) else ""
    print(f"rag-assets {command}: {exc}{hint}", file=sys.stderr)
    return 1


def cmd_catchup(args: argparse.Namespace) -> int:
    from rag_assets.graphql_client import DagsterAPIError, launch_backfill

    try:
        dates = _date_range(args.start_date, args.end_date)
    except ValueError as exc:
        print(f"rag-assets catchup: error: {exc}", file=sys.stderr)
        return 2
    job = f"{args.name}_catchup"
    try:
        backfill_id = launch_backfill(_dagster_url(args), job, dates)
    except (DagsterAPIError, ValueError) as exc:
        return _remote_error("catchup", exc)
    if args.json:
        print(json.dumps({"backfill_id": backfill_id, "partitions": dates}))
    else:
        span = dates[0] if len(dates) == 1 else f"{dates[0]}..{dates[-1]}"
        print(backfill_id)
        follow = f"rag-assets status {backfill_id} --wait"
        print(f"{job}: {len(dates)} date(s) {span}; follow it with `{follow}`", file=sys.stderr)
    return 0


def _print_status(report: dict) -> None:
    parts = report["partitions"]
    print(f"{report['id']}: {report['status']}")
    print(
        f"  partitions: {parts['total']} total, {parts['done']} done, {parts['failed']} failed, "
        f"{parts['in_progress']} in progress"
    )
    print(f"  records: {report['records']}")
    for failure in report["failures"]:
        print(f"  FAILED {failure['partition'] or '(backfill)'}: {failure['reason']}")


def cmd_status(args: argparse.Namespace) -> int:
    from rag_assets.graphql_client import CANCELED, FAILED, DagsterAPIError, status, wait

    url = _dagster_url(args)
    try:
        if not args.wait:
            report = status(url, args.id)
        else:
            from tqdm import tqdm

            with tqdm(unit="partition", desc=args.id, file=sys.stderr, disable=None) as bar:
                last_line = None

                def progress(current: dict) -> None:
                    nonlocal last_line
                    parts = current["partitions"]
                    line = (
                        f"{current['status']}: {parts['done']} done, {parts['failed']} failed, "
                        f"{parts['in_progress']} in progress of {parts['total']}"
                    )
                    if bar.disable:  # not a terminal: a line whenever something changed
                        if line != last_line:
                            print(f"{args.id} {line}", file=sys.stderr, flush=True)
                    else:
                        bar.total = parts["total"]
                        bar.n = parts["done"] + parts["failed"]
                        running = f"{current['status']}, {parts['failed']} failed, {parts['in_progress']} running"
                        bar.set_postfix_str(running, refresh=True)
                    last_line = line

                report = wait(url, args.id, poll_seconds=args.poll_seconds, on_poll=progress)
    except (DagsterAPIError, ValueError) as exc:
        return _remote_error("status", exc)
    except KeyboardInterrupt:
        print(f"rag-assets status: stopped waiting (it goes on: rag-assets status {args.id})", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(report))
    else:
        _print_status(report)
    return 1 if args.wait and report["status"] in (FAILED, CANCELED) else 0


def watch_line(message: dict) -> str:
    """One notification for a person: when, what, which document, and the figures or reason;
    whatever the hub sent, its control characters made visible (lib.display.printable)."""
    from rag_assets.lib.display import printable

    detail = message.get("detail") if isinstance(message.get("detail"), dict) else {}
    shown = {k: v for k, v in detail.items() if k not in ("documents", "position") and v is not None}
    extra = "  " + ", ".join(f"{k} {v}" for k, v in shown.items()) if shown else ""
    try:
        at = time.strftime("%H:%M:%S", time.localtime(float(message.get("at"))))
    except (TypeError, ValueError, OverflowError, OSError):
        at = "--:--:--"
    return printable(f"{at} {message.get('type', '?')!s:<9} {message.get('document_key', '?')}{extra}")


WATCH_REFUSED, WATCH_USAGE, WATCH_UNREACHABLE = 1, 2, 3  # `watch` exit codes (README, Progress notifications)


class _Refused(Exception):
    """The hub said no (close code 1008) or is not a hub: final, not retried."""


def _watch_once(url: str, tenant: str, token: str, args: argparse.Namespace, announce: str) -> str:
    """One connection to the hub: subscribe, then print what comes. Returns why it ended (the
    hub went away: try again); raises _Refused, or OSError and the like (not reachable)."""
    from tqdm import tqdm
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from rag_assets.lib.display import printable

    bars: dict[str, tqdm] = {}  # run id -> the progress of its batch
    try:
        with connect(url, open_timeout=10, close_timeout=1) as hub:
            hub.send(json.dumps({"subscribe": tenant, "token": token}))
            try:
                answer = json.loads(hub.recv(timeout=10))  # a TimeoutError: a busy hub, tried again
            except ValueError:
                answer = None
            if not isinstance(answer, dict) or answer.get("subscribed") != tenant:
                raise _Refused(f"{url} did not answer as a notification hub")
            print(announce, file=sys.stderr, flush=True)
            for raw in hub:
                try:
                    message = json.loads(raw)
                except ValueError:
                    message = None
                if not isinstance(message, dict):
                    shown = printable(raw[:200])
                    print(f"rag-assets watch: skipped a message that is not a JSON object: {shown}", file=sys.stderr)
                    continue
                if args.json:
                    print(json.dumps(message), flush=True)  # JSON escapes every control character
                    continue
                tqdm.write(watch_line(message), file=sys.stdout)
                run_id, kind, detail = str(message.get("run_id")), message.get("type"), message.get("detail")
                documents = detail.get("documents") if isinstance(detail, dict) else None
                if kind == "started" and isinstance(documents, int) and documents > 1 and run_id not in bars:
                    desc = f"run {printable(run_id[:8])}"
                    bars[run_id] = tqdm(total=documents, unit="doc", desc=desc, file=sys.stderr, disable=None)
                elif kind in ("ingested", "unchanged", "failed") and run_id in bars:
                    bars[run_id].update(1)
                    if bars[run_id].n >= bars[run_id].total:
                        bars.pop(run_id).close()
        return "the hub closed the connection"
    except ConnectionClosed as e:
        if e.rcvd is not None and e.rcvd.code == 1008:
            raise _Refused(e.rcvd.reason or "no reason given") from None
        return f"lost the hub ({printable(e)})"
    finally:
        for bar in bars.values():
            bar.close()


def cmd_watch(args: argparse.Namespace) -> int:
    """Follow one tenant's notifications with its watch token (RAG_NOTIFY_TOKEN), reconnecting
    with backoff while the hub is not there; a refusal (a bad token) is final."""
    from websockets.exceptions import InvalidHandshake, InvalidURI

    from rag_assets.lib.display import printable
    from rag_assets.lib.keys import BadTenant, check_tenant
    from rag_assets.lib.notifications import parse_duration

    url = args.url or os.environ.get("RAG_NOTIFY") or ""
    if not url.startswith(("ws://", "wss://")):
        print("rag-assets watch: give --url ws://HOST:PORT or set RAG_NOTIFY to the hub's ws:// address",
              file=sys.stderr)  # fmt: skip
        return WATCH_USAGE
    token = os.environ.get("RAG_NOTIFY_TOKEN", "").strip()
    try:
        tenant = check_tenant(args.tenant)
        if not token:
            raise ValueError("set RAG_NOTIFY_TOKEN to the tenant's watch token (an operator makes it: notify-token)")
        retry_for = parse_duration(args.retry_for) if args.retry_for else None
    except (BadTenant, ValueError) as e:
        print(f"rag-assets watch: {e}", file=sys.stderr)
        return WATCH_USAGE
    delay, connected = args.backoff_seconds, False
    give_up = time.monotonic() + retry_for if retry_for else None
    watching = f"watching tenant {tenant!r} at {printable(url)} (Ctrl-C to stop)"
    try:
        while True:
            announce = watching if not connected else f"reconnected: {watching}; what was sent meanwhile is missed"
            try:
                problem = _watch_once(url, tenant, token, args, announce)
                connected, delay, what = True, args.backoff_seconds, "reconnecting"  # it was subscribed
                give_up = time.monotonic() + retry_for if retry_for else None
            except _Refused as e:
                print(f"rag-assets watch: refused: {printable(e)}", file=sys.stderr)
                return WATCH_REFUSED
            except InvalidURI as e:
                print(f"rag-assets watch: {printable(e)}", file=sys.stderr)
                return WATCH_USAGE
            except (OSError, TimeoutError, InvalidHandshake) as e:
                problem, what = f"hub not reachable ({printable(url)}: {printable(e)})", "retrying"
            if give_up is not None and time.monotonic() + delay > give_up:
                print(f"rag-assets watch: {problem}; gave up after {args.retry_for}", file=sys.stderr)
                return WATCH_UNREACHABLE
            print(f"rag-assets watch: {problem}, {what} in {delay:g}s", file=sys.stderr, flush=True)
            time.sleep(delay)
            delay = min(delay * 2, args.backoff_max_seconds)
    except KeyboardInterrupt:
        return 0


def cmd_notify_token(args: argparse.Namespace) -> int:
    """Print a tenant's watch token (for `rag-assets watch`, RAG_NOTIFY_TOKEN), made from
    RAG_NOTIFY_SECRET and RAG_NOTIFY_KEY_ID; its id, expiry and how to revoke it on stderr."""
    from rag_assets.lib.keys import BadTenant
    from rag_assets.lib.notifications import parse_duration, token_id, watch_token
    from rag_assets.settings import Settings

    settings = Settings.from_env()
    try:
        if not settings.notify_secret:
            raise ValueError("set RAG_NOTIFY_SECRET (the hub's): tokens are signed with it")
        expires = int(time.time()) + parse_duration(args.ttl)
        token = watch_token(settings.notify_secret, args.tenant, expires, settings.notify_key_id)
    except (BadTenant, ValueError) as e:
        print(f"rag-assets notify-token: {e}", file=sys.stderr)
        return 2
    print(token)
    until = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(expires))
    print(
        f"tenant {args.tenant!r}, key id {settings.notify_key_id}, valid until {until}; token id {token_id(token)} "
        "(to revoke this token alone, add its id to the file RAG_NOTIFY_REVOKED names)",
        file=sys.stderr,
    )
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
    url_help = (
        f"the Dagster webserver (default RAG_DAGSTER_URL or {DEFAULT_DAGSTER_URL}); "
        "RAG_DAGSTER_TOKEN, if set, is sent as a bearer token"
    )
    catchup = sub.add_parser("catchup", help="launch a backfill of the dates of one catchup source (job NAME_catchup)")
    catchup.add_argument("name", metavar="NAME", help="the catchup source: its job is NAME_catchup")
    catchup.add_argument("--start-date", required=True, metavar="YYYY-MM-DD")
    catchup.add_argument("--end-date", metavar="YYYY-MM-DD", help="last date, inclusive (default: the start date)")
    catchup.add_argument("--url", help=url_help)
    catchup.add_argument("--json", action="store_true", help='print {"backfill_id": ID, "partitions": [DATES]}')
    catchup.set_defaults(func=cmd_catchup, remote=True)
    status = sub.add_parser("status", help="status of a backfill (or a run): partitions done/failed, records, failures")
    status.add_argument("id", metavar="ID", help="a backfill id (from `catchup`) or a run id")
    status.add_argument("--url", help=url_help)
    status.add_argument("--json", action="store_true", help="print the status as one JSON document on stdout")
    status.add_argument("--wait", action="store_true", help="poll until over; exit 1 if something failed or canceled")
    status.add_argument("--poll-seconds", type=float, default=2.0, help=argparse.SUPPRESS)
    status.set_defaults(func=cmd_status, remote=True)
    watch_help = "print one tenant's progress notifications as they arrive (the RAG_NOTIFY hub, RAG_NOTIFY_TOKEN)"
    watch = sub.add_parser("watch", help=watch_help)
    watch.add_argument("--tenant", required=True)
    watch.add_argument("--url", help="the hub (default RAG_NOTIFY): ws://HOST:PORT or wss://HOST:PORT")
    watch.add_argument("--json", action="store_true", help="one message per line, as sent")
    retry_help = "while the hub cannot be reached, try this long (30s, 5m), then exit 3 (default: forever)"
    watch.add_argument("--retry-for", metavar="DURATION", help=retry_help)
    watch.add_argument("--backoff-seconds", type=float, default=0.5, help=argparse.SUPPRESS)
    watch.add_argument("--backoff-max-seconds", type=float, default=30.0, help=argparse.SUPPRESS)
    watch.set_defaults(func=cmd_watch, remote=True)
    from rag_assets.lib.notifications import DEFAULT_TTL

    token = sub.add_parser("notify-token", help="print a tenant's watch token for `watch` (made with RAG_NOTIFY_SECRET)")
    token.add_argument("--tenant", required=True)
    ttl_help = f"how long it is valid: 30s, 15m, 12h, 7d (default {DEFAULT_TTL}, at most 366d)"
    token.add_argument("--ttl", default=DEFAULT_TTL, metavar="DURATION", help=ttl_help)
    token.set_defaults(func=cmd_notify_token, remote=True)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _quiet()
    if not getattr(args, "remote", False):  # catchup and status only talk to a webserver
        ensure_dagster_home()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
