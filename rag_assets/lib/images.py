"""Images: what a file says of itself, its thumbnail, and an analysis as text to index
(docs/architecture.md, Images). Pure functions over bytes and Pillow images."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from rag_assets.lib.parsing import IMAGE_TYPES, BadDocument, ocr_image

# Where thumbnails go, below the source's root (a bucket or a folder): the project's own
# prefix, which no tenant's folder can be (a tenant starts with a letter or digit), which a
# folder listing skips (a dot folder), and where nothing is ever taken for a document.
THUMBNAILS_PREFIX = ".rag-thumbnails"
THUMBNAIL_MAX_SIDE = 800
ANALYSIS_MAX_SIDE = 2000  # what OCR reads and a vision model is sent: longest side at most this
DEFAULT_MAX_IMAGE_PIXELS = 64_000_000  # RAG_MAX_IMAGE_PIXELS: a 48-megapixel phone photo fits
# Formats browsers show: a thumbnail keeps them; others (TIFF, HEIC) get a JPEG thumbnail.
_WEB_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".gif": "GIF"}

# What the offline analyzer is: bump its version when what it writes changes (re-analyzes all).
OFFLINE_ANALYZER = "offline"
OFFLINE_METHOD = "rapidocr text + exif facts, v1"
VISION_PROMPT = """You describe one image for a search index. Answer with one JSON object and nothing else:
{"category": "<one or two words: photo, screenshot, document, receipt, diagram, chart, artwork, ...>",
 "summary": "<two or three sentences: what the image shows, for someone searching for it>",
 "tags": ["<up to 10 short keywords>"],
 "text": "<every piece of legible text in the image, verbatim, or an empty string>"}"""


def is_image(key: str) -> bool:
    return PurePosixPath(key).suffix.lower() in IMAGE_TYPES


def is_thumbnail(key: str) -> bool:
    """A key under the project's own thumbnails prefix (`.rag-thumbnails/...`): written by the
    image family, never a document (the sensors and reconciliation skip everything there)."""
    return key.startswith(THUMBNAILS_PREFIX + "/")


# Key segments that must never reach a path as they are: "" (from "//" or a leading "/"),
# "." and "..". quote() never writes "%" alone or "%2E" (it keeps "."), so these stay unique.
_SPECIAL_SEGMENTS = {"": "%", ".": "%2E", "..": "%2E%2E"}
_SEGMENT_SAFE = " !$&'()+,;=@[]"  # besides letters, digits and "_.-~", kept readable
_MAX_SEGMENT_BYTES = 200  # a file name may have 255 (the thumbnail's suffix comes on top)
_MAX_KEY_BYTES = 900  # an S3 key may have 1,024


def thumbnail_key(tenant: str, key: str) -> str:
    """Where an image's thumbnail is written, below the source's root: `.rag-thumbnails/
    {tenant}/{the image's key}`, each segment of the key percent-encoded so that no `..`, `.`
    or empty segment (and no control character) reaches a path or a printed URI, and two keys
    never share a thumbnail; a key too long for that is named by its hash instead
    (`.rag-thumbnails/{tenant}/%hash/{sha256}`). `.jpg` is added for a format browsers do not
    show (TIFF, HEIC). The tenant is a valid tenant name (lib.keys.check_tenant): one segment."""
    from urllib.parse import quote

    segments = [
        _SPECIAL_SEGMENTS.get(part) or quote(part, safe=_SEGMENT_SAFE, errors="surrogatepass")
        for part in key.split("/")
    ]
    suffix = PurePosixPath(key).suffix.lower()
    extension = "" if suffix in _WEB_FORMATS else ".jpg"
    encoded = "/".join(segments)
    if len(encoded) > _MAX_KEY_BYTES or any(len(s) > _MAX_SEGMENT_BYTES for s in segments):
        encoded = (
            "%hash/"
            + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
            + (suffix if suffix in _WEB_FORMATS else "")
        )
    return f"{THUMBNAILS_PREFIX}/{tenant}/{encoded}{extension}"


@functools.cache
def _pillow():
    from PIL import Image

    try:  # HEIC/HEIF: pillow-heif registers an opener (libheif is in its wheel)
        from pillow_heif import register_heif_opener

        register_heif_opener()
    except ImportError:
        pass
    return Image


def open_image(name: str, data: bytes, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS):
    """The image (Pillow reads only its header here), refused when it is not an image or has
    more than `max_pixels` pixels: decoding happens after this check, so a 20,000 x 20,000
    image never takes 1.2 GB."""
    Image = _pillow()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:  # Pillow's own ceiling (2 x its MAX_IMAGE_PIXELS), checked in open()
        raise BadDocument(
            name,
            (
                f"image of more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels, more than the limit of {max_pixels:,} "
                "pixels "
                "(RAG_MAX_IMAGE_PIXELS)"
            ),
        ) from None
    except Image.UnidentifiedImageError:  # its message names only a BytesIO
        raise BadDocument(name, "not a readable image: the format is unknown or the header damaged") from None
    except Exception as e:  # noqa: BLE001 - truncated headers, bad chunks, ...
        raise BadDocument(name, f"not a readable image ({type(e).__name__}: {e})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise BadDocument(
            name,
            (
                f"image of {width:,} x {height:,} pixels, more than the limit of {max_pixels:,} pixels "
                "(RAG_MAX_IMAGE_PIXELS)"
            ),
        )
    return image


@dataclass(frozen=True)
class ImageFacts:
    """What an image file says of itself."""

    format: str
    width: int  # as shown (EXIF orientation applied)
    height: int
    frames: int = 1
    taken: str | None = None  # EXIF DateTimeOriginal (or DateTime), as written
    camera: str | None = None  # EXIF Make and Model

    def describe(self) -> str:
        text = f"{self.format} image, {self.width} x {self.height} pixels"
        if self.frames > 1:
            text += f", {self.frames} frames"
        if self.taken:
            text += f", taken {self.taken}"
        if self.camera:
            text += f", camera {self.camera}"
        return text + "."


def image_facts(image) -> ImageFacts:
    exif = image.getexif()
    width, height = image.size
    if exif.get(0x0112) in (5, 6, 7, 8):  # rotated a quarter turn: shown the other way round
        width, height = height, width
    sub = exif.get_ifd(0x8769)  # the Exif IFD holds DateTimeOriginal
    taken = sub.get(0x9003) or exif.get(0x0132)
    make, model = (str(exif.get(t) or "").strip("\x00 ") for t in (0x010F, 0x0110))
    camera = model if make and model.startswith(make) else " ".join(p for p in (make, model) if p)
    return ImageFacts(
        format=image.format or "image",
        width=width,
        height=height,
        frames=getattr(image, "n_frames", 1),
        taken=str(taken).strip("\x00 ") or None if taken else None,
        camera=camera or None,
    )


def shown(image, max_side: int):
    """The image as it is shown: its first frame, EXIF orientation applied, in RGB (or RGBA
    when it has transparency), its longest side at most `max_side` (aspect kept)."""
    from PIL import ImageOps

    image.seek(0)
    out = ImageOps.exif_transpose(image)
    has_alpha = out.mode in ("RGBA", "LA", "PA") or "transparency" in out.info
    out = out.convert("RGBA" if has_alpha else "RGB")
    out.thumbnail((max_side, max_side))
    return out


def thumbnail_bytes(image, key: str) -> bytes:
    """The thumbnail (longest side at most 800 px) in the format `thumbnail_key` names."""
    small = shown(image, THUMBNAIL_MAX_SIDE)
    fmt = _WEB_FORMATS.get(PurePosixPath(key).suffix.lower(), "JPEG")
    if fmt == "JPEG" and small.mode != "RGB":
        small = small.convert("RGB")
    out = io.BytesIO()
    small.save(out, format=fmt, **({"quality": 85} if fmt in ("JPEG", "WEBP") else {}))
    return out.getvalue()


def jpeg_bytes(image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def image_sha256(data: bytes) -> str:
    """The analysis cache's key: the same bytes are analyzed once, whoever uploads them."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ImageReading:
    """What reading an image's bytes gives (in the bounded reader process: parse_sandbox):
    its facts, its thumbnail, and what an analyzer needs of it: the text OCR reads
    (`seen_text`), or the image as a JPEG for a vision model (`jpeg`)."""

    facts: ImageFacts
    thumbnail: bytes
    seen_text: str | None = None
    jpeg: bytes | None = None


def read_image(name: str, data: bytes, max_pixels: int, thumbnail: str, *, ocr: bool, jpeg: bool) -> ImageReading:
    """Decode an image once: refuse it past `max_pixels` (before decoding), its facts, its
    thumbnail in the format the `thumbnail` key names, and, when asked, its text (`ocr`) or a
    JPEG of it at most ANALYSIS_MAX_SIDE a side (`jpeg`). Raises BadDocument naming the file."""
    image = open_image(name, data, max_pixels)
    try:
        facts = image_facts(image)
        small = thumbnail_bytes(image, thumbnail)
        for_analysis = shown(image, ANALYSIS_MAX_SIDE) if ocr or jpeg else None
    except (OSError, ValueError, SyntaxError) as e:  # Pillow's errors for truncated or damaged data
        raise BadDocument(name, f"corrupt image ({type(e).__name__}: {e})") from None
    return ImageReading(
        facts=facts,
        thumbnail=small,
        seen_text=ocr_image(for_analysis) if ocr else None,
        jpeg=jpeg_bytes(for_analysis) if jpeg else None,
    )


# -- analyses ---------------------------------------------------------------------------


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class AnalyzerIdentity:
    """Which analyzer, model and prompt an analysis came from: a change re-analyzes."""

    analyzer: str  # offline | openai
    model: str
    prompt_hash: str

    @property
    def fingerprint(self) -> str:
        return f"{self.analyzer}:{self.model}:{self.prompt_hash}"


def analyzer_identity(spec: str) -> AnalyzerIdentity:
    """RAG_IMAGE_ANALYZER: `offline` (OCR and EXIF, nothing leaves the machine) or
    `openai:MODEL` (a vision model through the openai client)."""
    kind, _, model = spec.partition(":")
    if kind == OFFLINE_ANALYZER and not model:
        return AnalyzerIdentity(OFFLINE_ANALYZER, "rapidocr-onnxruntime", _hash(OFFLINE_METHOD))
    if kind == "openai" and model:
        return AnalyzerIdentity("openai", model, _hash(VISION_PROMPT))
    raise ValueError(f"RAG_IMAGE_ANALYZER={spec!r}: use offline or openai:MODEL (e.g. openai:gpt-4o-mini)")


@dataclass(frozen=True)
class Analysis:
    """An image's analysis: what the index embeds, and the answer it came from."""

    category: str
    summary: str
    tags: tuple[str, ...] = ()
    text: str = ""  # the text seen in the image
    raw: dict = field(default_factory=dict)  # the analyzer's whole answer

    def as_json(self) -> dict:
        return {
            "category": self.category,
            "summary": self.summary,
            "tags": list(self.tags),
            "text": self.text,
            "raw": self.raw,
        }

    @classmethod
    def from_json(cls, data: dict) -> Analysis:
        return cls(
            data["category"],
            data["summary"],
            tuple(data.get("tags") or ()),
            data.get("text") or "",
            data.get("raw") or {},
        )


def parse_vision_answer(content: str | None) -> Analysis:
    """A vision model's answer as an Analysis. Raises ValueError saying what is wrong."""
    if not content or not content.strip():
        raise ValueError("empty answer")
    text = content.strip()
    if text.startswith("```"):  # a fenced block despite the instructions
        text = text.strip("`").removeprefix("json").strip()
    try:
        answer = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON ({e.msg} at character {e.pos})") from None
    if not isinstance(answer, dict):
        raise ValueError(f"a JSON {type(answer).__name__}, not an object")  # noqa: TRY004 - bad data, callers catch ValueError
    problems = [
        f"{name!r} must be a non-empty string" for name in ("category", "summary") if not _text(answer.get(name))
    ]
    tags = answer.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        problems.append("'tags' must be a list of strings")
    seen = answer.get("text", "")
    if seen is not None and not isinstance(seen, str):
        problems.append("'text' must be a string")
    if problems:
        raise ValueError("; ".join(problems))
    return Analysis(
        category=answer["category"].strip(),
        summary=answer["summary"].strip(),
        tags=tuple(dict.fromkeys(t.strip() for t in tags if t.strip()))[:20],
        text=(seen or "").strip(),
        raw=answer,
    )


def _text(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def offline_analysis(facts: ImageFacts, seen: str) -> Analysis:
    """What the offline analyzer says of an image: its facts and the text OCR read in it."""
    orientation = "landscape" if facts.width > facts.height else "portrait" if facts.height > facts.width else "square"
    tags = [facts.format.lower(), orientation, *([facts.camera] if facts.camera else []), *(["text"] if seen else [])]
    category = "text image" if len(seen.split()) >= 3 else "image"
    raw = {"facts": facts.__dict__, "ocr_text": seen}
    return Analysis(category=category, summary=facts.describe(), tags=tuple(tags), text=seen, raw=raw)


def analysis_text(analysis: Analysis) -> str:
    """What is embedded of an analysis: its summary, category and tags, then the text seen."""
    lines = [analysis.summary, f"Category: {analysis.category}"]
    if analysis.tags:
        lines.append("Tags: " + ", ".join(analysis.tags))
    if analysis.text:
        lines += ["", analysis.text]
    return "\n".join(lines)


def next_version(latest: tuple[int, str, str] | None, image_sha256: str, analyzer: str) -> int | None:
    """The version a new analysis of an item takes, given its latest (version, image hash,
    analyzer fingerprint); None when the latest is of these bytes by this analyzer already."""
    if latest is None:
        return 1
    version, sha, fingerprint = latest
    return None if (sha, fingerprint) == (image_sha256, analyzer) else version + 1
