"""`rag-assets`: ingest documents through Dagster and query the index, for people."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
import textwrap
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from rag_assets.lib.display import printable

# The first use of a DAGSTER_HOME (open_instance): this lock is held while its storage is
# created (or migrated after a Dagster upgrade), then the marker names the Dagster version
# that set it up, and later commands skip the lock.
INSTANCE_LOCK, INSTANCE_READY = ".rag-instance.lock", ".rag-instance-ready"
FIRST_USE_WAIT_SECONDS = 300


def ensure_dagster_home() -> Path:
    """DAGSTER_HOME, defaulting to ./.dagster (as the Makefile sets it) with the project's
    instance settings, so runs and lineage land where `make dev` shows them. The settings
    file is written whole or not at all (another command may be reading it)."""
    from rag_assets.settings import INSTANCE_YAML

    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        if not INSTANCE_YAML.exists():
            raise SystemExit(
                f"{config} does not exist, and there is no {INSTANCE_YAML} to copy there: "
                "give DAGSTER_HOME an instance settings file (dagster.yaml of the repository, "
                "or deploy/dagster.yaml)"
            )
        with tempfile.NamedTemporaryFile("w", dir=home, prefix=".dagster.yaml.", delete=False) as out:
            out.write(INSTANCE_YAML.read_text())
        os.replace(out.name, config)
    return home


@contextlib.contextmanager
def open_instance() -> Iterator:
    """The Dagster instance of DAGSTER_HOME, for every command that uses it.

    Dagster creates an instance's storage (SQLite: runs.db, the event log's index.db,
    schedules.db, their alembic stamps) the first time it is opened, and two processes doing it
    at once break it for good ("more than one head present") or crash ("table job_ticks already
    exists"). So the first use of a DAGSTER_HOME, and the first after a Dagster upgrade, holds
    the file lock DAGSTER_HOME/.rag-instance.lock while the instance is opened and each of its
    storages read once; the marker .rag-instance-ready then lets later commands skip the lock."""
    import dagster as dg
    from filelock import FileLock, Timeout

    home = ensure_dagster_home()
    marker, stamp = home / INSTANCE_READY, f"dagster {dg.__version__}"
    lock = None
    if _read_marker(marker) != stamp:
        lock = FileLock(str(home / INSTANCE_LOCK))
        try:
            lock.acquire(timeout=FIRST_USE_WAIT_SECONDS)
        except Timeout:
            raise SystemExit(
                f"rag-assets: DAGSTER_HOME {printable(home)} is being set up by another process "
                f"(waited {FIRST_USE_WAIT_SECONDS} s for {INSTANCE_LOCK})"
            ) from None
        except PermissionError:  # a read-only DAGSTER_HOME (a deployment's mounted settings): not ours to set up
            lock = None
    try:
        instance = dg.DagsterInstance.get()
        if lock is not None and _read_marker(marker) != stamp:
            try:
                instance.get_run_records(limit=1)
                instance.event_log_storage.get_maximum_record_id()
                instance.all_instigator_state()
            except BaseException:
                instance.dispose()
                raise
            with tempfile.NamedTemporaryFile("w", dir=home, prefix=f"{INSTANCE_READY}.", delete=False) as out:
                out.write(stamp + "\n")
            os.replace(out.name, marker)
    finally:
        if lock is not None:
            lock.release()
    with instance:
        yield instance


def _read_marker(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _quiet() -> None:
    warnings.filterwarnings("ignore")
    logging.getLogger("dagster").setLevel(logging.ERROR)


def _tenant(text: str) -> str:
    """--tenant: a valid tenant name (lib.keys.check_tenant), else argparse's one-line error."""
    from rag_assets.lib.keys import BadTenant, check_tenant

    try:
        return check_tenant(text)
    except BadTenant as exc:
        raise argparse.ArgumentTypeError(printable(exc)) from None


def _at_least_one(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def cmd_ingest(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from rag_assets.definitions import build_definitions
    from rag_assets.ingest import discover, ingest
    from rag_assets.resources.object_store import ObjectStore
    from rag_assets.settings import Settings

    settings = Settings.from_env()
    refs, unfound = discover(args.sources, ObjectStore(), args.tenant, settings.tenant_from_key)
    defs = build_definitions(settings)
    with (
        open_instance() as instance,
        tqdm(total=len(refs), unit="doc", desc="ingest", file=sys.stderr, disable=None) as bar,
    ):
        report = ingest(
            refs,
            defs=defs,
            instance=instance,
            batch_size=args.batch_size or settings.batch_size,
            on_progress=bar.update,
        )
    report.failed = unfound + report.failed
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(
            f"{len(report.ingested)} ingested, {len(report.unchanged)} unchanged, {len(report.failed)} failed; "
            f"{report.chunks} chunks, {report.vectors} vectors written, {report.embedding_calls} embedding call(s)"
        )
        for failure in report.failed:
            print(f"  FAILED {printable(failure['key'])}: {printable(failure['reason'])}")
        home = printable(os.environ["DAGSTER_HOME"])
        print(f"Runs recorded in {home} ({len(report.runs)} run(s)); see them with `make dev`.")
    return 1 if report.failed else 0


def _root_cause(exc: BaseException) -> str:
    """The first line of the innermost cause of `exc`: what went wrong, without the layers."""
    from rag_assets.lib.errors import first_line

    while exc.__cause__ is not None:
        exc = exc.__cause__
    return first_line(str(exc)) or type(exc).__name__


class _Index:
    """The index and the model a command searches with (RAG_INDEX_URI, RAG_EMBEDDER), and its
    one-line errors, the index named without its password."""

    def __init__(self, command: str):
        from rag_assets.resources.embedders import embedder_from_spec
        from rag_assets.resources.pgvector_store import redact
        from rag_assets.resources.stores import vector_store_from_uri
        from rag_assets.settings import Settings

        settings = Settings.from_env()
        self.command, self._uri, self.where = command, settings.index_uri, redact(settings.index_uri)
        self.model = settings.embedder
        try:
            self.store = vector_store_from_uri(settings.index_uri)
        except Exception as exc:  # noqa: BLE001 - whatever the store's client raises: a message, not a traceback
            raise SystemExit(self.unreachable(exc)) from None
        self.embedder = embedder_from_spec(settings.embedder, settings)

    def failed(self, what: str, exc: Exception) -> int:
        reason = _root_cause(exc).replace(self._uri, self.where)
        print(f"rag-assets {self.command}: {what}: {printable(reason)}", file=sys.stderr)
        return 1

    def unreachable(self, exc: Exception) -> int:  # a store that is down, refuses us, or is not what the URI says
        return self.failed(f"cannot reach the index at {printable(self.where)}", exc)

    def cannot_embed(self, what: str, exc: Exception) -> int:
        return self.failed(f"cannot embed {what} with {printable(self.model)}", exc)


def hit_row(hit) -> dict:
    """A hit as `query --json` prints it."""
    from rag_assets.lib.images import is_image

    row = {"key": hit.key, "tenant": hit.tenant, "page": hit.page, "score": round(hit.score, 4), "text": hit.text}
    return row | ({"thumbnail": thumbnail_uri(hit)} if is_image(hit.key) else {})


def cmd_query(args: argparse.Namespace) -> int:
    from rag_assets.resources.vector_stores import UnsupportedSearch
    from rag_assets.search import mode_for, search

    if args.text == "-" and not args.json:
        print("rag-assets query: TEXT - reads a query a line and prints a JSON line each: add --json", file=sys.stderr)
        return 2
    index = _Index("query")
    try:
        args.mode = mode_for(index.store, args.mode)
    except UnsupportedSearch as exc:  # a mode this store has no index for: nothing to retry
        print(f"rag-assets query: {exc}", file=sys.stderr)
        return 2
    if args.text == "-":
        return query_lines(args, index)
    vectors = None
    if args.mode != "keyword":  # keyword search needs no embedding (nor the model loaded)
        try:
            vectors = index.embedder.embed([args.text])
        except Exception as exc:  # noqa: BLE001 - whatever the embedder raises: a message and an exit code
            return index.cannot_embed("the text", exc)
    try:
        [hits] = search(
            index.store, index.embedder, args.tenant, [args.text], k=args.k, mode=args.mode, vectors=vectors
        )
    except Exception as exc:  # noqa: BLE001 - whatever the store raises: a message and an exit code
        return index.unreachable(exc)
    rows = [hit_row(h) for h in hits]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no hits for tenant {args.tenant!r}")
    for n, row in enumerate(rows, start=1):
        where_found = printable(row["key"]) + (f" p.{row['page']}" if row["page"] else "")
        snippet = textwrap.shorten(printable(" ".join(row["text"].split())), width=160, placeholder=" ...")
        print(f"{n:2}. {row['score']:.3f}  {where_found}\n      {snippet}")
        if "thumbnail" in row:
            print(f"      thumbnail: {printable(row['thumbnail'])}")
    return 0


def query_lines(args: argparse.Namespace, index: _Index) -> int:
    """`query -`: a query per line of stdin, a JSON line per query on stdout, in order: the
    hits (`[]` for a blank line), or `{"error": REASON, "line": N}` for a line that is not a
    query (longer than MAX_QUERY_BYTES, not UTF-8), named on stderr too; exit 1 if there was
    one. Lines are embedded EVAL_BATCH at a time, and a batch is answered as soon as no more
    input is waiting (a script may write a line and wait for its answer). A model or index
    that fails stops the output there (exit 1)."""
    from rag_assets.lib.lines import BoundedLines, decode_line
    from rag_assets.lib.retrieval_eval import MAX_QUERY_BYTES
    from rag_assets.search import EVAL_BATCH, search

    batch: list[tuple[int, str | None, str | None]] = []  # (line number, query, why it is not one)

    def answer() -> int:
        texts = [query for _, query, _ in batch if query is not None]
        lines = f"line(s) {batch[0][0]}-{batch[-1][0]}"
        try:
            vectors = index.embedder.embed(texts) if texts and args.mode != "keyword" else None
        except Exception as exc:  # noqa: BLE001 - whatever the embedder raises: a message and an exit code
            return index.cannot_embed(lines, exc)
        try:
            found = iter(
                search(index.store, index.embedder, args.tenant, texts, k=args.k, mode=args.mode, vectors=vectors)
            )
        except Exception as exc:  # noqa: BLE001 - whatever the store raises: a message and an exit code
            return index.unreachable(exc)
        out = []
        for number, query, error in batch:
            answered = [hit_row(h) for h in next(found)] if query is not None else []
            out.append(
                json.dumps({"error": error, "line": number} if error is not None else answered, separators=(",", ":"))
            )
        sys.stdout.write("\n".join(out) + "\n")
        sys.stdout.flush()
        batch.clear()
        return 0

    refused = 0
    lines = BoundedLines(sys.stdin.buffer, MAX_QUERY_BYTES)
    try:
        for number, line in enumerate(lines, start=1):
            try:
                text = decode_line(line, MAX_QUERY_BYTES)
                batch.append((number, text if text.strip() else None, None))
            except ValueError as e:
                refused += 1
                print(f"rag-assets query: line {number}: {e}; answered with an error line", file=sys.stderr)
                batch.append((number, None, str(e)))
            if (len(batch) >= EVAL_BATCH or not lines.ready()) and answer():
                return 1
        if batch and answer():
            return 1
    except BrokenPipeError:  # the reader went away (`| head`): nobody to answer
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130
    return 1 if refused else 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Retrieval quality of a tenant's index on an eval file, in every search mode."""
    from tqdm import tqdm

    from rag_assets.lib.retrieval_eval import BadEvalFile, read_eval_file
    from rag_assets.search import evaluate

    try:
        queries = read_eval_file(args.file)
    except BadEvalFile as e:
        print(f"rag-assets eval: {printable(e)}", file=sys.stderr)
        return 2
    index = _Index("eval")
    with tqdm(total=len(queries), unit="query", desc="eval", file=sys.stderr, disable=None) as bar:
        try:
            results = evaluate(index.store, index.embedder, args.tenant, queries, k=args.k, on_progress=bar.update)
        except Exception as exc:  # noqa: BLE001 - whatever the store or embedder raises: a message and an exit code
            return index.failed(
                f"cannot search the index at {printable(index.where)} with {printable(index.model)}", exc
            )
    rounded = {mode: {name: round(value, 4) for name, value in scores.items()} for mode, scores in results.items()}
    if args.json:
        print(json.dumps({"tenant": args.tenant, "queries": len(queries), "k": args.k, "modes": rounded}))
        return 0
    names = list(next(iter(rounded.values())))
    print(f"tenant {args.tenant}: {len(queries)} queries, scored by document")
    print(f"{'mode':<10}" + "".join(f"{name:>10}" for name in names))
    for mode, scores in rounded.items():
        print(f"{mode:<10}" + "".join(f"{scores[name]:>10.3f}" for name in names))
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
    """YYYY-MM-DD dates from start to end inclusive, at most MAX_BACKFILL_PARTITIONS of them;
    ValueError with a message for people."""
    import re
    from datetime import date, timedelta

    from rag_assets.frontends.graphql_client import MAX_BACKFILL_PARTITIONS

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
    days = (last - first).days + 1
    if days > MAX_BACKFILL_PARTITIONS:
        raise ValueError(
            f"{first}..{last} is {days:,} dates; a catchup launches at most {MAX_BACKFILL_PARTITIONS:,} "
            "(about 10 years) at a time: split the range"
        )
    return [(first + timedelta(days=n)).isoformat() for n in range(days)]


def _remote_error(command: str, exc: Exception) -> int:
    from rag_assets.frontends.graphql_client import DagsterUnreachable

    hint = " (is `make dev` running? else give --url or RAG_DAGSTER_URL)" if isinstance(exc, DagsterUnreachable) else ""
    print(f"rag-assets {command}: {printable(exc)}{hint}", file=sys.stderr)
    return 1


def cmd_catchup(args: argparse.Namespace) -> int:
    from rag_assets.frontends.graphql_client import DagsterAPIError, launch_backfill

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
        print(printable(backfill_id))
        follow = f"rag-assets status {printable(backfill_id)} --wait"
        print(f"{printable(job)}: {len(dates)} date(s) {span}; follow it with `{follow}`", file=sys.stderr)
    return 0


def _print_status(report: dict) -> None:
    """The status for people: every text from the server escaped (lib.display.printable); a
    reason of several lines (a run naming each document it could not read) one line each."""
    parts = report["partitions"]
    print(f"{printable(report['id'])}: {printable(report['status'])}")
    print(
        f"  partitions: {parts['total']} total, {parts['done']} done, {parts['failed']} failed, "
        f"{parts['in_progress']} in progress"
    )
    print(f"  records: {report['records']}")
    for failure in report["failures"]:
        first, *more = str(failure["reason"]).split("\n")
        print(f"  FAILED {printable(failure['partition'] or '(backfill)')}: {printable(first)}")
        for line in more:
            print(f"    {printable(line.strip())}")


def cmd_status(args: argparse.Namespace) -> int:
    from rag_assets.frontends.graphql_client import CANCELED, FAILED, DagsterAPIError, status, wait

    url = _dagster_url(args)
    try:
        if not args.wait:
            report = status(url, args.id)
        else:
            from tqdm import tqdm

            with tqdm(unit="partition", desc=printable(args.id), file=sys.stderr, disable=None) as bar:
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
                            print(f"{printable(args.id)} {line}", file=sys.stderr, flush=True)
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
        again = f"rag-assets status {printable(args.id)}"
        print(f"rag-assets status: stopped waiting (it goes on: {again})", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(report))
    else:
        _print_status(report)
    return 1 if args.wait and report["status"] in (FAILED, CANCELED) else 0


def watch_line(message: dict) -> str:
    """One notification for a person: when, what, which document, and the figures or reason;
    whatever the hub sent, its control characters made visible (lib.display.printable)."""
    detail = message.get("detail") if isinstance(message.get("detail"), dict) else {}
    shown = {k: v for k, v in detail.items() if k not in ("documents", "position") and v is not None}
    extra = "  " + ", ".join(f"{k} {v}" for k, v in shown.items()) if shown else ""
    try:
        at = time.strftime("%H:%M:%S", time.localtime(float(message.get("at"))))
    except (TypeError, ValueError, OverflowError, OSError):
        at = "--:--:--"
    return printable(f"{at} {message.get('type', '?')!s:<9} {message.get('document_key', '?')}{extra}")


WATCH_REFUSED, WATCH_USAGE, WATCH_UNREACHABLE = 1, 2, 3  # `watch` exit codes (docs/notifications.md)


class _Refused(Exception):
    """The hub said no (close code 1008) or is not a hub: final, not retried."""


def _watch_once(url: str, tenant: str, token: str, args: argparse.Namespace, announce: str) -> str:
    """One connection to the hub: subscribe, then print what comes. Returns why it ended (the
    hub went away: try again); raises _Refused, or OSError and the like (not reachable)."""
    from tqdm import tqdm
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

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


def cmd_purge(args: argparse.Namespace) -> int:
    """What the deletion guard holds under ROOT; with --confirm, a person's word that it was
    deleted on purpose: the confirm_deletions job (as from the UI), whose success lets the
    sensors purge what is held. Purges nothing itself."""
    from collections import Counter

    from rag_assets.definitions import build_definitions
    from rag_assets.defs.maintenance.assets import (
        CONFIRM_JOB,
        CONFIRM_OP,
        confirm_command,
        confirm_run_config,
        guard_root,
        held_deletions,
    )
    from rag_assets.ingest import LAUNCHED_BY_TAG
    from rag_assets.lib.keys import tenant_from_key
    from rag_assets.settings import Settings

    try:
        root = guard_root(args.root)
    except ValueError as exc:
        print(f"rag-assets purge: error: {printable(exc)}", file=sys.stderr)
        return 2
    settings = Settings.from_env()
    defs = build_definitions(settings)
    r = defs.resources
    held = held_deletions(r["sync_config"], r["embedder"], r["rag_config"], root)
    if not held:
        print(f"the deletion guard holds nothing under {printable(root)}")
        return 1 if args.confirm else 0

    def tenant(key: str) -> str:
        try:
            return tenant_from_key(key, settings.tenant_from_key)
        except ValueError:
            return "?"

    tenants = Counter(tenant(k) for k in held)
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(min(held.values())))
    print(
        f"{len(held)} deletion(s) held under {printable(root)} since {since} "
        f"({', '.join(f'{printable(t)} {n}' for t, n in sorted(tenants.items()))}):"
    )
    for key in sorted(held)[:10]:  # keys from outside: their control characters shown, not obeyed
        print(f"  {printable(key)}")
    if len(held) > 10:
        print(f"  ... and {len(held) - 10} more")
    if not args.confirm:
        confirm = printable(confirm_command(root))
        print(f"Nothing is purged until the objects come back or you confirm: {confirm}", file=sys.stderr)
        return 1
    with open_instance() as instance:
        result = defs.resolve_job_def(CONFIRM_JOB).execute_in_process(
            run_config=confirm_run_config(root),
            instance=instance,
            tags={LAUNCHED_BY_TAG: "cli"},
            raise_on_error=False,
        )
    if not result.success:
        failure = result.failure_data_for_node(CONFIRM_OP)
        reason = failure.user_failure_data.description if failure and failure.user_failure_data else None
        reason = reason or (failure.error.message.strip() if failure and failure.error else "the run failed")
        print(f"rag-assets purge: not confirmed: {printable(reason, newlines=True)}", file=sys.stderr)
        return 1
    print(f"confirmed (run {result.run_id}): the sensors purge these {len(held)} deletion(s) on their next tick")
    return 0


def parser() -> argparse.ArgumentParser:
    from rag_assets.frontends.graphql_client import MAX_BACKFILL_PARTITIONS
    from rag_assets.search import DEFAULT_MODE, MODES

    p = argparse.ArgumentParser(prog="rag-assets", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    ingest = sub.add_parser("ingest", help="materialize documents (files, folders, s3:// prefixes) through Dagster")
    ingest.add_argument("sources", nargs="+", metavar="SOURCE")
    ingest.add_argument(
        "--tenant", type=_tenant, help="tenant of every document (default: read from each key, RAG_TENANT_FROM_KEY)"
    )
    ingest.add_argument("--batch-size", type=_at_least_one, help="documents per run (default RAG_BATCH_SIZE or 50)")
    ingest.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    ingest.set_defaults(func=cmd_ingest)
    query = sub.add_parser("query", help="top hits of one tenant for a text (or for each line of stdin: TEXT -)")
    query.add_argument("text", metavar="TEXT", help="the query; - reads one query a line from stdin (with --json)")
    query.add_argument("--tenant", required=True, type=_tenant)
    query.add_argument("-k", type=_at_least_one, default=5, help="how many hits (default 5)")
    query.add_argument(
        "--mode",
        choices=MODES,
        help=f"hybrid: vector and keyword hits fused by rank (score: 1.0 = first in both); vector: nearest "
        f"embeddings (score: cosine); keyword: the text's words, full-text index (score: BM25 or ts_rank). "
        f"Default: {DEFAULT_MODE} where the index has it, else vector (Pinecone has vector only)",
    )
    query.add_argument("--json", action="store_true", help="JSON on stdout (with TEXT -: a JSON line per query)")
    query.set_defaults(func=cmd_query)
    evaluate = sub.add_parser("eval", help="recall@k, MRR and nDCG@10 of a tenant's index on labelled queries, by mode")
    evaluate.add_argument(
        "file", metavar="FILE.jsonl", help='one JSON object a line: {"query": TEXT, "expected": [DOCUMENT KEY...]}'
    )
    evaluate.add_argument("--tenant", required=True, type=_tenant)
    evaluate.add_argument("-k", type=_at_least_one, default=5, help="recall@k (default 5)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    evaluate.set_defaults(func=cmd_eval)
    url_help = (
        f"the Dagster webserver (default RAG_DAGSTER_URL or {DEFAULT_DAGSTER_URL}); "
        "RAG_DAGSTER_TOKEN, if set, is sent as a bearer token"
    )
    catchup = sub.add_parser("catchup", help="launch a backfill of the dates of one catchup source (job NAME_catchup)")
    catchup.add_argument("name", metavar="NAME", help="the catchup source: its job is NAME_catchup")
    catchup.add_argument("--start-date", required=True, metavar="YYYY-MM-DD")
    end_help = f"last date, inclusive (default: the start date; at most {MAX_BACKFILL_PARTITIONS:,} dates)"
    catchup.add_argument("--end-date", metavar="YYYY-MM-DD", help=end_help)
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

    token = sub.add_parser(
        "notify-token", help="print a tenant's watch token for `watch` (made with RAG_NOTIFY_SECRET)"
    )
    token.add_argument("--tenant", required=True)
    ttl_help = f"how long it is valid: 30s, 15m, 12h, 7d (default {DEFAULT_TTL}, at most 366d)"
    token.add_argument("--ttl", default=DEFAULT_TTL, metavar="DURATION", help=ttl_help)
    token.set_defaults(func=cmd_notify_token, remote=True)
    purge = sub.add_parser("purge", help="what the deletion guard holds under ROOT; --confirm purges it")
    purge.add_argument("root", metavar="ROOT", help="as the sensors name it: s3://BUCKET or a folder (or the source)")
    purge.add_argument("--confirm", action="store_true", help="deleted on purpose: the sensors purge what is held now")
    purge.set_defaults(func=cmd_purge)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _quiet()
    if not getattr(args, "remote", False):  # catchup and status only talk to a webserver
        ensure_dagster_home()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
