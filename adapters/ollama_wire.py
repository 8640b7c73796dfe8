"""Ollama's HTTP API as its server writes it: Go's JSON escaping, its timestamps and names.

Shared by the embedded server (``adapters.llama_embedded``) and the tests' fake Ollama, so
both answer byte for byte as Ollama does.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

NDJSON = "application/x-ndjson"


def go_json(obj: Any) -> bytes:
    """Compact JSON as Go's encoding/json writes it (HTML characters escaped)."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        text = text.replace(char, escaped)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()


def created_at() -> str:
    """``time.Now().UTC()`` in RFC 3339 with trailing fractional zeros trimmed."""
    now_ns = time.time_ns()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now_ns // 1_000_000_000))
    fraction = f"{now_ns % 1_000_000_000:09d}".rstrip("0")
    return f"{stamp}.{fraction}Z" if fraction else f"{stamp}Z"


def json_response(payload: Any, status: int = 200) -> web.Response:
    """A JSON body as Ollama sends it (Go escaping, ``charset=utf-8``)."""
    return web.Response(
        body=go_json(payload), status=status, content_type="application/json", charset="utf-8"
    )


async def start_ndjson(request: web.Request) -> web.StreamResponse:
    """Begin a chunked NDJSON response."""
    response = web.StreamResponse(headers={"Content-Type": NDJSON})
    await response.prepare(request)
    return response


def full_name(model: str) -> str:
    """Ollama's name resolution: a name without a tag means ``:latest``."""
    return model if ":" in model else f"{model}:latest"
