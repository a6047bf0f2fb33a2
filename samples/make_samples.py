"""Writes the small sample corpus that `make demo` ingests (committed; re-run to regenerate).

Two tenants, each with a PDF (made with reportlab), a Markdown or text file, and acme with a
CSV export (a `formatted_text` column) and a Word file; globex with a scanned page (a PDF of
an image, read by OCR)."""

import csv
import datetime
from pathlib import Path

from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

HERE = Path(__file__).parent / "inbox"


def write_pdf(path: Path, title: str, pages: list[str]) -> None:
    c = canvas.Canvas(str(path), pagesize=A4, invariant=1)  # invariant: byte-identical output
    c.setTitle(title)
    for number, body in enumerate(pages, start=1):
        text = c.beginText(60, 780)
        text.setFont("Helvetica-Bold", 14)
        text.textLine(f"{title} - page {number}")
        text.setFont("Helvetica", 11)
        for paragraph in body.split("\n"):
            words, line = paragraph.split(), ""
            for word in words:
                if len(line) + len(word) > 85:
                    text.textLine(line)
                    line = ""
                line += word + " "
            text.textLine(line)
            text.textLine("")
        c.drawText(text)
        c.showPage()
    c.save()


write_pdf(
    HERE / "acme" / "employee-handbook.pdf",
    "Acme Employee Handbook",
    [
        (
            "Welcome to Acme. This handbook explains how we work, how we pay you and how we take time off.\n"
            "Working hours are flexible between 7am and 7pm; core hours are 10am to 3pm."
        ),
        (
            "Vacation policy. Every employee gets 25 days of paid vacation per year, plus public holidays. "
            "Unused vacation days carry over to the next year, up to a maximum of 5 days. "
            "Request vacation at least two weeks ahead in the HR portal."
        ),
        (
            "Expenses. Travel must be booked through the travel desk. Meals on business trips are reimbursed "
            "up to 60 euros per day with receipts. Submit expense reports within 30 days."
        ),
    ],
)
write_pdf(
    HERE / "globex" / "security-policy.pdf",
    "Globex Security Policy",
    [
        (
            "Passwords must be at least 14 characters long and are stored in the company password manager. "
            "Multi-factor authentication is mandatory for every account."
        ),
        (
            "Laptops are encrypted with full-disk encryption. Report a lost or stolen laptop to the security "
            "team within one hour by calling the security hotline."
        ),
    ],
)
(HERE / "acme" / "faq.md").write_text(
    "# Acme FAQ\n\n## Where is the office?\nOur office is at 12 Harbour Street, Rotterdam, on the third floor.\n\n"
    "## How do I get a parking permit?\nParking permits are issued by the facilities team; ask at reception.\n"
)
(HERE / "globex" / "onboarding.txt").write_text(
    "Globex onboarding checklist.\nOn your first day you receive a laptop, a badge and a buddy. "
    "In the first week you complete the security training and meet your team lead.\n"
)
with open(HERE / "acme" / "products.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["id", "name", "formatted_text"])
    writer.writerow(["p1", "Rocket Skates", "<b>Rocket Skates</b>: jet-powered roller skates, top speed 90 km/h."])
    writer.writerow(["p2", "Giant Magnet", "Giant Magnet &amp; stand: attracts anything made of iron from 50 metres."])
    writer.writerow(["p3", "Portable Hole", "Portable Hole: a folding black hole, 1.5 m across, fits in a pocket."])


def write_scan(path: Path, lines: list[str]) -> None:
    """A scanned page: an A4 image at 150 dpi in a PDF, no text layer (rag_assets OCRs it)."""
    from PIL import Image, ImageDraw, ImageFont

    page = Image.new("L", (1240, 1754), 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=48)
    for n, line in enumerate(lines):
        draw.text((90, 150 + n * 90), line, fill=0, font=font)
    page.save(path, "PDF", resolution=150)


def write_photo(path: Path, lines: list[str]) -> None:
    """A phone photo of a notice board: a JPEG with EXIF date and camera (rag_assets writes its
    thumbnail beside it and reads the text on it)."""
    from PIL import Image, ImageDraw, ImageFont

    photo = Image.new("RGB", (1600, 1000), (236, 230, 214))
    draw = ImageDraw.Draw(photo)
    draw.rectangle((60, 60, 1540, 940), outline=(90, 60, 40), width=12)
    font = ImageFont.load_default(size=64)
    for n, line in enumerate(lines):
        draw.text((130, 150 + n * 110), line, fill=(20, 20, 60), font=font)
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Acme", "Acme Phone 7"
    exif.get_ifd(0x8769)[0x9003] = "2025:01:06 08:30:00"
    photo.save(path, "JPEG", quality=88, exif=exif.tobytes())


def write_docx(path: Path, title: str, paragraphs: list[str]) -> None:
    import docx

    document = docx.Document()
    fixed = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)  # the same bytes on every run
    document.core_properties.created = document.core_properties.modified = fixed
    document.add_heading(title, level=1)
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    document.save(path)


write_scan(
    HERE / "globex" / "visitor-notice-scan.pdf",
    [
        "Visitor notice",
        "Visitors sign in at the front desk",
        "and wear a badge at all times.",
        "Escort visitors in the lab.",
    ],
)
write_photo(
    HERE / "acme" / "parking-notice.jpg",
    ["Parking notice", "The garage closes at 22:00.", "Bicycles go in the basement rack."],
)
write_docx(
    HERE / "acme" / "travel-policy.docx",
    "Acme Travel Policy",
    [
        "Book trains for trips under four hours. Flights need the approval of your manager.",
        "Hotels: up to 140 euros a night in Rotterdam and Amsterdam, 120 euros elsewhere.",
    ],
)
