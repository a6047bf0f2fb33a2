"""The formats people drop into S3 besides PDF, text and CSV: real files made here with the
libraries that write them (python-docx, python-pptx, openpyxl, the email package), parsed
by rag_assets.lib.parsing; corrupt, encrypted and oversized ones refused by name; and the
whole set ingested and found by a query."""

from __future__ import annotations

import io
import json
import zipfile
from email.message import EmailMessage

import pytest

from rag_assets.lib.parsing import BadDocument, parse_document
from rag_assets_tests.test_documents_e2e import query, run_ingest


def docx_bytes() -> bytes:
    import docx

    document = docx.Document()
    document.add_heading("Travel policy", level=1)
    document.add_paragraph("Book trains for trips under four hours; flights need a manager's approval.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "City", "Hotel budget"
    table.cell(1, 0).text, table.cell(1, 1).text = "Rotterdam", "140 euros"
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def pptx_bytes() -> bytes:
    import pptx

    presentation = pptx.Presentation()
    for title, body, notes in [
        ("Quarterly results", "Revenue grew by twelve percent.", "Mention the harbour contract."),
        ("Next steps", "Open an office in Antwerp.", ""),
    ]:
        slide = presentation.slides.add_slide(presentation.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
        if notes:
            slide.notes_slide.notes_text_frame.text = notes
    presentation.slides.add_slide(presentation.slide_layouts[6])  # a blank slide: no unit
    buffer = io.BytesIO()
    presentation.save(buffer)
    return buffer.getvalue()


def xlsx_bytes() -> bytes:
    import openpyxl

    workbook = openpyxl.Workbook()
    products = workbook.active
    products.title = "products"
    products.append(["id", "formatted_text", "price"])
    products.append(["p1", "<b>Rocket skates</b>: jet powered", 99])
    products.append(["p2", None, 5])  # no text: skipped
    staff = workbook.create_sheet("staff")
    staff.append(["name", "role"])
    staff.append(["Ada", "harbour master"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


HTML = b"""<html><head><title>Opening hours</title></head><body>
<nav><ul><li><a href="/">Home</a></li><li><a href="/shop">Shop menu link</a></li></ul></nav>
<article><h1>Opening hours</h1>
<p>The harbour office is open from eight in the morning until six in the evening on weekdays.
On Saturdays it closes at noon, and on Sundays and public holidays it stays closed all day.</p>
<p>Ships arriving outside opening hours report to the night desk at the north gate, which keeps
a log of every arrival and hands it to the office the next morning.</p></article>
<footer>Copyright footer text</footer></body></html>"""


def eml_bytes() -> bytes:
    message = EmailMessage()
    message["Subject"] = "Crane maintenance on Friday"
    message["From"] = "ops@acme.example"
    message["To"] = "all@acme.example"
    message["Date"] = "Mon, 02 Dec 2026 09:00:00 +0000"
    message.set_content("Crane 4 is out of service on Friday for maintenance.\n")
    message.add_alternative("<p>Crane 4 is <b>out of service</b> on Friday for maintenance.</p>", subtype="html")
    message.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="schedule.pdf")
    return message.as_bytes()


JSON = json.dumps(
    [{"id": "a", "formatted_text": "Tugboats need two days' notice.", "port": "Rotterdam"}, {"id": "b"}]
).encode()
JSONL = (
    b'{"id": "x", "formatted_text": "Pilots board at the outer buoy."}\n\n{"id": "y", "formatted_text": '
    b'"<i>Anchorage</i> 4 is closed."}\n'
)


@pytest.mark.parametrize(
    "name, data, kind, units",
    [
        (
            "policy.docx",
            docx_bytes,
            "docx",
            [
                (
                    None,
                    None,
                    (
                        "Travel policy\nBook trains for trips under four hours; flights need a manager's "
                        "approval.\nCity "
                        "| Hotel budget\nRotterdam | 140 euros"
                    ),
                    {},
                )
            ],
        ),
        (
            "results.pptx",
            pptx_bytes,
            "pptx",
            [
                (1, None, "Quarterly results\nRevenue grew by twelve percent.\nMention the harbour contract.", {}),
                (2, None, "Next steps\nOpen an office in Antwerp.", {}),
            ],
        ),
        (
            "catalogue.xlsx",
            xlsx_bytes,
            "xlsx",
            [
                (None, 2, "Rocket skates : jet powered", {"sheet": "products", "id": "p1", "price": "99"}),
                (None, 2, "name: Ada; role: harbour master", {"sheet": "staff"}),
            ],
        ),
        (
            "records.json",
            lambda: JSON,
            "json",
            [(None, 1, "Tugboats need two days' notice.", {"id": "a", "port": "Rotterdam"})],
        ),
        (
            "records.jsonl",
            lambda: JSONL,
            "jsonl",
            [
                (None, 1, "Pilots board at the outer buoy.", {"id": "x"}),
                (None, 2, "Anchorage 4 is closed.", {"id": "y"}),
            ],
        ),
    ],
)
def test_each_format_gives_its_units(name, data, kind, units):
    parsed = parse_document(name, data())
    assert parsed.kind == kind
    assert [(u.page, u.row, u.text, u.metadata) for u in parsed.units] == units


def test_a_pptx_counts_its_slides():
    assert parse_document("results.pptx", pptx_bytes()).pages == 3


def test_html_keeps_the_main_text_not_the_menus():
    (unit,) = parse_document("hours.html", HTML).units
    assert "open from eight in the morning" in unit.text and "night desk at the north gate" in unit.text
    assert unit.text.startswith("Opening hours")
    assert "Shop menu link" not in unit.text and "Copyright footer" not in unit.text


def test_a_mail_gives_its_headers_and_plain_body_and_names_its_attachments():
    (unit,) = parse_document("notice.eml", eml_bytes()).units
    assert unit.text.startswith(
        "Subject: Crane maintenance on Friday\nFrom: ops@acme.example\nTo: all@acme.example\nDate: "
    )
    assert unit.text.endswith("Crane 4 is out of service on Friday for maintenance.")
    assert unit.metadata["attachments_not_indexed"] == "schedule.pdf" and unit.metadata["from"] == "ops@acme.example"


def zip_bomb(unpacked_mb: int) -> bytes:
    """A .docx-shaped zip whose one member unpacks to `unpacked_mb` MiB of zeros."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", b"\0" * (unpacked_mb << 20))
    return buffer.getvalue()


@pytest.mark.parametrize(
    "name, data, reason",
    [
        ("policy.docx", lambda: docx_bytes()[:2000], "corrupt: not a readable Office file"),
        (
            "secret.docx",
            lambda: b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600,
            "password-protected (encrypted) or a legacy binary Office file",
        ),
        ("bomb.docx", lambda: zip_bomb(8), "unpacks to 8 MiB, more than the limit of 1 MiB (RAG_MAX_UNPACKED_MB)"),
        ("fake.pptx", lambda: zip_bomb(0), "corrupt PowerPoint file"),
        ("fake.xlsx", lambda: zip_bomb(0), "corrupt Excel file"),
        ("empty.docx", lambda: docx_from_text(""), "Word document has no text"),
        ("picture.html", lambda: b"<html><body><img src='harbour.png'></body></html>", "HTML page has no main text"),
        ("note.eml", lambda: b"just some words\n", "not a mail: no Subject, From, To or Date header"),
        ("broken.json", lambda: b'{"a": ', "malformed JSON"),
        ("broken.jsonl", lambda: b'{"formatted_text": "ok"}\n{nope}\n', "malformed JSON on line 2"),
        ("numbers.json", lambda: b"[1, 2]", "record 1 is a int, not an object"),
        ("empty.json", lambda: b'[{"id": 1}]', "no record with text in 'formatted_text'"),
    ],
)
def test_bad_files_fail_by_name_and_reason(name, data, reason):
    with pytest.raises(BadDocument) as caught:
        parse_document(name, data(), max_unpacked_bytes=1 << 20)
    assert caught.value.name == name and reason in caught.value.reason


def docx_from_text(text: str) -> bytes:
    import docx

    document = docx.Document()
    if text:
        document.add_paragraph(text)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def test_every_format_is_ingested_and_found(rag_env, instance, tmp_path):
    root = tmp_path / "inbox" / "acme"
    root.mkdir(parents=True)
    files = {
        "policy.docx": docx_bytes(),
        "results.pptx": pptx_bytes(),
        "catalogue.xlsx": xlsx_bytes(),
        "hours.html": HTML,
        "notice.eml": eml_bytes(),
        "records.json": JSON,
        "records.jsonl": JSONL,
        "bomb.docx": zip_bomb(300),  # beyond the default 256 MiB: refused, the others indexed
    }
    for name, data in files.items():
        (root / name).write_bytes(data)

    report = run_ingest(rag_env, instance, tmp_path / "inbox")

    assert sorted(report.ingested) == sorted(f"acme/{n}" for n in files if n != "bomb.docx")
    assert report.failed == [
        {"key": "acme/bomb.docx", "reason": "unpacks to 300 MiB, more than the limit of 256 MiB (RAG_MAX_UNPACKED_MB)"}
    ]
    for question, key in [
        ("travel policy: trains or flights for a trip", "acme/policy.docx"),
        ("how much did revenue grow", "acme/results.pptx"),
        ("when is the harbour office open on saturday", "acme/hours.html"),
        ("which crane is out of service", "acme/notice.eml"),
        ("where do pilots board", "acme/records.jsonl"),
    ]:
        assert query(rag_env, question, "acme", k=1)[0].key == key, question


def test_a_document_an_older_parser_refused_is_tried_again(instance):
    """The sensors skip a document found unreadable at its version, unless the file types
    read have changed since: a .docx refused before this parser read Word is asked for again.
    An image is compared with its own pipeline (its analyzer's is part of it)."""
    import dagster as dg

    from rag_assets.defs.documents.assets import unreadable_observation
    from rag_assets.defs.sync.sensors import unreadable_documents
    from rag_assets.lib.parsing import READERS
    from rag_assets.resources.config import RagConfig

    old, now, photo = (f"acme|acme/{name}|s3:docs" for name in ("old.docx", "now.docx", "photo.png"))
    config = RagConfig()
    instance.add_dynamic_partitions("documents", [old, now, photo])
    for partition in (old, now, photo):
        pipeline = config.image_pipeline if partition == photo else "pipeline-1"
        observation = unreadable_observation(partition, "unsupported file type '.docx'", "etag-1", pipeline)
        if partition == old:  # as the older parser recorded it: no readers
            metadata = {k: v for k, v in observation.metadata.items() if k != "readers"}
            observation = dg.AssetObservation(asset_key=observation.asset_key, partition=partition, metadata=metadata)
        instance.report_runless_asset_event(observation)
    assert {".docx", ".pdf", ".png", "+ocr"} <= set(READERS.split())
    assert unreadable_documents(instance, [old, now], "pipeline-1") == {now: "etag-1"}
    assert unreadable_documents(instance, [old, now], "pipeline-2") == {}
    by_key = RagConfig(csv_text_column="text").pipeline_for  # another pipeline for everything
    assert unreadable_documents(instance, [photo], config.pipeline_for) == {photo: "etag-1"}
    assert unreadable_documents(instance, [photo], by_key) == {}
