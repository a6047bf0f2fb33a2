"""Catchup sources: the configuration file, and records (rows of a Metabase question or a CSV
export for one date) as the documents the index pipeline takes (docs/catchup.md)."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from rag_assets.lib.hashing import content_hash
from rag_assets.lib.keys import BadTenant, DocRef, check_tenant, is_valid_tenant
from rag_assets.lib.parsing import ParsedDocument, SourceDocument, Unit, sanitize_text

NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")


class CatchupSource(BaseModel):
    """One named source of `catchup.yaml`."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["metabase", "csv"]
    start_date: dt.date
    end_date: dt.date | None = None  # the last date there is (default: yesterday, forever)
    text_column: str = "formatted_text"
    id_column: str
    tenant_column: str | None = None
    tenant: str | None = None
    metadata_columns: list[str] = []
    # kind: metabase
    question_id: int | None = None
    date_parameter: str = "start_date"  # the question's template tag that takes the date
    # kind: csv
    uri: str | None = None  # s3://bucket/key or a path (relative to the file), may contain {date}
    # how a date's records are processed
    chunk_rows: int = 1_000  # records a part
    parallel_chunks: int = 5  # parts embedded at a time
    schedule: bool = False  # a daily run for the day before, on by default
    # its own index and embedder (default: RAG_INDEX_URI, RAG_EMBEDDER)
    index_uri: str | None = None
    namespace: str | None = None  # Pinecone only: the namespace of its index
    embedder: str | None = None

    @field_validator("tenant")
    @classmethod
    def valid_tenant(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                check_tenant(value)
            except BadTenant as e:
                raise ValueError(str(e)) from None
        return value

    @field_validator("chunk_rows", "parallel_chunks")
    @classmethod
    def positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value

    @model_validator(mode="after")
    def consistent(self) -> CatchupSource:
        if (self.tenant is None) == (self.tenant_column is None):
            raise ValueError("give exactly one of `tenant` (one fixed tenant) or `tenant_column`")
        if self.kind == "metabase" and self.question_id is None:
            raise ValueError("a metabase source needs `question_id`")
        if self.kind == "csv" and not self.uri:
            raise ValueError("a csv source needs `uri` (s3://bucket/key or a path, may contain {date})")
        if self.end_date is not None and self.end_date < self.start_date:
            raise ValueError("`end_date` is before `start_date`")
        if self.namespace is not None and not (self.index_uri or "").startswith("pinecone://"):
            raise ValueError("`namespace` is for a Pinecone `index_uri` (pinecone://INDEX)")
        return self

    def location(self, date: str) -> str:
        """The CSV export of a date."""
        return (self.uri or "").replace("{date}", date)

    def resolved(self, folder: Path) -> CatchupSource:
        """Paths relative to the configuration file's folder made absolute."""
        if self.kind == "csv" and not self.uri.startswith("s3://") and not Path(self.uri).is_absolute():
            return self.model_copy(update={"uri": str((folder / self.uri).resolve())})
        return self

    def store_uri(self, default: str) -> str:
        """Its index: its own `index_uri` (with its `namespace`), or the default."""
        uri = self.index_uri or default
        if self.namespace is None:
            return uri
        base, _, query = uri.partition("?")
        params = [p for p in query.split("&") if p and not p.startswith("namespace=")]
        return f"{base}?{'&'.join([*params, f'namespace={self.namespace}'])}"


class CatchupConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sources: dict[str, CatchupSource] = {}

    @field_validator("sources")
    @classmethod
    def names(cls, sources: dict) -> dict:
        for name in sources:
            if not NAME.match(name):
                raise ValueError(f"source name {name!r}: lower-case letters, digits and _ (it prefixes asset names)")
        return sources


class CatchupConfigError(ValueError):
    """A catchup file that cannot be used; the message names the file and what is wrong."""


def load_catchup_config(path: str | Path) -> dict[str, CatchupSource]:
    """The sources of a catchup file, paths resolved against its folder. A file that does not
    exist has no sources."""
    path = Path(path)
    if not path.exists():
        return {}
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        config = CatchupConfig.model_validate(raw)
    except yaml.YAMLError as e:
        raise CatchupConfigError(f"{path}: not valid YAML ({e})") from None
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        raise CatchupConfigError(f"{path}: {problems}") from None
    return {name: source.resolved(path.parent) for name, source in config.sources.items()}


# --- records --------------------------------------------------------------------------------------


@dataclass
class RecordCounts:
    """What reading a date's rows found."""

    rows: int = 0
    records: int = 0
    no_text: int = 0
    no_id: int = 0
    no_tenant: int = 0
    bad_tenant: int = 0  # rows whose tenant breaks the tenant rule (lib.keys.check_tenant)
    duplicates: int = 0  # rows whose id came again later in the result (the later one is kept)
    tenants: set[str] = field(default_factory=set)

    def as_metadata(self) -> dict:
        return {
            "rows": self.rows,
            "records": self.records,
            "skipped_no_text": self.no_text,
            "skipped_no_id": self.no_id,
            "skipped_no_tenant": self.no_tenant,
            "skipped_bad_tenant": self.bad_tenant,
            "duplicate_ids": self.duplicates,
            "tenants": len(self.tenants),
        }


def catchup_root(name: str) -> str:
    """The root of a catchup source's records: their document ids are `TENANT:catchup://NAME/ID`."""
    return f"catchup://{name}"


def cell(row: Mapping[str, Any], column: str | None) -> str:
    value = row.get(column) if column else None
    return "" if value is None else str(value).strip()


def record_document(
    name: str, source: CatchupSource, date: str, number: int, row: Mapping[str, Any]
) -> tuple[SourceDocument | None, str | None]:
    """A row as a document: (SourceDocument, None), or (None, why it is skipped: "no_text",
    "no_id", "no_tenant", "bad_tenant"). The document id is stable per (tenant, source, record id); its index
    key `SOURCE/DATE/ID` says which date holds it; its etag changes with its content or date."""
    text = sanitize_text(cell(row, source.text_column))
    if not text:
        return None, "no_text"
    record_id = cell(row, source.id_column)
    if not record_id:
        return None, "no_id"
    tenant = source.tenant or cell(row, source.tenant_column)
    if not tenant:
        return None, "no_tenant"
    if not is_valid_tenant(tenant):
        return None, "bad_tenant"
    metadata = {c: row[c] for c in source.metadata_columns if row.get(c) not in (None, "")}
    metadata = {**json.loads(json.dumps(metadata, default=str)), "record_id": record_id, "date": date, "source": name}
    body = json.dumps([text, metadata], sort_keys=True).encode("utf-8")
    digest = content_hash(tenant, body)
    return (
        SourceDocument(
            ref=DocRef(tenant, catchup_root(name), record_id),
            content_hash=digest,
            etag=f"{date}#{digest[:16]}",
            version=date,
            size=len(body),
            parsed=ParsedDocument(kind="record", units=[Unit(text=text, row=number, metadata=metadata)]),
            index_key=f"{name}/{date}/{record_id}",
        ),
        None,
    )


def record_parts(
    name: str, source: CatchupSource, date: str, rows: Iterable[Mapping[str, Any]], counts: RecordCounts
) -> Iterator[list]:
    """A date's rows as documents, `chunk_rows` a part, skipped rows counted in `counts`. A
    record id seen again within the date replaces the earlier row, in whichever part."""
    seen: dict[str, int] = {}
    part: list = []
    parts_done = 0
    for number, row in enumerate(rows, start=1):
        counts.rows += 1
        doc, skipped = record_document(name, source, date, number, row)
        if skipped:
            setattr(counts, skipped, getattr(counts, skipped) + 1)
            continue
        record_id = doc.ref.key
        if record_id in seen:
            counts.duplicates += 1
            counts.records -= 1
            if seen[record_id] == parts_done:  # still in the part being filled: replace it there
                part[:] = [d for d in part if d.ref.key != record_id]
            # (in an earlier part, written already: this later row is written after it and wins)
        seen[record_id] = parts_done
        counts.records += 1
        counts.tenants.add(doc.ref.tenant)
        part.append(doc)
        if len(part) >= source.chunk_rows:
            yield part
            part, parts_done = [], parts_done + 1
    if part:
        yield part
