"""Fake OpenAI embeddings API for tests, served over real HTTP.

Connect the real client with::

    with FakeOpenAIServer() as server:
        client = openai.OpenAI(api_key="test", base_url=server.base_url, max_retries=0)
        client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])

``POST /v1/embeddings`` and ``POST /v1/chat/completions`` (vision: an image sent inline as a
``data:image/...;base64`` URL) are served. Embeddings are a deterministic hashed
bag-of-words (lower-cased ``\\w+`` tokens, signed-hashed into ``dimensions``
buckets, L2-normalised), so texts that share words have high cosine similarity
and unrelated texts are near 0. They are NOT semantic: synonyms are unrelated.

Both response encodings work: ``"float"`` (JSON list) and ``"base64"``
(little-endian float32), which the openai client requests by default and decodes
transparently. Token counts in ``usage`` (and the 8192-tokens-per-input limit)
are approximated by counting words and punctuation marks.

Chat completions answer with the next of ``server.vision_replies`` (strings: valid JSON,
malformed JSON, anything), else a valid JSON analysis that names the image's size as Pillow
reads it. A request without an inline image is refused (400).

Faults: ``server.fail_next(429, retry_after=1.5, times=2)`` makes the next two
requests fail with OpenAI-shaped errors and a ``Retry-After`` header.
``server.requests`` records every request (path, headers, json, status, time).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
from typing import Any

from ._base import FakeJSONServer, Request, Response

MODEL_DIMENSIONS: dict[str, int] = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
VISION_MODELS = {"gpt-4o-mini", "gpt-4o", "gpt-4.1-mini"}
MAX_INPUTS = 2048
MAX_TOKENS_PER_INPUT = 8192
MAX_TOKENS_PER_REQUEST = 300_000

_WORD = re.compile(r"\w+")
_TOKEN = re.compile(r"\w+|[^\w\s]")
_ERROR_KIND: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


def embed_text(text: str, dimensions: int) -> list[float]:
    """Deterministic hashed bag-of-words embedding of ``text`` (unit length)."""
    words = _WORD.findall(text.lower()) or [text]
    vec = [0.0] * dimensions
    for word in words:
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        h = int.from_bytes(digest, "little")
        vec[h % dimensions] += 1.0 if (h >> 63) & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vec)) or 1.0
    return [x / norm for x in vec]


def count_tokens(text: str) -> int:
    """Rough token count: words plus punctuation marks (at least 1)."""
    return max(1, len(_TOKEN.findall(text)))


class FakeOpenAIServer(FakeJSONServer):
    """Local stand-in for ``https://api.openai.com/v1`` (embeddings only)."""

    def __init__(self, api_key: str | None = None, port: int = 0) -> None:
        """``api_key``: if set, the only accepted bearer token; otherwise any non-empty one."""
        self.api_key = api_key
        self.vision_replies: list[str] = []  # answers to the next chat completions, in order
        super().__init__(port)

    @property
    def base_url(self) -> str:
        """Value for ``OpenAI(base_url=...)``."""
        return f"{self.url}/v1"

    def error_body(self, status: int, message: str) -> Any:
        kind, code = _ERROR_KIND.get(status, ("server_error", None))
        return {"error": {"message": message, "type": kind, "param": None, "code": code}}

    def check_auth(self, req: Request) -> Response | None:
        auth = req.headers.get("authorization", "")
        token = auth[len("Bearer ") :].strip() if auth.startswith("Bearer ") else ""
        if not token:
            return self.error(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        if self.api_key is not None and token != self.api_key:
            return self.error(401, "Incorrect API key provided.")
        return None

    def route(self, req: Request) -> Response:
        if (req.method, req.path) == ("POST", "/v1/chat/completions"):
            return self._chat(req)
        if (req.method, req.path) != ("POST", "/v1/embeddings"):
            return self.error(404, f"Invalid URL ({req.method} {req.path})")
        body = req.json
        if not isinstance(body, dict):
            return self.error(400, "We could not parse the JSON body of your request.")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return self.error(400, "you must provide a model parameter")
        if model not in MODEL_DIMENSIONS:
            msg = f"The model `{model}` does not exist or you do not have access to it."
            return self.error(404, msg)
        texts = _parse_input(body.get("input"))
        if isinstance(texts, str):
            return self.error(400, texts)
        dims = body.get("dimensions")
        native = MODEL_DIMENSIONS[model]
        if dims is None:
            dims = native
        elif model == "text-embedding-ada-002":
            return self.error(400, "This model does not support specifying dimensions.")
        elif not isinstance(dims, int) or not 1 <= dims <= native:
            return self.error(400, f"Invalid 'dimensions': must be an integer in [1, {native}].")
        fmt = body.get("encoding_format", "float")
        if fmt not in ("float", "base64"):
            msg = f"Invalid 'encoding_format': {fmt!r}. Expected 'float' or 'base64'."
            return self.error(400, msg)
        tokens = [count_tokens(t) for t in texts]
        for i, n in enumerate(tokens):
            if n > MAX_TOKENS_PER_INPUT:
                return self.error(
                    400,
                    f"This model's maximum context length is {MAX_TOKENS_PER_INPUT} tokens, "
                    f"however you requested {n} tokens in input {i}.",
                )
        if sum(tokens) > MAX_TOKENS_PER_REQUEST:
            msg = f"Requested {sum(tokens)} tokens, max {MAX_TOKENS_PER_REQUEST} tokens per request"
            return self.error(400, msg)
        data = []
        for i, text in enumerate(texts):
            vec = embed_text(text, dims)
            out: Any = vec
            if fmt == "base64":
                out = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": out})
        usage = {"prompt_tokens": sum(tokens), "total_tokens": sum(tokens)}
        return Response(200, {"object": "list", "data": data, "model": model, "usage": usage})


    def _chat(self, req: Request) -> Response:
        body = req.json if isinstance(req.json, dict) else {}
        model = body.get("model")
        if model not in VISION_MODELS:
            return self.error(404, f"The model `{model}` does not exist or you do not have access to it.")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return self.error(400, "'messages' must be a non-empty array")
        images = [
            part["image_url"]["url"]
            for m in messages
            if isinstance(m, dict) and isinstance(m.get("content"), list)
            for part in m["content"]
            if isinstance(part, dict) and part.get("type") == "image_url"
        ]
        if not images or not images[0].startswith("data:image/") or ";base64," not in images[0]:
            return self.error(400, "expected an image sent inline as a data:image/...;base64 URL")
        try:
            size = _image_size(base64.b64decode(images[0].split(";base64,", 1)[1], validate=True))
        except Exception as e:  # noqa: BLE001 - whatever the decoding raises is a 400, as OpenAI's
            return self.error(400, f"You uploaded an unsupported image. ({e})")
        if self.vision_replies:
            content = self.vision_replies.pop(0)
        else:
            content = json.dumps(
                {
                    "category": "photo",
                    "summary": f"A picture of {size[0]} x {size[1]} pixels.",
                    "tags": ["test"],
                    "text": "",
                }
            )
        usage = {
            "prompt_tokens": 300,
            "completion_tokens": count_tokens(content),
            "total_tokens": 300 + count_tokens(content),
        }
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": None},
            "finish_reason": "stop",
        }
        return Response(
            200,
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [choice],
                "usage": usage,
            },
        )


def _image_size(data: bytes) -> tuple[int, int]:
    import io

    from PIL import Image

    return Image.open(io.BytesIO(data)).size


def _parse_input(value: Any) -> list[str] | str:
    """Normalise ``input`` to a list of texts, or return an error message.

    Token-id arrays (``[int]`` / ``[[int]]``) are accepted and embedded as
    pseudo-words ``tok<id>``.
    """
    invalid = (
        "'$.input' is invalid. "
        "Please check the API reference: https://platform.openai.com/docs/api-reference."
    )
    if isinstance(value, str):
        items: list[Any] = [value]
    elif isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        items = [value]
    elif isinstance(value, list):
        items = value
    else:
        return invalid
    if not items:
        return invalid
    if len(items) > MAX_INPUTS:
        return f"{invalid} (got {len(items)} inputs, the maximum is {MAX_INPUTS})"
    texts: list[str] = []
    for item in items:
        if isinstance(item, str) and item:
            texts.append(item)
        elif isinstance(item, list) and item and all(isinstance(t, int) for t in item):
            texts.append(" ".join(f"tok{t}" for t in item))
        else:
            return invalid
    return texts
