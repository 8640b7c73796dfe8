"""Redis out of memory: the store names it (``StoreFull``), writes nothing, and recovers."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from redis.exceptions import OutOfMemoryError

from adapters.redis_store import RedisStore
from core.errors import StoreFull
from core.models import Admission
from tests.contract import incoming

HEADROOM = 1_000_000
FILLER = "x" * 100_000


async def fill(client: aioredis.Redis, key_prefix: str) -> None:
    """Write 100 kB values until Redis refuses one for want of memory, then smaller ones
    until it refuses even a 100-byte one (a refused large value only filled the query
    buffer, which is freed again)."""
    n = 0
    for size in (len(FILLER), 10_000, 1_000, 100):
        while n < 100 * HEADROOM // size:
            n += 1
            try:
                await client.set(f"{key_prefix}filler:{n}", FILLER[:size])
            except OutOfMemoryError:
                break
        else:
            raise AssertionError("Redis took every write: maxmemory is not in force")


async def test_a_full_redis_is_named_and_a_refused_message_gets_in_once_there_is_room(
    redis_store: RedisStore, raw_redis: aioredis.Redis, key_prefix: str
) -> None:
    used = int((await raw_redis.info("memory"))["used_memory"])
    policy = str((await raw_redis.config_get("maxmemory-policy"))["maxmemory-policy"])
    await raw_redis.config_set("maxmemory-policy", "noeviction")
    await raw_redis.config_set("maxmemory", used + HEADROOM)
    try:
        await fill(raw_redis, key_prefix)

        with pytest.raises(StoreFull) as caught:
            await redis_store.enqueue(incoming("1"))

        assert "full" in caught.value.notice
        info = await redis_store.server_info()
        assert int(info["used_memory"]) >= int(info["maxmemory"]) > 0
    finally:
        await raw_redis.config_set("maxmemory", 0)
        await raw_redis.config_set("maxmemory-policy", policy)
        async for key in raw_redis.scan_iter(f"{key_prefix}filler:*"):
            await raw_redis.delete(key)

    assert await redis_store.enqueue(incoming("1")) is Admission.ACCEPTED
