"""What several processes serving one bot share: the bot-wide call budget and the poller lease.

Telegram allows a bot about 30 messages a second over all its chats, and answers 409 Conflict
when two ``getUpdates`` run at once. With several processes on one token, both are kept in
Redis: a token bucket every Bot API message call draws from, and a lease that lets exactly one
process poll. ``LocalShared`` is the same for one process alone (the memory store, tests).

The bucket refills at nine tenths of the limit and holds at most a tenth of a second's worth,
so no sliding second ever sees more than the limit. Required calls (final texts) wait for a
token; optional ones (streaming edits, typing, status) take one only while the bucket holds
more than a little beyond it, so under load the final texts get the room.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("ollabot.telegram.shared")

LEASE_TTL_MS = 3000
LEASE_CHECK_S = 1.0
# Tokens an optional call must leave behind. Under load, required calls take every token as
# soon as it is whole, so the bucket never holds more than this and optional calls are
# skipped; when the bot is quiet, a typing action just before a preview does not hold it back.
OPTIONAL_KEEP = 0.5
_REQUIRED_WAIT_AT_MOST_S = 30.0

# KEYS: bucket. ARGV: refill per second, capacity, tokens that must stay after taking one.
# Returns 0 when a token was taken, else the milliseconds until one may be. Redis's clock, so
# every process agrees on the time.
TAKE_TOKEN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate, capacity, keep = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate / 1000)
local taken = tokens >= 1 + keep
if taken then tokens = tokens - 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now)
redis.call('PEXPIRE', KEYS[1], 60000)
if taken then return 0 end
return math.max(1, math.ceil((1 + keep - tokens) * 1000 / rate))
"""

# KEYS: lease. ARGV: holder, ttl ms. Returns 1 when the holder has (or renewed) the lease.
HOLD_LEASE = """
local current = redis.call('GET', KEYS[1])
if not current or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Bucket(Protocol):
    async def take(self, keep: float) -> float:
        """Take a token if more than ``keep`` remain after it: 0.0, else seconds to wait."""


class PollLease(Protocol):
    async def hold(self) -> bool:
        """Claim or renew the right to poll; False while another process has it.

        Raises ``RedisError`` when the store cannot say."""

    async def release(self) -> None:
        """Give the lease up (on a clean stop), so another process polls at once."""


class Shared(Protocol):
    def bucket(self, bot_id: str, per_s: float) -> Bucket: ...

    def poll_lease(self, bot_id: str) -> PollLease: ...


def shape(per_s: float) -> tuple[float, float]:
    """The bucket's refill rate and capacity for a limit of ``per_s`` calls a second."""
    return per_s * 0.9, max(1.0, per_s * 0.1)


class Budget:
    """The bot-wide budget as the sink uses it; a store that cannot be reached lets calls go
    (Telegram's own 429 still paces them)."""

    def __init__(self, bucket: Bucket) -> None:
        self._bucket = bucket

    async def required(self) -> None:
        """Wait for a token (a final text)."""
        deadline = time.monotonic() + _REQUIRED_WAIT_AT_MOST_S
        while time.monotonic() < deadline:
            wait = await self._take(0.0)
            if wait <= 0:
                return
            await asyncio.sleep(wait)  # a deadline to reach, not an event to wait for

    async def optional(self) -> bool:
        """Take a token only if the bucket has room beyond the reserve."""
        return await self._take(OPTIONAL_KEEP) <= 0

    async def _take(self, keep: float) -> float:
        try:
            return await self._bucket.take(keep)
        except RedisError as error:
            log.warning("bot-wide budget unavailable, sending anyway: %s", error)
            return 0.0


class RedisBucket:
    def __init__(self, client: Redis, key: str, per_s: float) -> None:
        self._script = client.register_script(TAKE_TOKEN)
        self._key = key
        self._rate, self._capacity = shape(per_s)

    async def take(self, keep: float) -> float:
        wait_ms = await self._script(keys=[self._key], args=[self._rate, self._capacity, keep])
        return int(wait_ms) / 1000


class RedisPollLease:
    def __init__(self, client: Redis, key: str, holder: str, ttl_ms: int = LEASE_TTL_MS) -> None:
        self._hold = client.register_script(HOLD_LEASE)
        self._release = client.register_script(RELEASE_LEASE)
        self._key, self._holder, self._ttl_ms = key, holder, ttl_ms

    async def hold(self) -> bool:
        return bool(await self._hold(keys=[self._key], args=[self._holder, self._ttl_ms]))

    async def release(self) -> None:
        await self._release(keys=[self._key], args=[self._holder])


class RedisShared:
    """Keys ``{prefix}tgbudget:{bot id}`` and ``{prefix}tgpoller:{bot id}``. ``holder`` names
    this process (its instance name), so a restart under the same name polls again at once."""

    def __init__(self, client: Redis, prefix: str, holder: str) -> None:
        self._client, self._prefix, self._holder = client, prefix, holder

    def bucket(self, bot_id: str, per_s: float) -> Bucket:
        return RedisBucket(self._client, f"{self._prefix}tgbudget:{bot_id}", per_s)

    def poll_lease(self, bot_id: str) -> PollLease:
        return RedisPollLease(self._client, f"{self._prefix}tgpoller:{bot_id}", self._holder)


class MemoryBucket:
    def __init__(self, per_s: float) -> None:
        self._rate, self._capacity = shape(per_s)
        self._tokens = self._capacity
        self._at = time.monotonic()

    async def take(self, keep: float) -> float:
        now = time.monotonic()
        self._tokens = min(self._capacity, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens >= 1 + keep:
            self._tokens -= 1
            return 0.0
        return (1 + keep - self._tokens) / self._rate


class SoleLease:
    """One process alone always polls."""

    async def hold(self) -> bool:
        return True

    async def release(self) -> None:
        return None


class LocalShared:
    def bucket(self, bot_id: str, per_s: float) -> Bucket:
        return MemoryBucket(per_s)

    def poll_lease(self, bot_id: str) -> PollLease:
        return SoleLease()
