"""The ports of the core, as Protocols; adapters implement them."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Protocol, runtime_checkable

from core.knowledge import Document, Embedded, Hit, Passage
from core.models import (
    Admission,
    Attachment,
    AuditEntry,
    ChannelSettings,
    ChatRequest,
    ConversationContext,
    InboxEntry,
    IncomingMessage,
    Outcome,
    StoredReply,
    StreamEvent,
    Usage,
)


class LLM(Protocol):
    """A chat model that streams its reply."""

    def stream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        """Yield the reply piece by piece; raise an ``LLMError`` on failure."""
        ...


class ReplySink(Protocol):
    """Where one reply goes, already bound to its chat, thread and platform limits."""

    async def begin(self) -> None:
        """Show that the bot is working (typing indicator, placeholder)."""

    async def status(self, text: str) -> None:
        """Say where the reply stands before its text comes (queued, model loading); the
        reply replaces it. Best effort, like ``update``."""

    async def update(self, text: str) -> None:
        """Show the reply so far; the sink decides how often to really send."""

    async def finish(self, text: str, *, reasoning: str = "") -> None:
        """Deliver the complete reply; ``reasoning`` (a thinking model's, when the channel
        shows it) goes with it folded, cut short first when the platform's limits bind."""

    async def fail(self, notice: str) -> None:
        """Tell the user why there is no (complete) reply."""

    @property
    def handle(self) -> dict[str, str]:
        """What a successor needs to finish this reply: the preview's message id, the parts
        already delivered. Changes when the sink sends something new."""
        ...

    def resume(self, handle: dict[str, str]) -> None:
        """Continue from what an earlier sink for the same message left (its ``handle``)."""


class FileSource(Protocol):
    """A platform's file API (Telegram ``getFile``, Slack ``url_private``)."""

    async def fetch(self, attachment: Attachment, max_bytes: int) -> bytes:
        """The file's bytes; raise ``FileRefused`` when it is larger than ``max_bytes`` or
        the platform will not hand it over."""
        ...


class Embedder(Protocol):
    """Turns text into vectors for the knowledge search (Ollama's ``/api/embed``).

    Documents and questions are embedded apart: some models want each marked as such. The
    GPU time of a document's embedding is charged to whoever adds it, like a reply's.
    Raises an ``LLMError`` (``ModelNotFound`` when the embedding model is not installed).
    """

    async def embed_documents(self, texts: Sequence[str]) -> Embedded: ...

    async def embed_query(self, text: str) -> list[float]: ...


class DocumentReader(Protocol):
    """The text of a file (plain text, Markdown, PDF); raises ``FileRefused`` for a kind it
    does not read or a damaged file."""

    async def text(self, data: bytes, name: str, mime: str) -> str: ...


class KnowledgeStore(Protocol):
    """The channels' documents, their passages and the passages' vectors."""

    async def add(
        self,
        channel: str,
        document: Document,
        passages: Sequence[Passage],
        vectors: Sequence[Sequence[float]],
    ) -> None:
        """Store the document with all its passages at once, or nothing."""

    async def documents(self, channel: str) -> list[Document]:
        """The channel's documents, oldest first."""
        ...

    async def forget(self, channel: str, document_id: str) -> Document | None:
        """Delete the document and all its passages at once; None when there is none."""
        ...

    async def search(self, channel: str, vector: Sequence[float], count: int) -> list[Hit]:
        """The ``count`` passages of the channel closest to ``vector`` (cosine), closest first."""
        ...


class Transcriber(Protocol):
    """A speech-to-text server."""

    async def transcribe(self, audio: bytes, name: str, mime: str) -> str:
        """What is said in ``audio`` (a file as the platform gave it, e.g. OGG/Opus); raise
        ``TranscriptionFailed`` when the server is not reachable or cannot read it."""
        ...


@runtime_checkable
class ModelInfo(Protocol):
    """What the model server tells about a model."""

    async def capabilities(self, model: str) -> frozenset[str]:
        """What ``model`` can do, as the server names it (``vision``, ``thinking``…); empty
        when that is not known."""
        ...


class SinkFactory(Protocol):
    """Builds the sink for a message taken from the inbox (possibly after a restart)."""

    def __call__(self, message: IncomingMessage, /) -> ReplySink: ...


class Inbox(Protocol):
    """Durable queue of incoming messages, one stream per platform.

    An entry handed out more often than the store allows without being answered, or one that
    cannot be read, is moved to the dead letters instead of being retried forever.
    """

    async def enqueue(self, message: IncomingMessage) -> Admission:
        """Store the message unless it was seen, its author is over the rate limit or has too
        many messages queued in its channel; the first refusal in a window says so
        (``LIMITED``)."""
        ...

    async def take(self, platform: str, consumer: str, count: int) -> list[InboxEntry]:
        """Wait briefly for new entries and assign them to ``consumer``: up to ``count``, or
        up to ``count`` of each partition where the store has several."""
        ...

    async def claim_abandoned(
        self, platform: str, consumer: str, min_idle_ms: int
    ) -> list[InboxEntry]:
        """Take over entries another (dead) consumer left unacknowledged."""
        ...

    async def sweep_consumers(self, platform: str, min_idle_ms: int) -> int:
        """Forget consumers idle for ``min_idle_ms`` with nothing pending; how many."""
        ...

    async def keep_alive(self, platform: str, consumer: str, entry_ids: list[str]) -> None:
        """Mark entries still in progress, so that no other worker claims them."""
        ...

    async def acknowledge(self, entry: InboxEntry) -> None:
        """The entry is done (its reply delivered): forget it, and let the next message of
        its conversation start; safe to repeat."""

    async def dead_letter(self, platform: str, payload: str, reason: str) -> None:
        """Set aside something received that cannot be read or stored, with the reason."""

    async def dead_letter_count(self) -> int:
        """How many dead letters are kept (entries that could not be answered included)."""
        ...


class ConversationStore(Protocol):
    """Conversations, their leases and order, channel settings and audit."""

    async def acquire_lock(self, channel: str, conversation: str, owner: str, ttl_ms: int) -> bool:
        """Take the lease of ``conversation`` (of ``channel``), or renew it when ``owner``
        holds it."""
        ...

    async def release_lock(self, channel: str, conversation: str, owner: str) -> None: ...

    async def load_context(
        self,
        entry: InboxEntry,
        max_turns: int,
        owner: str,
        lease_ms: int,
        skip_order: bool = False,
    ) -> ConversationContext:
        """In one step: unless an earlier message of the conversation is still open (not
        delivered yet; ``skip_order`` ignores that), take the conversation's lease for
        ``owner``, then read the settings, the turns from the window start on (at most
        ``max_turns``, newest last), the reply already stored for this message and the
        handle of its preview."""
        ...

    async def complete(
        self, entry: InboxEntry, outcome: Outcome | None, reply: StoredReply, owner: str
    ) -> StoredReply | None:
        """In one step, while ``owner`` holds the lease: append the turns (once per message),
        store the reply until it is delivered and release the lease. Returns the reply to
        deliver (an earlier stored one when this ran before), or None when the lease was
        lost: another worker owns it now."""
        ...

    async def save_handle(self, message: IncomingMessage, handle: dict[str, str]) -> None:
        """Remember where this message's reply is shown, for a successor to finish it."""

    async def request_stop(self, channel: str, conversation: str, reply: str = "") -> bool:
        """Ask whoever is answering in ``conversation`` to stop; False when nobody is. With
        ``reply`` (a message's ``reply_tag``), only when that message is being answered."""
        ...

    async def keep_lease(self, channel: str, conversation: str, owner: str, ttl_ms: int) -> bool:
        """Renew ``owner``'s lease; True (once) when a stop of its reply was asked for
        meanwhile (the lease taken by ``load_context`` knows which reply it writes)."""
        ...

    async def charge(self, message: IncomingMessage, day: str, gpu_s: float) -> None:
        """Add a reply's GPU seconds to its author's and its channel's use on ``day``."""

    async def usage(self, message: IncomingMessage, day: str) -> Usage:
        """GPU seconds spent on ``day`` by the author in the channel, by the channel, and the
        channel's top users."""
        ...

    async def clear_conversation(self, channel: str, conversation: str) -> None: ...

    async def get_settings(self, channel: str) -> ChannelSettings: ...

    async def save_settings(
        self, channel: str, settings: ChannelSettings, audit: AuditEntry
    ) -> None: ...

    async def append_audit(self, audit: AuditEntry) -> None:
        """Record an attempt that changed nothing (a refused command) in its channel's log."""

    async def audit_log(self, channel: str, count: int) -> list[AuditEntry]:
        """The channel's newest ``count`` entries, oldest first, each with its time."""
        ...


class Metrics(Protocol):
    """Counters and timings of replies; the adapter decides how they are exported."""

    def reply_started(self, platform: str) -> None: ...

    def reply_finished(
        self, platform: str, outcome: str, first_token_s: float | None, total_s: float
    ) -> None:
        """``outcome`` is ``ok`` or the error class name (``LLMUnavailable``…)."""

    def tokens_per_second(self, value: float) -> None: ...

    def delivery_retried(self, platform: str) -> None: ...

    def delivery_abandoned(self, platform: str) -> None:
        """A reply given up on at its deadline."""

    def outbox_pending(self, platform: str, count: int) -> None:
        """Replies stored but not yet confirmed by the platform, in this process."""

    def queue_depth(self, platform: str, count: int) -> None:
        """Messages taken from the inbox and waiting for a model slot, in this process."""

    def dead_lettered(self, platform: str) -> None:
        """Something received was set aside as a dead letter."""


class NullMetrics:
    """Metrics that go nowhere (tests, the console)."""

    def reply_started(self, platform: str) -> None:
        pass

    def reply_finished(
        self, platform: str, outcome: str, first_token_s: float | None, total_s: float
    ) -> None:
        pass

    def tokens_per_second(self, value: float) -> None:
        pass

    def delivery_retried(self, platform: str) -> None:
        pass

    def delivery_abandoned(self, platform: str) -> None:
        pass

    def outbox_pending(self, platform: str, count: int) -> None:
        pass

    def queue_depth(self, platform: str, count: int) -> None:
        pass

    def dead_lettered(self, platform: str) -> None:
        pass


class NullSink:
    """A reply sink that shows nothing (benchmarks: the platform's cost is not measured)."""

    @property
    def handle(self) -> dict[str, str]:
        return {}

    def resume(self, handle: dict[str, str]) -> None:
        pass

    async def status(self, text: str) -> None:
        pass

    async def begin(self) -> None:
        pass

    async def update(self, text: str) -> None:
        pass

    async def finish(self, text: str, *, reasoning: str = "") -> None:
        pass

    async def fail(self, notice: str) -> None:
        pass
