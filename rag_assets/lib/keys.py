"""Document identity: object references, tenants and reversible partition keys."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

# Characters Dagster refuses in partition keys ("..." and control characters) or that its
# partition-selection syntax treats specially (",", "[", "]"), plus our own separator "|" and
# the escape character itself. Everything else (including "/") stays readable in the UI.
_ESCAPED = {"%", "|", ",", "[", "]"}
SIDECAR_SUFFIX = ".meta.json"


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


def _escape(part: str) -> str:
    out = []
    for ch in part:
        if ch in _ESCAPED or ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(quote(ch, safe=""))
        else:
            out.append(ch)
    return "".join(out).replace("...", "%2E%2E%2E")


def encode_partition_key(ref: DocRef) -> str:
    """A Dagster-safe partition key that `decode_partition_key` turns back into `ref`."""
    return "|".join(_escape(p) for p in (ref.tenant, ref.root, ref.key))


def decode_partition_key(partition_key: str) -> DocRef:
    parts = partition_key.split("|")
    if len(parts) != 3:
        raise ValueError(f"not a document partition key (want TENANT|ROOT|KEY): {partition_key!r}")
    tenant, root, key = (unquote(p) for p in parts)
    return DocRef(tenant=tenant, root=root, key=key)


def tenant_from_key(key: str, rule: str = "segment:0") -> str:
    """Read the tenant from an object key by `rule` (RAG_TENANT_FROM_KEY).

    Rules: `segment:N` (the N-th path segment, default the first), `fixed:NAME`, or
    `regex:PATTERN` with a `tenant` group. Raises ValueError when the key has no tenant.
    """
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
