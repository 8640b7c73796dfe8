"""A fake Ollama API server on loopback that speaks Ollama's real wire format.

What it emulates (see ``wire/README.md`` beside this file, section ollama/):
- ``POST /api/chat`` streamed as NDJSON (``application/x-ndjson``, one compact JSON object per
  line, ``<`` ``>`` ``&`` escaped as ``\\u003c``... like Go's encoding/json, metrics only on the
  final ``done`` chunk, ``created_at`` in RFC 3339 UTC with nanoseconds) or as one JSON object;
- errors as ``{"error": ...}`` with the HTTP status, or as a line mid-stream with status 200;
- ``GET /api/tags``, ``POST /api/show``, ``GET /api/ps``, ``POST /api/pull``, ``GET /api/version``,
  ``HEAD /`` and ``GET /`` ("Ollama is running");
- ``POST /api/embed`` for the models in ``embed_models``: deterministic vectors, a hashed bag of
  words (accents folded, short and common words left out), so texts sharing words are close
  and a search means something; another model is a 404 like Ollama's, and after
  ``embed_failing_after`` requests the runner "crashes" (500);
- ``/api/show`` answers the wire file, with a test's per-model fields (``shows``: template,
  parameters, tokenizer arrays) laid over it; like Ollama, arrays of more than five items
  (the vocabulary) are sent empty unless the request says ``verbose``; a ``shows`` entry with
  an ``error`` is answered with it and HTTP 500;
- thinking: a model whose ``/api/show`` capabilities include ``thinking`` (``add_thinking_model``)
  streams ``message.thinking`` chunks before the content when the request says ``think``; a
  ``think`` sent to any other model is refused like Ollama does (HTTP 400, ``"<model>" does not
  support thinking``).

Images (``messages[].images``, base64 as the client sends them) are checked the way Ollama
does: not base64 is a 400 (Go's decoding error), a model whose ``/api/show`` capabilities lack
``vision`` is a 400 (``"<model>" does not support vision``), bytes that are no JPEG, PNG or
WebP, and a JPEG cut short (no end-of-image marker), are a 500 from the image decoder.
``vision_model(name)`` installs a model that sees; the decoded images of each request are in
``images``.

What it does not: tokenise, load models, or honour sampling options. The reply text is
``echo: <last user message>`` unless a test scripted one (``FakeOllama.script``). Every request
is recorded in ``requests``; ``wait_for_chat(n)`` waits on the n-th chat request.

For several hosts behind a proxy, each fake has a ``PromptCache``: a crude model of Ollama's
prompt cache that remembers the last conversations (by ``X-Ollabot-Affinity``) this host saw, so
a chat request is a hit when its conversation was last seen here recently, a miss otherwise.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import hashlib
import json
import os
import re
import socket
import unicodedata
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from adapters.ollama_wire import (
    created_at,
    full_name,
    go_json,
    json_response,
    start_ndjson,
)

AFFINITY_HEADER = "X-Ollabot-Affinity"
DEFAULT_MODELS = ("llama3.1:8b-instruct-q8_0", "llama3.1:8b")
EMBED_DIM = 256
# Words too common to tell passages apart, in English and Spanish.
_COMMON_WORDS = (
    "the and for are was were with that this what which who how does from into your you its "
    "have has can will not but all any our they them their there when where why one "
    "los las del que con por para una uno unos unas como donde cuando quien cual sus esta este "
    "estos estas hay ser son fue muy mas sin sobre entre tiene puede"
)
STOPWORDS = frozenset(_COMMON_WORDS.split())


def wire_dir() -> Path:
    """Where the reference payloads live: ``$OLLABOT_WIRE_DIR`` or ``wire/ollama`` beside
    this file."""
    if env := os.environ.get("OLLABOT_WIRE_DIR"):
        return Path(env)
    return Path(__file__).resolve().parent / "wire" / "ollama"


def wire_json(name: str) -> Any:
    """One reference payload, parsed."""
    return json.loads((wire_dir() / name).read_text(encoding="utf-8"))


def wire_ndjson(name: str) -> list[dict[str, Any]]:
    """A reference NDJSON stream, one dict per line."""
    lines = (wire_dir() / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def error_text(status: int, model: str) -> str:
    """The real error sentence for an HTTP status (from the wire files)."""
    if status == 404:
        return f"model '{model}' not found"
    files = {500: "error_500_runner.json", 503: "error_503_busy.json"}
    return str(wire_json(files[status])["error"]) if status in files else "internal error"


def split_text(text: str, chunks: int | None) -> list[str]:
    """Word-sized pieces, or ``chunks`` pieces of about equal length."""
    if chunks is None:
        return re.findall(r"\s*\S+|\s+", text) or [text]
    size = max(1, -(-len(text) // max(1, chunks)))
    return [text[i : i + size] for i in range(0, len(text), size)] or [text]


@dataclass
class Reply:
    """How the fake answers one chat request (consumed one per request, in order).

    ``text=None`` means the default echo. ``status`` != 200 answers with that HTTP error
    (``error`` or the real sentence for 404/500/503). ``error_midway`` sends an error line after
    the chunks; ``done=False`` ends the stream without a ``done`` chunk (``abort`` drops the
    connection instead of ending the response; ``hang_up`` drops it before any byte, as a crashed
    server does). ``first_byte_gate`` holds the response before
    its first byte, ``hold_after`` holds the stream after that many chunks until ``hold_gate``.
    ``step`` paces the stream: every chunk after the first waits for one ``release()``.
    """

    text: str | None = None
    chunks: int | None = None
    done_reason: str = "stop"
    status: int = 200
    error: str | None = None
    error_midway: str | None = None
    done: bool = True
    abort: bool = False
    hang_up: bool = False
    first_byte_gate: asyncio.Event | None = None
    hold_gate: asyncio.Event | None = None
    hold_after: int = 1
    step: asyncio.Semaphore | None = None
    thinking: str | None = None  # the reasoning of a thinking model (None: a default one)

    @classmethod
    def not_found(cls) -> Reply:
        """HTTP 404 ``model '<requested>' not found``."""
        return cls(status=404)

    @classmethod
    def runner_crash(cls) -> Reply:
        """HTTP 500 from a crashed runner (the wire file's text)."""
        return cls(status=500)

    @classmethod
    def busy(cls) -> Reply:
        """HTTP 503 ``server busy`` (Ollama's queue is full)."""
        return cls(status=503)


@dataclass
class PromptCache:
    """The conversations a host remembers: the last ``size`` affinity keys it served.

    Ollama keeps the prompt of the last request in each slot and evaluates only what follows
    the longest common prefix; a host that served a conversation recently still has most of
    its prompt, one that never saw it evaluates the whole history. Counted per chat request.
    """

    size: int = 30
    hits: int = 0
    misses: int = 0

    def __post_init__(self) -> None:
        self._recent: OrderedDict[str, None] = OrderedDict()

    def serve(self, key: str) -> bool:
        """Note a request of conversation ``key``; True when its prompt was still cached."""
        hit = key in self._recent
        self.hits += hit
        self.misses += not hit
        self._recent[key] = None
        self._recent.move_to_end(key)
        while len(self._recent) > self.size:
            self._recent.popitem(last=False)
        return hit


@dataclass
class FakeOllama:
    """A started-on-demand aiohttp server; see the module docstring for what it emulates."""

    models: list[str] = field(default_factory=lambda: list(DEFAULT_MODELS))
    loaded: list[dict[str, Any]] = field(default_factory=list)
    version: str = "0.32.15"
    instant: bool = False
    requests: list[tuple[str, Any]] = field(default_factory=list)
    shows: dict[str, dict[str, Any]] = field(default_factory=dict)
    disconnects: int = 0
    streams_done: int = 0
    url: str = ""
    affinities: list[str | None] = field(default_factory=list)
    prompt_cache: PromptCache = field(default_factory=PromptCache)
    embed_models: list[str] = field(default_factory=lambda: ["nomic-embed-text:latest"])
    embed_failing_after: int | None = None  # embed requests answered before a runner crash

    def __post_init__(self) -> None:
        self._replies: deque[Reply] = deque()
        self._pulls: deque[list[dict[str, Any]]] = deque()
        self._changed = asyncio.Condition()
        self.disconnected = asyncio.Event()
        self._runner: web.AppRunner | None = None

    # -- scripting -------------------------------------------------------------------------

    def script(self, *replies: Reply) -> None:
        """Queue replies for the next chat requests (then back to the default echo)."""
        self._replies.extend(replies)

    def vision_model(self, model: str) -> None:
        """Install ``model`` with the ``vision`` capability."""
        self.models.append(model)
        self.shows[model] = {"capabilities": ["completion", "vision"]}

    @property
    def images(self) -> list[list[bytes]]:
        """The images of each chat request (decoded), oldest first."""
        return [
            [base64.b64decode(i) for m in body.get("messages", []) for i in m.get("images") or []]
            for body in self.chat_requests
        ]

    def script_pull(self, lines: list[dict[str, Any]]) -> None:
        """Queue the NDJSON lines of the next ``/api/pull`` (e.g. ending in ``{"error": ...}``)."""
        self._pulls.append(lines)

    def load(self, model: str, context_length: int = 8192, size_vram: int | None = None) -> None:
        """Show ``model`` as loaded in ``/api/ps`` (fully on the GPU unless ``size_vram``)."""
        entry = copy.deepcopy(wire_json("ps_response.json")["models"][0])
        entry.update(name=model, model=model, context_length=context_length)
        entry["details"] = tag_entry(model)["details"]
        if size_vram is not None:
            entry["size_vram"] = size_vram
        self.loaded.append(entry)

    def add_thinking_model(self, model: str) -> None:
        """Install ``model`` with the ``thinking`` capability."""
        if model not in self.models:
            self.models.append(model)
        self.shows.setdefault(model, {})["capabilities"] = ["completion", "thinking"]

    def thinks(self, model: str) -> bool:
        """Whether ``/api/show`` lists the ``thinking`` capability for ``model``."""
        shown = self.shows.get(full_name(model), {})
        capabilities = shown.get("capabilities", wire_json("show_response.json")["capabilities"])
        return "thinking" in capabilities

    @property
    def embed_requests(self) -> list[dict[str, Any]]:
        """Bodies of the ``/api/embed`` requests, oldest first."""
        return [body for path, body in self.requests if path == "/api/embed"]

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        """Bodies of the ``/api/chat`` requests, oldest first."""
        return [body for path, body in self.requests if path == "/api/chat"]

    async def wait_for_chat(self, n: int = 1, timeout: float = 5) -> dict[str, Any]:  # noqa: ASYNC109
        """Wait until ``n`` chat requests arrived; return the n-th body."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.chat_requests) >= n)
        return self.chat_requests[n - 1]

    async def wait_for_streams_done(self, n: int, timeout: float = 5) -> None:  # noqa: ASYNC109
        """Wait until ``n`` streamed chat replies were written to the end."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self.streams_done >= n)

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, port: int = 0) -> FakeOllama:
        """Listen on 127.0.0.1 on ``port`` (by default an ephemeral one); sets ``url``."""
        app = web.Application()
        app.router.add_route("HEAD", "/", self._root)
        app.router.add_get("/", self._root, allow_head=False)
        app.router.add_post("/api/chat", self._chat)
        app.router.add_get("/api/tags", self._tags)
        app.router.add_post("/api/show", self._show)
        app.router.add_get("/api/ps", self._ps)
        app.router.add_get("/api/version", self._version)
        app.router.add_post("/api/pull", self._pull)
        app.router.add_post("/api/embed", self._embed)
        self._runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=0.1, access_log=None
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        """Close every connection and stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- recording -------------------------------------------------------------------------

    async def _record(self, request: web.Request) -> Any:
        body = await request.json() if request.can_read_body else None
        async with self._changed:
            self.requests.append((request.path, body))
            self._changed.notify_all()
        return body

    async def _note_disconnect(self) -> None:
        self.disconnects += 1
        self.disconnected.set()

    # -- small endpoints -------------------------------------------------------------------

    async def _root(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.Response(text="Ollama is running")

    async def _version(self, request: web.Request) -> web.Response:
        await self._record(request)
        return json_response({"version": self.version})

    async def _tags(self, request: web.Request) -> web.Response:
        await self._record(request)
        return json_response({"models": [tag_entry(model) for model in self.models]})

    async def _ps(self, request: web.Request) -> web.Response:
        await self._record(request)
        return json_response({"models": self.loaded})

    async def _show(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        model = full_name(str(body.get("model") or body.get("name") or ""))
        if model not in self.models:
            return json_response({"error": f"model '{model}' not found"}, status=404)
        shown = wire_json("show_response.json")
        shown["details"] = tag_entry(model)["details"]
        extra = copy.deepcopy(self.shows.get(model, {}))
        if "error" in extra:  # e.g. a damaged manifest: Ollama answers 500
            return json_response({"error": extra["error"]}, status=500)
        shown["model_info"].update(extra.pop("model_info", {}))
        shown.update(extra)
        if not body.get("verbose"):
            info = shown["model_info"]
            info.update({k: [] for k, v in info.items() if isinstance(v, list) and len(v) > 5})
        return json_response(shown)

    # -- embed -------------------------------------------------------------------------------

    async def _embed(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        model = full_name(str(body.get("model") or ""))
        if model not in self.embed_models:
            error = f'model "{body.get("model")}" not found, try pulling it first'
            return json_response({"error": error}, status=404)
        if self.embed_failing_after is not None and len(self.embed_requests) > (
            self.embed_failing_after
        ):
            return json_response({"error": "llama runner process has terminated"}, status=500)
        given = body.get("input", "")
        texts = [given] if isinstance(given, str) else list(given)
        return json_response(
            {
                "model": model,
                "embeddings": [bag_of_words(str(t)) for t in texts],
                "total_duration": 14_143_917,
                "load_duration": 1_019_500,
                "prompt_eval_count": sum(len(str(t)) // 4 + 1 for t in texts),
            }
        )

    # -- pull --------------------------------------------------------------------------------

    async def _pull(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        model = full_name(str(body.get("model") or body.get("name") or ""))
        lines = self._pulls.popleft() if self._pulls else wire_ndjson("pull_stream.ndjson")
        if lines and lines[-1].get("status") == "success" and model not in self.models:
            self.models.append(model)
        if body.get("stream") is False:
            last = lines[-1] if lines else {"status": "success"}
            return json_response(last, status=500 if "error" in last else 200)
        response = await start_ndjson(request)
        for line in lines:
            await response.write(go_json(line) + b"\n")
        await response.write_eof()
        return response

    # -- chat --------------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        affinity = request.headers.get(AFFINITY_HEADER)
        self.affinities.append(affinity)
        if affinity is not None:
            self.prompt_cache.serve(affinity)
        reply = self._replies.popleft() if self._replies else Reply()
        try:
            return await self._answer(request, body, reply)
        except (ConnectionError, asyncio.CancelledError):
            await self._note_disconnect()
            raise

    async def _answer(
        self, request: web.Request, body: dict[str, Any], reply: Reply
    ) -> web.StreamResponse:
        model = str(body.get("model", ""))
        if (problem := bad_keep_alive(body.get("keep_alive"))) is not None:
            return json_response({"error": problem}, status=400)
        if reply.first_byte_gate is not None:
            await reply.first_byte_gate.wait()
        if reply.hang_up and request.transport is not None:
            request.transport.abort()
            return web.Response()
        if reply.status == 200 and full_name(model) not in self.models:
            reply = Reply.not_found()
        elif body.get("think") and not self.thinks(model):
            return json_response({"error": f'"{model}" does not support thinking'}, status=400)
        if reply.status == 200 and (unreadable := self._image_problem(model, body)) is not None:
            return json_response({"error": unreadable[1]}, status=unreadable[0])
        if reply.status != 200:
            text = reply.error or error_text(reply.status, model)
            return json_response({"error": text}, status=reply.status)
        text = reply.text if reply.text is not None else f"echo: {last_user_text(body)}"
        reasoning = reasoning_of(body, reply)  # a think that got here is one the model can do
        if body.get("stream") is False:
            return json_response(whole_reply(model, text, body, reply, reasoning))
        thoughts = split_text(reasoning, reply.chunks) if reasoning else []
        lines = [thinking_chunk(model, piece) for piece in thoughts]
        lines += [chunk(model, piece) for piece in split_text(text, reply.chunks)]
        return await self._stream_chat(request, model, lines, body, reply)

    async def _stream_chat(
        self,
        request: web.Request,
        model: str,
        chunks: list[dict[str, Any]],
        body: dict[str, Any],
        reply: Reply,
    ) -> web.StreamResponse:
        response = await start_ndjson(request)
        lines = [go_json(piece) + b"\n" for piece in chunks]
        if self.instant and reply.hold_gate is None and reply.step is None:
            await response.write(b"".join(lines))
        else:
            for index, line in enumerate(lines):
                if index == reply.hold_after:
                    await self._hold(reply)
                if index and reply.step is not None:
                    await reply.step.acquire()
                await response.write(line)
            if reply.hold_after >= len(lines):
                await self._hold(reply)
        if reply.error_midway is not None:
            await response.write(go_json({"error": reply.error_midway}) + b"\n")
        elif reply.done:
            final = final_chunk(model, body, len(chunks), reply.done_reason)
            await response.write(go_json(final) + b"\n")
        elif reply.abort:
            assert request.transport is not None
            request.transport.abort()
            return response
        await response.write_eof()
        async with self._changed:
            self.streams_done += 1
            self._changed.notify_all()
        return response

    def _image_problem(self, model: str, body: dict[str, Any]) -> tuple[int, str] | None:
        images = [i for m in body.get("messages", []) for i in m.get("images") or []]
        if not images:
            return None
        try:
            decoded = [base64.b64decode(str(i), validate=True) for i in images]
        except binascii.Error:
            return 400, "illegal base64 data at input byte 0"
        capabilities = self.shows.get(full_name(model), {}).get("capabilities", [])
        if "vision" not in capabilities:
            return 400, f'"{model}" does not support vision'
        for data in decoded:
            if not data.startswith((b"\xff\xd8\xff", b"\x89PNG")) and data[8:12] != b"WEBP":
                return 500, "failed to process inputs: image: unknown format"
            if data.startswith(b"\xff\xd8") and not data.endswith(b"\xff\xd9"):
                return 500, "failed to process inputs: unexpected EOF"
        return None

    @staticmethod
    async def _hold(reply: Reply) -> None:
        if reply.hold_gate is not None:
            await reply.hold_gate.wait()


# -- payload builders ------------------------------------------------------------------------


GO_DURATION = re.compile(r"[-+]?(\d+(\.\d*)?(ns|us|µs|ms|s|m|h))+|[-+]?0")


def bad_keep_alive(value: Any) -> str | None:
    """Go's complaint about a ``keep_alive`` string that is not a duration (numbers are seconds)."""
    if not isinstance(value, str) or GO_DURATION.fullmatch(value):
        return None
    return f'time: missing unit in duration "{value}"'


# Approximate GGUF sizes of Llama 3.1 (bytes) by parameter count and quantization.
SIZES = {
    ("8.0B", "Q4_K_M"): 4_920_753_328,
    ("8.0B", "Q5_K_M"): 5_733_981_376,
    ("8.0B", "Q8_0"): 8_540_775_840,
    ("8.0B", "F16"): 16_068_891_904,
    ("70.6B", "Q4_K_M"): 42_520_395_584,
    ("70.6B", "Q8_0"): 74_975_068_000,
}


# Other models a deployment pulls beside Llama 3.1: family, parameters, quantisation, size on
# disk (approximate; the vision size counts its projector, as /api/tags does).
OTHER_MODELS = {
    "llama3.2-vision:11b": ("mllama", "10.7B", "Q4_K_M", 7_901_829_417),
    "nomic-embed-text:latest": ("nomic-bert", "137M", "F16", 274_302_450),
}


def quantization_of(model: str) -> tuple[str, str]:
    """Parameter size and quantization named by a tag (Ollama's defaults: 8B, Q4_K_M)."""
    tag = model.lower()
    params = "70.6B" if ":70b" in tag else "8.0B"
    found = re.search(r"(q\d_[0-9a-z_]+|fp16)$", tag)
    if found is None:
        return params, "Q4_K_M"
    quant = found.group(1)
    return params, "F16" if quant == "fp16" else quant.upper()


def tag_entry(model: str) -> dict[str, Any]:
    """The wire file's ``/api/tags`` entry, or one shaped like it for this tag."""
    recorded = {m["model"]: m for m in wire_json("tags_response.json")["models"]}
    if model in recorded:
        return dict(recorded[model])
    entry: dict[str, Any] = copy.deepcopy(recorded["llama3.1:8b"])
    params, quant = quantization_of(model)
    size = SIZES.get((params, quant), entry["size"])
    if model in OTHER_MODELS:
        family, params, quant, size = OTHER_MODELS[model]
        entry["details"].update(family=family, families=[family])
    digest = hashlib.sha256(model.encode()).hexdigest()
    entry.update(name=model, model=model, size=size, digest=digest)
    entry["details"].update(parameter_size=params, quantization_level=quant)
    return entry


def last_user_text(body: dict[str, Any]) -> str:
    """Content of the last user message of a chat request."""
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    return str(users[-1].get("content", "")) if users else ""


def prompt_tokens(body: dict[str, Any]) -> int:
    """A realistic prompt size: about 4 characters per token plus template tokens per message."""
    messages = body.get("messages", [])
    return sum(len(str(m.get("content", ""))) for m in messages) // 4 + 4 * len(messages) + 1


def chunk(model: str, piece: str) -> dict[str, Any]:
    """One streamed content chunk (no metrics: they are omitted when zero)."""
    return {
        "model": model,
        "created_at": created_at(),
        "message": {"role": "assistant", "content": piece},
        "done": False,
    }


def thinking_chunk(model: str, piece: str) -> dict[str, Any]:
    """One streamed chunk of a thinking model's reasoning (the content is empty)."""
    return chunk(model, "") | {"message": {"role": "assistant", "content": "", "thinking": piece}}


def reasoning_of(body: dict[str, Any], reply: Reply) -> str:
    """What a thinking model reasons before answering, when the request asks it to think."""
    if not body.get("think"):
        return ""
    return reply.thinking if reply.thinking is not None else f"Pondering: {last_user_text(body)}"


def metrics(body: dict[str, Any], eval_count: int) -> dict[str, int]:
    """Counts and durations (ns) of a finished reply, 20 ms per generated token."""
    prompt_eval_count = prompt_tokens(body)
    eval_duration = 20_000_000 * max(1, eval_count)
    prompt_duration = 150_000 * prompt_eval_count
    return {
        "total_duration": 18_402_113 + prompt_duration + eval_duration,
        "load_duration": 18_402_113,
        "prompt_eval_count": prompt_eval_count,
        "prompt_eval_duration": prompt_duration,
        "eval_count": eval_count,
        "eval_duration": eval_duration,
    }


def final_chunk(model: str, body: dict[str, Any], eval_count: int, reason: str) -> dict[str, Any]:
    """The closing ``done`` chunk: empty content, ``done_reason`` and all metrics."""
    return {**chunk(model, ""), "done": True, "done_reason": reason, **metrics(body, eval_count)}


def whole_reply(
    model: str, text: str, body: dict[str, Any], reply: Reply, reasoning: str = ""
) -> dict[str, Any]:
    """The ``stream: false`` answer: one object with the full content and metrics."""
    message = {"role": "assistant", "content": text} | (
        {"thinking": reasoning} if reasoning else {}
    )
    count = len(split_text(text, reply.chunks))
    return final_chunk(model, body, count, reply.done_reason) | {"message": message}


def bag_of_words(text: str, dim: int = EMBED_DIM) -> list[float]:
    """A unit vector counting the text's words in ``dim`` hashed buckets."""
    folded = unicodedata.normalize("NFKD", text.lower())
    plain = "".join(c for c in folded if not unicodedata.combining(c))
    vector = [0.0] * dim
    for word in re.findall(r"[a-z0-9]+", plain):
        if len(word) > 2 and word not in STOPWORDS:
            digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
            vector[int.from_bytes(digest, "big") % dim] += 1.0
    norm = sum(v * v for v in vector) ** 0.5
    return [v / norm for v in vector] if norm else vector


def unused_port() -> int:
    """A loopback port nothing listens on (for "connection refused")."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def fake_ollama() -> AsyncIterator[FakeOllama]:
    """A started FakeOllama, stopped after the test."""
    fake = await FakeOllama().start()
    try:
        yield fake
    finally:
        await fake.stop()
