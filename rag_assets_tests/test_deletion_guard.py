"""The deletion guard end to end: a real `dagster-daemon` follows a folder that is emptied
(an unmounted share): the index keeps its rows and the guard says so (a failed
deletion_guard check, the listing sensor's skipped ticks); the files come back: the guard
lets go, nothing lost, nothing embedded again; the folder is emptied again and a person
confirms with `rag-assets purge --confirm ROOT`: the rows are purged."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import httpx
import pytest

from rag_assets.defs.resources import build_resources
from rag_assets.settings import Settings
from rag_assets_tests.live import Daemon, embed_service, guard_evaluations, wait_for

pytestmark = pytest.mark.slow

KEYS = [f"acme/note{n}.txt" for n in range(3)] + ["globex/note0.txt"]


@pytest.fixture(scope="module")
def warm_model(tmp_path_factory) -> str:
    """The local model loaded once, for the runs the daemon launches (as `make dev` does)."""
    with embed_service(tmp_path_factory.mktemp("embed_service") / "service.log") as url:
        yield url


def served(url: str) -> int:
    return httpx.get(f"{url}/health").json()["served"]


def move(keys: list[str], source: Path, to: Path) -> None:
    """Files moved (their mtimes, so their versions, kept)."""
    for key in keys:
        (to / key).parent.mkdir(parents=True, exist_ok=True)
        (source / key).rename(to / key)


def purge_cli(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "rag_assets.frontends.cli", "purge", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=os.environ.copy(), check=False)


def test_a_daemon_holds_an_emptied_folder_and_purges_it_once_confirmed(instance, tmp_path, monkeypatch, warm_model):
    inbox, attic = tmp_path / "inbox", tmp_path / "attic"
    for key in KEYS:
        (inbox / key).parent.mkdir(parents=True, exist_ok=True)
        (inbox / key).write_text(f"{key}: the harbour office opens at nine.")
    monkeypatch.setenv("RAG_SOURCE_URI", str(inbox))
    monkeypatch.delenv("RAG_SQS_QUEUE_URL", raising=False)
    monkeypatch.setenv("RAG_EMBED_SERVICE_URL", warm_model)
    monkeypatch.setenv("RAG_PURGE_GUARD_MIN_DOCUMENTS", "4")  # four small files are enough to guard
    r = build_resources(Settings.from_env())
    store, embedder = r["vector_store"], r["embedder"]

    def indexed() -> set[str]:
        return {d.document_key for d in store.list_documents(embedder.model_id, embedder.dimension).values()}

    def ingest_runs() -> int:
        return len(instance.get_run_records(dg.RunsFilter(job_name="ingest_documents")))

    def in_flight() -> bool:
        return bool(
            instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTED]))
        )

    daemon = Daemon(tmp_path / "daemon.log")
    daemon.start()
    times = {}
    try:
        try:
            times["indexed"] = wait_for(lambda: indexed() == set(KEYS), "the folder to be indexed")
            wait_for(lambda: not in_flight(), "the ingest run to end")
            runs, texts = ingest_runs(), served(warm_model)

            move(KEYS, inbox, attic)  # unmounted: the folder is there, and empty
            times["held"] = wait_for(lambda: guard_evaluations(instance) == [False], "the guard to hold", timeout=120)
            held = "Sensor listing_sensor skipped: deletion guard: holding 4 deletion(s)"
            wait_for(lambda: daemon.read_log().count(held) >= 2, "two ticks that hold", timeout=120)
            assert f"rag-assets purge --confirm {inbox}" in daemon.read_log()
            assert indexed() == set(KEYS) and not in_flight()  # nothing purged, no purge run

            move(KEYS, attic, inbox)  # mounted again: the same files
            times["let go"] = wait_for(
                lambda: guard_evaluations(instance) == [False, True], "the guard to let go", timeout=120
            )
            assert (
                indexed() == set(KEYS) and ingest_runs() == runs and served(warm_model) == texts
            )  # nothing embedded again

            move(KEYS, inbox, attic)  # deleted on purpose this time
            wait_for(
                lambda: guard_evaluations(instance) == [False, True, False], "the guard to hold again", timeout=120
            )
            looked = purge_cli(str(inbox))
            assert looked.returncode == 1 and f"4 deletion(s) held under {inbox}" in looked.stdout, looked.stderr
            assert "(acme 3, globex 1)" in looked.stdout and indexed() == set(KEYS)
            confirmed = purge_cli("--confirm", str(inbox))
            assert confirmed.returncode == 0, confirmed.stderr
            times["purged"] = wait_for(lambda: indexed() == set(), "the confirmed purge", timeout=120)
            wait_for(lambda: guard_evaluations(instance)[-1] is True, "the guard to let go once purged", timeout=120)
        except AssertionError as e:
            raise AssertionError(f"{e}\ndaemon log tail:\n{daemon.read_log()[-4000:]}") from None
    finally:
        daemon.stop()
        print(f"\nseconds: {times}")
