"""The ports of the core, as Protocols; adapters implement them."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol

from core.models import (
    AuditEntry,
    ChannelSettings,
    ChatRequest,
    ConversationContext,
    InboxEntry,
    IncomingMessage,
    Outcome,
    StreamEvent,
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

    async def update(self, text: str) -> None:
        """Show the reply so far; the sink decides how often to really send."""

    async def finish(self, text: str) -> None:
        """Deliver the complete reply."""

    async def fail(self, notice: str) -> None:
        """Tell the user why there is no (complete) reply."""


class SinkFactory(Protocol):
    """Builds the sink for a message taken from the inbox (possibly after a restart)."""

    def __call__(self, message: IncomingMessage) -> ReplySink: ...


class Inbox(Protocol):
    """Durable queue of incoming messages, one stream per platform.

    An entry handed out more often than the store allows without being answered, or one that
    cannot be read, is moved to the dead letters instead of being retried forever.
    """

    async def enqueue(self, message: IncomingMessage) -> bool:
        """Store the message; False when its ``message_id`` was already seen."""
        ...

    async def take(self, platform: str, consumer: str, count: int) -> list[InboxEntry]:
        """Wait briefly for new entries and assign them to ``consumer``."""
        ...

    async def claim_abandoned(
        self, platform: str, consumer: str, min_idle_ms: int
    ) -> list[InboxEntry]:
        """Take over entries another (dead) consumer left unacknowledged."""
        ...

    async def keep_alive(self, platform: str, consumer: str, entry_ids: list[str]) -> None:
        """Mark entries still in progress, so that no other worker claims them."""
        ...

    async def acknowledge(self, platform: str, entry_id: str) -> None: ...

    async def dead_letter(self, platform: str, payload: str, reason: str) -> None:
        """Set aside something received that cannot be read or stored, with the reason."""

    async def dead_letter_count(self) -> int:
        """How many dead letters are kept (entries that could not be answered included)."""
        ...


class ConversationStore(Protocol):
    """Conversations, channel settings, locks, audit and rate limits."""

    async def acquire_lock(self, conversation: str, owner: str, ttl_ms: int) -> bool: ...

    async def release_lock(self, conversation: str, owner: str) -> None: ...

    async def load_context(
        self,
        message: IncomingMessage,
        max_turns: int,
        rate_window_s: int,
        lock_owner: str | None = None,
        lock_ttl_ms: int = 0,
    ) -> ConversationContext:
        """In one step: take (or renew) the conversation lock for ``lock_owner`` if given, then
        settings, the turns from the window start on (at most ``max_turns``, newest last),
        an earlier answer to this message and the author's recent message count."""
        ...

    async def complete(self, entry: InboxEntry, outcome: Outcome, lock_owner: str) -> None:
        """In one step: append the turns (once per message id), remember the reply and the
        window start, acknowledge the inbox entry and release the conversation lock."""
        ...

    async def clear_conversation(self, conversation: str) -> None: ...

    async def get_settings(self, channel: str) -> ChannelSettings: ...

    async def save_settings(
        self, channel: str, settings: ChannelSettings, audit: AuditEntry
    ) -> None: ...

    async def append_audit(self, audit: AuditEntry) -> None:
        """Record an attempt that changed nothing (a refused command) in its channel's log."""

    async def audit_log(self, channel: str, count: int) -> list[AuditEntry]:
        """The channel's newest ``count`` entries, oldest first, each with its time."""
        ...

    async def count_recent(self, message: IncomingMessage, rate_window_s: int) -> int:
        """Count ``message`` (once per id) in its author's rate window; the window's count."""
        ...


class Metrics(Protocol):
    """Counters and timings of replies; the adapter decides how they are exported."""

    def reply_started(self, platform: str) -> None: ...

    def reply_finished(
        self, platform: str, outcome: str, first_token_s: float | None, total_s: float
    ) -> None:
        """``outcome`` is ``ok`` or the error class name (``LLMUnavailable``…)."""

    def tokens_per_second(self, value: float) -> None: ...

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

    def dead_lettered(self, platform: str) -> None:
        pass
