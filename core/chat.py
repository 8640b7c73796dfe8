"""The chat service: one inbox entry in, one streamed reply out, history kept consistent."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from core import commands, presets
from core.errors import LLMError, MessageRejected, OllabotError, StoreUnavailable
from core.fewshot import FewShotCatalog
from core.models import (
    ChatRequest,
    ConversationContext,
    DoneReason,
    InboxEntry,
    IncomingMessage,
    Outcome,
    Turn,
)
from core.ports import LLM, ConversationStore, Inbox, Metrics, NullMetrics, ReplySink
from core.prompting import DEFAULT_SYSTEM_PROMPT, Budget, TokenEstimator, assemble


@dataclass(frozen=True, slots=True)
class ChatConfig:
    """Deployment-wide knobs of the chat service."""

    default_model: str
    num_ctx: int = 8192
    default_system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_message_chars: int = 16_000
    history_turns: int = 200
    rate_limit: int = 20
    rate_window_s: int = 60
    lock_ttl_ms: int = 30_000
    lock_wait_s: float = 120.0
    context_margin: int = 64


class ChatService:
    """Answers messages taken from the inbox; acknowledges each entry exactly when done."""

    def __init__(
        self,
        llm: LLM,
        store: ConversationStore,
        inbox: Inbox,
        catalog: FewShotCatalog,
        config: ChatConfig,
        owner: str,
        estimator: TokenEstimator | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._llm = llm
        self._store = store
        self._inbox = inbox
        self._catalog = catalog
        self._config = config
        self._owner = owner
        self._estimator = estimator or TokenEstimator()
        self._metrics = metrics or NullMetrics()
        self.admin = commands.AdminService(
            store,
            catalog,
            config.default_model,
            config.num_ctx,
            config.default_system_prompt,
            config.rate_limit,
            config.rate_window_s,
        )

    async def handle(self, entry: InboxEntry, sink: ReplySink) -> None:
        """Answer one entry. ``StoreUnavailable`` leaves it pending, to be retried later."""
        message = entry.message
        try:
            if message.is_command:
                await sink.finish(await self.admin.execute(message, commands.parse(message.text)))
            else:
                self._check_input(message)
                await self._measured(entry, sink)
                return
        except StoreUnavailable as error:
            await _quietly(sink.fail(error.notice))
            raise
        except OllabotError as error:
            await sink.fail(error.notice)
        await self._inbox.acknowledge(message.platform, entry.entry_id)

    def _check_input(self, message: IncomingMessage) -> None:
        text = message.text.strip()
        if not text:
            raise MessageRejected("Send me some text and I will answer (try help for commands).")
        if len(text) > self._config.max_message_chars:
            raise MessageRejected(
                f"Your message has {len(text):,} characters; the limit is "
                f"{self._config.max_message_chars:,}. Please shorten it."
            )

    async def _measured(self, entry: InboxEntry, sink: ReplySink) -> None:
        platform, started = entry.message.platform, time.monotonic()
        timing = _Timing(started)
        self._metrics.reply_started(platform)
        outcome = "error"
        try:
            await self._converse(entry, _TimedSink(sink, timing))
            outcome = "ok"
        except OllabotError as error:
            outcome = type(error).__name__
            raise
        finally:
            first = timing.first_token - started if timing.first_token else None
            self._metrics.reply_finished(platform, outcome, first, time.monotonic() - started)

    async def _converse(self, entry: InboxEntry, sink: ReplySink) -> None:
        message = entry.message
        async with self._conversation_lock(message) as lock:
            context = lock.context
            if context.answered is not None:
                await sink.finish(context.answered)
            elif context.recent_messages > self._config.rate_limit:
                raise MessageRejected(
                    f"You are sending messages too fast (limit {self._config.rate_limit} per "
                    f"{self._config.rate_window_s} s); please wait a moment."
                )
            else:
                outcome, shown = await self._reply(message, context, sink)
                await self._store.complete(entry, outcome, self._owner)
                lock.released = True
                await sink.finish(shown)
                return
        await self._inbox.acknowledge(message.platform, entry.entry_id)

    async def _reply(
        self, message: IncomingMessage, context: ConversationContext, sink: ReplySink
    ) -> tuple[Outcome, str]:
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
        )
        await sink.begin()
        text, reason = await self._stream(request, sink)
        reply = Turn("assistant", text, next_seq + 1)
        shown = text
        if reason is DoneReason.LENGTH:
            shown += f"\n\n(cut short: the reply reached the limit of {params.max_tokens} tokens)"
        return Outcome((user_turn, reply), prompt.window_start, text), shown

    async def _stream(self, request: ChatRequest, sink: ReplySink) -> tuple[str, DoneReason]:
        text, reason = "", DoneReason.UNKNOWN
        async with contextlib.aclosing(self._llm.stream(request)) as events:
            async for event in events:
                if event.delta:
                    text += event.delta
                    await sink.update(text)
                if event.done:
                    reason = event.done_reason
                    if event.prompt_eval_count:
                        self._estimator.observe(request.messages, event.prompt_eval_count)
                    if event.eval_count and event.eval_duration_ns:
                        self._metrics.tokens_per_second(
                            event.eval_count * 1e9 / event.eval_duration_ns
                        )
        if not text.strip():
            raise LLMError("The model returned an empty reply; please rephrase and try again.")
        return text, reason

    @contextlib.asynccontextmanager
    async def _conversation_lock(self, message: IncomingMessage) -> AsyncIterator[_Held]:
        """Hold the conversation's lock (renewed meanwhile) with the context loaded under it."""
        held = _Held(await self._locked_context(message))
        renewer = asyncio.create_task(self._renew(message.conversation))
        try:
            yield held
        finally:
            renewer.cancel()
            if not held.released:
                await _quietly(self._store.release_lock(message.conversation, self._owner))

    async def _locked_context(self, message: IncomingMessage) -> ConversationContext:
        c = self._config
        delay, waited = 0.01, 0.0
        while True:
            context = await self._store.load_context(
                message, c.history_turns, c.rate_window_s, self._owner, c.lock_ttl_ms
            )
            if context.locked:
                return context
            if waited >= c.lock_wait_s:
                raise LLMError("Another reply in this conversation is taking too long; try again.")
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 0.5)

    async def _renew(self, conversation: str) -> None:
        while True:
            await asyncio.sleep(self._config.lock_ttl_ms / 3000)
            with contextlib.suppress(StoreUnavailable):
                await self._store.acquire_lock(conversation, self._owner, self._config.lock_ttl_ms)


@dataclass(slots=True)
class _Timing:
    started: float
    first_token: float = 0.0


class _TimedSink:
    """Passes everything through and notes when the first text arrived."""

    def __init__(self, sink: ReplySink, timing: _Timing) -> None:
        self._sink = sink
        self._timing = timing

    async def begin(self) -> None:
        await self._sink.begin()

    async def update(self, text: str) -> None:
        if not self._timing.first_token:
            self._timing.first_token = time.monotonic()
        await self._sink.update(text)

    async def finish(self, text: str) -> None:
        await self._sink.finish(text)

    async def fail(self, notice: str) -> None:
        await self._sink.fail(notice)


@dataclass(slots=True)
class _Held:
    context: ConversationContext
    released: bool = False


async def _quietly(awaitable: object) -> None:
    """Await a best-effort cleanup whose own failure must not hide the first error."""
    with contextlib.suppress(Exception):
        await awaitable  # type: ignore[misc]
