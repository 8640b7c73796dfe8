"""Streaming one reply from the model into a sink, with the two ways it can be cut short:
the model slow to begin (the user is told, the message keeps waiting) and ``/stop`` (the
stream to Ollama is closed at once, so its slot frees, and the text so far is kept).

A thinking model's reasoning is collected apart from the answer; while only reasoning comes,
the sink shows that the model is thinking."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field

from core.errors import LLMError
from core.i18n import N_, _
from core.models import ChatRequest, DoneReason, StreamEvent
from core.ports import LLM, ReplySink

MODEL_WAITING_NOTICE = N_(
    "⏳ The model is busy or still loading; your message is waiting and will be answered."
)
THINKING_NOTICE = N_("💭 Thinking…")
EMPTY_REPLY = N_("The model returned an empty reply; please rephrase and try again.")
THOUGHT_TOO_LONG = N_(
    "The model reached its token limit while still thinking, before answering; an admin can "
    "raise it (preset set max_tokens), or ask something narrower."
)


@dataclass(slots=True)
class Generated:
    """The reply so far; complete once ``reason`` is set. ``thinking``: the reasoning."""

    text: str = ""
    thinking: str = ""
    reason: DoneReason = DoneReason.UNKNOWN
    gpu_s: float = 0.0
    final: StreamEvent | None = None
    started: float = field(default_factory=time.monotonic)


async def generate(
    llm: LLM,
    request: ChatRequest,
    sink: ReplySink,
    first_token_s: float,
    stopped: asyncio.Event,
) -> Generated:
    """Stream the reply into ``sink`` until it ends or ``stopped`` is set.

    The GPU time is Ollama's prompt evaluation plus generation time, or the wall time when a
    stop cut the stream before Ollama said.
    """
    reply = Generated()
    streaming = asyncio.create_task(_stream(llm, request, sink, first_token_s, reply))
    stop = asyncio.create_task(stopped.wait())
    try:
        await asyncio.wait({streaming, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not streaming.done():
            streaming.cancel()  # closes the HTTP stream: Ollama stops generating
            reply.reason = DoneReason.STOPPED
        await asyncio.gather(streaming, return_exceptions=True)
    if reply.reason is not DoneReason.STOPPED:
        streaming.result()  # the model's error, if any
        if not reply.text.strip():
            thought_only = reply.thinking.strip() and reply.reason is DoneReason.LENGTH
            raise LLMError(THOUGHT_TOO_LONG if thought_only else EMPTY_REPLY)
    if reply.final is not None:
        reply.gpu_s = (reply.final.prompt_eval_duration_ns + reply.final.eval_duration_ns) / 1e9
    return reply if reply.gpu_s else _timed(reply)


def _timed(reply: Generated) -> Generated:
    reply.gpu_s = time.monotonic() - reply.started
    return reply


async def _stream(
    llm: LLM, request: ChatRequest, sink: ReplySink, first_token_s: float, reply: Generated
) -> None:
    async with contextlib.aclosing(llm.stream(request)) as events:
        async for event in _told_when_slow(events, sink, first_token_s):
            if event.thinking:
                reply.thinking += event.thinking
                if not reply.text:  # repeated: a sink shows it when its pacing allows
                    await sink.status(_(THINKING_NOTICE))
            if event.delta:
                reply.text += event.delta
                await sink.update(reply.text)
            if event.done:
                reply.reason, reply.final = event.done_reason, event


async def _told_when_slow(
    events: AsyncGenerator[StreamEvent, None], sink: ReplySink, first_token_s: float
) -> AsyncIterator[StreamEvent]:
    """The events, after telling the user when the first is slow to come (a model loading,
    or every Ollama slot taken): the message still waits, up to the read timeout."""
    first = asyncio.ensure_future(anext(events, None))
    try:
        timeout = first_token_s
        while not (await asyncio.wait({first}, timeout=timeout))[0]:
            # repeated while waiting: a sink shows it only when its pacing allows
            await sink.status(_(MODEL_WAITING_NOTICE))
            timeout = 1.0
        event = await first
    finally:
        if not first.done():
            first.cancel()
            await asyncio.gather(first, return_exceptions=True)
    if event is None:
        return
    yield event
    async for event in events:
        yield event
