"""What the processes serving one bot token share through Redis.

Telegram counts about 30 messages a second per bot, however many processes send them, and
answers only one ``getUpdates`` at a time. So every process takes its sends from one budget in
Redis, and only the holder of one lease polls; another process takes the lease over when its
holder stops renewing it. Webhook mode needs no lease: Telegram posts to whichever process.

Keys, under the store's prefix, per bot (its numeric id, the public half of the token); every
key of this module is built here and each script touches one key:

    telegram:budget:{bot}   sorted set of the sends of the last second, places reserved
                            ahead included (score: ms on Redis's clock, the one all share)
    telegram:poller:{bot}   the poller lease: its holder (``host:pid:nonce``), SET PX

When Redis cannot be reached the budget falls back to this process's own count (said once
in the log); the lease keeps whatever it was: a poller goes on polling.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass

from redis.exceptions import RedisError

from adapters.redis_connect import RedisClient
from adapters.redis_scripts import ACQUIRE_LOCK, RELEASE_LOCK
from adapters.telegram.pacing import LocalBudget, SendWindow
from core.errors import StoreUnavailable

log = logging.getLogger("ollabot.telegram.shared")

LEASE_TTL_S = 3.0  # a killed poller is replaced within this and a third of it (one check)
LOCAL_FOR_S = 5.0  # after a Redis failure, the budget counts alone this long before retrying

# KEYS: budget. ARGV: limit, window ms, reserve, member (unique), required ('1' or '0').
# Returns the ms to wait before sending (0: now), or -1: an optional send finds no room to
# spare. A required send that finds the window full takes the first place where it holds
# fewer than ``limit``, and no sooner than a ``limit``-th of the window after the last place
# taken: sends that waited leave evenly spaced, not in bursts that arrive late.
TAKE_PLACE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local taken = redis.call('ZCARD', KEYS[1])
local at = now
if ARGV[5] ~= '1' then
  if taken >= limit - tonumber(ARGV[3]) then return -1 end
elseif taken >= limit then
  local nth = redis.call('ZRANGE', KEYS[1], taken - limit, taken - limit, 'WITHSCORES')
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  at = math.max(now, tonumber(nth[2]) + window, tonumber(last[2]) + window / limit)
end
redis.call('ZADD', KEYS[1], at, ARGV[4])
redis.call('PEXPIRE', KEYS[1], at - now + window)
return at - now
"""


@dataclass(frozen=True, slots=True)
class BotKeys:
    """The Redis keys one bot's processes share."""

    budget: str
    poller: str

    @classmethod
    def of(cls, prefix: str, token: str) -> BotKeys:
        bot = token.partition(":")[0]
        if not bot.isdigit():  # not a BotFather token: name it without revealing it
            bot = hashlib.sha256(token.encode()).hexdigest()[:16]
        return cls(f"{prefix}telegram:budget:{bot}", f"{prefix}telegram:poller:{bot}")


class SharedBudget:
    """The bot-wide budget kept in Redis for every process; this process's own when Redis
    fails, until it answers again."""

    def __init__(self, client: RedisClient, key: str, per_s: float) -> None:
        self._client = client
        self._key = key
        self._window = SendWindow.for_rate(per_s)
        self._local = LocalBudget(per_s)
        self._member = f"{uuid.uuid4().hex[:12]}:"
        self._sends = 0
        self._local_until = 0.0
        self._failing = False

    async def take(self) -> None:
        wait_ms = await self._place(required=True)
        if wait_ms is None:
            await self._local.take()
        elif wait_ms > 0:
            await asyncio.sleep(wait_ms / 1000)  # a place in time, not an event

    async def try_take(self) -> bool:
        wait_ms = await self._place(required=False)
        if wait_ms is None:
            return await self._local.try_take()
        return wait_ms >= 0

    async def _place(self, required: bool) -> int | None:
        """The wait Redis gives this send (-1: no room), or None: count locally."""
        if time.monotonic() < self._local_until:
            return None
        self._sends += 1
        window = self._window
        try:
            reply = await self._client.eval(
                TAKE_PLACE,
                1,
                self._key,
                window.limit,
                round(window.window_s * 1000),
                window.reserve,
                f"{self._member}{self._sends}",
                "1" if required else "0",
            )
        except (RedisError, OSError) as error:
            self._local_until = time.monotonic() + LOCAL_FOR_S
            if not self._failing:
                self._failing = True
                log.warning(
                    "the bot-wide Telegram budget in Redis is unreachable; this process paces "
                    "its messages alone until it is back: %s",
                    error,
                )
            return None
        if self._failing:
            self._failing = False
            log.info("the bot-wide Telegram budget in Redis is back")
        return int(reply)


class PollerLease:
    """The right to call ``getUpdates`` for one bot, held by one process at a time."""

    def __init__(self, client: RedisClient, key: str, ttl_s: float = LEASE_TTL_S) -> None:
        self._client = client
        self._key = key
        self._ttl_ms = round(ttl_s * 1000)
        self.renew_every_s = ttl_s / 3  # two renewals may fail before it lapses
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    async def hold(self) -> bool:
        """Take the lease if it is free, renew it if this process has it; False when another
        process holds it. ``StoreUnavailable`` when Redis does not answer."""
        try:
            reply = await self._client.eval(ACQUIRE_LOCK, 1, self._key, self.holder, self._ttl_ms)
        except (RedisError, OSError) as error:
            raise StoreUnavailable() from error
        return bool(reply)

    async def release(self) -> None:
        """Give the lease up at once (on a clean stop), if this process has it."""
        try:
            await self._client.eval(RELEASE_LOCK, 1, self._key, self.holder)
        except (RedisError, OSError) as error:
            raise StoreUnavailable() from error
