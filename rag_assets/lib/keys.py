"""Document identity: object references, tenants and reversible partition keys."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote

# Characters Dagster refuses in partition keys ("..." and control characters) or that its
# partition-selection syntax treats specially (",", "[", "]"), plus our own separator "|" and
# the escape character itself. Everything else (including "/") stays readable in the UI.
_ESCAPED = {"%", "|", ",", "[", "]"}
SIDECAR_SUFFIX = ".meta.json"

# The one rule for tenant names (docs/architecture.md, Tenancy): a letter or digit, then up to
# 127 letters, digits, ".", "_", "@" or "-", and never "..". A tenant is data (a row's field, a
# filter value, a Pinecone namespace, a notification's addressee) and also a path segment
# (thumbnails): this rule keeps it a single, harmless segment everywhere.
TENANT_RULE = "[A-Za-z0-9][A-Za-z0-9._@-]{0,127}, no '..'"
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")


class BadTenant(ValueError):
    """A tenant name that breaks the rule (`TENANT_RULE`)."""


def check_tenant(tenant: object) -> str:
    """`tenant` if it is a valid tenant name; raises BadTenant saying why not."""
    if not isinstance(tenant, str) or not tenant:
        raise BadTenant("a tenant name is a non-empty string")
    if not _TENANT.fullmatch(tenant) or ".." in tenant:
        shown = tenant if len(tenant) <= 60 else tenant[:57] + "..."
        raise BadTenant(f"tenant {shown!r} is not a valid tenant name ({TENANT_RULE})")
    return tenant


def is_valid_tenant(tenant: object) -> bool:
    try:
        check_tenant(tenant)
    except BadTenant:
        return False
    return True


@dataclass(frozen=True, order=True)
class DocRef:
    """One object in a source: `root` is `s3://bucket` or a local folder URI, `key` is below it."""

    tenant: str
    root: str
    key: str

    @property
    def uri(self) -> str:
        return f"{self.root.rstrip('/')}/{self.key}"

    @property
    def document_id(self) -> str:
        """Tenant + object URI: what every vector row of this document is keyed by."""
        return f"{self.tenant}:{self.uri}"


def document_tenant(document_id: str, uri: str) -> str:
    """The tenant of a document id (`DocRef.document_id`: `tenant:uri`) whose URI is known
    (a tenant may itself hold a colon, so the id is not split at one)."""
    return document_id[: -len(uri) - 1]


def _escape(part: str) -> str:
    out = []
    for ch in part:
        if ch in _ESCAPED or ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(quote(ch, safe=""))
        else:
            out.append(ch)
    return "".join(out).replace("...", "%2E%2E%2E")


S3_ALIAS = "s3:"
FILE_ALIAS = "file:"
_FILE_ALIAS = re.compile(r"^file:.*~[0-9a-f]{6}$")


def root_alias(root: str) -> str:
    """A short, stable name for a source root: `s3:BUCKET` for `s3://BUCKET` (its own
    inverse), `file:NAME~HASH6` for a folder (resolved through the registry of roots)."""
    if root.startswith("s3://"):
        bucket = root[len("s3://") :].strip("/")
        if not bucket or "/" in bucket:
            raise ValueError(f"an S3 root is s3://BUCKET, not {root!r}")
        return S3_ALIAS + bucket
    name = root.rstrip("/").rpartition("/")[2] or "root"
    return f"{FILE_ALIAS}{name}~{hashlib.sha256(root.encode('utf-8')).hexdigest()[:6]}"


def encode_partition_key(ref: DocRef) -> str:
    """`TENANT|KEY|ROOT-ALIAS`: what a person looks for first, the root last and short
    (`acme|acme/handbook.pdf|s3:docs`). `decode_partition_key` turns it back into `ref`."""
    return "|".join(_escape(p) for p in (ref.tenant, ref.key, root_alias(ref.root)))


@dataclass(frozen=True)
class PartitionParts:
    """A document partition key taken apart, before its root alias is resolved."""

    tenant: str
    key: str
    alias: str
    root: str | None  # known without the registry: S3 roots and keys of the old form


def encoded_alias(root: str) -> str:
    """The root's alias as it ends a document partition key (`encode_partition_key`)."""
    return _escape(root_alias(root))


def is_root_alias(text: str) -> bool:
    return (text.startswith(S3_ALIAS) and len(text) > len(S3_ALIAS) and "/" not in text) or bool(
        _FILE_ALIAS.match(text)
    )


def split_partition_key(partition_key: str) -> PartitionParts:
    """The parts of a key of either form: `TENANT|KEY|ALIAS`, or the old `TENANT|ROOT|KEY`
    (instances from before readable keys: they keep working, see docs/decisions.md D11)."""
    parts = partition_key.split("|")
    if len(parts) != 3:
        raise ValueError(f"not a document partition key (want TENANT|KEY|ROOT-ALIAS): {partition_key!r}")
    tenant, middle, last = (unquote(p) for p in parts)
    if not is_root_alias(last):
        if middle.startswith(("s3://", "/")):  # the old form
            return PartitionParts(tenant, last, root_alias(middle), middle)
        raise ValueError(f"not a document partition key (no root alias in {last!r}): {partition_key!r}")
    root = "s3://" + last[len(S3_ALIAS) :] if last.startswith(S3_ALIAS) else None
    return PartitionParts(tenant, middle, last, root)


def decode_partition_key(partition_key: str, roots: Mapping[str, str] | None = None) -> DocRef:
    """The document a partition key names; folder roots are looked up in `roots` (alias ->
    root, the registry: rag_assets.partitions.known_roots)."""
    parts = split_partition_key(partition_key)
    root = parts.root or (roots or {}).get(parts.alias)
    if root is None:
        raise ValueError(f"{partition_key!r}: root alias {parts.alias!r} is not registered")
    return DocRef(tenant=parts.tenant, root=root, key=parts.key)


def root_registry_key(root: str) -> str:
    """The registry's entry for a root: `ALIAS|ROOT` (a partition key of `document_roots`)."""
    return f"{_escape(root_alias(root))}|{_escape(root)}"


def parse_root_registry(entries: Iterable[str]) -> dict[str, str]:
    """alias -> root from registry entries (`root_registry_key`)."""
    out = {}
    for entry in entries:
        alias, sep, root = entry.partition("|")
        if sep:
            out[unquote(alias)] = unquote(root)
    return out


def tenant_from_key(key: str, rule: str = "segment:0") -> str:
    """Read the tenant from an object key by `rule` (RAG_TENANT_FROM_KEY).

    Rules: `segment:N` (the N-th path segment, default the first), `fixed:NAME`, or
    `regex:PATTERN` with a `tenant` group. Raises ValueError when the key has no tenant, and
    BadTenant (a ValueError) when what it has breaks the tenant rule (`check_tenant`).
    """
    tenant = _tenant_by_rule(key, rule)
    try:
        return check_tenant(tenant)
    except BadTenant as e:
        raise BadTenant(f"{key}: {e}") from None


def check_tenant_rule(rule: str | None) -> str:
    """RAG_TENANT_FROM_KEY, checked before any key is read: a known kind, a folder number, a
    regex that compiles with a `tenant` group, a fixed name that is a valid tenant."""
    kind, _, arg = (rule or "segment:0").partition(":")
    if kind == "fixed" and arg:
        try:
            check_tenant(arg)
        except BadTenant as e:
            raise ValueError(f"RAG_TENANT_FROM_KEY={rule!r}: {e}") from None
    elif kind == "segment":
        try:
            int(arg or 0)
        except ValueError:
            raise ValueError(f"RAG_TENANT_FROM_KEY={rule!r}: segment wants a folder number") from None
    elif kind == "regex":
        try:
            pattern = re.compile(arg)
        except re.error as e:
            raise ValueError(f"RAG_TENANT_FROM_KEY={rule!r}: invalid regex ({e})") from None
        if "tenant" not in pattern.groupindex:
            raise ValueError(f"RAG_TENANT_FROM_KEY={rule!r}: the regex needs a (?P<tenant>...) group")
    else:
        raise ValueError(f"unknown RAG_TENANT_FROM_KEY rule {rule!r} (use segment:N, fixed:NAME or regex:PATTERN)")
    return rule or "segment:0"


def _tenant_by_rule(key: str, rule: str) -> str:
    kind, _, arg = (rule or "segment:0").partition(":")
    if kind == "fixed" and arg:
        return arg
    if kind == "segment":
        segments = key.strip("/").split("/")
        try:
            index = int(arg or 0)
        except ValueError:
            raise ValueError(f"RAG_TENANT_FROM_KEY={rule!r}: segment wants a folder number") from None
        # The last segment is the file name: a key needs a folder to carry a tenant.
        if not 0 <= index < len(segments) - 1 or not segments[index]:
            raise ValueError(f"{key}: no tenant in the key (rule {rule!r} wants a folder at depth {index})")
        return segments[index]
    if kind == "regex":
        try:
            match = re.search(arg, key)
        except re.error as e:
            raise ValueError(f"RAG_TENANT_FROM_KEY={rule!r}: invalid regex ({e})") from None
        if not match or not match.groupdict().get("tenant"):
            raise ValueError(f"{key}: no tenant in the key (rule {rule!r} does not match)")
        return match.group("tenant")
    raise ValueError(f"unknown RAG_TENANT_FROM_KEY rule {rule!r} (use segment:N, fixed:NAME or regex:PATTERN)")


def is_sidecar(key: str) -> bool:
    return key.endswith(SIDECAR_SUFFIX)


def sidecar_keys(key: str) -> list[str]:
    """Where a document's sidecar may live: `report.pdf.meta.json`, then `report.meta.json`."""
    folder, slash, name = key.rpartition("/")
    stem, dot, _ = name.rpartition(".")
    return [key + SIDECAR_SUFFIX] + ([folder + slash + stem + SIDECAR_SUFFIX] if dot and stem else [])


def in_span(key: str, start: str, stop: str | None) -> bool:
    """`start` <= `key` < `stop` by code point (no end when `stop` is None): the keys one tick
    of a listing pass answers for (lib.reconcile.listing_span)."""
    return start <= key and (stop is None or key < stop)
