"""Ingestion benchmark: the bare work (parse, chunk, embed) against the whole pipeline
through Dagster, on one generated corpus of multi-page PDFs.

    python benchmarks/ingest.py [--docs 200] [--pages 5] [--batch-size N] [--workdir DIR]
                                [--repeat 1] [--json] [--profile FILE]

The floor is what ingestion cannot avoid: reading and parsing the PDFs, chunking their
text and embedding the chunks with the local model (loaded beforehand; its load time is
shown apart). The pipeline is `rag_assets.ingest.ingest` through a real SQLite Dagster
instance into an empty LanceDB index with a cold embedding cache, then once more over the
unchanged corpus (which must launch no run), then once more after one document is edited.
pipeline / floor is what Dagster's bookkeeping, the intermediates' pickles and the vector
store add to the bare work.

Corpus generation is not timed. Peak RSS is the process's high-water mark
(ru_maxrss), so it only grows from phase to phase.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import logging
import math
import os
import platform
import pstats
import random
import re
import resource
import statistics
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Self

TENANTS = ["acme", "globex", "initech"]
SEED = 20240531
EMBEDDER = "local:all-MiniLM-L6-v2"

# ---------------------------------------------------------------------------------------
# Corpus: deterministic English-like prose from a small grammar over a vocabulary.
# ---------------------------------------------------------------------------------------

NOUNS = [
    "policy", "employee", "manager", "team", "request", "invoice", "contract", "customer", "supplier", "report",
    "budget", "meeting", "project", "deadline", "schedule", "office", "laptop", "account", "password", "network",
    "server", "database", "backup", "incident", "ticket", "review", "audit", "payment", "expense", "receipt", "travel",
    "flight", "hotel", "vacation", "holiday", "benefit", "salary", "bonus", "training", "course", "certificate",
    "document", "record", "file", "folder", "system", "process", "procedure", "guideline", "standard", "approval",
    "signature", "department", "director", "committee", "board", "quarter", "year", "month", "week", "day", "morning",
    "evening", "region", "country", "market", "product", "service", "feature", "release", "version", "update", "patch",
    "issue", "risk", "control", "measure", "target", "goal", "result", "outcome", "strategy", "plan", "proposal",
    "estimate", "forecast", "revenue", "cost", "price", "discount", "order", "delivery", "shipment", "warehouse",
    "inventory", "vendor", "partner", "client", "user", "access", "permission", "role", "group", "device", "phone",
    "printer", "building", "floor", "room", "desk", "parking", "badge", "visitor", "guest", "security", "safety",
    "health", "insurance", "claim", "form", "portal", "email", "message", "notice", "reminder", "agenda", "minutes",
    "summary", "analysis", "metric", "dashboard", "survey", "feedback", "complaint", "question", "answer", "section",
    "chapter", "page", "table", "chart", "figure", "appendix", "draft", "copy", "template", "sample", "example",
    "exception", "limit", "threshold", "rate", "period", "term", "condition", "clause", "obligation", "liability",
    "warranty", "license", "renewal", "refund",
]

VERBS = [
    "approves", "reviews", "submits", "requires", "updates", "records", "sends", "receives", "tracks", "manages",
    "supports", "covers", "includes", "describes", "explains", "defines", "limits", "extends", "replaces", "confirms",
    "reports", "checks", "signs", "closes", "opens", "assigns", "escalates", "resolves", "delays", "schedules",
    "plans", "prepares", "shares", "stores", "archives", "deletes", "restores", "protects", "monitors", "measures",
    "compares", "reduces", "increases", "improves", "changes", "follows", "meets", "exceeds", "handles", "processes",
    "validates", "publishes", "announces", "requests", "returns", "transfers", "reimburses", "authorizes", "documents",
]

ADJECTIVES = [
    "new", "annual", "monthly", "weekly", "daily", "final", "initial", "current", "previous", "next", "regional",
    "global", "local", "internal", "external", "secure", "private", "public", "shared", "critical", "minor", "major",
    "urgent", "standard", "special", "temporary", "permanent", "remote", "hybrid", "full", "partial", "complete",
    "detailed", "brief", "formal", "informal", "approved", "pending", "rejected", "open", "closed", "active",
    "inactive", "primary", "secondary", "quarterly", "financial", "legal", "technical", "operational", "strategic",
    "reasonable", "additional", "required", "optional", "available", "responsible", "accurate", "consistent",
    "relevant", "significant", "efficient",
]

ADVERBS = [
    "usually", "always", "often", "rarely", "promptly", "carefully", "quickly", "formally", "directly",
    "automatically", "manually", "immediately", "regularly", "annually", "jointly", "separately",
]

PREPOSITIONS = [
    "in", "on", "for", "with", "under", "after", "before", "during", "within", "across", "by", "from", "about",
    "without",
]
DETERMINERS = ["the", "the", "the", "a", "each", "every", "this", "that", "any", "our", "their", "its"]
CONJUNCTIONS = ["and", "but", "so", "because", "while", "although", "unless", "when", "if"]
SUBORDINATE = ["which", "that", "who"]
NAMES = [
    "Alice", "Bruno", "Chen", "Dana", "Emeka", "Farah", "Goran", "Hana", "Ivan", "Julia", "Kofi", "Lena", "Marco",
    "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tariq", "Uma", "Victor", "Wen", "Yara", "Zoe",
]


def _zipf_choice(rng: random.Random, words: list[str]) -> str:
    """A word with a roughly Zipfian preference for the head of the list."""
    index = int(len(words) * (rng.random() ** 2.2))
    return words[min(index, len(words) - 1)]


def _noun_phrase(rng: random.Random) -> str:
    if rng.random() < 0.08:
        return rng.choice(NAMES)
    parts = [rng.choice(DETERMINERS)]
    if rng.random() < 0.45:
        parts.append(_zipf_choice(rng, ADJECTIVES))
    parts.append(_zipf_choice(rng, NOUNS))
    if rng.random() < 0.25:
        parts.append(_zipf_choice(rng, NOUNS))
    if parts[0] == "a" and parts[1][0] in "aeiou":
        parts[0] = "an"
    return " ".join(parts)


def _clause(rng: random.Random) -> str:
    parts = [_noun_phrase(rng)]
    if rng.random() < 0.2:
        parts.append(rng.choice(ADVERBS))
    parts.append(_zipf_choice(rng, VERBS))
    parts.append(_noun_phrase(rng))
    for _ in range(rng.choice([0, 1, 1, 2])):
        parts.append(rng.choice(PREPOSITIONS))
        parts.append(_noun_phrase(rng))
    if rng.random() < 0.2:
        parts[-1] += ","
        parts += [rng.choice(SUBORDINATE), _zipf_choice(rng, VERBS), _noun_phrase(rng)]
    if rng.random() < 0.1:
        day, month = rng.randint(1, 28), rng.choice(["March", "June", "October", "December"])
        parts.append(f"by {day} {month} {rng.randint(2019, 2026)}")
    return " ".join(parts)


def sentence(rng: random.Random) -> str:
    text = _clause(rng)
    if rng.random() < 0.35:
        text += f", {rng.choice(CONJUNCTIONS)} {_clause(rng)}"
    end = rng.choices([".", "?", "!"], weights=[90, 7, 3])[0]
    return text[0].upper() + text[1:] + end


def page_paragraphs(rng: random.Random, words: int) -> list[str]:
    """Paragraphs of 3-7 sentences, about `words` words in all."""
    paragraphs, count = [], 0
    while count < words:
        para = " ".join(sentence(rng) for _ in range(rng.randint(3, 7)))
        paragraphs.append(para)
        count += len(para.split())
    return paragraphs


def write_pdf(path: Path, rng: random.Random, pages: int, title: str) -> int:
    """A `pages`-page PDF of generated prose (300-400 words a page); returns its word count."""
    from reportlab.lib.pagesizes import letter
    from reportlab.lib.utils import simpleSplit
    from reportlab.pdfgen import canvas

    width, height = letter
    margin, size, leading = 60, 10, 13
    c = canvas.Canvas(str(path), pagesize=letter, invariant=1)  # invariant: byte-identical reruns
    c.setTitle(title)
    total = 0
    for number in range(1, pages + 1):
        y = height - margin
        c.setFont("Helvetica-Bold", 13)
        c.drawString(margin, y, f"{title} - part {number}")
        y -= 2 * leading
        c.setFont("Helvetica", size)
        for para in page_paragraphs(rng, rng.randint(300, 400)):
            total += len(para.split())
            for line in simpleSplit(para, "Helvetica", size, width - 2 * margin):
                if y < margin:  # never expected at these sizes; keep the text rather than lose it
                    break
                c.drawString(margin, y, line)
                y -= leading
            y -= leading // 2
        c.drawString(width - margin - 40, margin / 2, f"page {number}")
        c.showPage()
    c.save()
    return total


def generate_corpus(root: Path, docs: int, pages: int) -> tuple[list[Path], int]:
    from tqdm import tqdm

    tenants = TENANTS[: 2 if docs < 30 else 3]
    paths, words = [], 0
    for i in tqdm(range(docs), desc="corpus", unit="pdf", file=sys.stderr, disable=None):
        tenant = tenants[i % len(tenants)]
        path = root / tenant / f"doc-{i:04d}.pdf"
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = random.Random(SEED * 1_000_003 + i)
        topic = " ".join(w.capitalize() for w in (rng.choice(ADJECTIVES), rng.choice(NOUNS), rng.choice(NOUNS)))
        words += write_pdf(path, rng, pages, f"{tenant.capitalize()} {topic} ({i:04d})")
        paths.append(path)
    return paths, words


# ---------------------------------------------------------------------------------------
# Measurement helpers
# ---------------------------------------------------------------------------------------


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def current_rss_mib() -> float:
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def pkg_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "-"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def write_dagster_home(home: Path) -> Path:
    if home.exists():
        raise SystemExit(f"{home} already exists: the benchmark needs a fresh Dagster instance (give a new --workdir)")
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return home


def step_seconds(instance, run_ids: list[str]) -> dict[str, float]:
    """Seconds between STEP_START and STEP_SUCCESS/FAILURE of each asset step, summed over runs."""
    import dagster as dg

    totals: dict[str, float] = defaultdict(float)
    for run_id in run_ids:
        started: dict[str, float] = {}
        for entry in instance.all_logs(run_id):
            event = entry.dagster_event
            if event is None or not event.step_key:
                continue
            if event.event_type == dg.DagsterEventType.STEP_START:
                started[event.step_key] = entry.timestamp
            elif (
                event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE)
                and event.step_key in started
            ):
                totals[event.step_key] += entry.timestamp - started.pop(event.step_key)
    return dict(totals)


def event_count(instance, run_ids: list[str]) -> int:
    return sum(len(instance.all_logs(run_id)) for run_id in run_ids)


_CALLS_LOGGED = re.compile(r"embedded in (\d+) call")


def logged_embedding_calls(instance, run_ids: list[str]) -> int:
    """Embedding calls as the embeddings step logs them ("... embedded in K call(s) ..."), once
    per run: a count independent of the report's, which reads materialization metadata."""
    total = 0
    for run_id in run_ids:
        for entry in instance.all_logs(run_id):
            if entry.dagster_event is None and (found := _CALLS_LOGGED.search(entry.user_message or "")):
                total += int(found.group(1))
    return total


def machine_busy_seconds() -> float:
    """CPU seconds all processes of the machine have used since boot (/proc/stat)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class Timer:
    """Wall and CPU seconds of a block (this process, all threads), and the CPU seconds other
    processes used meanwhile: a concurrent test suite on a 2-CPU machine halves the model's
    throughput, and this says when that happened."""

    def __enter__(self) -> Self:
        self._busy = machine_busy_seconds()
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu
        self.others = max(0.0, machine_busy_seconds() - self._busy - self.cpu)


# ---------------------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--docs", type=int, default=200, help="PDFs in the corpus (default 200)")
    p.add_argument("--pages", type=int, default=5, help="pages per PDF (default 5)")
    p.add_argument("--batch-size", type=int, help="documents per Dagster run (default RAG_BATCH_SIZE or 50)")
    p.add_argument("--workdir", type=Path, help="corpus, instance, index and cache go here (default: a fresh temp dir)")
    p.add_argument("--repeat", type=int, default=1, help="repetitions of the timed phases; medians quoted (default 1)")
    p.add_argument("--json", action="store_true", help="also print the figures as one JSON document on stdout")
    p.add_argument("--profile", type=Path, help="cProfile the first pipeline run into this file, print its top costs")
    args = p.parse_args(argv)
    if args.docs < 1 or args.pages < 1 or args.repeat < 1 or (args.batch_size is not None and args.batch_size < 1):
        p.error("--docs, --pages, --repeat and --batch-size must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    script_start = time.perf_counter()
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="rag-bench-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)

    # The environment before rag_assets is imported: its settings are read at import.
    home = write_dagster_home(workdir / "dagster_home")
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["RAG_WORK_DIR"] = str(workdir / "rag-run1")
    os.environ["RAG_INDEX_URI"] = str(workdir / "rag-run1" / "index")
    os.environ["RAG_EMBEDDER"] = EMBEDDER  # the floor measures the local model; so must the pipeline
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    logging.getLogger("dagster").setLevel(logging.ERROR)

    from tqdm import tqdm

    print(f"workdir: {workdir}", file=sys.stderr)
    corpus = workdir / "corpus"
    paths, words = generate_corpus(corpus, args.docs, args.pages)
    rss = {"after corpus generation": peak_rss_mib()}

    import dagster as dg
    import torch

    from rag_assets.definitions import build_definitions
    from rag_assets.ingest import discover, ingest
    from rag_assets.lib.chunking import chunk_units
    from rag_assets.lib.parsing import parse_document
    from rag_assets.resources.embedders import LocalEmbedder
    from rag_assets.resources.object_store import ObjectStore
    from rag_assets.settings import Settings

    base = Settings.from_env()
    batch_size = args.batch_size or base.batch_size
    rss["after imports"] = peak_rss_mib()

    t = time.perf_counter()
    refs, unfound = discover([str(corpus)], ObjectStore(), None, base.tenant_from_key)
    discover_s = time.perf_counter() - t
    if unfound or len(refs) != args.docs:
        raise SystemExit(f"discover found {len(refs)} of {args.docs} documents (failures: {unfound})")

    times: dict[str, list[float]] = defaultdict(list)
    cpu_times: dict[str, list[float]] = defaultdict(list)
    other_cpu: dict[str, list[float]] = defaultdict(list)

    def record(name: str, timer: Timer) -> None:
        times[name].append(timer.wall)
        cpu_times[name].append(timer.cpu)
        other_cpu[name].append(timer.others)

    problems: list[str] = []

    # --- floors -----------------------------------------------------------------------
    parsed = []
    for _ in range(args.repeat):
        with Timer() as t:
            parsed = []
            for ref in tqdm(refs, desc="parse", unit="doc", file=sys.stderr, disable=None, leave=False):
                data = Path(ref.uri).read_bytes()
                parsed.append((ref, parse_document(ref.key, data, csv_text_column=base.csv_text_column)))
        record("parse", t)
    pages = sum(doc.pages or 0 for _, doc in parsed)
    rss["after parse"] = peak_rss_mib()

    chunks = []
    for _ in range(args.repeat):
        with Timer() as t:
            chunks = [
                c
                for ref, doc in parsed
                for c in chunk_units(
                    ref.document_id, doc.units, max_tokens=base.chunk_tokens, overlap=base.chunk_overlap
                )
            ]
        record("chunk", t)
    texts = [c.text for c in chunks]
    tokens = sum(c.tokens for c in chunks)
    rss["after chunk"] = peak_rss_mib()

    embedder = LocalEmbedder()
    t = time.perf_counter()
    embedder.embed(["warm up the model"])  # loads it (cached per process, the pipeline reuses it)
    model_load_s = time.perf_counter() - t
    rss["after model load"] = peak_rss_mib()
    for _ in range(args.repeat):
        with Timer() as t:
            vectors = embedder.embed(texts)
        record("embed", t)
    if vectors.shape != (len(texts), embedder.dimension):
        problems.append(f"floor embedding returned {vectors.shape}, want ({len(texts)}, {embedder.dimension})")
    floor_calls = math.ceil(len(texts) / embedder.batch_size)
    del vectors
    rss["after embed"] = peak_rss_mib()

    # --- the pipeline ---------------------------------------------------------------------
    runs_first = runs_second = runs_edited = 0
    calls_first = calls_second = logged_first = logged_second = 0
    steps_first: dict[str, float] = {}
    steps_second: dict[str, float] = {}
    events_first = events_second = 0
    profile_text = ""
    for rep in range(1, args.repeat + 1):
        run_dir = workdir / f"rag-run{rep}"
        if run_dir.exists():
            raise SystemExit(f"{run_dir} already exists: the first run needs an empty index and cache")
        settings = replace(
            base, work_dir=str(run_dir), index_uri=str(run_dir / "index"), embedder=EMBEDDER, batch_size=batch_size
        )
        rep_home = home if rep == 1 else write_dagster_home(workdir / f"dagster_home-rep{rep}")
        defs = build_definitions(settings)
        with dg.DagsterInstance.from_config(str(rep_home)) as instance:
            original = paths[0].read_bytes()
            for phase in ("first", "second", "edited"):
                profiler = cProfile.Profile() if (args.profile and rep == 1 and phase == "first") else None
                if phase == "edited":  # one document rewritten (its title on every page): found by a new discover
                    write_pdf(paths[0], random.Random(SEED), args.pages, "An edited document")
                    refs, unfound = discover([str(corpus)], ObjectStore(), None, base.tenant_from_key)
                bar = tqdm(total=len(refs), desc=f"pipeline {phase}", unit="doc", file=sys.stderr, disable=None)
                with bar:
                    with Timer() as t:
                        if profiler:
                            profiler.enable()
                        report = ingest(
                            refs, defs=defs, instance=instance, batch_size=batch_size, on_progress=bar.update
                        )
                        if profiler:
                            profiler.disable()
                    record(f"pipeline_{phase}", t)
                rss[f"after pipeline {phase} run"] = peak_rss_mib()
                tag = f"repetition {rep}, {phase} run"
                if phase == "first":
                    if len(report.ingested) != args.docs or report.failed or report.unchanged:
                        problems.append(
                            f"{tag}: {len(report.ingested)} ingested, {len(report.unchanged)} unchanged, "
                            f"{len(report.failed)} failed (want {args.docs} ingested): {report.failed[:3]}"
                        )
                    if report.vectors != len(chunks) or report.chunks != len(chunks):
                        problems.append(
                            f"{tag}: {report.vectors} vectors written and {report.chunks} chunks, "
                            f"the floor counted {len(chunks)} chunks"
                        )
                    if report.embedding_calls < 1:
                        problems.append(f"{tag}: no embedding calls recorded for a cold cache")
                elif phase == "edited":
                    if len(report.ingested) != 1 or len(report.unchanged) != args.docs - 1 or report.failed:
                        problems.append(
                            f"{tag}: {len(report.ingested)} ingested, {len(report.unchanged)} unchanged, "
                            f"{len(report.failed)} failed (want 1 and {args.docs - 1}): {report.failed[:3]}"
                        )
                    runs_edited = len(report.runs)
                else:
                    if len(report.unchanged) != args.docs or report.failed or report.ingested:
                        problems.append(
                            f"{tag}: {len(report.unchanged)} unchanged, {len(report.ingested)} ingested, "
                            f"{len(report.failed)} failed (want all {args.docs} unchanged): {report.failed[:3]}"
                        )
                    if report.runs:
                        problems.append(f"{tag}: {len(report.runs)} Dagster run(s) for unchanged documents (want none)")
                    if report.vectors or report.embedding_calls:
                        problems.append(
                            f"{tag}: {report.vectors} vectors written and {report.embedding_calls} embedding calls "
                            "(want 0 and 0)"
                        )
                if rep == 1 and phase != "edited":
                    if phase == "first":
                        runs_first, calls_first = len(report.runs), report.embedding_calls
                        logged_first = logged_embedding_calls(instance, report.runs)
                        steps_first = step_seconds(instance, report.runs)
                        events_first = event_count(instance, report.runs)
                    else:
                        runs_second, calls_second = len(report.runs), report.embedding_calls
                        logged_second = logged_embedding_calls(instance, report.runs)
                        steps_second = step_seconds(instance, report.runs)
                        events_second = event_count(instance, report.runs)
                if profiler:
                    profiler.dump_stats(str(args.profile))
                    out = io.StringIO()
                    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
                    out.write("\n--- by own time ---\n")
                    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
                    profile_text = out.getvalue()
            paths[0].write_bytes(original)  # the next repetition ingests the same corpus

    # --- figures ----------------------------------------------------------------------------
    m = {name: median(values) for name, values in times.items()}
    cpu = {name: median(values) for name, values in cpu_times.items()}
    warnings_: list[str] = []
    if (calls_first, calls_second) != (logged_first, logged_second):
        warnings_.append(
            f"IngestReport.embedding_calls disagrees with the calls the embeddings steps logged: first run "
            f"{calls_first} reported vs {logged_first} logged, second run {calls_second} vs {logged_second}"
        )
    others = {name: median(values) for name, values in other_cpu.items()}
    for name, secs in others.items():
        if secs > 0.15 * m[name] * (os.cpu_count() or 1) and secs > 0.5:
            warnings_.append(
                f"{name}: other processes used {secs:.1f} CPU s during its {m[name]:.1f} s "
                f"({secs / m[name]:.2f} of {os.cpu_count()} CPUs): its wall time is inflated"
            )
    n_docs, n_chunks = args.docs, len(chunks)
    floor = m["parse"] + m["embed"]
    floor_all = floor + m["chunk"]
    first, second = m["pipeline_first"], m["pipeline_second"]
    figures = {
        "machine": {
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "torch_threads": torch.get_num_threads(),
        },
        "versions": {p: pkg_version(p) for p in ("dagster", "lancedb", "sentence-transformers", "torch", "pypdf")},
        "corpus": {
            "docs": n_docs,
            "pages": pages,
            "words": words,
            "chunks": n_chunks,
            "tokens": tokens,
            "tenants": len({r.tenant for r in refs}),
            "bytes": sum(p.stat().st_size for p in paths),
        },
        "batch_size": batch_size,
        "repeat": args.repeat,
        "seconds": {
            "discover": discover_s,
            "model_load": model_load_s,
            **m,
            "floor_parse_embed": floor,
            "floor_parse_chunk_embed": floor_all,
        },
        "cpu_seconds": {**cpu, "floor_parse_embed": cpu["parse"] + cpu["embed"],
                        "floor_parse_chunk_embed": cpu["parse"] + cpu["chunk"] + cpu["embed"]},
        "seconds_all_repetitions": dict(times),
        "other_processes_cpu_seconds": others,
        "ratios": {
            "first_run_over_floor": first / floor,
            "first_run_over_floor_with_chunk": first / floor_all,
            "second_run_over_first_run": second / first,
            "edited_run_over_first_run": m["pipeline_edited"] / first,
        },
        "overhead_ms_per_doc": {
            "over_floor": 1000 * (first - floor) / n_docs,
            "over_floor_with_chunk": 1000 * (first - floor_all) / n_docs,
            # CPU time is less disturbed by other processes than wall time on a shared machine.
            "cpu_over_floor_with_chunk": 1000
            * (cpu["pipeline_first"] - cpu["parse"] - cpu["chunk"] - cpu["embed"])
            / n_docs,
        },
        "dagster": {
            "runs_first": runs_first,
            "runs_second": runs_second,
            "runs_edited": runs_edited,
            "events_first": events_first,
            "events_second": events_second,
            "step_seconds_first": steps_first,
            "step_seconds_second": steps_second,
        },
        "embedding_calls": {
            "floor": floor_calls,
            "first_run": calls_first,
            "second_run": calls_second,
            "first_run_logged": logged_first,
            "second_run_logged": logged_second,
        },
        "peak_rss_mib": rss,
        "current_rss_mib_at_end": current_rss_mib(),
        "workdir": str(workdir),
        "problems": problems,
        "warnings": warnings_,
    }
    figures["seconds"]["script_total"] = time.perf_counter() - script_start
    print(render(figures))
    if profile_text:
        print(f"\ncProfile of the first pipeline run (repetition 1), saved to {args.profile}:\n")
        print(profile_text)
    if args.json:
        print(json.dumps(figures, indent=2, default=float))
    if problems:
        print("\nBENCHMARK INVALID:", *problems, sep="\n  ", file=sys.stderr)
        return 1
    return 0


def render(f: dict) -> str:
    s, c, n, mach = f["seconds"], f["corpus"], f["corpus"]["docs"], f["machine"]
    chunks = c["chunks"]
    med = f" (medians of {f['repeat']})" if f["repeat"] > 1 else ""
    lines = [
        "rag_assets ingestion benchmark",
        (
            f"machine: nproc={mach['nproc']}  python {mach['python']}  torch threads={mach['torch_threads']}  "
            f"({mach['platform']})"
        ),
        "versions: " + "  ".join(f"{k} {v}" for k, v in f["versions"].items()),
        (
            f"corpus: {n} docs, {c['pages']} pages, {c['words']} words, {chunks} chunks ({c['tokens']} tokens), "
            f"{c['tenants']} tenants, {c['bytes'] / 2**20:.1f} MiB of PDF; batch size {f['batch_size']} docs/run"
        ),
        f"model load (not in any figure): {s['model_load']:.2f} s; discover: {s['discover'] * 1000:.0f} ms",
        "",
        f"{'phase' + med:<44}{'seconds':>9}{'docs/s':>9}{'chunks/s':>10}{'CPU s':>9}{'others CPU s':>14}",
        "-" * 95,
    ]
    cpu, others = f["cpu_seconds"], f["other_processes_cpu_seconds"]

    def row(name: str, key: str) -> None:
        secs = s[key]
        other = f"{others[key]:>14.1f}" if key in others else ""
        lines.append(f"{name:<44}{secs:>9.2f}{n / secs:>9.1f}{chunks / secs:>10.1f}{cpu[key]:>9.2f}{other}")

    row("parse (read + parse_document)", "parse")
    row("chunk (chunk_units)", "chunk")
    row("embed (LocalEmbedder.embed, model loaded)", "embed")
    row("floor = parse + embed", "floor_parse_embed")
    row("floor = parse + chunk + embed", "floor_parse_chunk_embed")
    row("pipeline, first run (cold index + cache)", "pipeline_first")
    row("pipeline, second run (unchanged)", "pipeline_second")
    row("pipeline, third run (one document edited)", "pipeline_edited")
    r, o, d = f["ratios"], f["overhead_ms_per_doc"], f["dagster"]
    lines += [
        "-" * 95,
        "(CPU s: this process, all threads; others CPU s: what other processes used meanwhile)",
        (
            f"first run / floor (parse+embed):            {r['first_run_over_floor']:.2f}x   "
            f"overhead {o['over_floor']:.0f} ms/doc"
        ),
        (
            f"first run / floor (parse+chunk+embed):      {r['first_run_over_floor_with_chunk']:.2f}x   "
            f"overhead {o['over_floor_with_chunk']:.0f} ms/doc"
        ),
        f"first run CPU over floor CPU (parse+chunk+embed):   overhead {o['cpu_over_floor_with_chunk']:.0f} CPU ms/doc",
        (
            f"second run / first run:                     {r['second_run_over_first_run']:.2f}x   "
            f"({s['pipeline_second']:.2f} s, {1000 * s['pipeline_second'] / n:.0f} ms/doc)"
        ),
        (
            f"edited run / first run:                     {r['edited_run_over_first_run']:.3f}x   "
            f"({s['pipeline_edited']:.2f} s for one edited document of {n})"
        ),
        (
            f"Dagster runs: first {d['runs_first']}, second {d['runs_second']}, edited {d['runs_edited']};  "
            f"event-log entries: first {d['events_first']} ({d['events_first'] / n:.1f}/doc), second "
            f"{d['events_second']}"
        ),
        (
            f"embedding calls: floor {f['embedding_calls']['floor']}; reported by ingest: first run "
            f"{f['embedding_calls']['first_run']}, second run {f['embedding_calls']['second_run']}; logged by the "
            f"embeddings steps: first run {f['embedding_calls']['first_run_logged']}, second run "
            f"{f['embedding_calls']['second_run_logged']}"
        ),
        "",
        "time inside each asset step (STEP_START..STEP_SUCCESS, summed over runs, repetition 1):",
    ]
    for step in sorted(set(d["step_seconds_first"]) | set(d["step_seconds_second"])):
        first, second = d["step_seconds_first"].get(step, 0.0), d["step_seconds_second"].get(step, 0.0)
        lines.append(f"  {step:<40}first {first:>8.2f} s   second {second:>8.2f} s")
    in_steps = sum(d["step_seconds_first"].values())
    lines.append(
        f"  {'(sum of steps)':<40}first {in_steps:>8.2f} s   second {sum(d['step_seconds_second'].values()):>8.2f} s"
        f"   -> outside steps, first run: {s['pipeline_first'] - in_steps:.2f} s"
    )
    lines += ["", "peak RSS (ru_maxrss, high-water mark):"]
    lines += [f"  {k:<40}{v:>8.0f} MiB" for k, v in f["peak_rss_mib"].items()]
    if f["warnings"]:
        lines += ["", "WARNINGS:"] + [f"  - {w}" for w in f["warnings"]]
    lines += ["", f"whole script: {s['script_total']:.1f} s (corpus generation included); workdir {f['workdir']}"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
