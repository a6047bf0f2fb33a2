"""Shared fixtures: an isolated environment (Dagster instance, work dir, index) per test,
documents made on the fly, a moto S3 server."""

from __future__ import annotations

import logging
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from rag_assets.settings import INSTANCE_YAML, Settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the moto server logs every request


@pytest.fixture(autouse=True)
def signal_dispositions_kept() -> Iterator[None]:
    """Each test leaves SIGINT and SIGTERM as it found them. Dagster's command line entry points,
    run in this process by some tests, map SIGTERM to SIGINT's handler: where the suite was
    started with SIGINT ignored (in the background, `nohup`), SIGTERM became ignored too, and
    every process a later test started (the notification hub) inherited it and outlived its
    SIGTERM."""
    kept = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    yield
    for number, handler in kept.items():
        if signal.getsignal(number) != handler and handler is not None:
            signal.signal(number, handler)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_pdf(path: Path, pages: list[str]) -> Path:
    """A PDF with one page per string (text wrapped to the page)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    path.parent.mkdir(parents=True, exist_ok=True)
    c = canvas.Canvas(str(path), pagesize=A4, invariant=1)
    for body in pages:
        text = c.beginText(50, 800)
        line = ""
        for word in body.split():
            if len(line) + len(word) > 90:
                text.textLine(line)
                line = ""
            line += word + " "
        text.textLine(line)
        c.drawText(text)
        c.showPage()
    c.save()
    return path


@pytest.fixture
def rag_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A fresh DAGSTER_HOME, work dir and LanceDB index; the environment points at them."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE_YAML.read_text())
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("RAG_WORK_DIR", str(tmp_path / "rag"))
    monkeypatch.setenv("RAG_INDEX_URI", str(tmp_path / "rag" / "index"))
    monkeypatch.delenv("RAG_EMBEDDER", raising=False)
    (tmp_path / "catchup.yaml").write_text("sources: {}\n")  # no catchup sources unless a test gives some
    monkeypatch.setenv("RAG_CATCHUP_CONFIG", str(tmp_path / "catchup.yaml"))
    return Settings.from_env()


@pytest.fixture
def instance(rag_env: Settings) -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.get() as inst:
        yield inst


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server: a real S3 (and SQS) HTTP API on 127.0.0.1."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch):
    for name, value in {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    import boto3

    return boto3.client("s3")
