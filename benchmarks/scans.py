"""Scanned-PDF benchmark: OCR pages/s through the whole pipeline beside the OCR engine's own
speed on the same page images (the floor), and peak RSS.

    python benchmarks/scans.py [--docs 10] [--pages 2] [--json]

The corpus: `--docs` PDFs of `--pages` scanned pages each (A4 images at 150 dpi, ~12 lines
of generated prose, no text layer), made with Pillow. Not timed.
1. The floor: RapidOCR (the engine rag_assets uses, its models loaded beforehand) on each
   page image, already in memory.
2. The pipeline: `rag_assets.ingest.ingest` of the PDFs through a real SQLite Dagster
   instance into an empty LanceDB index: pypdf finds no text layer, pdfium renders each
   page, RapidOCR reads it, then chunks, embeddings (all-MiniLM-L6-v2, loaded beforehand)
   and the index write.
Peak RSS is the process's high-water mark after each phase. A separate script from
benchmarks/ingest.py: that one's phases (parse, embed, re-runs) are about text PDFs, whose
floor is not OCR.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(Path(__file__).parent)]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def page_image(rng: random.Random):
    """An A4 page at 150 dpi: ~12 lines of prose in 28 px type, as a scanner gives it."""
    import textwrap

    from PIL import Image, ImageDraw, ImageFont

    from ingest import sentence

    page = Image.new("L", (1240, 1754), 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=28)
    lines = textwrap.wrap(" ".join(sentence(rng) for _ in range(8)), 70)[:14]
    for n, line in enumerate(lines):
        draw.text((90, 120 + n * 48), line, fill=0, font=font)
    return page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=10)
    parser.add_argument("--pages", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import dagster as dg
    import numpy as np

    from ingest import peak_rss_mib, write_dagster_home
    from rag_assets.definitions import build_definitions
    from rag_assets.ingest import discover, ingest
    from rag_assets.lib.parsing import ocr_engine
    from rag_assets.resources.embedders import embedder_from_spec
    from rag_assets.resources.object_store import ObjectStore
    from rag_assets.settings import Settings

    rng = random.Random(7)
    figures: dict = {"pages": args.docs * args.pages}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        corpus = work / "inbox" / "acme"
        corpus.mkdir(parents=True)
        pages = []
        for d in range(args.docs):
            images = [page_image(rng) for _ in range(args.pages)]
            images[0].save(corpus / f"scan-{d:03}.pdf", "PDF", resolution=150, save_all=True, append_images=images[1:])
            pages += images
        log(f"corpus: {args.docs} PDFs, {len(pages)} scanned pages")

        engine = ocr_engine()
        engine(np.asarray(pages[0].convert("RGB")))  # models loaded and warm
        started = time.perf_counter()
        for image in pages:
            engine(np.asarray(image.convert("RGB")))
        figures["floor_s"] = time.perf_counter() - started
        figures["rss_after_floor_mib"] = peak_rss_mib()
        log(f"floor: {len(pages)} pages OCRed in {figures['floor_s']:.1f} s")

        settings = replace(Settings.from_env(), work_dir=str(work / "rag"), index_uri=str(work / "rag" / "index"))
        embedder_from_spec(settings.embedder, settings).embed(["warm up"])  # the model loaded, as the floor's was
        home = write_dagster_home(work / "home")
        refs, unfound = discover([str(work / "inbox")], ObjectStore(), None, settings.tenant_from_key)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            started = time.perf_counter()
            report = ingest(refs, defs=build_definitions(settings), instance=instance, batch_size=settings.batch_size)
            figures["pipeline_s"] = time.perf_counter() - started
        figures["rss_after_pipeline_mib"] = peak_rss_mib()
        if unfound or report.failed or len(report.ingested) != args.docs:
            raise SystemExit(f"the pipeline did not ingest every scan: {report.failed[:3] or unfound}")
        figures["chunks"] = report.chunks
        log(f"pipeline: {len(report.ingested)} PDFs, {report.chunks} chunks in {figures['pipeline_s']:.1f} s")

    n = figures["pages"]
    print(f"{args.docs} scanned PDFs, {n} pages (A4, 150 dpi), {figures['chunks']} chunks")
    print(f"{'':>28} | {'seconds':>7} | {'pages/s':>7} | peak RSS")
    print(f"{'OCR engine alone (floor)':>28} | {figures['floor_s']:>7.1f} | {n / figures['floor_s']:>7.2f} | {figures['rss_after_floor_mib']:,.0f} MiB")
    print(
        f"{'rag_assets pipeline':>28} | {figures['pipeline_s']:>7.1f} | {n / figures['pipeline_s']:>7.2f} | "
        f"{figures['rss_after_pipeline_mib']:,.0f} MiB"
    )
    print(f"pipeline / floor: {figures['pipeline_s'] / figures['floor_s']:.2f}x")
    if args.json:
        print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
