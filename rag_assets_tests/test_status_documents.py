"""`rag-assets status RUN_ID` of the command line's document runs (ranged runs over the
`documents` dynamic partitions), read from a real webserver serving rag_assets.definitions on
the instance a real `rag-assets ingest` wrote: it counts the run's documents and names each
one it could not read, escaped for the terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from rag_assets.frontends import graphql_client
from rag_assets.lib.display import printable
from rag_assets_tests.conftest import free_port
from rag_assets_tests.live import stop_group

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "rag_assets.frontends.cli"]
TITLE, RED = "\x1b]0;pwned\x07", "\x1b[31m"  # retitles the terminal; turns what follows red
GOOD = 20


@contextmanager
def webserver(home: Path, timeout: float = 180) -> Iterator[str]:
    """`dagster-webserver` alone (no daemon: nothing runs by itself) on DAGSTER_HOME `home`,
    serving rag_assets.definitions; yields its URL once the code is loaded."""
    port = free_port()
    url, log_path = f"http://127.0.0.1:{port}", home / "webserver.log"
    command = [str(Path(sys.executable).with_name("dagster-webserver")), "-h", "127.0.0.1", "-p", str(port)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*command, "-m", "rag_assets.definitions", "-d", str(REPO)],
            cwd=REPO, env={**os.environ, "DAGSTER_HOME": str(home)}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert proc.poll() is None, f"the webserver exited:\n{log_path.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"the webserver is not ready:\n{log_path.read_text()[-4000:]}"
            try:
                entries = graphql_client.execute(url, graphql_client.WORKSPACE_QUERY)["workspaceOrError"][
                    "locationEntries"
                ]
                if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                    break
            except graphql_client.DagsterUnreachable:
                pass
            time.sleep(0.5)
        yield url
    finally:
        stop_group(proc)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], check=False, capture_output=True, text=True, timeout=300, cwd=REPO)


def test_status_of_a_document_run_counts_and_names_its_documents(rag_env, tmp_path):
    inbox = tmp_path / "inbox" / "acme"
    inbox.mkdir(parents=True)
    for n in range(1, GOOD + 1):
        (inbox / f"doc-{n:02}.txt").write_text(f"Document {n} is about rocket skates, model {n}.")
    unreadable = [f"acme/{RED}empty.txt", f"acme/empty{TITLE}.txt"]  # in the order of their partitions
    for key in unreadable:
        (tmp_path / "inbox" / key).write_text("")

    ingested = run_cli("ingest", str(tmp_path / "inbox"), "--json")
    assert ingested.returncode == 1, ingested.stderr
    assert len(json.loads(ingested.stdout)["ingested"]) == GOOD

    with webserver(Path(os.environ["DAGSTER_HOME"])) as url:
        runs = graphql_client.execute(url, graphql_client.RUNS_QUERY, {"filter": {}})["runsOrError"]["results"]
        (run,) = runs  # the batch: the good documents written, then the run failed naming the two
        assert run["status"] == "FAILURE"

        failed = run_cli("status", run["runId"], "--url", url, "--json")
        assert failed.returncode == 0, failed.stderr
        report = json.loads(failed.stdout)
        assert report["partitions"] == {"total": GOOD + 2, "done": GOOD, "failed": 2, "in_progress": 0}
        [failure] = report["failures"]
        first, last = failure["partition"].split("...")
        assert first.startswith("acme|acme/%1B%5B31mempty.txt|") and last.startswith(
            "acme|acme/empty%1B%5D0;pwned%07.txt|"
        )
        assert failure["reason"] == "\n".join(
            [f"vector_index: 2 of {GOOD + 2} document(s) could not be read; the others were written:"]
            + [
                f"{printable(key)}: empty file (0 bytes)" for key in unreadable
            ]  # escaped where it is made: logs go to terminals
        )

        shown = run_cli("status", run["runId"], "--url", url)
        assert shown.returncode == 0, shown.stderr
        assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout
        assert f"partitions: {GOOD + 2} total, {GOOD} done, 2 failed, 0 in progress" in shown.stdout
        assert (
            f": vector_index: 2 of {GOOD + 2} document(s) could not be read; the others were written:\n" in shown.stdout
        )
        assert "\n    acme/\\x1b[31mempty.txt: empty file (0 bytes)\n" in shown.stdout
        assert "\n    acme/empty\\x1b]0;pwned\\x07.txt: empty file (0 bytes)\n" in shown.stdout

