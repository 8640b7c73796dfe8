"""The chat service: one inbox entry in, one streamed reply out, history kept consistent."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import NamedTuple

from core import commands, presets
from core.affinity import Affinity, affinity_of
from core.errors import LLMError, MessageRejected, OllabotError, StoreUnavailable
from core.fewshot import FewShotCatalog
from core.models import (
    ChatRequest,
    ConversationContext,
    DoneReason,
    InboxEntry,
    IncomingMessage,
    Outcome,
    StoredReply,
    StreamEvent,
    Turn,
    TurnState,
)
from core.ports import LLM, ConversationStore, Metrics, NullMetrics, ReplySink
from core.prompting import DEFAULT_SYSTEM_PROMPT, Budget, TokenEstimator, assemble

MODEL_WAITING_NOTICE = (
    "⏳ The model is busy or still loading; your message is waiting and will be answered."
)


@dataclass(frozen=True, slots=True)
class ChatConfig:
    """Deployment-wide knobs of the chat service."""

    default_model: str
    num_ctx: int = 8192
    default_system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_message_chars: int = 16_000
    history_turns: int = 200
    lock_ttl_ms: int = 30_000
    context_margin: int = 64
    first_token_s: float = 20.0
    delivery_deadline_s: float = 3600.0
    store_retry_s: float = 60.0
    affinity: Affinity = Affinity.CONVERSATION


class Handled(NamedTuple):
    """What became of one attempt at an entry.

    ``reply`` is set when the entry is answered (now or earlier) and waits for delivery;
    otherwise ``state`` says why not yet (another worker's lease, an earlier message).
    ``cost_s`` is the GPU time the attempt spent.
    """

    state: TurnState
    reply: StoredReply | None = None
    cost_s: float = 0.0


class ChatService:
    """Answers messages taken from the inbox and stores each answer for delivery."""

    def __init__(
        self,
        llm: LLM,
        store: ConversationStore,
        catalog: FewShotCatalog,
        config: ChatConfig,
        owner: str,
        admin: commands.AdminService,
        estimator: TokenEstimator | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._llm = llm
        self._store = store
        self._catalog = catalog
        self._config = config
        self._owner = owner
        self.admin = admin
        self._estimator = estimator or TokenEstimator()
        self._metrics = metrics or NullMetrics()

    async def handle(self, entry: InboxEntry, sink: ReplySink, skip_order: bool = False) -> Handled:
        """Answer ``entry`` if it is its turn, and store the answer (or the notice) for delivery.

        ``StoreUnavailable`` before the answer is stored leaves the entry to be tried again.
        """
        c = self._config
        context = await self._store.load_context(
            entry, c.history_turns, self._owner, c.lock_ttl_ms, skip_order
        )
        if context.state is not TurnState.READY:
            return Handled(context.state)
        if context.handle:
            sink.resume(context.handle)
        if context.answered is not None:
            return Handled(TurnState.READY, context.answered)
        tracked = _TrackedSink(sink, self._store, entry.message)
        async with self._lease_renewed(entry.message.conversation):
            outcome, reply, cost = await self._answer(entry, context, tracked)
        stored = await self._stored(entry, outcome, reply)
        return Handled(TurnState.WAITING if stored is None else TurnState.READY, stored, cost)

    async def _answer(
        self, entry: InboxEntry, context: ConversationContext, sink: _TrackedSink
    ) -> tuple[Outcome | None, StoredReply, float]:
        message = entry.message
        try:
            if message.is_command:
                text = await self.admin.execute(message, commands.parse(message.text))
                return None, self._to_deliver(text), 0.0
            self._check_input(message)
            outcome, shown, cost = await self._measured(message, context, sink)
            return outcome, self._to_deliver(shown), cost
        except StoreUnavailable:
            raise
        except OllabotError as error:
            return None, self._to_deliver(error.notice, failed=True), 0.0

    def _to_deliver(self, text: str, failed: bool = False) -> StoredReply:
        return StoredReply(text, failed, time.time() + self._config.delivery_deadline_s)

    async def _stored(
        self, entry: InboxEntry, outcome: Outcome | None, reply: StoredReply
    ) -> StoredReply | None:
        """Store the answer; a write that timed out may have run, so repeating it is safe
        and it is repeated (for a while) rather than losing a generated answer."""
        delay, deadline = 0.1, time.monotonic() + self._config.store_retry_s
        while True:
            try:
                return await self._store.complete(entry, outcome, reply, self._owner)
            except StoreUnavailable:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _check_input(self, message: IncomingMessage) -> None:
        text = message.text.strip()
        if not text:
            raise MessageRejected("Send me some text and I will answer (try help for commands).")
        if len(text) > self._config.max_message_chars:
            raise MessageRejected(
                f"Your message has {len(text):,} characters; the limit is "
                f"{self._config.max_message_chars:,}. Please shorten it."
            )

    async def _measured(
        self, message: IncomingMessage, context: ConversationContext, sink: _TrackedSink
    ) -> tuple[Outcome, str, float]:
        platform, started = message.platform, time.monotonic()
        self._metrics.reply_started(platform)
        outcome = "error"
        try:
            result = await self._reply(message, context, sink)
            outcome = "ok"
            return result
        except OllabotError as error:
            outcome = type(error).__name__
            raise
        finally:
            first = sink.first_text_at - started if sink.first_text_at else None
            self._metrics.reply_finished(platform, outcome, first, time.monotonic() - started)

    async def _reply(
        self, message: IncomingMessage, context: ConversationContext, sink: _TrackedSink
    ) -> tuple[Outcome, str, float]:
        settings = context.settings
        params = presets.resolve(settings)
        next_seq = context.history[-1].seq + 1 if context.history else context.window_start
        author = message.author_name if message.in_group else ""
        user_turn = Turn("user", message.text.strip(), next_seq, author)
        prompt = assemble(
            settings.system_prompt or self._config.default_system_prompt,
            self._catalog.find(settings.fewshot),
            context.history,
            context.window_start,
            user_turn,
            Budget(
                self._config.num_ctx,
                min(params.max_tokens, self._config.num_ctx // 2),
                self._config.context_margin,
            ),
            self._estimator,
        )
        request = ChatRequest(
            settings.model or self._config.default_model,
            prompt.messages,
            presets.ollama_options(params, self._config.num_ctx),
            affinity_of(message, self._config.affinity),
        )
        await sink.begin()
        text, reason, cost = await self._stream(request, sink)
        reply = Turn("assistant", text, next_seq + 1)
        shown = text
        if reason is DoneReason.LENGTH:
            shown += f"\n\n(cut short: the reply reached the limit of {params.max_tokens} tokens)"
        return Outcome((user_turn, reply), prompt.window_start, text), shown, cost

    async def _stream(self, request: ChatRequest, sink: ReplySink) -> tuple[str, DoneReason, float]:
        """Stream the reply into ``sink``; returns the text, why it ended and its GPU time."""
        text, reason, started = "", DoneReason.UNKNOWN, time.monotonic()
        cost = 0.0
        async with contextlib.aclosing(self._llm.stream(request)) as events:
            async for event in self._told_when_slow(events, sink):
                if event.delta:
                    text += event.delta
                    await sink.update(text)
                if event.done:
                    reason = event.done_reason
                    cost = (event.prompt_eval_duration_ns + event.eval_duration_ns) / 1e9
                    self._observe(request, event)
        if not text.strip():
            raise LLMError("The model returned an empty reply; please rephrase and try again.")
        return text, reason, cost or time.monotonic() - started

    async def _told_when_slow(
        self, events: AsyncGenerator[StreamEvent, None], sink: ReplySink
    ) -> AsyncIterator[StreamEvent]:
        """The events, after telling the user once when the first is slow to come (a model
        loading, or every Ollama slot taken): the message still waits, up to the read timeout.
        """
        first = asyncio.ensure_future(anext(events, None))
        try:
            timeout = self._config.first_token_s
            while not (await asyncio.wait({first}, timeout=timeout))[0]:
                # repeated while waiting: a sink shows a preview only when its pacing allows
                await sink.update(MODEL_WAITING_NOTICE)
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

    def _observe(self, request: ChatRequest, event: StreamEvent) -> None:
        if event.prompt_eval_count:
            self._estimator.observe(request.messages, event.prompt_eval_count)
        if event.eval_count and event.eval_duration_ns:
            self._metrics.tokens_per_second(event.eval_count * 1e9 / event.eval_duration_ns)

    @contextlib.asynccontextmanager
    async def _lease_renewed(self, conversation: str) -> AsyncIterator[None]:
        """Keep the conversation's lease while answering; give it back if answering fails."""
        renewer = asyncio.create_task(self._renew(conversation))
        try:
            yield
        except BaseException:
            await _quietly(self._store.release_lock(conversation, self._owner))
            raise
        finally:
            renewer.cancel()

    async def _renew(self, conversation: str) -> None:
        while True:
            await asyncio.sleep(self._config.lock_ttl_ms / 3000)
            with contextlib.suppress(StoreUnavailable):
                await self._store.acquire_lock(conversation, self._owner, self._config.lock_ttl_ms)


class _TrackedSink:
    """Passes everything through; notes when text first showed and saves the sink's handle
    whenever it changes, so that a successor finishes this preview instead of leaving it."""

    def __init__(self, sink: ReplySink, store: ConversationStore, message: IncomingMessage) -> None:
        self._sink = sink
        self._store = store
        self._message = message
        self._saved: dict[str, str] = dict(sink.handle)
        self.first_text_at = 0.0

    @property
    def handle(self) -> dict[str, str]:
        return self._sink.handle

    def resume(self, handle: dict[str, str]) -> None:
        self._sink.resume(handle)

    async def begin(self) -> None:
        await self._sink.begin()
        await self._save_handle()

    async def update(self, text: str) -> None:
        if not self.first_text_at and text != MODEL_WAITING_NOTICE:
            self.first_text_at = time.monotonic()
        await self._sink.update(text)
        await self._save_handle()

    async def finish(self, text: str) -> None:
        await self._sink.finish(text)

    async def fail(self, notice: str) -> None:
        await self._sink.fail(notice)

    async def _save_handle(self) -> None:
        handle = self._sink.handle
        if handle != self._saved:
            self._saved = dict(handle)
            with contextlib.suppress(StoreUnavailable):  # a lost handle costs a new message
                await self._store.save_handle(self._message, handle)


async def _quietly(awaitable: object) -> None:
    """Await a best-effort cleanup whose own failure must not hide the first error."""
    with contextlib.suppress(Exception):
        await awaitable  # type: ignore[misc]
