"""Images and scanned PDFs: images/s and OCR pages/s through the whole pipeline beside the
OCR engine's own speed on the same images (the floor), and peak RSS.

    python benchmarks/scans.py [--docs 10] [--pages 2] [--images 20] [--json]

The corpora, made with Pillow (not timed): `--docs` PDFs of `--pages` scanned pages each (A4
images at 150 dpi, ~12 lines of generated prose, no text layer), and `--images` photos of a
notice (1600 x 1200 JPEG, ~6 lines of prose, EXIF date and camera).
1. The floors: RapidOCR (the engine rag_assets uses, its models loaded beforehand) on each
   page image and each photo, already decoded in memory.
2. The pipeline: `rag_assets.ingest.ingest` of each corpus through a real SQLite Dagster
   instance into an empty LanceDB index. Scans: pypdf finds no text layer, pdfium renders
   each page, RapidOCR reads it. Images (the offline analyzer): decode, thumbnail written
   beside the photo, OCR, the analysis kept in its SQLite store. Then chunks, embeddings
   (all-MiniLM-L6-v2, loaded beforehand) and the index write.
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

    from ingest import sentence
    from PIL import Image, ImageDraw, ImageFont

    page = Image.new("L", (1240, 1754), 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=28)
    lines = textwrap.wrap(" ".join(sentence(rng) for _ in range(8)), 70)[:14]
    for n, line in enumerate(lines):
        draw.text((90, 120 + n * 48), line, fill=0, font=font)
    return page


def notice_photo(rng: random.Random, path: Path):
    """A photo of a notice: 1600 x 1200, ~6 lines of prose in 40 px type, EXIF date and camera.
    Returns the image as decoded (what the floor reads)."""
    import textwrap

    from ingest import sentence
    from PIL import Image, ImageDraw, ImageFont

    photo = Image.new("RGB", (1600, 1200), (236, 230, 214))
    draw = ImageDraw.Draw(photo)
    font = ImageFont.load_default(size=40)
    for n, line in enumerate(textwrap.wrap(" ".join(sentence(rng) for _ in range(4)), 60)[:7]):
        draw.text((100, 120 + n * 70), line, fill=(20, 20, 60), font=font)
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Acme", "Acme Phone 7"
    photo.save(path, "JPEG", quality=88, exif=exif.tobytes())
    return Image.open(path).convert("RGB")


def timed_ingest(inbox: Path, settings, home: Path, expected: int) -> tuple[float, object]:
    import dagster as dg

    from rag_assets.definitions import build_definitions
    from rag_assets.ingest import discover, ingest
    from rag_assets.resources.object_store import ObjectStore

    refs, unfound = discover([str(inbox)], ObjectStore(), None, settings.tenant_from_key)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        started = time.perf_counter()
        report = ingest(refs, defs=build_definitions(settings), instance=instance, batch_size=settings.batch_size)
        seconds = time.perf_counter() - started
    if unfound or report.failed or len(report.ingested) != expected:
        raise SystemExit(f"the pipeline did not ingest every file of {inbox}: {report.failed[:3] or unfound}")
    return seconds, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=10)
    parser.add_argument("--pages", type=int, default=2)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import numpy as np
    from ingest import peak_rss_mib, write_dagster_home

    from rag_assets.lib.parsing import ocr_engine
    from rag_assets.resources.embedders import embedder_from_spec
    from rag_assets.settings import Settings

    rng = random.Random(7)
    figures: dict = {"pages": args.docs * args.pages, "images": args.images}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        scans, photos = work / "scans" / "acme", work / "photos" / "acme"
        scans.mkdir(parents=True)
        photos.mkdir(parents=True)
        pages = []
        for d in range(args.docs):
            images = [page_image(rng) for _ in range(args.pages)]
            images[0].save(scans / f"scan-{d:03}.pdf", "PDF", resolution=150, save_all=True, append_images=images[1:])
            pages += images
        decoded = [notice_photo(rng, photos / f"notice-{i:03}.jpg") for i in range(args.images)]
        log(f"corpus: {args.docs} PDFs, {len(pages)} scanned pages; {len(decoded)} photos")

        engine = ocr_engine()
        engine(np.asarray(pages[0].convert("RGB")))  # models loaded and warm
        for name, items in (("pages", pages), ("images", decoded)):
            started = time.perf_counter()
            for image in items:
                engine(np.asarray(image.convert("RGB")))
            figures[f"floor_{name}_s"] = time.perf_counter() - started
            log(f"floor: {len(items)} {name} OCRed in {figures[f'floor_{name}_s']:.1f} s")
        figures["rss_after_floor_mib"] = peak_rss_mib()

        settings = replace(Settings.from_env(), work_dir=str(work / "rag"), index_uri=str(work / "rag" / "index"))
        embedder_from_spec(settings.embedder, settings).embed(["warm up"])  # the model loaded, as the floor's was
        home = write_dagster_home(work / "home")
        figures["pipeline_pages_s"], report = timed_ingest(work / "scans", settings, home, args.docs)
        figures["rss_after_scans_mib"] = peak_rss_mib()
        log(f"pipeline: {len(report.ingested)} PDFs, {report.chunks} chunks in {figures['pipeline_pages_s']:.1f} s")
        figures["pipeline_images_s"], report = timed_ingest(work / "photos", settings, home, args.images)
        figures["rss_after_images_mib"] = peak_rss_mib()
        thumbnails = len(list((work / "photos" / ".rag-thumbnails" / "acme" / "acme").glob("*.jpg")))
        if thumbnails != args.images:
            raise SystemExit(f"{thumbnails} thumbnails written for {args.images} photos")
        log(f"pipeline: {len(report.ingested)} photos, {thumbnails} thumbnails in {figures['pipeline_images_s']:.1f} s")

    print(f"{args.docs} scanned PDFs, {figures['pages']} pages (A4, 150 dpi); {args.images} photos (1600 x 1200 JPEG)")
    print(f"{'':>30} | {'seconds':>7} | {'per s':>6} | peak RSS after")
    for name, rss_key in (("pages", "rss_after_scans_mib"), ("images", "rss_after_images_mib")):
        n, floor, pipeline, rss = (
            figures[name],
            figures[f"floor_{name}_s"],
            figures[f"pipeline_{name}_s"],
            figures[rss_key],
        )
        print(
            f"{f'OCR engine alone, {name}':>30} | {floor:>7.1f} | {n / floor:>6.2f} | "
            f"{figures['rss_after_floor_mib']:,.0f} MiB"
        )
        print(f"{f'rag_assets pipeline, {name}':>30} | {pipeline:>7.1f} | {n / pipeline:>6.2f} | {rss:,.0f} MiB")
        print(f"{'':>30}   pipeline / floor: {pipeline / floor:.2f}x")
    if args.json:
        print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
