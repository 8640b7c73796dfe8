"""The Redis store: the inbox (a Stream with a consumer group) and the conversation store.

Key layout under ``prefix``, values JSON:

    inbox:{platform}              stream of incoming messages (field ``message``)
    seen:{platform}:{message_id}  dedupe marker, SET NX EX
    answered:{platform}:{id}      the reply given to that message, kept as long as ``seen``
    conv:{conversation}           list of turns [role, content, seq, author], trimmed and
                                  TTL-refreshed on every append
    convmeta:{conversation}       hash: window_start
    lock:{conversation}           owner token, SET NX PX
    rate:{platform}:{author}      set of message ids in the author's current fixed window
    channel:{channel}             channel settings
    audit                         capped stream of settings changes

Every write is safe to repeat, because a timed-out or retried call may have run already.
Every Redis error leaves this module as ``StoreUnavailable``.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import asdict
from typing import Any, ParamSpec, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from adapters.redis_scripts import ACQUIRE_LOCK, COMPLETE, ENQUEUE, LOAD_CONTEXT, RELEASE_LOCK
from core.errors import StoreUnavailable
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

P = ParamSpec("P")
R = TypeVar("R")

GROUP = "ollabot"
CLAIM_PAGE = 100
CLAIM_PAGES = 10


def translated(
    method: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Turn any Redis or socket error of ``method`` into ``StoreUnavailable``."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(*args, **kwargs)
        except (RedisError, OSError) as error:
            raise StoreUnavailable() from error

    return wrapper


class RedisStore:
    """Implements the ``Inbox`` and ``ConversationStore`` ports on one Redis server.

    ``client`` serves ordinary commands; ``blocking_client`` only the blocking inbox read,
    and needs a socket timeout longer than ``block_ms``.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        blocking_client: aioredis.Redis,
        *,
        prefix: str = "ollabot:",
        conversation_ttl_s: int = 30 * 86400,
        max_stored_turns: int = 1000,
        dedupe_ttl_s: int = 86400,
        audit_maxlen: int = 1000,
        block_ms: int = 1000,
    ) -> None:
        self._redis = client
        self._blocking = blocking_client
        self._prefix = prefix
        self._conversation_ttl_s = conversation_ttl_s
        self._max_stored_turns = max_stored_turns
        self._dedupe_ttl_s = dedupe_ttl_s
        self._audit_maxlen = audit_maxlen
        self._block_ms = block_ms

    @classmethod
    def from_url(cls, url: str, *, socket_timeout_s: float = 2.0, **kwargs: Any) -> RedisStore:
        """Connect lazily to ``url`` with bounded timeouts and a small retry on lost connections.

        Timeouts are not retried: a command that timed out may have run, and retrying would
        multiply the wait for a silent server.
        """
        block_ms = int(kwargs.get("block_ms", 1000))
        retry = Retry(
            ExponentialWithJitterBackoff(cap=0.5, base=0.05),
            retries=2,
            supported_errors=(RedisConnectionError,),
        )
        client = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=socket_timeout_s,
            socket_connect_timeout=socket_timeout_s,
            retry=retry,
        )
        blocking = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=block_ms / 1000 + socket_timeout_s,
            socket_connect_timeout=socket_timeout_s,
            retry=Retry(ExponentialWithJitterBackoff(), retries=0),
        )
        return cls(client, blocking, **kwargs)

    @property
    def client(self) -> aioredis.Redis:
        """The shared (non-blocking) client, for adapters keeping small keys of their own."""
        return self._redis

    @property
    def prefix(self) -> str:
        return self._prefix

    async def close(self) -> None:
        """Close both connection pools."""
        await self._redis.aclose()
        await self._blocking.aclose()

    @translated
    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless Redis answers."""
        await self._redis.ping()

    @translated
    async def server_info(self) -> dict[str, str]:
        """Version and the durability settings ``ollabot doctor`` checks."""
        info = await self._redis.info()
        return {
            "redis_version": str(info.get("redis_version", "unknown")),
            "aof_enabled": str(info.get("aof_enabled", "unknown")),
            "appendfsync": await self._config_value("appendfsync"),
            "maxmemory_policy": str(info.get("maxmemory_policy", "unknown")),
        }

    async def _config_value(self, name: str) -> str:
        try:
            values = await self._redis.config_get(name)
        except ResponseError:  # CONFIG is often disabled on managed servers
            return "unknown"
        return str(values.get(name, "unknown"))

    # Inbox

    @translated
    async def enqueue(self, message: IncomingMessage) -> bool:
        """Store the message unless its id was seen; one round trip, safe to repeat."""
        keys = [self._seen_key(message), self._inbox_key(message.platform)]
        body = json.dumps(asdict(message), ensure_ascii=False)
        added = await self._redis.eval(ENQUEUE, 2, *keys, self._dedupe_ttl_s, body)
        return bool(added)

    @translated
    async def take(self, platform: str, consumer: str, count: int) -> list[InboxEntry]:
        """Wait up to ``block_ms`` for new entries and assign them to ``consumer``."""
        reply = await self._in_group(
            platform,
            lambda: self._blocking.xreadgroup(
                GROUP, consumer, {self._inbox_key(platform): ">"}, count, self._block_ms
            ),
        )
        records = reply[0][1] if reply else []
        return await self._decoded(platform, records)

    @translated
    async def claim_abandoned(
        self, platform: str, consumer: str, min_idle_ms: int
    ) -> list[InboxEntry]:
        """Entries idle for ``min_idle_ms``, plus every entry ``consumer`` itself holds pending
        (after a restart nothing of this process is working on them; callers skip their own
        entries in progress)."""
        own = await self._in_group(platform, lambda: self._own_pending(platform, consumer))
        idle = await self._in_group(
            platform, lambda: self._auto_claim(platform, consumer, min_idle_ms)
        )
        seen = {entry_id for entry_id, _ in own}
        records = own + [record for record in idle if record[0] not in seen]
        return await self._decoded(platform, records)

    async def _own_pending(self, platform: str, consumer: str) -> list[Any]:
        reply: Any = await self._redis.xreadgroup(
            GROUP, consumer, {self._inbox_key(platform): "0"}, CLAIM_PAGE
        )
        return list(reply[0][1]) if reply else []

    async def _auto_claim(self, platform: str, consumer: str, min_idle_ms: int) -> list[Any]:
        records: list[Any] = []
        cursor = "0-0"
        for _ in range(CLAIM_PAGES):
            reply: Any = await self._redis.xautoclaim(
                self._inbox_key(platform), GROUP, consumer, min_idle_ms, cursor, CLAIM_PAGE
            )
            cursor = reply[0]
            records += reply[1]
            if cursor == "0-0":
                break
        return records

    @translated
    async def keep_alive(self, platform: str, consumer: str, entry_ids: list[str]) -> None:
        """Reset the idle time of entries still in progress (XCLAIM JUSTID)."""
        if entry_ids:
            await self._in_group(
                platform,
                lambda: self._redis.xclaim(
                    self._inbox_key(platform), GROUP, consumer, 0, list(entry_ids), justid=True
                ),
            )

    @translated
    async def acknowledge(self, platform: str, entry_id: str) -> None:
        """Mark the entry done and delete it from the stream; safe to repeat."""
        key = self._inbox_key(platform)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(key, GROUP, entry_id)
            pipe.xdel(key, entry_id)
            await pipe.execute()

    async def _in_group(self, platform: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """Run a consumer-group command, creating the stream and group on first use."""
        try:
            return await call()
        except ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
        try:
            await self._redis.xgroup_create(self._inbox_key(platform), GROUP, "0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        return await call()

    async def _decoded(self, platform: str, records: Sequence[Any]) -> list[InboxEntry]:
        """Entries whose message decodes; others (deleted or corrupt) are acknowledged."""
        entries: list[InboxEntry] = []
        for entry_id, fields in records:
            message = decode_message(fields)
            if message is None:
                log.warning("dropping unreadable inbox entry %s on %s", entry_id, platform)
                await self.acknowledge(platform, entry_id)
            else:
                entries.append(InboxEntry(entry_id, message))
        return entries

    # Conversations

    @translated
    async def load_context(
        self,
        message: IncomingMessage,
        max_turns: int,
        rate_window_s: int,
        lock_owner: str | None = None,
        lock_ttl_ms: int = 0,
    ) -> ConversationContext:
        """Lock, settings, the history window, an earlier answer to this message and the
        author's message count in the current window: one round trip."""
        keys = [
            self._channel_key(message.channel),
            self._conv_key(message.conversation),
            self._meta_key(message.conversation),
            self._answered_key(message),
            f"{self._prefix}rate:{message.platform}:{message.author_id}",
            self._lock_key(message.conversation),
        ]
        args: list[int | str] = [
            max(max_turns, 0),
            max(1, rate_window_s),
            message.message_id,
            lock_owner or "",
            max(lock_ttl_ms, 1),
        ]
        reply = await self._redis.eval(LOAD_CONTEXT, len(keys), *keys, *args)
        if not reply[0]:
            return ConversationContext(ChannelSettings(), (), 0, locked=False)
        _, settings, turns, window_start, answered, recent = reply
        return ConversationContext(
            settings=decode_settings(settings),
            history=decode_turns(turns),
            window_start=int(window_start),
            answered=answered,
            recent_messages=int(recent),
        )

    @translated
    async def complete(self, entry: InboxEntry, outcome: Outcome, lock_owner: str) -> None:
        """Append the turns once per message id, remember the reply and window start,
        acknowledge the entry and release the lock: one round trip, safe to repeat."""
        message = entry.message
        keys = [
            self._conv_key(message.conversation),
            self._meta_key(message.conversation),
            self._answered_key(message),
            self._inbox_key(message.platform),
            self._lock_key(message.conversation),
        ]
        args: list[str | int] = [
            outcome.window_start,
            outcome.reply,
            max(1, self._max_stored_turns),
            self._conversation_ttl_s,
            self._dedupe_ttl_s,
            GROUP,
            entry.entry_id,
            lock_owner,
            *(encode_turn(turn) for turn in outcome.turns),
        ]
        await self._redis.eval(COMPLETE, len(keys), *keys, *args)

    @translated
    async def clear_conversation(self, conversation: str) -> None:
        """Forget the conversation's turns and window; safe to repeat."""
        await self._redis.delete(self._conv_key(conversation), self._meta_key(conversation))

    # Locks

    @translated
    async def acquire_lock(self, conversation: str, owner: str, ttl_ms: int) -> bool:
        """Take the conversation lock, or renew it when ``owner`` already holds it."""
        key = self._lock_key(conversation)
        return bool(await self._redis.eval(ACQUIRE_LOCK, 1, key, owner, ttl_ms))

    @translated
    async def release_lock(self, conversation: str, owner: str) -> None:
        """Release the lock only if ``owner`` holds it."""
        await self._redis.eval(RELEASE_LOCK, 1, self._lock_key(conversation), owner)

    # Channel settings and audit

    @translated
    async def get_settings(self, channel: str) -> ChannelSettings:
        """The channel's settings, or the defaults when none were saved."""
        raw: Any = await self._redis.get(self._channel_key(channel))
        return decode_settings(raw)

    @translated
    async def save_settings(
        self, channel: str, settings: ChannelSettings, audit: AuditEntry
    ) -> None:
        """Write the settings and append the audit entry in one transaction."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._channel_key(channel), json.dumps(asdict(settings), ensure_ascii=False))
            pipe.xadd(
                f"{self._prefix}audit",
                {name: value for name, value in asdict(audit).items()},
                maxlen=self._audit_maxlen,
                approximate=True,
            )
            await pipe.execute()

    @translated
    async def audit_log(self, channel: str, count: int) -> list[AuditEntry]:
        """The newest ``count`` changes of ``channel``, oldest first (newest last)."""
        records: Any = await self._redis.xrevrange(f"{self._prefix}audit", count=self._audit_maxlen)
        mine = [AuditEntry(**fields) for _, fields in records if fields["channel"] == channel]
        return list(reversed(mine[: max(0, count)]))

    # Keys

    def _inbox_key(self, platform: str) -> str:
        return f"{self._prefix}inbox:{platform}"

    def _seen_key(self, message: IncomingMessage) -> str:
        return f"{self._prefix}seen:{message.platform}:{message.message_id}"

    def _answered_key(self, message: IncomingMessage) -> str:
        return f"{self._prefix}answered:{message.platform}:{message.message_id}"

    def _conv_key(self, conversation: str) -> str:
        return f"{self._prefix}conv:{conversation}"

    def _meta_key(self, conversation: str) -> str:
        return f"{self._prefix}convmeta:{conversation}"

    def _lock_key(self, conversation: str) -> str:
        return f"{self._prefix}lock:{conversation}"

    def _channel_key(self, channel: str) -> str:
        return f"{self._prefix}channel:{channel}"


def encode_turn(turn: Turn) -> str:
    """A turn as stored in the conversation list: ``[role, content, seq, author]``.

    An array, not an object: a reply decodes a whole window of these, arrays decode about
    three times faster, and the load script finds ``seq`` at a fixed place.
    """
    return json.dumps(list(turn), ensure_ascii=False)


def decode_turns(raw: str) -> tuple[Turn, ...]:
    """The stored turns, sent by the load script as one JSON array of arrays."""
    return tuple(map(Turn._make, json.loads(raw)))


def decode_message(fields: dict[str, str] | None) -> IncomingMessage | None:
    """The message of an inbox entry, or None when the entry is deleted or unreadable."""
    if not fields or "message" not in fields:
        return None
    try:
        data = json.loads(fields["message"])
        known = IncomingMessage.__dataclass_fields__
        return IncomingMessage(**{k: v for k, v in data.items() if k in known})
    except (ValueError, TypeError, AttributeError):
        return None


def decode_settings(raw: str | None) -> ChannelSettings:
    """Saved channel settings; the defaults when absent or unreadable."""
    if raw is None:
        return ChannelSettings()
    try:
        data = json.loads(raw)
        known = ChannelSettings.__dataclass_fields__
        return ChannelSettings(**{k: v for k, v in data.items() if k in known})
    except (ValueError, TypeError, AttributeError):
        log.warning("unreadable channel settings; using defaults")
        return ChannelSettings()
