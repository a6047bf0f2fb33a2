"""The image family: thumbnails under the project's prefix of the source, analyses (offline OCR + EXIF, or a vision
model through the openai client against the local fake), versioned and cached by content,
their text in the index; sensors that never take a thumbnail for a document; limits."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from rag_assets.defs.documents.images import read_image_document
from rag_assets.lib.images import (
    DEFAULT_MAX_IMAGE_PIXELS,
    analyzer_identity,
    image_facts,
    is_thumbnail,
    next_version,
    open_image,
    parse_vision_answer,
    thumbnail_bytes,
    thumbnail_key,
)
from rag_assets.lib.keys import DocRef
from rag_assets.lib.parsing import BadDocument, parse_document
from rag_assets.lib.reconcile import wanted_documents
from rag_assets.parse_sandbox import ParseSandbox
from rag_assets.resources.config import RagConfig
from rag_assets.resources.image_analysis import (
    OfflineImageAnalyzer,
    OpenAIImageAnalyzer,
    PostgresAnalysisStore,
    analysis_store_from_uri,
)
from rag_assets.resources.object_store import ObjectStore, StoredObject
from rag_assets.settings import Settings
from rag_assets_tests.fakes.openai_server import FakeOpenAIServer
from rag_assets_tests.store_fixtures import pg_server_fixture  # noqa: F401 - a fixture
from rag_assets_tests.test_documents_e2e import index_rows, query, run_ingest
from rag_assets_tests.test_sensors import ON, Harness, bucket, local_source  # noqa: F401 - bucket is a fixture

FERRY = ["Harbour ferry timetable", "Boats leave every forty minutes", "Last ferry at midnight"]


def text_image(lines: list[str], size=(1600, 900), fmt="PNG", exif: bytes | None = None) -> bytes:
    """An image with these lines rendered on it (Pillow's own font: no system fonts)."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=60)
    for n, line in enumerate(lines):
        draw.text((80, 100 + n * 120), line, fill="black", font=font)
    out = io.BytesIO()
    image.save(out, fmt, **({"exif": exif} if exif else {}))
    return out.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims to be width x height: what a decompression bomb looks like to a reader."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


# --- pure parts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tenant, key, thumbnail",
    [
        ("acme", "acme/cat.jpg", ".rag-thumbnails/acme/acme/cat.jpg"),
        ("acme", "acme/trips/2024/boat.png", ".rag-thumbnails/acme/acme/trips/2024/boat.png"),
        ("acme", "acme/scan.tiff", ".rag-thumbnails/acme/acme/scan.tiff.jpg"),  # browsers do not show TIFF
        ("acme", "photos/beach.heic", ".rag-thumbnails/acme/photos/beach.heic.jpg"),  # a fixed tenant rule
        ("acme", "acme/thumbnails/mine.png", ".rag-thumbnails/acme/acme/thumbnails/mine.png"),  # a user's own folder
        ("acme", "acme/../globex/logo.png", ".rag-thumbnails/acme/acme/%2E%2E/globex/logo.png"),  # S3 keys are keys
        ("acme", "/acme//./x.png", ".rag-thumbnails/acme/%/acme/%/%2E/x.png"),
        ("acme", "acme/\x1b]0;x\x07.png", ".rag-thumbnails/acme/acme/%1B]0;x%07.png"),
        ("acme", "acme/" + "l" * 300 + ".png", ".rag-thumbnails/acme/%hash/" + "3a1f7d0c"),  # too long: by its hash
    ],
)
def test_thumbnail_keys(tenant, key, thumbnail):
    made = thumbnail_key(tenant, key)
    assert made == thumbnail or (
        thumbnail.endswith("3a1f7d0c") and made.startswith(thumbnail[:-8]) and made.endswith(".png")
    )
    assert is_thumbnail(made) and not is_thumbnail(key)
    assert "/../" not in made and "//" not in made and "/./" not in made and len(made.encode()) < 1024


@pytest.mark.parametrize(
    "key, thumbnail",
    [
        (".rag-thumbnails/acme/acme/cat.jpg", True),
        (".rag-thumbnails/acme/acme/report.pdf", True),  # nothing under the prefix is a document
        ("acme/thumbnails/cat.jpg", False),  # the tenant's own folder: its images are documents
        ("thumbnails/cat.jpg", False),
        (".rag-thumbnails", False),
    ],
)
def test_what_is_a_thumbnail(key, thumbnail):
    assert is_thumbnail(key) is thumbnail


def test_the_planners_never_want_a_thumbnail():
    keys = ("acme/cat.jpg", ".rag-thumbnails/acme/acme/cat.jpg", "acme/a.pdf", "acme/thumbnails/mine.png")
    objects = {k: StoredObject(k, "e", 1, 0.0, "v") for k in keys}
    assert sorted(wanted_documents(objects)) == ["acme/a.pdf", "acme/cat.jpg", "acme/thumbnails/mine.png"]


@pytest.mark.parametrize(
    "latest, sha, analyzer, version",
    [
        (None, "s1", "a1", 1),
        ((1, "s1", "a1"), "s1", "a1", None),  # the same bytes, the same analyzer: nothing new
        ((1, "s1", "a1"), "s2", "a1", 2),  # new bytes
        ((3, "s1", "a1"), "s1", "a2", 4),  # another analyzer, model or prompt
    ],
)
def test_analysis_versions(latest, sha, analyzer, version):
    assert next_version(latest, sha, analyzer) == version


def test_an_analyzer_change_changes_only_the_image_pipeline():
    offline, vision = RagConfig(), RagConfig(image_analyzer="openai:gpt-4o-mini")
    assert offline.pipeline_for("acme/a.pdf") == vision.pipeline_for("acme/a.pdf") == offline.pipeline
    assert offline.pipeline_for("acme/a.png") != vision.pipeline_for("acme/a.png")
    assert analyzer_identity("openai:gpt-4o-mini").fingerprint != analyzer_identity("openai:gpt-4o").fingerprint
    with pytest.raises(ValueError, match="RAG_IMAGE_ANALYZER"):
        analyzer_identity("claude")


@pytest.mark.parametrize(
    "answer, problem",
    [
        ("", "empty answer"),
        ("The image shows a boat.", "not JSON"),
        ('["photo"]', "a JSON list, not an object"),
        ('{"category": "photo"}', "'summary' must be a non-empty string"),
        (
            '{"category": "", "summary": "A boat.", "tags": "boat"}',
            "'category' must be a non-empty string; 'tags' must be a list of strings",
        ),
    ],
)
def test_malformed_vision_answers_say_what_is_wrong(answer, problem):
    with pytest.raises(ValueError) as caught:
        parse_vision_answer(answer)
    assert str(caught.value).startswith(problem)


def test_a_vision_answer_becomes_an_analysis():
    fenced = (
        '```json\n{"category": "receipt", "summary": "A taxi receipt.", "tags": ["taxi", " taxi", "receipt"], '
        '"text": "Total 12.50"}\n```'
    )
    analysis = parse_vision_answer(fenced)
    assert (analysis.category, analysis.summary, analysis.tags, analysis.text) == (
        "receipt",
        "A taxi receipt.",
        ("taxi", "receipt"),
        "Total 12.50",
    )


def test_exif_orientation_date_and_camera():
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown a quarter turn clockwise
    exif[0x010F], exif[0x0110] = "Acme", "Acme Cam 3"
    exif.get_ifd(0x8769)[0x9003] = "2024:05:01 10:00:00"
    image = open_image("acme/boat.jpg", text_image(["boat"], size=(1200, 600), fmt="JPEG", exif=exif.tobytes()))
    facts = image_facts(image)
    assert (facts.width, facts.height, facts.taken, facts.camera) == (600, 1200, "2024:05:01 10:00:00", "Acme Cam 3")
    thumbnail = Image.open(io.BytesIO(thumbnail_bytes(image, "acme/thumbnails/boat.jpg")))
    assert (thumbnail.format, thumbnail.size) == ("JPEG", (400, 800))  # upright, aspect kept


@pytest.mark.parametrize(
    "fmt, key, thumbnail_format",
    [("PNG", "a/thumbnails/x.png", "PNG"), ("WEBP", "a/thumbnails/x.webp", "WEBP"),
     ("GIF", "a/thumbnails/x.gif", "GIF"), ("TIFF", "a/thumbnails/x.tiff.jpg", "JPEG"),
     ("HEIF", "a/thumbnails/x.heic.jpg", "JPEG")],
)  # fmt: skip
def test_each_image_format_gets_a_thumbnail(fmt, key, thumbnail_format):
    image = Image.new("RGBA" if fmt == "PNG" else "RGB", (2000, 1000), (10, 120, 200, 128))
    out = io.BytesIO()
    if fmt == "HEIF":
        from pillow_heif import register_heif_opener

        register_heif_opener()
    image.save(out, fmt)
    thumbnail = Image.open(io.BytesIO(thumbnail_bytes(open_image(key, out.getvalue()), key)))
    assert thumbnail.format == thumbnail_format and thumbnail.size == (800, 400)
    if fmt == "PNG":
        assert thumbnail.mode == "RGBA"  # transparency kept


@pytest.mark.parametrize(
    "data, limit, reason",
    [
        (png_header(20_000, 20_000), DEFAULT_MAX_IMAGE_PIXELS, ("image of more than 178,956,970 pixels, more than the "
            "limit of 64,000,000 pixels (RAG_MAX_IMAGE_PIXELS)")),
        (png_header(9_000, 9_000), DEFAULT_MAX_IMAGE_PIXELS, ("image of 9,000 x 9,000 pixels, more than the limit of "
            "64,000,000 pixels (RAG_MAX_IMAGE_PIXELS)")),
        (png_header(2_000, 2_000), 1_000_000, ("image of 2,000 x 2,000 pixels, more than the limit of 1,000,000 pixels "
            "(RAG_MAX_IMAGE_PIXELS)")),
        (b"\x89PNG\r\n\x1a\n and then nonsense", DEFAULT_MAX_IMAGE_PIXELS, ("not a readable image: the format is "
            "unknown or the header damaged")),
    ],
)  # fmt: skip
def test_oversized_and_broken_images_are_refused_before_decoding(data, limit, reason):
    with pytest.raises(BadDocument) as caught:
        open_image("acme/big.png", data, limit)
    assert caught.value.reason == reason


def test_a_pdf_with_too_many_pages_is_refused_by_name():
    from pypdf import PdfWriter

    writer, out = PdfWriter(), io.BytesIO()
    for _ in range(30):
        writer.add_blank_page(width=200, height=200)
    writer.write(out)
    with pytest.raises(BadDocument) as caught:
        parse_document("acme/huge.pdf", out.getvalue(), max_pdf_pages=20)
    assert caught.value.reason == "30 pages, more than the limit of 20 (RAG_MAX_PDF_PAGES)"


def test_an_image_without_an_analyzer_is_refused():
    with pytest.raises(BadDocument, match="no image analyzer"):
        parse_document("acme/a.png", text_image(["x"]))


# --- the reader: thumbnails, versions, the cache ------------------------------------------


class CountingAnalyzer(OfflineImageAnalyzer):
    """The offline analyzer, counting its analyses (a unit test's window into the cache)."""

    def analyze(self, name, reading):
        CountingAnalyzer.calls.append(name)
        return super().analyze(name, reading)


@pytest.fixture(params=["sqlite", "postgresql"])
def analyses(request, tmp_path):
    """Each analysis store: one machine's SQLite file, and PostgreSQL beside the vectors."""
    if request.param == "sqlite":
        return analysis_store_from_uri(str(tmp_path / "analyses.sqlite"))
    store = analysis_store_from_uri(request.getfixturevalue("pg_server").dsn)
    assert isinstance(store, PostgresAnalysisStore)
    with store._connect() as conn:
        conn.execute("TRUNCATE rag_image_analyses, rag_image_analysis_cache")
    return store


def read(root: Path, key: str, data: bytes, analyses, analyzer=None):
    (root / key).parent.mkdir(parents=True, exist_ok=True)
    (root / key).write_bytes(data)
    ref = DocRef(key.split("/")[0], str(root), key)
    with ParseSandbox(60, 2048) as sandbox:  # in the bounded reader process, as raw_documents reads it
        parsed = read_image_document(
            ref,
            data,
            sandbox=sandbox,
            object_store=ObjectStore(),
            analyzer=analyzer or CountingAnalyzer(),
            analyses=analyses,
            max_pixels=DEFAULT_MAX_IMAGE_PIXELS,
        )
    return parsed.units[0]


def test_an_image_is_analyzed_once_per_content_and_analyzer(tmp_path, analyses):
    CountingAnalyzer.calls = []
    ferry = text_image(FERRY)
    first = read(tmp_path, "acme/ferry.png", ferry, analyses)
    assert "Last ferry at midnight" in first.text and first.text.startswith("PNG image, 1600 x 900 pixels.")
    assert (
        first.metadata["thumbnail_key"] == ".rag-thumbnails/acme/acme/ferry.png"
        and first.metadata["analysis_version"] == 1
    )
    assert Image.open(tmp_path / ".rag-thumbnails/acme/acme/ferry.png").size == (800, 450)

    assert read(tmp_path, "acme/ferry.png", ferry, analyses) == first  # read again: the same version
    copy = read(tmp_path, "globex/ferry-copy.png", ferry, analyses)  # the same bytes elsewhere: the cache
    assert copy.metadata["analysis_version"] == 1 and copy.text == first.text
    assert CountingAnalyzer.calls == ["acme/ferry.png"]

    changed = read(tmp_path, "acme/ferry.png", text_image(["Ferry cancelled today"]), analyses)
    assert changed.metadata["analysis_version"] == 2 and "Ferry cancelled today" in changed.text
    assert CountingAnalyzer.calls == ["acme/ferry.png", "acme/ferry.png"]
    assert analyses.latest("acme:" + str(tmp_path / "acme/ferry.png")).version == 2
    assert analyses.delete_items(["acme:" + str(tmp_path / "acme/ferry.png")]) == 2


def test_analyses_are_searchable_rows_in_postgresql(tmp_path, pg_server):
    store = analysis_store_from_uri(pg_server.dsn)
    with store._connect() as conn:
        conn.execute("TRUNCATE rag_image_analyses, rag_image_analysis_cache")
    read(tmp_path, "acme/ferry.png", text_image(FERRY), store)
    with store._connect() as conn:
        rows = conn.execute(
            "SELECT user_id, item_key, version, category, provider, model, raw_response->>'summary', created_at IS "
            "NOT NULL "
            "FROM rag_image_analyses WHERE search_vector @@ plainto_tsquery('english', 'ferries leaving')"
        ).fetchall()
    assert rows == [
        (
            "acme",
            "acme/ferry.png",
            1,
            "text image",
            "offline",
            "rapidocr-onnxruntime",
            "PNG image, 1600 x 900 pixels.",
            True,
        )
    ]


# --- a vision model through the openai client ----------------------------------------------


@pytest.fixture
def vision():
    with FakeOpenAIServer() as server:
        yield server


def vision_analyzer(server) -> OpenAIImageAnalyzer:
    return OpenAIImageAnalyzer(model="gpt-4o-mini", api_key="test", base_url=server.base_url, max_retries=0)


def test_a_vision_model_analyzes_an_image_sent_inline(tmp_path, vision):
    answer = {
        "category": "timetable",
        "summary": "A ferry timetable on a white sign.",
        "tags": ["ferry", "timetable"],
        "text": "Last ferry at midnight",
    }
    vision.vision_replies.append(json.dumps(answer))
    unit = read(
        tmp_path,
        "acme/ferry.png",
        text_image(FERRY),
        analysis_store_from_uri(str(tmp_path / "a.sqlite")),
        vision_analyzer(vision),
    )
    assert (
        unit.text
        == "A ferry timetable on a white sign.\nCategory: timetable\nTags: ferry, timetable\n\nLast ferry at midnight"
    )
    assert unit.metadata["analyzer"] == "openai:gpt-4o-mini" and unit.metadata["image_category"] == "timetable"
    (request,) = vision.requests_to("/v1/chat/completions")
    image_url = request["json"]["messages"][1]["content"][1]["image_url"]["url"]
    assert image_url.startswith("data:image/jpeg;base64,") and request["json"]["response_format"] == {
        "type": "json_object"
    }


def test_a_malformed_answer_is_asked_again_then_fails_by_name(tmp_path, vision):
    store = analysis_store_from_uri(str(tmp_path / "a.sqlite"))
    vision.vision_replies += ["Sure! It is a boat.", '{"category": "boat"}']  # then the fake's valid default
    unit = read(tmp_path, "acme/boat.png", text_image(["boat"]), store, vision_analyzer(vision))
    assert (
        unit.text.startswith("A picture of 1600 x 900 pixels.") and len(vision.requests_to("/v1/chat/completions")) == 3
    )

    vision.vision_replies += ["no", "still no", "[]"]
    with pytest.raises(BadDocument) as caught:
        read(tmp_path, "acme/other.png", text_image(["other"]), store, vision_analyzer(vision))
    assert caught.value.name == "acme/other.png" and caught.value.transient
    assert (
        caught.value.reason == "openai:gpt-4o-mini gave a malformed analysis 3 times (last: a JSON list, not an object)"
    )
    assert store.latest("acme:" + str(tmp_path / "acme/other.png")) is None  # nothing half-kept


def test_an_api_error_fails_the_image_by_name_for_a_later_run(tmp_path, vision):
    vision.fail_next(500)  # the client's own retries are off here (max_retries=0)
    with pytest.raises(BadDocument) as caught:
        read(
            tmp_path,
            "acme/x.png",
            text_image(["x"]),
            analysis_store_from_uri(str(tmp_path / "a.sqlite")),
            vision_analyzer(vision),
        )
    assert caught.value.transient and caught.value.name == "acme/x.png"
    assert caught.value.reason.startswith("image analysis by openai:gpt-4o-mini failed: InternalServerError: ")


# --- end to end: the index, the analyzer switch, the sensors ---------------------------------


def test_images_are_indexed_and_found_and_a_new_analyzer_re_analyzes(rag_env, instance, tmp_path, vision, monkeypatch):
    inbox = tmp_path / "inbox"
    (inbox / "acme").mkdir(parents=True)
    (inbox / "acme" / "ferry.png").write_bytes(text_image(FERRY))
    (inbox / "acme" / "notes.txt").write_text("The canteen serves soup on Fridays.")
    (inbox / "acme" / "huge.png").write_bytes(png_header(9_000, 9_000))

    report = run_ingest(rag_env, instance, inbox)
    assert sorted(report.ingested) == ["acme/ferry.png", "acme/notes.txt"]
    assert report.failed == [
        {
            "key": "acme/huge.png",
            "reason": "image of 9,000 x 9,000 pixels, more than the limit of 64,000,000 pixels (RAG_MAX_IMAGE_PIXELS)",
        }
    ]
    (hit,) = query(rag_env, "when does the last ferry leave", "acme", k=1)
    assert hit.key == "acme/ferry.png" and hit.metadata["thumbnail_key"] == ".rag-thumbnails/acme/acme/ferry.png"
    assert hit.metadata["analysis_version"] == 1 and (inbox / ".rag-thumbnails/acme/acme/ferry.png").exists()
    assert run_ingest(rag_env, instance, inbox).ingested == []  # a thumbnail is not a document; nothing changed

    monkeypatch.setenv("RAG_IMAGE_ANALYZER", "openai:gpt-4o-mini")
    monkeypatch.setenv("OPENAI_BASE_URL", vision.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    vision.vision_replies.append(
        json.dumps({"category": "sign", "summary": "A blue ferry sign by the quay.", "tags": ["ferry"], "text": ""})
    )
    settings = Settings.from_env()
    report = run_ingest(settings, instance, inbox)
    assert report.ingested == ["acme/ferry.png"]  # only the image: the text file's pipeline is unchanged
    (row,) = [r for r in index_rows(settings) if r["document_key"] == "acme/ferry.png"]
    assert json.loads(row["metadata"])["analysis_version"] == 2 and row["text"].startswith("A blue ferry sign")


def test_the_event_sensor_ignores_thumbnails_and_a_deleted_image_loses_its_thumbnail(instance, bucket):  # noqa: F811 - the fixture
    from rag_assets.defs.sync.sensors import build_s3_event_sensor

    h = Harness(instance, build_s3_event_sensor(ON))
    bucket.put("acme/ferry.png", text_image(FERRY))
    first = h.tick()
    assert len(first.run_requests) == 1 and h.indexed_keys() == {"acme/ferry.png"}
    thumbnail = bucket.s3.get_object(Bucket=bucket.name, Key=".rag-thumbnails/acme/acme/ferry.png")["Body"].read()
    assert Image.open(io.BytesIO(thumbnail)).size == (800, 450)
    assert h.tick().run_requests == []  # the thumbnail's own event asks for nothing

    analyses = h.resources["analysis_store"]
    item = f"acme:s3://{bucket.name}/acme/ferry.png"
    assert analyses.latest(item).version == 1
    bucket.s3.delete_object(Bucket=bucket.name, Key="acme/ferry.png")
    assert [r.job_name for r in h.tick().run_requests] == ["purge_documents"]
    listed = bucket.s3.list_objects_v2(Bucket=bucket.name).get("Contents", [])
    assert [o["Key"] for o in listed] == [] and h.indexed_keys() == set() and analyses.latest(item) is None


def test_the_listing_sensor_ignores_thumbnails_in_a_folder(instance, tmp_path, monkeypatch, rag_env):
    from rag_assets.defs.sync.sensors import build_listing_sensor

    inbox = local_source(tmp_path, monkeypatch, {"acme/ferry.png": text_image(FERRY)})
    h = Harness(instance, build_listing_sensor(ON))
    assert len(h.tick().run_requests) == 1 and (inbox / ".rag-thumbnails/acme/acme/ferry.png").exists()
    assert h.tick().run_requests == []
    (inbox / "acme/ferry.png").unlink()
    assert [r.job_name for r in h.tick().run_requests] == ["purge_documents"]
    assert not (inbox / ".rag-thumbnails/acme/acme/ferry.png").exists() and h.indexed_keys() == set()
