"""Fake Pinecone (serverless, dense vectors) for tests, served over real HTTP.

Connect the real ``pinecone`` 10.x client::

    with FakePineconeServer(index_name="docs", dimension=1536) as server:
        pc = Pinecone(api_key="test", host=server.url)  # control plane
        index = pc.index(name="docs")  # describe -> host, which points back here
        # or skip describe: pc.index(host=server.url) / pc.Index(host=server.url)

The client accepts ``http://`` hosts as given (no SSL option needed; no warning
for loopback). The control plane needs ``host=`` (or ``PINECONE_CONTROLLER_HOST``);
without it the client talks to api.pinecone.io. The constructor's index is
served at the server root, indexes created later at ``{url}/_index/{name}``.

Control plane: ``GET /indexes``, ``GET|DELETE /indexes/{name}``, ``POST /indexes``
(Ready at once). Responses use the 2026-07 shape (``schema``/``deployment``) that
client 10.x requests via ``X-Pinecone-Api-Version``; older versions get the
legacy ``dimension``/``metric``/``spec`` shape. Data plane: ``POST /vectors/upsert``,
``POST /query``, ``POST /vectors/delete``, ``GET /vectors/list``,
``GET /vectors/fetch``, ``POST /describe_index_stats``.

Enforced: ``Api-Key`` header; upsert <= 1000 vectors and <= 2 MB (413); metadata
<= 40 KB per vector; ids 1-512 chars; dimension must match; no all-zero vectors
under cosine; list ``limit`` 1-100 (default 100); delete and stats by metadata
filter refused as on serverless (``delete_by_filter=True`` allows delete).
Faults (``fail_next``) and recording (``requests``) as in ``_base.FakeJSONServer``.
"""

from __future__ import annotations

import base64
import bisect
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._base import FakeJSONServer, Request, Response
from .pinecone_rules import (
    MAX_IDS,
    MAX_REQUEST_BYTES,
    MAX_TOP_K,
    MAX_UPSERT_VECTORS,
    BadRequest,
    Record,
    check_values,
    check_vector,
    matches,
    score,
)

_CONTROL_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
}
_GRPC_CODES = {400: 3, 413: 11}  # data-plane errors carry gRPC status codes


@dataclass
class FakeIndex:
    """Stored state of one index; the default namespace is ``""``."""

    name: str
    dimension: int
    metric: str = "cosine"
    host: str = ""
    namespaces: dict[str, dict[str, Record]] = field(default_factory=dict)
    version: int = 0  # bumped by every upsert and delete
    _sorted: dict[str, tuple[int, list[str]]] = field(default_factory=dict)

    def ns(self, name: Any, create: bool = False) -> dict[str, Record]:
        """Records of namespace ``name`` (``None`` / ``"__default__"`` mean ``""``)."""
        key = "" if name in (None, "__default__") else str(name)
        return self.namespaces.setdefault(key, {}) if create else self.namespaces.get(key, {})

    def sorted_ids(self, name: Any) -> list[str]:
        """The ids of namespace ``name`` in order, sorted once per change: paging through a
        namespace costs a page a call, as on the real service, not a sort of it."""
        key = "" if name in (None, "__default__") else str(name)
        version = self.version
        cached = self._sorted.get(key)
        if cached is None or cached[0] != version:
            cached = self._sorted[key] = (version, sorted(self.ns(key)))
        return cached[1]


class FakePineconeServer(FakeJSONServer):
    """Local stand-in for the Pinecone control plane and serverless index hosts."""

    def __init__(
        self,
        index_name: str = "test-index",
        dimension: int = 1536,
        metric: str = "cosine",
        api_key: str | None = None,
        delete_by_filter: bool = False,
        port: int = 0,
    ) -> None:
        """``api_key``: if set, the only accepted ``Api-Key``; otherwise any non-empty one."""
        self.api_key = api_key
        self.delete_by_filter = delete_by_filter
        self.indexes: dict[str, FakeIndex] = {}
        super().__init__(port)
        self.indexes[index_name] = FakeIndex(index_name, dimension, metric, self.url)

    def index(self, name: str | None = None) -> FakeIndex:
        """Stored state of index ``name`` (default: the constructor's index)."""
        return self.indexes[name] if name else next(iter(self.indexes.values()))

    def error_body(self, status: int, message: str) -> Any:
        code = _CONTROL_CODES.get(status, "INTERNAL")
        return {"error": {"code": code, "message": message}, "status": status}

    def check_auth(self, req: Request) -> Response | None:
        key = req.headers.get("api-key", "")
        if not key or (self.api_key is not None and key != self.api_key):
            return self.error(401, "Invalid API Key")
        return None

    def route(self, req: Request) -> Response:
        parts = [p for p in req.path.split("/") if p]
        if parts[:1] == ["indexes"]:
            return self._control(req, parts[1:])
        idx = self.index()
        if parts[:1] == ["_index"] and len(parts) >= 2:
            if parts[1] not in self.indexes:
                return self.error(404, f"Index {parts[1]} not found")
            idx, parts = self.indexes[parts[1]], parts[2:]
        handler = _DATA_ROUTES.get((req.method, "/" + "/".join(parts)))
        if handler is None:
            return self.error(404, f"Not found: {req.method} {req.path}")
        try:
            with self._lock:
                return Response(200, handler(self, idx, req))
        except BadRequest as exc:
            status = exc.status
            body = {"code": _GRPC_CODES.get(status, 13), "message": str(exc), "details": []}
            return Response(status, body)

    # --- control plane ----------------------------------------------------------------------

    def _describe(self, idx: FakeIndex, req: Request) -> dict[str, Any]:
        model: dict[str, Any] = {
            "name": idx.name,
            "host": idx.host,
            "status": {"ready": True, "state": "Ready"},
            "deletion_protection": "disabled",
            "tags": None,
        }
        if req.headers.get("x-pinecone-api-version", "") < "2026":  # legacy (<= 2025-10) shape
            spec = {"serverless": {"cloud": "aws", "region": "us-east-1"}}
            legacy = {"dimension": idx.dimension, "metric": idx.metric, "vector_type": "dense"}
            return model | legacy | {"spec": spec}
        dense = {"type": "dense_vector", "dimension": idx.dimension, "metric": idx.metric}
        deployment = {"deployment_type": "managed", "cloud": "aws", "region": "us-east-1"}
        return model | {"schema": {"fields": {"_values": dense}}, "deployment": deployment}

    def _control(self, req: Request, rest: list[str]) -> Response:
        if not rest and req.method == "GET":
            models = [self._describe(i, req) for i in self.indexes.values()]
            return Response(200, {"indexes": models})
        if not rest and req.method == "POST":
            return self._create(req)
        if len(rest) == 1 and req.method in ("GET", "DELETE"):
            idx = self.indexes.get(rest[0])
            if idx is None:
                return self.error(404, f"Resource {rest[0]} not found")
            if req.method == "GET":
                return Response(200, self._describe(idx, req))
            del self.indexes[rest[0]]
            return Response(202)
        return self.error(404, f"Not found: {req.method} {req.path}")

    def _create(self, req: Request) -> Response:
        body = req.json if isinstance(req.json, dict) else {}
        name = body.get("name")
        schema_fields = (body.get("schema") or {}).get("fields", {})
        dense = schema_fields.get("_values", body)  # 2026-07 schema, else legacy top-level keys
        if not isinstance(name, str) or not isinstance(dense.get("dimension"), int):
            return self.error(400, "An index name and a dense vector dimension are required")
        if name in self.indexes:
            return self.error(409, f"Resource {name} already exists")
        metric = dense.get("metric") or "cosine"
        idx = FakeIndex(name, dense["dimension"], metric, f"{self.url}/_index/{name}")
        self.indexes[name] = idx
        return Response(201, self._describe(idx, req))

    # --- data plane -------------------------------------------------------------------------

    def _upsert(self, idx: FakeIndex, req: Request) -> Any:
        if len(req.raw) > MAX_REQUEST_BYTES:
            size, cap = len(req.raw), MAX_REQUEST_BYTES
            raise BadRequest(f"Request size {size} bytes exceeds the limit of {cap} bytes", 413)
        body = _body(req)
        vectors = body.get("vectors")
        if not isinstance(vectors, list) or not vectors:
            raise BadRequest("vectors: must be a non-empty list")
        if len(vectors) > MAX_UPSERT_VECTORS:
            n, cap = len(vectors), MAX_UPSERT_VECTORS
            raise BadRequest(f"Batch of {n} vectors exceeds the limit of {cap} vectors per upsert")
        # validate every vector before storing any
        records = [check_vector(v, idx.dimension, idx.metric) for v in vectors]
        ns = idx.ns(body.get("namespace"), create=True)
        ns.update((r["id"], r) for r in records)
        idx.version += 1
        return {"upsertedCount": len(records)}

    def _query(self, idx: FakeIndex, req: Request) -> Any:
        body = _body(req)
        top_k = body.get("topK")
        if not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
            raise BadRequest(f"topK: must be an integer between 1 and {MAX_TOP_K}")
        if ("vector" in body) == ("id" in body):
            raise BadRequest("Exactly one of 'vector' or 'id' must be provided")
        ns = idx.ns(body.get("namespace"))
        reply: dict[str, Any] = {
            "matches": [],
            "namespace": body.get("namespace", ""),
            "usage": {"readUnits": 1},
        }
        if "id" in body and body["id"] not in ns:
            return reply
        if "id" in body:
            query = ns[body["id"]]["values"]
        else:
            query = check_values(body["vector"], idx.dimension, idx.metric)
        flt = body.get("filter")
        kept = [r for r in ns.values() if matches(r.get("metadata") or {}, flt)]
        hits = [(score(idx.metric, query, r["values"]), r) for r in kept]
        ascending = idx.metric == "euclidean"  # euclidean scores are distances
        hits.sort(key=lambda h: (h[0] if ascending else -h[0], h[1]["id"]))
        for similarity, rec in hits[:top_k]:
            values = rec["values"] if body.get("includeValues") else []
            match: dict[str, Any] = {"id": rec["id"], "score": similarity, "values": values}
            if body.get("includeMetadata") and "metadata" in rec:
                match["metadata"] = rec["metadata"]
            reply["matches"].append(match)
        return reply

    def _delete(self, idx: FakeIndex, req: Request) -> Any:
        body = _body(req)
        ns = idx.ns(body.get("namespace"))
        idx.version += 1
        if body.get("filter") is not None:
            if not self.delete_by_filter:
                raise BadRequest(
                    "Serverless and Starter indexes do not support deleting with metadata filtering"
                )
            doomed = [v for v, r in ns.items() if matches(r.get("metadata") or {}, body["filter"])]
            for vid in doomed:
                del ns[vid]
        elif body.get("deleteAll"):
            ns.clear()
        elif isinstance(body.get("ids"), list) and 1 <= len(body["ids"]) <= MAX_IDS:
            for vid in body["ids"]:
                ns.pop(vid, None)
        else:
            raise BadRequest(f"Provide 1-{MAX_IDS} 'ids', or 'deleteAll', or 'filter'")
        return {}

    def _list(self, idx: FakeIndex, req: Request) -> Any:
        q = {k: v[-1] for k, v in req.query.items()}
        try:
            limit = int(q.get("limit", "100"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            raise BadRequest("limit: must be an integer between 1 and 100")
        try:
            after = base64.urlsafe_b64decode(q.get("paginationToken", "")).decode()
        except ValueError:
            raise BadRequest("paginationToken: invalid") from None
        prefix = q.get("prefix", "")
        every = idx.sorted_ids(q.get("namespace"))
        start = max(
            bisect.bisect_left(every, prefix), bisect.bisect_right(every, after)
        )  # the first > after, >= prefix
        ids = list(
            itertools.takewhile(lambda v: v.startswith(prefix), every[start : start + limit + 1])
        )  # one more: is there more?
        reply: dict[str, Any] = {
            "vectors": [{"id": v} for v in ids[:limit]],
            "namespace": q.get("namespace", ""),
            "usage": {"readUnits": 1},
        }
        if len(ids) > limit:  # opaque token: the last id returned
            next_token = base64.urlsafe_b64encode(ids[limit - 1].encode()).decode()
            reply["pagination"] = {"next": next_token}
        return reply

    def _fetch(self, idx: FakeIndex, req: Request) -> Any:
        ids = req.query.get("ids", [])
        if not 1 <= len(ids) <= MAX_IDS:
            raise BadRequest(f"ids: between 1 and {MAX_IDS} ids are required")
        namespace = req.query.get("namespace", [""])[-1]
        ns = idx.ns(namespace)
        found = {v: ns[v] for v in ids if v in ns}
        return {"vectors": found, "namespace": namespace, "usage": {"readUnits": 1}}

    def _stats(self, idx: FakeIndex, req: Request) -> Any:
        if _body(req).get("filter") is not None:
            raise BadRequest("Serverless indexes do not support describe_index_stats with a filter")
        counts = {name: {"vectorCount": len(ns)} for name, ns in idx.namespaces.items() if ns}
        total = sum(c["vectorCount"] for c in counts.values())
        return {
            "namespaces": counts,
            "dimension": idx.dimension,
            "indexFullness": 0.0,
            "totalVectorCount": total,
            "metric": idx.metric,
            "vectorType": "dense",
        }


_DATA_ROUTES: dict[tuple[str, str], Callable[[FakePineconeServer, FakeIndex, Request], Any]] = {
    ("POST", "/vectors/upsert"): FakePineconeServer._upsert,
    ("POST", "/query"): FakePineconeServer._query,
    ("POST", "/vectors/delete"): FakePineconeServer._delete,
    ("GET", "/vectors/list"): FakePineconeServer._list,
    ("GET", "/vectors/fetch"): FakePineconeServer._fetch,
    ("POST", "/describe_index_stats"): FakePineconeServer._stats,
}


def _body(req: Request) -> dict[str, Any]:
    if req.json is None:
        return {}
    if not isinstance(req.json, dict):
        raise BadRequest("Request body must be a JSON object")
    return req.json
