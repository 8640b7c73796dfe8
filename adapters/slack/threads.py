"""Threads the bot takes part in, remembered in Redis so that follow-ups need no mention."""

from __future__ import annotations

from redis.exceptions import RedisError

from adapters.redis_connect import RedisClient
from core.errors import StoreUnavailable

THIRTY_DAYS_S = 30 * 24 * 3600


class RedisThreadRegistry:
    """One key per thread, ``{prefix}slack:thread:{team}:{channel}:{thread_ts}``, with a TTL.

    A thread is joined when the bot is mentioned in it; every later message in it refreshes
    the TTL. Redis errors become ``StoreUnavailable`` so the event stays unacknowledged and
    Slack delivers it again.
    """

    def __init__(
        self, client: RedisClient, prefix: str = "ollabot:", ttl_s: int = THIRTY_DAYS_S
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._ttl = ttl_s

    def _key(self, team: str, channel: str, thread_ts: str) -> str:
        return f"{self._prefix}slack:thread:{team}:{channel}:{thread_ts}"

    async def join(self, team: str, channel: str, thread_ts: str) -> None:
        try:
            await self._client.set(self._key(team, channel, thread_ts), 1, ex=self._ttl)
        except RedisError as error:
            raise StoreUnavailable() from error

    async def takes_part(self, team: str, channel: str, thread_ts: str) -> bool:
        try:
            return bool(await self._client.expire(self._key(team, channel, thread_ts), self._ttl))
        except RedisError as error:
            raise StoreUnavailable() from error


class MemoryThreadRegistry:
    """The same in this process only (tests, the memory store): forgotten on restart."""

    def __init__(self) -> None:
        self._threads: set[tuple[str, str, str]] = set()

    async def join(self, team: str, channel: str, thread_ts: str) -> None:
        self._threads.add((team, channel, thread_ts))

    async def takes_part(self, team: str, channel: str, thread_ts: str) -> bool:
        return (team, channel, thread_ts) in self._threads
