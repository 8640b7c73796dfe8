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

from core.commands import is_urgent
from core.models import (
    Admission,
    AuditEntry,
    ChannelSettings,
    ConversationContext,
    InboxEntry,
    IncomingMessage,
    Outcome,
    StoredReply,
    Turn,
    TurnState,
    Usage,
)
from core.presets import DEFAULT_PRESET

log = logging.getLogger("ollabot.store")

K = TypeVar("K")
V = TypeVar("V")

Clock = Callable[[], float]

ANY_REPLY = "*"  # a stop asked without naming the reply: whatever is being written stops
STOP_TTL_S = 30.0


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

    entries: dict[str, InboxEntry] = field(default_factory=dict)
    undelivered: list[str] = field(default_factory=list)
    pending: dict[str, _Pending] = field(default_factory=dict)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)


@dataclass(slots=True)
class _Conversation:
    turns: list[Turn] = field(default_factory=list)
    window_start: int = 0


@dataclass(slots=True)
class _Order:
    arrived: int = 0
    done: int = 0


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


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
        rate_per_minute: int = 20,
        max_backlog: int = 10,
        default_preset: str = DEFAULT_PRESET,
        notice_window_s: int = 60,
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
        self._default_preset = default_preset
        self._stops: Expiring[str, str] = Expiring(clock)  # the reply_tag to stop, or ANY
        self._writing: Expiring[str, str] = Expiring(clock)  # the reply_tag of the lease holder
        self._usage: dict[tuple[str, str], dict[str, float]] = {}
        self._rate_per_minute = max(1, rate_per_minute)
        self._max_backlog = max(1, max_backlog)
        self._notice_window_s = max(1, notice_window_s)
        self._ids = itertools.count(1)
        self._streams: dict[str, _Stream] = {}
        self._seen: Expiring[str, bool] = Expiring(clock)
        self._answered: Expiring[str, StoredReply] = Expiring(clock)
        self._handles: Expiring[str, dict[str, str]] = Expiring(clock)
        self._conversations: Expiring[str, _Conversation] = Expiring(clock)
        self._orders: Expiring[str, _Order] = Expiring(clock)
        self._locks: Expiring[str, str] = Expiring(clock)
        self._buckets: dict[str, _Bucket] = {}
        self._backlogs: dict[str, int] = {}
        self._told: Expiring[str, bool] = Expiring(clock)
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

    async def enqueue(self, message: IncomingMessage) -> Admission:
        """Store the message unless its id was seen or its author is over the limits."""
        seen_key = f"{message.platform}:{message.message_id}"
        if self._seen.get(seen_key):
            return Admission.DUPLICATE
        self._seen.put(seen_key, True, self._dedupe_ttl_s)
        author, queue = f"{message.platform}:{message.author_id}", _queue(message)
        if not self._admit(author, queue):
            if self._told.get(author):
                return Admission.LIMITED_QUIETLY
            self._told.put(author, True, self._notice_window_s)
            return Admission.LIMITED
        self._backlogs[queue] = self._backlogs.get(queue, 0) + 1
        seq = 0 if is_urgent(message) else self._next_seq(message.conversation)
        stream = self._stream(message.platform)
        entry_id = f"{int(time.time() * 1000)}-{next(self._ids)}"
        async with stream.arrived:
            stream.entries[entry_id] = InboxEntry(entry_id, message, seq)
            stream.undelivered.append(entry_id)
            stream.arrived.notify_all()
        return Admission.ACCEPTED

    def _next_seq(self, conversation: str) -> int:
        order = self._orders.get(conversation) or _Order()
        order.arrived += 1
        self._orders.put(conversation, order, self._conversation_ttl_s)
        return order.arrived

    def _admit(self, author: str, queue: str) -> bool:
        """Take a token from the author's bucket, if they have one and room in the chat."""
        now, capacity = self._clock(), float(self._rate_per_minute)
        bucket = self._buckets.setdefault(author, _Bucket(capacity, now))
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.at) * capacity / 60)
        bucket.at = now
        if bucket.tokens < 1 or self._backlogs.get(queue, 0) >= self._max_backlog:
            return False
        bucket.tokens -= 1
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
                claimed.append(stream.entries[entry_id])
        return claimed

    async def sweep_consumers(self, platform: str, min_idle_ms: int) -> int:
        """Consumers are not kept here (only their pending entries): nothing to forget."""
        return 0

    async def keep_alive(self, platform: str, consumer: str, entry_ids: list[str]) -> None:
        """Reset the idle time of entries still in progress."""
        stream = self._stream(platform)
        for entry_id in entry_ids:
            if (pending := stream.pending.get(entry_id)) is not None:
                stream.pending[entry_id] = _Pending(consumer, self._clock(), pending.deliveries)

    async def acknowledge(self, entry: InboxEntry) -> None:
        """Mark the entry done, forget it, take it off its author's backlog and let the next
        message of its conversation start; safe to repeat."""
        message = entry.message
        stream = self._stream(message.platform)
        if stream.pending.pop(entry.entry_id, None) is not None:
            queue = _queue(message)
            self._backlogs[queue] = max(0, self._backlogs.get(queue, 0) - 1)
        stream.entries.pop(entry.entry_id, None)
        order = self._orders.get(message.conversation) or _Order()
        order.done = max(order.done, entry.seq)
        self._orders.put(message.conversation, order, self._conversation_ttl_s)

    def _stream(self, platform: str) -> _Stream:
        return self._streams.setdefault(platform, _Stream())

    def _deliver(
        self, stream: _Stream, entry_id: str, consumer: str, deliveries: int = 1
    ) -> InboxEntry:
        stream.pending[entry_id] = _Pending(consumer, self._clock(), deliveries)
        return stream.entries[entry_id]

    def _bury(self, platform: str, stream: _Stream, entry_id: str, reason: str) -> None:
        entry = stream.entries.pop(entry_id)
        stream.pending.pop(entry_id, None)
        payload = json.dumps(asdict(entry.message), ensure_ascii=False)
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
        entry: InboxEntry,
        max_turns: int,
        owner: str,
        lease_ms: int,
        skip_order: bool = False,
    ) -> ConversationContext:
        """The stored reply, or (when it is this message's turn) the lease, settings and
        history window."""
        message = entry.message
        key = f"{message.platform}:{message.message_id}"
        handle = copy.deepcopy(self._handles.get(key) or {})
        answered = self._answered.get(key)
        if answered is not None:
            return ConversationContext(ChannelSettings(), (), 0, answered, handle)
        if owner:
            state = self._turn(entry, owner, skip_order)
            if state is not TurnState.READY:
                return ConversationContext(ChannelSettings(), (), 0, state=state)
            self._locks.put(message.conversation, owner, lease_ms / 1000)
            self._writing.put(message.conversation, message.reply_tag, lease_ms / 1000)
        conversation = self._conversations.get(message.conversation) or _Conversation()
        newest = conversation.turns[-max_turns:] if max_turns > 0 else []
        return ConversationContext(
            settings=await self.get_settings(message.channel),
            history=tuple(t for t in newest if t.seq >= conversation.window_start),
            window_start=conversation.window_start,
            handle=handle,
        )

    def _turn(self, entry: InboxEntry, owner: str, skip_order: bool) -> TurnState:
        conversation = entry.message.conversation
        holder = self._locks.get(conversation)
        if holder is not None and holder != owner:
            return TurnState.BUSY
        done = (self._orders.get(conversation) or _Order()).done
        if entry.seq > 1 and not skip_order and done < entry.seq - 1:
            return TurnState.WAITING
        return TurnState.READY

    async def complete(
        self, entry: InboxEntry, outcome: Outcome | None, reply: StoredReply, owner: str
    ) -> StoredReply | None:
        """Append the turns once per message, store the reply and release the lease, if
        ``owner`` still holds it; safe to repeat."""
        message = entry.message
        answered_key = f"{message.platform}:{message.message_id}"
        stored = self._answered.get(answered_key)
        if stored is not None:
            return stored
        if owner and self._locks.get(message.conversation) != owner:
            return None
        if outcome is not None:
            conversation = self._conversations.get(message.conversation) or _Conversation()
            kept = [t for t in conversation.turns if not 0 <= outcome.replaces_from <= t.seq]
            conversation.turns = [*kept, *outcome.turns][-self._max_stored_turns :]
            conversation.window_start = outcome.window_start
            self._conversations.put(message.conversation, conversation, self._conversation_ttl_s)
        self._answered.put(answered_key, reply, self._dedupe_ttl_s)
        if owner:
            self._locks.pop(message.conversation)
        return reply

    async def request_stop(self, channel: str, conversation: str, reply: str = "") -> bool:
        """Ask the conversation's lease holder to stop (only if it writes ``reply``, when
        given); False when nobody holds the lease or it writes another reply."""
        if self._locks.get(conversation) is None:
            return False
        if reply and self._writing.get(conversation) != reply:
            return False
        self._stops.put(conversation, reply or ANY_REPLY, STOP_TTL_S)
        return True

    async def keep_lease(self, channel: str, conversation: str, owner: str, ttl_ms: int) -> bool:
        """Renew ``owner``'s lease; True, once, when a stop of its reply was asked for
        meanwhile (a stop meant for a reply that has ended since is dropped)."""
        if self._locks.get(conversation) != owner:
            return False
        self._locks.put(conversation, owner, ttl_ms / 1000)
        writing = self._writing.get(conversation) or ""
        self._writing.put(conversation, writing, ttl_ms / 1000)
        asked = self._stops.get(conversation)
        self._stops.pop(conversation)
        return asked in (ANY_REPLY, writing)

    async def charge(self, message: IncomingMessage, day: str, gpu_s: float) -> None:
        """Add a reply's GPU seconds to its author's and its channel's use on ``day``."""
        spent = self._usage.setdefault((day, message.channel), {})
        spent[message.author_id] = spent.get(message.author_id, 0.0) + gpu_s

    async def usage(self, message: IncomingMessage, day: str) -> Usage:
        """The author's and the channel's GPU seconds on ``day``, and its top users."""
        spent = self._usage.get((day, message.channel), {})
        top = sorted(spent.items(), key=lambda item: -item[1])[:5]
        return Usage(spent.get(message.author_id, 0.0), sum(spent.values()), tuple(top))

    async def save_handle(self, message: IncomingMessage, handle: dict[str, str]) -> None:
        """Remember where the reply to ``message`` is shown."""
        key = f"{message.platform}:{message.message_id}"
        self._handles.put(key, dict(handle), self._dedupe_ttl_s)

    async def clear_conversation(self, channel: str, conversation: str) -> None:
        """Forget the conversation's turns and window; safe to repeat."""
        self._conversations.pop(conversation)

    # Locks

    async def acquire_lock(self, channel: str, conversation: str, owner: str, ttl_ms: int) -> bool:
        """Take the conversation lock, or renew it when ``owner`` already holds it."""
        holder = self._locks.get(conversation)
        if holder is not None and holder != owner:
            return False
        self._locks.put(conversation, owner, ttl_ms / 1000)
        return True

    async def release_lock(self, channel: str, conversation: str, owner: str) -> None:
        """Release the lock only if ``owner`` holds it."""
        if self._locks.get(conversation) == owner:
            self._locks.pop(conversation)

    # Instances

    async def claim_instance(
        self, name: str, holder: str, ttl_ms: int, dead_holder: str = ""
    ) -> str | None:
        """Hold the worker instance ``name`` (this store is never shared: always free)."""
        return None

    async def release_instance(self, name: str, holder: str) -> None:
        """Nothing to give up."""

    # Channel settings and audit

    async def get_settings(self, channel: str) -> ChannelSettings:
        """The channel's settings, or the defaults when none were saved."""
        saved = self._settings.get(channel, ChannelSettings(preset=self._default_preset))
        return copy.deepcopy(saved)

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


def _queue(message: IncomingMessage) -> str:
    """Whose waiting messages are counted together: an author's in one chat."""
    return f"{message.platform}:{message.channel}:{message.author_id}"
