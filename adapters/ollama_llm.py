"""The LLM port on Ollama's official async client (``ollama.AsyncClient``).

Library errors are translated here, at the boundary, into the core's error tree:

    connection refused, connect or read timeout     -> LLMUnavailable
    connection dropped before the first chunk       -> LLMUnavailable
    HTTP 502 (HAProxy: no host up, or it hung up)   -> LLMUnavailable
    HTTP 504 (HAProxy: the host did not answer)     -> LLMUnavailable (did not answer in time)
    HTTP 404 (model not pulled)                     -> ModelNotFound (says how to pull it)
    HTTP 503 (Ollama's queue is full)               -> LLMBusy
    HTTP 500 "failed to process inputs" (an image)  -> LLMFailed (the picture looks damaged)
    HTTP 500, other statuses, error mid-stream      -> LLMFailed
    stream ended or dropped before ``done``         -> LLMFailed (the reply was cut off)

Every request's text is cleared of the control tokens of the model it goes to (its template's
and tokenizer's, from ``/api/show``, see ``adapters.ollama_tokens``), not only the common
families' that the core knows.

A request that got nothing back (no connection, a busy server, a connection dropped or a 502
before the first byte) is tried again a few times with jittered exponential backoff; behind
HAProxy the next try goes to a host that answers. Once a piece of the reply was yielded nothing
is retried, so streamed text is never repeated, and the user is told instead.

A model whose ``/api/show`` lists the ``thinking`` capability is asked to think (``think``);
its reasoning arrives apart from the answer, as ``StreamEvent.thinking``. Other models are not
sent the flag at all: Ollama refuses it for them (HTTP 400, "... does not support thinking").

Every chat request carries ``X-Ollabot-Affinity`` (the conversation's digest) when the request
has one: HAProxy hashes it to keep a conversation on one host; a single Ollama ignores it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
from collections.abc import AsyncGenerator, Awaitable, Mapping
from dataclasses import replace
from typing import Any, TypeVar, cast

import httpx
import ollama
import structlog

from adapters.aiohttp_transport import AiohttpTransport, extra_headers
from adapters.ollama_tokens import ModelFacts, ModelFactsCache
from core.errors import LLMBusy, LLMError, LLMFailed, LLMUnavailable, ModelNotFound
from core.i18n import N_
from core.media import DAMAGED_IMAGE
from core.models import ChatMessage, ChatRequest, DoneReason, StreamEvent
from core.prompting import neutralise

T = TypeVar("T")
log = structlog.get_logger(__name__)

CUT_OFF = N_("The reply was cut off: the model server stopped before finishing; please try again.")
DROPPED = N_("The model server closed the connection before answering; please try again shortly.")
TIMED_OUT = N_("The model server did not answer in time; please try again shortly.")
# ValueError covers a truncated NDJSON line (JSONDecodeError) and a malformed chunk.
LIBRARY_ERRORS = (ollama.ResponseError, ConnectionError, httpx.HTTPError, ValueError)
CONNECT_ERRORS = (ConnectionError, httpx.ConnectError, httpx.ConnectTimeout)
# A connection closed before the response's first byte: nothing of the reply was seen.
DROP_ERRORS = (httpx.RemoteProtocolError, httpx.ReadError)
AFFINITY_HEADER = "X-Ollabot-Affinity"
THINKING = "thinking"  # the capability, as /api/show names it


class OllamaLLM:
    """Streams chat replies from an Ollama server; also answers ``doctor`` questions."""

    def __init__(
        self,
        host: str,
        *,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 300.0,
        keep_alive: str | int = "30m",
        retries: int = 2,
        backoff_s: float = 0.5,
        max_connections: int = 8,
        show_timeout_s: float = 10.0,
    ) -> None:
        timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s)
        # Ollama generates OLLAMA_NUM_PARALLEL replies at a time and queues the rest, so a few
        # connections serve it fully.
        transport = AiohttpTransport(max_connections)
        self._client = ollama.AsyncClient(host=host, timeout=timeout, transport=transport)
        self._keep_alive = keep_alive_value(keep_alive)
        self._retries = retries
        self._backoff_s = backoff_s
        self._show_timeout_s = show_timeout_s
        self._facts = ModelFactsCache(self.show)

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        """Yield the reply piece by piece, then one ``done`` event with Ollama's counts."""
        facts = await self.facts(request.model)
        request = without_control_tokens(request, facts.control_tokens)
        think = THINKING in facts.capabilities
        for attempt in range(self._retries + 1):
            started = False
            try:
                async with contextlib.aclosing(self._attempt(request, think)) as events:
                    async for event in events:
                        started = True
                        yield event
                return
            except LLMError as error:
                if started or attempt >= self._retries or not is_retryable(error):
                    raise
                log.warning("ollama_retry", attempt=attempt + 1, error=type(error).__name__)
            await asyncio.sleep(self._backoff(attempt))

    async def _attempt(
        self, request: ChatRequest, think: bool
    ) -> AsyncGenerator[StreamEvent, None]:
        received = False
        try:
            parts = await self._send(request, think)
            final: StreamEvent | None = None
            # Closing the generator closes the HTTP stream, and only then does Ollama stop.
            async with contextlib.aclosing(parts) as chunks:
                part = await self._first(chunks, request.affinity)
                while part is not None:
                    received = True
                    if part.done:
                        final = final_event(part)
                    elif part.message.content or part.message.thinking:
                        yield piece_event(part)
                    part = await anext(chunks, None)
        except LIBRARY_ERRORS as error:
            raise translate(error, request.model, received) from error
        # The done chunk is yielded only after the response ended: leaving the stream early
        # would close the connection instead of returning it to the pool.
        if final is not None:
            yield final
            return
        log.warning("ollama_stream_cut_off", model=request.model)
        raise LLMFailed(CUT_OFF)

    async def _send(
        self, request: ChatRequest, think: bool
    ) -> AsyncGenerator[ollama.ChatResponse, None]:
        parts = await self._client.chat(
            model=request.model,
            messages=[wire_message(m) for m in request.messages],
            options=dict(request.options),
            stream=True,
            keep_alive=self._keep_alive,
            think=True if think else None,  # None: not sent at all
        )
        return cast(AsyncGenerator[ollama.ChatResponse, None], parts)

    @staticmethod
    async def _first(
        chunks: AsyncGenerator[ollama.ChatResponse, None], affinity: str
    ) -> ollama.ChatResponse | None:
        """The first chunk: the client sends the request only when it is asked for one."""
        with extra_headers({AFFINITY_HEADER: affinity} if affinity else {}):
            return await anext(chunks, None)

    def _backoff(self, attempt: int) -> float:
        return float(self._backoff_s * 2**attempt * random.uniform(0.5, 1.0))

    async def facts(self, model: str) -> ModelFacts:
        """The model's control tokens and capabilities (empty while ``/api/show`` fails)."""
        return await self._facts.of(model)

    async def capabilities(self, model: str) -> frozenset[str]:
        """What ``/api/show`` says the model can do (``vision``…); empty while it fails."""
        return (await self.facts(model)).capabilities

    async def version(self) -> str:
        """The server's version (``GET /api/version``)."""
        # ollama-python has no version() method; _request_raw keeps its URL and error handling.
        call = self._client._request_raw("GET", "/api/version")  # type: ignore[no-untyped-call]
        response = await self._guarded(call)
        return str(response.json()["version"])

    async def show(self, model: str) -> Mapping[str, Any]:
        """``/api/show`` with the tokenizer's vocabulary (``verbose``), within a short timeout."""
        body = {"model": model, "verbose": True}
        call = self._client._request_raw("POST", "/api/show", json=body)  # type: ignore[no-untyped-call]
        async with asyncio.timeout(self._show_timeout_s):
            response = await self._guarded(call, model)
        shown: Mapping[str, Any] = response.json()
        return shown

    async def installed_models(self) -> list[str]:
        """Tags of the models pulled on the server (``GET /api/tags``)."""
        listing = await self._guarded(self._client.list())
        return [model.model for model in listing.models if model.model]

    async def loaded_models(self) -> list[dict[str, Any]]:
        """Models loaded in memory, as ``/api/ps`` describes them (size, size_vram, context)."""
        running = await self._guarded(self._client.ps())
        return [model.model_dump(mode="json", exclude_none=True) for model in running.models]

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.close()  # type: ignore[no-untyped-call]

    async def _guarded(self, call: Awaitable[T], model: str = "") -> T:
        try:
            return await call
        except LIBRARY_ERRORS as error:
            raise translate(error, model) from error


def without_control_tokens(request: ChatRequest, tokens: frozenset[str]) -> ChatRequest:
    """The request with ``tokens`` (and the common families' tokens) made plain text."""
    messages = tuple(m._replace(content=neutralise(m.content, tokens)) for m in request.messages)
    return replace(request, messages=messages)


def wire_message(message: ChatMessage) -> dict[str, Any]:
    """A message as ``/api/chat`` takes it; the client sends images base64-encoded."""
    sent: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.images:
        sent["images"] = [ollama.Image(value=image) for image in message.images]
    return sent


def keep_alive_value(keep_alive: str | int) -> str | int:
    """Ollama reads a string as a Go duration ("30m") and a number as seconds (-1: forever),
    so a bare number from the environment ("-1", "600") must travel as a number."""
    if isinstance(keep_alive, str) and re.fullmatch(r"-?\d+", keep_alive.strip()):
        return int(keep_alive)
    return keep_alive


def piece_event(part: ollama.ChatResponse) -> StreamEvent:
    """A chunk of the answer, of the reasoning before it, or (rarely) of both."""
    return StreamEvent(delta=part.message.content or "", thinking=part.message.thinking or "")


def final_event(part: ollama.ChatResponse) -> StreamEvent:
    """The closing event: why generation stopped and how many tokens it took."""
    reason = part.done_reason or ""
    return StreamEvent(
        delta=part.message.content or "",
        done=True,
        done_reason=DoneReason(reason) if reason in {"stop", "length"} else DoneReason.UNKNOWN,
        prompt_eval_count=part.prompt_eval_count or 0,
        eval_count=part.eval_count or 0,
        eval_duration_ns=part.eval_duration or 0,
        prompt_eval_duration_ns=part.prompt_eval_duration or 0,
    )


def translate(error: Exception, model: str, received: bool = False) -> LLMError:
    """The core error (with its user notice) for a library error; ``received``: after a chunk."""
    if isinstance(error, ollama.ResponseError):
        return from_status(error, model)
    if isinstance(error, CONNECT_ERRORS):
        return LLMUnavailable()
    if isinstance(error, httpx.TimeoutException):
        return LLMUnavailable(TIMED_OUT)
    log.warning("ollama_stream_broken", model=model, error=repr(error))
    return LLMFailed(CUT_OFF) if received else LLMUnavailable(DROPPED)


def from_status(error: ollama.ResponseError, model: str) -> LLMError:
    """Map Ollama's HTTP status (``-1``: an error line mid-stream) to the core error."""
    log.warning("ollama_error", model=model, status=error.status_code, error=error.error)
    if error.status_code == 404:
        return ModelNotFound(
            N_(
                "The model {model} is not installed on the server; an operator can install it "
                "with `ollabot model pull {model}`."
            ),
            model=model,
        )
    if error.status_code == 503:
        return LLMBusy()
    if error.status_code == 502:
        return LLMUnavailable()
    if error.status_code == 504:
        return LLMUnavailable(TIMED_OUT)
    if error.status_code == -1:
        return LLMFailed(N_("The model failed in the middle of the reply; please try again."))
    if error.status_code == 500 and "failed to process inputs" in str(error.error):
        return LLMFailed(DAMAGED_IMAGE)  # the runner could not decode an image it was sent
    return LLMFailed()


def is_retryable(error: LLMError) -> bool:
    """Worth another try: nothing of the reply came back (no connection, a busy server, a
    connection dropped or a proxy's 502 before the first byte). A timeout is not: the model
    may be loading, and another try would only wait again."""
    cause = error.__cause__
    if isinstance(cause, ollama.ResponseError):
        return cause.status_code in (502, 503)
    return isinstance(error, LLMUnavailable) and isinstance(cause, CONNECT_ERRORS + DROP_ERRORS)
