"""A connection redis-py dropped under a command is the store being unreachable, not a crash."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection

from adapters.redis_store import RedisStore, translated
from core.errors import StoreUnavailable


@translated
async def send_on_a_dropped_connection(store: RedisStore) -> None:
    # What redis-py's cluster client meets when another command disconnected the node's
    # connections meanwhile: a connection without its socket.
    await Connection()._send_packed_command([b"*1\r\n$4\r\nPING\r\n"])


@translated
async def our_own_mistake(store: RedisStore) -> None:
    None.missing  # type: ignore[attr-defined]  # noqa: B018


async def test_redis_py_losing_its_socket_mid_command_reads_as_store_unavailable() -> None:
    store = RedisStore.from_url("redis://127.0.0.1:1/0")
    with pytest.raises(StoreUnavailable):
        await send_on_a_dropped_connection(store)
    with pytest.raises(AttributeError):
        await our_own_mistake(store)
    await store.close()
