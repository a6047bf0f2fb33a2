"""`rag-assets catchup` and `rag-assets status` against a real `dagster dev` (webserver and
daemon), serving the stand-in catchup source of graphql_fixture/definitions.py: demo_catchup
over 2025-01-01..04, where 2025-01-03 fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import requests

from rag_assets.frontends import graphql_client
from rag_assets_tests.conftest import free_port
from rag_assets_tests.graphql_fixture.definitions import FAILING_DATE, FAILURE_TEXT
from rag_assets_tests.live import dagster_dev

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "rag_assets.frontends.cli"]
DATES = ["2025-01-01", "2025-01-02", "2025-01-03", "2025-01-04"]
GOOD_RECORDS = 1 + 2 + 4  # demo_vector_index records the day of the month; the 3rd fails
TOKEN = "s3cret-token"


def cli_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RAG_DAGSTER_URL", graphql_client.TOKEN_ENV, graphql_client.COOKIE_ENV)
    }
    return {**env, **extra}


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = env or cli_env()
    return subprocess.run(
        [*CLI, *args], check=False, capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO
    )


@pytest.fixture(scope="module")
def dagster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("dagster_home")
    with dagster_dev(home, free_port(), "rag_assets_tests.graphql_fixture.definitions", cli_env()) as url:
        yield url


@pytest.fixture(scope="module")
def launched(dagster_url: str) -> Iterator[dict]:
    """`catchup demo` over DATES, and `status ID --wait --json` started on it (it runs while the
    quicker tests go on; test_wait_reports_the_failed_date collects it)."""
    done = run_cli("catchup", "demo", "--start-date", DATES[0], "--end-date", DATES[-1], "--url", dagster_url, "--json")
    assert done.returncode == 0, done.stderr
    launch = json.loads(done.stdout)
    waiter = subprocess.Popen(
        [*CLI, "status", launch["backfill_id"], "--wait", "--json", "--url", dagster_url, "--poll-seconds", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        cwd=REPO,
    )
    state = {"launch": launch, "stdout": done.stdout, "waiter": waiter, "final": None}
    yield state
    if waiter.poll() is None:
        waiter.kill()
        waiter.wait()


def finished(launched: dict) -> tuple[int, dict, str]:
    """Exit code, final JSON and stderr of the `status --wait` process (waited for once)."""
    if launched["final"] is None:
        out, err = launched["waiter"].communicate(timeout=300)
        launched["final"] = (launched["waiter"].returncode, json.loads(out), err)
    return launched["final"]


def test_catchup_prints_backfill_id_and_dates(launched):
    assert set(launched["launch"]) == {"backfill_id", "partitions"}
    assert launched["launch"]["partitions"] == DATES
    assert launched["stdout"].count("\n") == 1  # exactly one JSON document
    assert launched["launch"]["backfill_id"]


def test_status_while_it_runs_has_the_shape(launched, dagster_url):
    now = run_cli("status", launched["launch"]["backfill_id"], "--url", dagster_url, "--json")
    assert now.returncode == 0, now.stderr
    report = json.loads(now.stdout)
    assert set(report) == {"id", "status", "partitions", "records", "failures"}
    assert set(report["partitions"]) == {"total", "done", "failed", "in_progress"}
    assert report["id"] == launched["launch"]["backfill_id"] and report["partitions"]["total"] == 4
    assert report["status"] in {"REQUESTED", "IN_PROGRESS", "FAILED"}


def test_unknown_job_and_partitions_and_ids_are_clear_errors(launched, dagster_url):
    unknown = run_cli("catchup", "nope", "--start-date", "2025-01-01", "--url", dagster_url)
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert "no job named 'nope_catchup'" in unknown.stderr and "demo_catchup" in unknown.stderr  # names what is there

    before_start = run_cli("catchup", "demo", "--start-date", "2024-12-31", "--url", dagster_url)
    assert before_start.returncode == 1
    assert "PartitionKeysNotFoundError" in before_start.stderr and "2024-12-31" in before_start.stderr

    with pytest.raises(graphql_client.DagsterAPIError, match="nope_catchup"):
        graphql_client.launch_backfill(dagster_url, "nope_catchup", ["2025-01-01"])

    missing = run_cli("status", "no-such-id", "--url", dagster_url)
    assert missing.returncode == 1 and "no backfill and no run with id 'no-such-id'" in missing.stderr


def test_bad_dates_exit_2():
    for args in (
        ["--start-date", "2025-13-01"],
        ["--start-date", "01/02/2025"],
        ["--start-date", "2025-01-05", "--end-date", "2025-01-04"],
    ):
        bad = run_cli("catchup", "demo", *args, "--url", "http://127.0.0.1:9")
        assert bad.returncode == 2, (args, bad.stderr)
        assert "date" in bad.stderr and bad.stdout == ""
    missing = run_cli("catchup", "demo")
    assert missing.returncode == 2 and "--start-date" in missing.stderr


@pytest.mark.parametrize(
    "start, end, dates",
    [
        ("2025-01-01", None, 1),
        ("2016-01-01", "2026-01-07", 3660),  # the most a catchup launches
        ("2016-01-01", "2026-01-08", None),
        ("0001-01-01", "9999-12-31", None),
    ],
)
def test_date_range_is_bounded(start, end, dates):
    from rag_assets.frontends.cli import _date_range

    if dates is not None:
        assert len(_date_range(start, end)) == dates
    else:
        with pytest.raises(ValueError, match=f"at most {graphql_client.MAX_BACKFILL_PARTITIONS:,}"):
            _date_range(start, end)


def test_a_range_past_the_bound_is_refused_before_any_request():
    handler = type("Nobody", (_RecordingProxy,), {"upstream": "", "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        done = run_cli("catchup", "demo", "--start-date", "0001-01-01", "--end-date", "9999-12-31", "--url", url)
        assert done.returncode == 2 and done.stdout == "", done.stderr
        assert done.stderr.count("\n") == 1 and "3,652,059 dates" in done.stderr and "at most 3,660" in done.stderr
        too_many = [f"2025-01-01#{n}" for n in range(graphql_client.MAX_BACKFILL_PARTITIONS + 1)]
        with pytest.raises(ValueError, match="at most"):
            graphql_client.launch_backfill(url, "demo_catchup", too_many)
        assert handler.seen == []  # nothing was asked of the webserver
    finally:
        server.shutdown()
        server.server_close()


def test_a_wrong_url_exits_1_naming_it():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    for args in (["catchup", "demo", "--start-date", "2025-01-01"], ["status", "abcdefgh"]):
        done = run_cli(*args, "--url", url)
        assert done.returncode == 1, done.stderr
        assert url in done.stderr and "cannot reach" in done.stderr and "Traceback" not in done.stderr
    by_env = run_cli("status", "abcdefgh", env=cli_env(RAG_DAGSTER_URL=url))
    assert by_env.returncode == 1 and url in by_env.stderr


class _RecordingProxy(BaseHTTPRequestHandler):
    """An authenticating proxy in front of the webserver: 401 without `Bearer TOKEN`."""

    upstream = ""
    seen: ClassVar[list[str | None]] = []

    def do_POST(self) -> None:  # http.server's name
        auth = self.headers.get("Authorization")
        self.seen.append(auth)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if auth != f"Bearer {TOKEN}":
            self._reply(401, b"unauthorized", "text/plain")
            return
        answer = requests.post(self.upstream + self.path, data=body, headers={"Content-Type": "application/json"})
        self._reply(answer.status_code, answer.content, answer.headers.get("Content-Type", "application/json"))

    def _reply(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class _Backfill(BaseHTTPRequestHandler):
    """A webserver of one backfill, REQUESTED at the first poll and COMPLETED_SUCCESS after;
    it counts the TCP connections it is asked on (HTTP/1.1: kept alive)."""

    protocol_version = "HTTP/1.1"
    connections = 0
    queries: ClassVar[list[str]] = []

    def setup(self) -> None:
        type(self).connections += 1
        super().setup()

    def do_POST(self) -> None:
        query = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))["query"]
        self.queries.append(query)
        if "RagRuns" in query:
            data = {"runsOrError": {"__typename": "Runs", "results": []}}
        else:
            polls = sum("RagBackfill" in q for q in self.queries)
            backfill = {"__typename": "PartitionBackfill", "id": "b1", "isAssetBackfill": False, "numPartitions": 1,
                        "status": "REQUESTED" if polls == 1 else "COMPLETED_SUCCESS", "error": None,
                        "partitionStatuses": {
                            "results": [{"partitionName": "2025-01-01", "runId": None, "runStatus": None}]
                        }}  # fmt: skip
            data = {"partitionBackfillOrError": backfill}
        body = json.dumps({"data": data}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def test_wait_polls_over_one_connection():
    handler = type("Backfill", (_Backfill,), {"connections": 0, "queries": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        final = graphql_client.wait(f"http://127.0.0.1:{server.server_address[1]}", "b1", poll_seconds=0.01)
    finally:
        server.shutdown()
        server.server_close()
    assert final["status"] == "COMPLETED" and final["partitions"]["total"] == 1
    assert len(handler.queries) == 4  # two polls of two documents each
    assert handler.connections == 1


def test_token_is_sent_as_a_bearer_header(launched, dagster_url):
    assert graphql_client.auth_headers({graphql_client.TOKEN_ENV: TOKEN}) == {"Authorization": f"Bearer {TOKEN}"}
    assert graphql_client.auth_headers({}) == {}
    cookie = "AWSELBAuthSessionCookie-0=abc; AWSELBAuthSessionCookie-1=def"
    assert graphql_client.auth_headers({graphql_client.COOKIE_ENV: f" {cookie} "}) == {"Cookie": cookie}

    handler = type("Proxy", (_RecordingProxy,), {"upstream": dagster_url, "seen": []})
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    proxy_url = f"http://127.0.0.1:{proxy.server_address[1]}"
    try:
        backfill_id = launched["launch"]["backfill_id"]
        through = run_cli("status", backfill_id, "--url", proxy_url, "--json", env=cli_env(RAG_DAGSTER_TOKEN=TOKEN))
        assert through.returncode == 0, through.stderr
        assert json.loads(through.stdout)["id"] == backfill_id
        assert handler.seen and set(handler.seen) == {f"Bearer {TOKEN}"}

        refused = run_cli("status", backfill_id, "--url", proxy_url)
        assert refused.returncode == 1
        assert "401" in refused.stderr and proxy_url in refused.stderr
        assert handler.seen[-1] is None
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_wait_reports_the_failed_date(launched):
    code, final, stderr = finished(launched)
    assert code == 1, stderr  # a date failed
    assert final == {
        "id": launched["launch"]["backfill_id"],
        "status": "FAILED",
        "partitions": {"total": 4, "done": 3, "failed": 1, "in_progress": 0},
        "records": GOOD_RECORDS,
        "failures": [{"partition": FAILING_DATE, "reason": f"demo_embeddings: RuntimeError: {FAILURE_TEXT}"}],
    }
    assert "3 done, 1 failed" in stderr  # the progress lines


def test_human_readable_status(launched, dagster_url):
    finished(launched)
    shown = run_cli("status", launched["launch"]["backfill_id"], "--url", dagster_url)
    assert shown.returncode == 0, shown.stderr  # without --wait: the status was read, whatever it is
    assert f"{launched['launch']['backfill_id']}: FAILED" in shown.stdout
    assert "4 total, 3 done, 1 failed, 0 in progress" in shown.stdout
    assert f"records: {GOOD_RECORDS}" in shown.stdout
    assert f"FAILED {FAILING_DATE}: demo_embeddings: RuntimeError: {FAILURE_TEXT}" in shown.stdout


def test_status_of_a_run_id(launched, dagster_url):
    finished(launched)
    runs = graphql_client.execute(
        dagster_url,
        graphql_client.RUNS_QUERY,
        {"filter": {"tags": [{"key": "dagster/backfill", "value": launched["launch"]["backfill_id"]}]}},
    )["runsOrError"]["results"]
    run_of = {tag["value"]: run["runId"] for run in runs for tag in run["tags"] if tag["key"] == "dagster/partition"}
    assert sorted(run_of) == DATES

    failed = run_cli("status", run_of[FAILING_DATE], "--wait", "--json", env=cli_env(RAG_DAGSTER_URL=dagster_url))
    assert failed.returncode == 1, failed.stderr
    assert json.loads(failed.stdout) == {
        "id": run_of[FAILING_DATE],
        "status": "FAILED",
        "partitions": {"total": 1, "done": 0, "failed": 1, "in_progress": 0},
        "records": 0,
        "failures": [{"partition": FAILING_DATE, "reason": f"demo_embeddings: RuntimeError: {FAILURE_TEXT}"}],
    }
    good = graphql_client.wait(dagster_url, run_of["2025-01-02"], poll_seconds=0.5, timeout=30)
    assert good == {
        "id": run_of["2025-01-02"],
        "status": "COMPLETED",
        "partitions": {"total": 1, "done": 1, "failed": 0, "in_progress": 0},
        "records": 2,
        "failures": [],
    }


FAILURE = "dagster._core.definitions.events.Failure"
LISTED = [f"d{n}.txt: empty file (0 bytes)" for n in range(25)]


@pytest.mark.parametrize(
    "error, summary",
    [
        (None, None),
        ({"message": "builtins.RuntimeError: the model is gone\nTraceback..."}, "RuntimeError: the model is gone"),
        (
            {"message": "dagster._core.definitions.events.Failure: catchup source 'news': no export"},
            "catchup source 'news': no export",
        ),
        (
            {
                "message": (
                    'dagster._core.errors.DagsterExecutionStepExecutionError: Error occurred while executing op "x":'
                ),
                "errorChain": [{"error": {"message": "ValueError: bad row 3"}}],
            },
            "ValueError: bad row 3",
        ),
        ({"message": 'Error occurred while executing op "x":'}, 'Error occurred while executing op "x":'),
        (  # a document run's failure: the documents it could not read follow, at most 20 of them
            {"message": f"{FAILURE}: 2 of 9 document(s) could not be read:\n  a.pdf: encrypted\n  b.txt: empty\n"},
            "2 of 9 document(s) could not be read:\na.pdf: encrypted\nb.txt: empty",
        ),
        (
            {"message": "\n".join([f"{FAILURE}: 25 of 25 document(s) could not be read:", *LISTED])},
            "\n".join(["25 of 25 document(s) could not be read:", *LISTED[:20], "... and 5 more"]),
        ),
    ],
)
def test_error_summary(error, summary):
    from rag_assets.frontends.graphql_client import _error_summary

    assert _error_summary(error) == summary


class _PagedKeys:
    """What _read_range asks of a Connection: the partition keys of an asset in pages, as the
    webserver's partitionKeyConnection gives them (newest first when ascending is false)."""

    def __init__(self, keys: list[str], page: int):
        self.keys, self.page, self.pages = keys, page, 0

    def execute(self, query: str, variables: dict) -> dict:
        assert "ascending: false" in query
        newest_first = self.keys[::-1]
        at = int(variables["cursor"] or 0)
        self.pages += 1
        results = newest_first[at : at + self.page]
        more = at + self.page < len(newest_first)
        return {"assetNodeOrError": {"__typename": "AssetNode", "partitionKeyConnection": {
            "results": results, "cursor": str(at + self.page), "hasMore": more}}}  # fmt: skip


@pytest.mark.parametrize(
    "start, end, expected, pages",
    [
        ("k097", "k099", ["k097", "k098", "k099"], 1),  # the newest range: the first page
        ("k010", "k012", ["k010", "k011", "k012"], 23),  # an old one: paged back to it
        ("k003", "k005", ["k003", "k004", "k005"], 25),  # across a page's edge
        ("k050", "nope", None, 25),  # an end that is not a key: no answer
    ],
)
def test_a_ranged_runs_keys_are_paged_from_the_newest(start, end, expected, pages):
    conn = _PagedKeys([f"k{i:03d}" for i in range(100)], page=4)
    run = {"assetSelection": [{"path": ["vector_index"]}]}
    assert graphql_client._read_range(conn, run, start, end) == expected
    assert conn.pages == pages
