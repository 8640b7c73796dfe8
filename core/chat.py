"""The chat service: one inbox entry in, one streamed reply out, history kept consistent."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import NamedTuple

from core import commands, presets, quota
from core.affinity import Affinity, affinity_of
from core.errors import (
    FileRefused,
    LLMError,
    MessageRejected,
    ModelNotFound,
    OllabotError,
    StoreUnavailable,
)
from core.fewshot import FewShotCatalog
from core.generation import Generated, generate
from core.i18n import N_, Translations, _, only_english, speaking
from core.knowledge import Hit, sources_line
from core.knowledge_base import KnowledgeBase
from core.media import (
    DEFAULT_VISION_MODEL,
    MB,
    PICTURE_GONE,
    MediaConfig,
    MediaReader,
    Read,
    shows_pictures,
)
from core.models import (
    ChatRequest,
    ConversationContext,
    DoneReason,
    InboxEntry,
    IncomingMessage,
    Outcome,
    StoredReply,
    Turn,
    TurnState,
)
from core.ports import (
    LLM,
    ConversationStore,
    FileSource,
    Metrics,
    ModelInfo,
    NullMetrics,
    ReplySink,
    Transcriber,
)
from core.prompting import DEFAULT_SYSTEM_PROMPT, Budget, Knowledge, TokenEstimator, assemble
from core.text import shortened

STOPPING = N_("Stopping the reply.")
NOTHING_TO_STOP = N_("Nothing is being written here right now.")
NOTHING_TO_RETRY = N_("There is no answer to write again yet.")
UNDONE = N_("Forgot the last question and its answer.")
NOTHING_TO_UNDO = N_("There is nothing to undo yet.")
STOPPED_MARK = N_("(stopped)")
# The most of a reply's reasoning kept for delivery; every platform shows less than this.
REASONING_KEPT_CHARS = 4000


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
    stop_check_s: float = 0.5  # how soon a /stop from any process is noticed
    default_preset: str = presets.DEFAULT_PRESET  # what a new channel starts with
    language: str = "en"  # for users whose platform gives no language ollabot speaks
    vision_model: str = DEFAULT_VISION_MODEL  # for pictures when the channel's model is blind
    max_file_bytes: int = 20 * MB
    max_images: int = 4


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
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        translations: Translations = only_english,
        knowledge: KnowledgeBase | None = None,
        transcriber: Transcriber | None = None,
        models: ModelInfo | None = None,
    ) -> None:
        self._knowledge = knowledge
        self._clock = clock
        self._charging: set[asyncio.Task[None]] = set()
        self.translations = translations
        self._llm = llm
        self._store = store
        self._catalog = catalog
        self._config = config
        self._owner = owner
        self.admin = admin
        self._estimator = estimator or TokenEstimator()
        self._metrics = metrics or NullMetrics()
        media = MediaConfig(config.max_file_bytes, config.max_images, config.vision_model)
        self._media = MediaReader(media, transcriber, models)

    def add_file_source(self, platform: str, files: FileSource) -> None:
        """Where the attachments of ``platform``'s messages (and documents for ``kb add``)
        are fetched from."""
        self._media.files[platform] = files
        if self._knowledge is not None:
            self._knowledge.add_file_source(platform, files)

    async def handle(self, entry: InboxEntry, sink: ReplySink, skip_order: bool = False) -> Handled:
        """Answer ``entry`` if it is its turn, and store the answer (or the notice) for delivery.

        ``StoreUnavailable`` before the answer is stored leaves the entry to be tried again.
        """
        with speaking(self.translations(entry.message.language)):
            return await self._handle(entry, sink, skip_order)

    async def _handle(self, entry: InboxEntry, sink: ReplySink, skip_order: bool) -> Handled:
        if commands.is_urgent(entry.message):
            return await self._urgent(entry)
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
        async with self._leased(entry.message) as stopped:
            outcome, reply, cost = await self._answer(entry, context, tracked, stopped)
        stored = await self._stored(entry, outcome, reply, self._owner)
        if stored is reply and cost:  # charged beside the delivery, not before it
            charge = self._store.charge(entry.message, quota.today(self._now()), cost)
            self._charging.add(task := asyncio.create_task(_quietly(charge)))
            task.add_done_callback(self._charging.discard)
        return Handled(TurnState.WAITING if stored is None else TurnState.READY, stored, cost)

    async def _urgent(self, entry: InboxEntry) -> Handled:
        """``stop``: answered at once, without the conversation's lease (whoever is writing
        holds it) and ahead of its waiting messages."""
        context = await self._store.load_context(entry, 0, "", 0, skip_order=True)
        if context.answered is not None:
            return Handled(TurnState.READY, context.answered)
        message = entry.message
        asked = await self._store.request_stop(message.channel, message.conversation, message.stops)
        reply = self._to_deliver(_(STOPPING if asked else NOTHING_TO_STOP))
        return Handled(TurnState.READY, await self._stored(entry, None, reply, ""))

    async def _answer(
        self,
        entry: InboxEntry,
        context: ConversationContext,
        sink: _TrackedSink,
        stopped: asyncio.Event,
    ) -> tuple[Outcome | None, StoredReply, float]:
        message = entry.message
        try:
            if message.is_command:
                command = commands.parse(message.text)
                if command.verb == "undo":
                    return _undone(context), self._to_deliver(_(_undo_text(context))), 0.0
                if command.verb != "retry":
                    text = await self.admin.execute(message, command)
                    return None, self._to_deliver(text), 0.0
                message, context = _retried(message, context)
            await self._check_quota(message, context)
            read = await self._media.read(message)
            self._check_input(read.message)
            return await self._measured(read, context, sink, stopped)
        except StoreUnavailable:
            raise
        except OllabotError as error:
            return None, self._to_deliver(error.localized(), failed=True), 0.0

    async def _check_quota(self, message: IncomingMessage, context: ConversationContext) -> None:
        settings = context.settings
        if message.author_id not in settings.user_quota_s and settings.channel_quota_s is None:
            return
        await asyncio.gather(*self._charging)  # this process's latest replies count too
        now = self._now()
        usage = await self._store.usage(message, quota.today(now))
        quota.check(settings, message.author_id, usage, now)

    def _to_deliver(self, text: str, failed: bool = False, reasoning: str = "") -> StoredReply:
        deadline = time.time() + self._config.delivery_deadline_s
        return StoredReply(text, failed, deadline, reasoning)

    async def _stored(
        self, entry: InboxEntry, outcome: Outcome | None, reply: StoredReply, owner: str
    ) -> StoredReply | None:
        """Store the answer; a write that timed out may have run, so repeating it is safe
        and it is repeated (for a while) rather than losing a generated answer."""
        delay, deadline = 0.1, time.monotonic() + self._config.store_retry_s
        while True:
            try:
                return await self._store.complete(entry, outcome, reply, owner)
            except StoreUnavailable:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _check_input(self, message: IncomingMessage) -> None:
        text = message.text.strip()
        if not text:
            raise MessageRejected(
                N_("Send me some text and I will answer (try help for commands).")
            )
        if len(text) > self._config.max_message_chars:
            raise MessageRejected(
                N_(
                    "Your message has {count:,} characters; the limit is {limit:,}. "
                    "Please shorten it."
                ),
                count=len(text),
                limit=self._config.max_message_chars,
            )

    async def _measured(
        self,
        read: Read,
        context: ConversationContext,
        sink: _TrackedSink,
        stopped: asyncio.Event,
    ) -> tuple[Outcome, StoredReply, float]:
        platform, started = read.message.platform, time.monotonic()
        self._metrics.reply_started(platform)
        outcome = "error"
        try:
            result = await self._reply(read, context, sink, stopped)
            outcome = "ok"
            return result
        except OllabotError as error:
            outcome = type(error).__name__
            raise
        finally:
            first = sink.first_text_at - started if sink.first_text_at else None
            self._metrics.reply_finished(platform, outcome, first, time.monotonic() - started)

    async def _reply(
        self,
        read: Read,
        context: ConversationContext,
        sink: _TrackedSink,
        stopped: asyncio.Event,
    ) -> tuple[Outcome, StoredReply, float]:
        message, settings = read.message, context.settings
        params = presets.resolve(settings)
        next_seq = context.history[-1].seq + 1 if context.history else context.window_start
        author = message.author_name if message.in_group else ""
        user_turn = Turn("user", message.text.strip(), next_seq, author)
        knowledge, unsearched = await self._knowledge_for(message, settings.knowledge)
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
            read.images,
            knowledge,
        )
        channel_model = settings.model or self._config.default_model
        request = ChatRequest(
            await self._media.model_for_images(channel_model) if read.images else channel_model,
            prompt.messages,
            presets.ollama_options(params, self._config.num_ctx),
            affinity_of(message, self._config.affinity),
        )
        await sink.begin()
        try:
            generated = await self._generate(request, read.heard, sink, stopped)
        except ModelNotFound as error:
            if request.model != channel_model:  # the vision model, for pictures
                raise self._media.missing(request.model) from error
            raise
        self._observe(request, generated)
        text = generated.text.strip() or _(STOPPED_MARK)
        reply = Turn("assistant", text, next_seq + 1)
        outcome = Outcome((user_turn, reply), prompt.window_start, text, context.replaces_from)
        reasoning = generated.thinking.strip() if settings.think == "show" else ""
        notes = [sources_line(prompt.passages, text), unsearched]
        answer = "\n\n".join([_shown(generated, text, params.max_tokens), *filter(None, notes)])
        shown = self._to_deliver(
            _quoted(read.heard, answer),
            reasoning=shortened(reasoning, REASONING_KEPT_CHARS),
        )
        return outcome, shown, generated.gpu_s

    async def _knowledge_for(self, message: IncomingMessage, on: bool) -> tuple[Knowledge, str]:
        """The channel's passages for the message, and a note when they could not be searched
        (the answer goes on without them)."""
        if self._knowledge is None or not on:
            return Knowledge(), ""
        hits: list[Hit] = []
        note = ""
        try:
            hits = await self._knowledge.search(message.channel, message.text)
        except LLMError as error:
            note = _("(I could not search this chat's documents: {reason})").format(
                reason=error.localized()
            )
        config = self._knowledge.config
        return Knowledge(tuple(hits), config.share, config.most), note

    async def _generate(
        self, request: ChatRequest, heard: str, sink: ReplySink, stopped: asyncio.Event
    ) -> Generated:
        """Stream the reply; what was heard in a voice note stays shown above it."""
        if heard:
            sink = _Heard(sink, heard)
            await sink.status("")
        return await generate(self._llm, request, sink, self._config.first_token_s, stopped)

    def _observe(self, request: ChatRequest, generated: Generated) -> None:
        event = generated.final
        if event is None or any(m.images for m in request.messages):
            return  # what an image costs varies by model: it would skew the calibration
        if event.prompt_eval_count:
            self._estimator.observe(request.messages, event.prompt_eval_count)
        if event.eval_count and event.eval_duration_ns:
            self._metrics.tokens_per_second(event.eval_count * 1e9 / event.eval_duration_ns)

    @contextlib.asynccontextmanager
    async def _leased(self, message: IncomingMessage) -> AsyncIterator[asyncio.Event]:
        """Keep the conversation's lease while answering (give it back if answering fails);
        the event is set when someone asks, from any process, to stop the reply."""
        stopped = asyncio.Event()
        keeper = asyncio.create_task(self._keep_lease(message, stopped))
        try:
            yield stopped
        except BaseException:
            lease = (message.channel, message.conversation, self._owner)
            await _quietly(self._store.release_lock(*lease))
            raise
        finally:
            keeper.cancel()

    async def _keep_lease(self, message: IncomingMessage, stopped: asyncio.Event) -> None:
        c = self._config
        while True:
            await asyncio.sleep(c.stop_check_s)
            with contextlib.suppress(StoreUnavailable):
                lease = (message.channel, message.conversation, self._owner)
                if await self._store.keep_lease(*lease, c.lock_ttl_ms):
                    stopped.set()

    def _now(self) -> datetime:
        return self._clock()


class _PassedOn:
    """A ``ReplySink`` that hands everything to ``sink``; subclasses change what they need."""

    def __init__(self, sink: ReplySink) -> None:
        self._sink = sink

    @property
    def handle(self) -> dict[str, str]:
        return self._sink.handle

    def resume(self, handle: dict[str, str]) -> None:
        self._sink.resume(handle)

    async def begin(self) -> None:
        await self._sink.begin()

    async def status(self, text: str) -> None:
        await self._sink.status(text)

    async def update(self, text: str) -> None:
        await self._sink.update(text)

    async def finish(self, text: str, *, reasoning: str = "") -> None:
        await self._sink.finish(text, reasoning=reasoning)

    async def fail(self, notice: str) -> None:
        await self._sink.fail(notice)


class _TrackedSink(_PassedOn):
    """Notes when text first showed and saves the sink's handle whenever it changes, so that a
    successor finishes this preview instead of leaving it."""

    def __init__(self, sink: ReplySink, store: ConversationStore, message: IncomingMessage) -> None:
        super().__init__(sink)
        self._store = store
        self._message = message
        self._saved: dict[str, str] = dict(sink.handle)
        self.first_text_at = 0.0

    async def begin(self) -> None:
        await super().begin()
        await self._save_handle()

    async def status(self, text: str) -> None:
        await super().status(text)
        await self._save_handle()

    async def update(self, text: str) -> None:
        if not self.first_text_at:
            self.first_text_at = time.monotonic()
        await super().update(text)
        await self._save_handle()

    async def _save_handle(self) -> None:
        handle = self._sink.handle
        if handle != self._saved:
            self._saved = dict(handle)
            with contextlib.suppress(StoreUnavailable):  # a lost handle costs a new message
                await self._store.save_handle(self._message, handle)


def _quoted(heard: str, reply: str) -> str:
    """The reply below what was heard in the voice note it answers (Markdown)."""
    return f"> 🎤 {heard}\n\n{reply}" if heard else reply


class _Heard(_PassedOn):
    """Shows what was heard in a voice note above the reply, from the start."""

    def __init__(self, sink: ReplySink, heard: str) -> None:
        super().__init__(sink)
        self._heard = heard

    async def status(self, text: str) -> None:
        await super().status(f"🎤 {self._heard}\n\n{text}".strip())

    async def update(self, text: str) -> None:
        await super().update(_quoted(self._heard, text))

    async def finish(self, text: str, *, reasoning: str = "") -> None:
        await super().finish(_quoted(self._heard, text), reasoning=reasoning)


async def _quietly(awaitable: object) -> None:
    """Await a best-effort cleanup whose own failure must not hide the first error."""
    with contextlib.suppress(Exception):
        await awaitable  # type: ignore[misc]


def _shown(generated: Generated, text: str, max_tokens: int) -> str:
    """The reply as the user sees it: with why it ended, when that was not the model's choice."""
    if generated.reason is DoneReason.STOPPED:
        mark = _(STOPPED_MARK)
        return text if text == mark else f"{text}\n\n{mark}"
    if generated.reason is DoneReason.LENGTH:
        cut = _("(cut short: the reply reached the limit of {max_tokens} tokens)")
        return f"{text}\n\n{cut.format(max_tokens=max_tokens)}"
    return text


def _last_exchange(context: ConversationContext) -> tuple[Turn, Turn] | None:
    turns = context.history[-2:]
    if len(turns) == 2 and (turns[0].role, turns[1].role) == ("user", "assistant"):
        return turns[0], turns[1]
    return None


def _retried(
    message: IncomingMessage, context: ConversationContext
) -> tuple[IncomingMessage, ConversationContext]:
    """The last question asked again, on the history before it; its answer will replace
    the old one (one question, one answer)."""
    exchange = _last_exchange(context)
    if exchange is None:
        raise MessageRejected(NOTHING_TO_RETRY)
    question = exchange[0]
    if shows_pictures(question.content):
        raise FileRefused(PICTURE_GONE)
    again = replace(
        message,
        text=question.content,
        is_command=False,
        author_name=question.author or message.author_name,
    )
    return again, replace(context, history=context.history[:-2], replaces_from=question.seq)


def _undone(context: ConversationContext) -> Outcome | None:
    exchange = _last_exchange(context)
    if exchange is None:
        return None
    return Outcome((), context.window_start, _(UNDONE), replaces_from=exchange[0].seq)


def _undo_text(context: ConversationContext) -> str:
    return UNDONE if _last_exchange(context) is not None else NOTHING_TO_UNDO
