"""An in-process store with the same behaviour as ``RedisStore``, for ``memory://`` and tests.

It keeps everything in dicts: nothing survives the process, and several processes do not
share it. Values are copied in and out, as serialisation would, so callers never share state
with the store. Expiry (dedupe, locks, rate windows, conversations) follows a monotonic clock.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Generic, TypeVar

from core.models import (
    AuditEntry,
    ChannelSettings,
    ConversationContext,
    InboxEntry,
    IncomingMessage,
    Outcome,
    Turn,
)

log = logging.getLogger("ollabot.store")

K = TypeVar("K")
V = TypeVar("V")

Clock = Callable[[], float]


class Expiring(Generic[K, V]):
    """A dict whose entries may carry a deadline, after which they are gone."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._items: dict[K, tuple[V, float | None]] = {}

    def get(self, key: K) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        value, deadline = item
        if deadline is not None and self._clock() >= deadline:
            del self._items[key]
            return None
        return value

    def put(self, key: K, value: V, ttl_s: float | None = None) -> None:
        self._items[key] = (value, None if ttl_s is None else self._clock() + ttl_s)

    def expire(self, key: K, ttl_s: float) -> None:
        value = self.get(key)
        if value is not None:
            self.put(key, value, ttl_s)

    def pop(self, key: K) -> None:
        self._items.pop(key, None)


@dataclass(slots=True)
class _Pending:
    consumer: str
    delivered_at: float
    deliveries: int = 1


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Something received that could not be read, stored or answered."""

    platform: str
    source: str
    reason: str
    payload: str


@dataclass(slots=True)
class _Stream:
    """One platform's inbox: entries in order, the undelivered ones, and the pending list."""

    entries: dict[str, IncomingMessage] = field(default_factory=dict)
    undelivered: list[str] = field(default_factory=list)
    pending: dict[str, _Pending] = field(default_factory=dict)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)


@dataclass(slots=True)
class _Conversation:
    turns: list[Turn] = field(default_factory=list)
    window_start: int = 0


class MemoryStore:
    """Implements the ``Inbox`` and ``ConversationStore`` ports in this process."""

    def __init__(
        self,
        *,
        conversation_ttl_s: int = 30 * 86400,
        max_stored_turns: int = 1000,
        dedupe_ttl_s: int = 86400,
        audit_maxlen: int = 1000,
        block_ms: int = 1000,
        max_deliveries: int = 5,
        dead_letters_maxlen: int = 10_000,
        on_dead_letter: Callable[[str], None] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self._conversation_ttl_s = conversation_ttl_s
        self._max_stored_turns = max(1, max_stored_turns)
        self._dedupe_ttl_s = dedupe_ttl_s
        self._audit_maxlen = audit_maxlen
        self._block_ms = block_ms
        self._max_deliveries = max_deliveries
        self._dead_letters_maxlen = dead_letters_maxlen
        self._on_dead_letter = on_dead_letter
        self.dead_letters: list[DeadLetter] = []
        self._clock = clock
        self._ids = itertools.count(1)
        self._streams: dict[str, _Stream] = {}
        self._seen: Expiring[str, bool] = Expiring(clock)
        self._answered: Expiring[str, str] = Expiring(clock)
        self._conversations: Expiring[str, _Conversation] = Expiring(clock)
        self._locks: Expiring[str, str] = Expiring(clock)
        self._rates: Expiring[str, set[str]] = Expiring(clock)
        self._settings: dict[str, ChannelSettings] = {}
        self._audit: dict[str, list[AuditEntry]] = {}

    async def close(self) -> None:
        """Nothing to close; present for symmetry with ``RedisStore``."""

    async def ping(self) -> None:
        """Always reachable."""

    async def server_info(self) -> dict[str, str]:
        """Says that nothing is persisted."""
        return {
            "redis_version": "memory",
            "aof_enabled": "0",
            "appendfsync": "none (in memory: lost when the process exits)",
            "maxmemory_policy": "none",
        }

    # Inbox

    async def enqueue(self, message: IncomingMessage) -> bool:
        """Store the message unless its id was seen within the dedupe TTL."""
        seen_key = f"{message.platform}:{message.message_id}"
        if self._seen.get(seen_key):
            return False
        self._seen.put(seen_key, True, self._dedupe_ttl_s)
        stream = self._stream(message.platform)
        entry_id = f"{int(time.time() * 1000)}-{next(self._ids)}"
        async with stream.arrived:
            stream.entries[entry_id] = message
            stream.undelivered.append(entry_id)
            stream.arrived.notify_all()
        return True

    async def take(self, platform: str, consumer: str, count: int) -> list[InboxEntry]:
        """Wait up to ``block_ms`` for new entries and assign them to ``consumer``."""
        stream = self._stream(platform)
        async with stream.arrived:
            try:
                await asyncio.wait_for(
                    stream.arrived.wait_for(lambda: bool(stream.undelivered)),
                    self._block_ms / 1000,
                )
            except TimeoutError:
                return []
            taken = stream.undelivered[: max(1, count)]
            del stream.undelivered[: len(taken)]
        return [self._deliver(stream, entry_id, consumer) for entry_id in taken]

    async def claim_abandoned(
        self, platform: str, consumer: str, min_idle_ms: int
    ) -> list[InboxEntry]:
        """Entries idle for ``min_idle_ms`` (delivered again), plus every entry ``consumer``
        holds pending; entries delivered more than ``max_deliveries`` times become dead
        letters instead."""
        stream = self._stream(platform)
        now = self._clock()
        claimed: list[InboxEntry] = []
        for entry_id, pending in list(stream.pending.items()):
            if (now - pending.delivered_at) * 1000 >= min_idle_ms:
                deliveries = pending.deliveries + 1
                if deliveries > self._max_deliveries:
                    reason = f"delivered {deliveries} times without being answered"
                    self._bury(platform, stream, entry_id, reason)
                    continue
                claimed.append(self._deliver(stream, entry_id, consumer, deliveries))
            elif pending.consumer == consumer:
                claimed.append(InboxEntry(entry_id, stream.entries[entry_id]))
        return claimed

    async def keep_alive(self, platform: str, consumer: str, entry_ids: list[str]) -> None:
        """Reset the idle time of entries still in progress."""
        stream = self._stream(platform)
        for entry_id in entry_ids:
            if entry_id in stream.pending:
                stream.pending[entry_id] = _Pending(consumer, self._clock())

    async def acknowledge(self, platform: str, entry_id: str) -> None:
        """Mark the entry done and forget it; safe to repeat."""
        stream = self._stream(platform)
        stream.pending.pop(entry_id, None)
        stream.entries.pop(entry_id, None)

    def _stream(self, platform: str) -> _Stream:
        return self._streams.setdefault(platform, _Stream())

    def _deliver(
        self, stream: _Stream, entry_id: str, consumer: str, deliveries: int = 1
    ) -> InboxEntry:
        stream.pending[entry_id] = _Pending(consumer, self._clock(), deliveries)
        return InboxEntry(entry_id, stream.entries[entry_id])

    def _bury(self, platform: str, stream: _Stream, entry_id: str, reason: str) -> None:
        message = stream.entries.pop(entry_id)
        stream.pending.pop(entry_id, None)
        payload = json.dumps(asdict(message), ensure_ascii=False)
        log.warning(
            "inbox entry %s on %s set aside as a dead letter: %s", entry_id, platform, reason
        )
        self._keep(DeadLetter(platform, "inbox", reason, payload))

    # Dead letters

    async def dead_letter(self, platform: str, payload: str, reason: str) -> None:
        """Keep what was received but cannot be read or stored, with the reason."""
        self._keep(DeadLetter(platform, "receive", reason, payload))

    async def dead_letter_count(self) -> int:
        """How many dead letters are kept."""
        return len(self.dead_letters)

    def _keep(self, letter: DeadLetter) -> None:
        self.dead_letters = [*self.dead_letters, letter][-self._dead_letters_maxlen :]
        if self._on_dead_letter is not None:
            self._on_dead_letter(letter.platform)

    # Conversations

    async def load_context(
        self,
        message: IncomingMessage,
        max_turns: int,
        rate_window_s: int,
        lock_owner: str | None = None,
        lock_ttl_ms: int = 0,
    ) -> ConversationContext:
        """Lock, settings, the history window, an earlier answer to this message and the
        author's message count in the current window."""
        if lock_owner and not await self.acquire_lock(
            message.conversation, lock_owner, lock_ttl_ms
        ):
            return ConversationContext(ChannelSettings(), (), 0, locked=False)
        conversation = self._conversations.get(message.conversation) or _Conversation()
        newest = conversation.turns[-max_turns:] if max_turns > 0 else []
        window = [t for t in newest if t.seq >= conversation.window_start]
        return ConversationContext(
            settings=await self.get_settings(message.channel),
            history=tuple(window),
            window_start=conversation.window_start,
            answered=self._answered.get(f"{message.platform}:{message.message_id}"),
            recent_messages=self._count_recent(message, rate_window_s),
        )

    def _count_recent(self, message: IncomingMessage, rate_window_s: int) -> int:
        key = f"{message.platform}:{message.author_id}"
        ids = self._rates.get(key)
        if ids is None:
            ids = set()
            self._rates.put(key, ids, max(1, rate_window_s))
        ids.add(message.message_id)
        return len(ids)

    async def complete(self, entry: InboxEntry, outcome: Outcome, lock_owner: str) -> None:
        """Append the turns once per message id, remember the reply and window start,
        acknowledge the entry and release the lock; safe to repeat."""
        message = entry.message
        answered_key = f"{message.platform}:{message.message_id}"
        conversation = self._conversations.get(message.conversation) or _Conversation()
        if self._answered.get(answered_key) is None:
            conversation.turns = [*conversation.turns, *outcome.turns][-self._max_stored_turns :]
            conversation.window_start = outcome.window_start
            self._answered.put(answered_key, outcome.reply, self._dedupe_ttl_s)
        if conversation.turns:
            self._conversations.put(message.conversation, conversation, self._conversation_ttl_s)
        await self.acknowledge(message.platform, entry.entry_id)
        await self.release_lock(message.conversation, lock_owner)

    async def clear_conversation(self, conversation: str) -> None:
        """Forget the conversation's turns and window; safe to repeat."""
        self._conversations.pop(conversation)

    # Locks

    async def acquire_lock(self, conversation: str, owner: str, ttl_ms: int) -> bool:
        """Take the conversation lock, or renew it when ``owner`` already holds it."""
        holder = self._locks.get(conversation)
        if holder is not None and holder != owner:
            return False
        self._locks.put(conversation, owner, ttl_ms / 1000)
        return True

    async def release_lock(self, conversation: str, owner: str) -> None:
        """Release the lock only if ``owner`` holds it."""
        if self._locks.get(conversation) == owner:
            self._locks.pop(conversation)

    # Channel settings and audit

    async def get_settings(self, channel: str) -> ChannelSettings:
        """The channel's settings, or the defaults when none were saved."""
        return copy.deepcopy(self._settings.get(channel, ChannelSettings()))

    async def save_settings(
        self, channel: str, settings: ChannelSettings, audit: AuditEntry
    ) -> None:
        """Write the settings and append the audit entry."""
        self._settings[channel] = copy.deepcopy(settings)
        await self.append_audit(audit)

    async def append_audit(self, audit: AuditEntry) -> None:
        """Append to the channel's own log (capped per channel), stamped with the time."""
        log = self._audit.setdefault(audit.channel, [])
        log.append(replace(audit, at=time.time()))
        del log[: -self._audit_maxlen]

    async def audit_log(self, channel: str, count: int) -> list[AuditEntry]:
        """The newest ``count`` entries of ``channel``, oldest first (newest last)."""
        return self._audit.get(channel, [])[-count:] if count > 0 else []

    async def count_recent(self, message: IncomingMessage, rate_window_s: int) -> int:
        """Count ``message`` (once per id) in its author's rate window; the window's count."""
        return self._count_recent(message, rate_window_s)
