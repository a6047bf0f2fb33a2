"""Pure rules of the fake Pinecone: limits, record validation, scoring, metadata filters.

Filters support ``$eq $ne $in $nin $gt $gte $lt $lte $exists $and $or`` and implicit
equality (``{"genre": "drama"}``). A list-valued metadata field (list of strings)
matches ``$eq``/``$in`` when any element matches; ``$ne``/``$nin`` when none does.
A record lacking the field matches ``$ne``/``$nin`` and never the others.
"""

from __future__ import annotations

import json
import math
import operator
from typing import Any

MAX_UPSERT_VECTORS = 1000
MAX_REQUEST_BYTES = 2 * 1024 * 1024
MAX_METADATA_BYTES = 40 * 1024
MAX_ID_LEN = 512
MAX_TOP_K = 10_000
MAX_IDS = 1000
Record = dict[str, Any]  # {"id", "values", "metadata"?}
_ORDER = {"$gt": operator.gt, "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le}


class BadRequest(Exception):
    """A request the real service would refuse; the server turns it into an error reply."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def check_values(values: Any, dimension: int, metric: str) -> list[float]:
    """Validate dense vector values for an index of ``dimension`` / ``metric``."""
    numbers = isinstance(values, list) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in values
    )
    if not numbers:
        raise BadRequest("Vector values must be a list of finite numbers")
    if len(values) != dimension:
        got, want = len(values), dimension
        raise BadRequest(f"Vector dimension {got} does not match the dimension of the index {want}")
    if metric == "cosine" and not any(values):
        raise BadRequest("Dense vectors must contain at least one non-zero value")
    return [float(x) for x in values]


def check_vector(vec: Any, dimension: int, metric: str) -> Record:
    """Validate one upserted vector (id, values, metadata) and return the record to store."""
    if not isinstance(vec, dict) or not isinstance(vec.get("id"), str):
        raise BadRequest("Each vector needs a string 'id'")
    vid = vec["id"]
    if not 1 <= len(vid) <= MAX_ID_LEN:
        raise BadRequest(f"Vector ID must be 1-{MAX_ID_LEN} characters, got {len(vid)}")
    rec: Record = {"id": vid, "values": check_values(vec.get("values"), dimension, metric)}
    meta = vec.get("metadata")
    if meta is None:
        return rec
    if not isinstance(meta, dict):
        raise BadRequest(f"Metadata of vector {vid!r} must be an object")
    for key, value in meta.items():
        scalar = isinstance(value, (str, int, float, bool))
        if not scalar and not (isinstance(value, list) and all(isinstance(x, str) for x in value)):
            raise BadRequest(
                f"Metadata field {key!r} of vector {vid!r}: "
                "value must be a string, number, boolean or list of strings"
            )
    size = len(json.dumps(meta, separators=(",", ":")).encode())
    if size > MAX_METADATA_BYTES:
        raise BadRequest(
            f"Metadata size is {size} bytes, which exceeds the limit of {MAX_METADATA_BYTES} bytes"
            " per vector"
        )
    rec["metadata"] = meta
    return rec


def score(metric: str, a: list[float], b: list[float]) -> float:
    """Similarity as Pinecone reports it (euclidean: squared distance, lower is closer)."""
    if metric == "euclidean":
        return sum((x - y) ** 2 for x, y in zip(a, b, strict=True))
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    if metric == "dotproduct":
        return dot
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def matches(metadata: dict[str, Any], flt: Any) -> bool:
    """True if ``metadata`` satisfies the filter ``flt`` (None or {} match everything)."""
    if flt is None or flt == {}:
        return True
    if not isinstance(flt, dict):
        raise BadRequest("filter: must be an object")
    for key, cond in flt.items():
        if key in ("$and", "$or"):
            if not isinstance(cond, list) or not cond:
                raise BadRequest(f"{key} requires a non-empty array")
            results = [matches(metadata, sub) for sub in cond]
            ok = all(results) if key == "$and" else any(results)
        elif key.startswith("$"):
            raise BadRequest(f"Unsupported filter operator {key}")
        elif isinstance(cond, dict):
            present, value = key in metadata, metadata.get(key)
            ok = all(_compare(op, value, arg, present) for op, arg in cond.items())
        else:
            ok = _compare("$eq", metadata.get(key), cond, key in metadata)
        if not ok:
            return False
    return True


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _compare(op: str, value: Any, arg: Any, present: bool) -> bool:
    values = value if isinstance(value, list) else [value]
    if op == "$exists":
        return present == bool(arg)
    if op in ("$in", "$nin"):
        if not isinstance(arg, list):
            raise BadRequest(f"{op} requires an array")
        hit = present and any(v in arg for v in values)
        return hit if op == "$in" else not hit
    if op in ("$eq", "$ne"):
        hit = present and arg in values
        return hit if op == "$eq" else not hit
    if op in _ORDER:
        if not _is_number(arg):
            raise BadRequest(f"{op} requires a number")
        if not present or not _is_number(value):
            return False
        return _ORDER[op](value, arg)
    raise BadRequest(f"Unsupported filter operator {op}")
