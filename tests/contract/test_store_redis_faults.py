"""Redis down or silent: every call fails fast with StoreUnavailable, and the store recovers.
A burst of more calls than the store has connections is served whole, waiting its turn."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio

from adapters.redis_store import RedisStore
from core.errors import StoreUnavailable
from core.models import (
    Admission,
    AuditEntry,
    ChannelSettings,
    InboxEntry,
    IncomingMessage,
    Outcome,
    StoredReply,
    Turn,
)
from tests.contract import incoming
from tests.fixtures.redis import RedisServer

Call = Callable[[RedisStore], Awaitable[object]]

ENTRY = InboxEntry("0/1-1", incoming("1"), 1)
OUTCOME = Outcome((Turn("user", "hi"),), 0, "hi")
EVERY_CALL: dict[str, Call] = {
    "ping": lambda s: s.ping(),
    "server_info": lambda s: s.server_info(),
    "enqueue": lambda s: s.enqueue(incoming("1")),
    "take": lambda s: s.take("telegram", "worker-a", 10),
    "claim_abandoned": lambda s: s.claim_abandoned("telegram", "worker-a", 0),
    "keep_alive": lambda s: s.keep_alive("telegram", "worker-a", [ENTRY.entry_id]),
    "acknowledge": lambda s: s.acknowledge(ENTRY),
    "load_context": lambda s: s.load_context(ENTRY, 10, "w", 1000),
    "complete": lambda s: s.complete(ENTRY, OUTCOME, StoredReply("hi"), "w"),
    "save_handle": lambda s: s.save_handle(ENTRY.message, {"message_id": "9"}),
    "clear_conversation": lambda s: s.clear_conversation("tg:42", "tg:42"),
    "acquire_lock": lambda s: s.acquire_lock("tg:42", "tg:42", "worker-a", 1000),
    "release_lock": lambda s: s.release_lock("tg:42", "tg:42", "worker-a"),
    "claim_instance": lambda s: s.claim_instance("worker-1", "host:1:a", 1000),
    "release_instance": lambda s: s.release_instance("worker-1", "host:1:a"),
    "get_settings": lambda s: s.get_settings("tg:42"),
    "save_settings": lambda s: s.save_settings(
        "tg:42", ChannelSettings(), AuditEntry("tg:42", "u1", "preset", "a", "b")
    ),
    "audit_log": lambda s: s.audit_log("tg:42", 10),
}


@pytest.fixture
async def private_store(redis_server: RedisServer) -> AsyncIterator[RedisStore]:
    store = RedisStore.from_url(redis_server.url, prefix="faults:", block_ms=200)
    yield store
    await store.close()


SMALL_POOL = 5


@pytest.fixture
async def small_pool_store(redis_server: RedisServer) -> AsyncIterator[RedisStore]:
    store = RedisStore.from_url(
        redis_server.url, prefix="burst:", block_ms=200, max_connections=SMALL_POOL
    )
    yield store
    await store.close()


def from_user(n: int) -> IncomingMessage:
    """Message ``n`` of a burst, each from its own user in its own chat (no rate limit)."""
    chat = f"tg:{n}"
    return incoming(str(n), conversation=chat, channel=chat, author_id=f"u{n}")


async def inbox_ids(store: RedisStore, admin: redis.asyncio.Redis) -> list[str]:
    """The message ids in every partition of the Telegram inbox, straight from Redis."""
    ids: list[str] = []
    for inbox in store.keys.inboxes("telegram"):
        records: Any = await admin.xrange(inbox)
        ids += [json.loads(fields[b"message"])["message_id"] for _, fields in records]
    return ids


async def test_a_burst_ten_times_the_pool_is_stored_whole_on_few_connections(
    small_pool_store: RedisStore, redis_server: RedisServer
) -> None:
    burst = [from_user(n) for n in range(10 * SMALL_POOL)]

    admissions = await asyncio.gather(*(small_pool_store.enqueue(m) for m in burst))

    assert set(admissions) == {Admission.ACCEPTED}
    async with redis.asyncio.Redis(port=redis_server.port) as admin:
        assert sorted(await inbox_ids(small_pool_store, admin)) == sorted(
            m.message_id for m in burst
        )
        clients = (await admin.info("clients"))["connected_clients"]
        assert clients <= SMALL_POOL + 1, "the store's connections and this one at most"


async def test_a_silent_redis_fails_callers_waiting_for_a_connection_within_seconds(
    small_pool_store: RedisStore, redis_server: RedisServer
) -> None:
    await small_pool_store.ping()
    redis_server.pause()
    try:
        calls = [from_user(n) for n in range(4 * SMALL_POOL)]
        await asyncio.gather(*(fails_within(7, small_pool_store.enqueue(m)) for m in calls))
    finally:
        redis_server.resume()

    assert await small_pool_store.enqueue(incoming("after")) is Admission.ACCEPTED


async def fails_within(seconds: float, call: Awaitable[object]) -> float:
    """Await ``call``, expect StoreUnavailable, and return how long it took."""
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        await call
    elapsed = time.monotonic() - started
    assert elapsed < seconds, f"took {elapsed:.1f}s"
    assert "Redis" in caught.value.notice
    return elapsed


async def test_with_redis_stopped_every_call_fails_fast_then_recovers(
    private_store: RedisStore, redis_server: RedisServer
) -> None:
    await private_store.ping()
    redis_server.stop()

    for call in EVERY_CALL.values():
        await fails_within(5, call(private_store))

    redis_server.start()
    assert await private_store.enqueue(incoming("after-restart")) is Admission.ACCEPTED
    [entry] = await private_store.take("telegram", "worker-a", 10)
    assert entry.message.message_id == "after-restart"


async def test_a_silent_redis_fails_within_seconds_then_recovers(
    private_store: RedisStore, redis_server: RedisServer
) -> None:
    await private_store.enqueue(incoming("before"))
    redis_server.pause()
    try:
        await fails_within(5, private_store.load_context(ENTRY, 10, "w", 1000))
        await fails_within(5, private_store.take("telegram", "worker-a", 10))
    finally:
        redis_server.resume()

    [entry] = await private_store.take("telegram", "worker-a", 10)
    assert entry.message.message_id == "before"
    assert (await private_store.load_context(entry, 10, "w", 1000)).history == ()


async def noreplicas_refusals(client: redis.asyncio.Redis) -> int:
    """How many writes the server refused for want of replicas (INFO errorstats)."""
    stats = await client.info("errorstats")
    return int(stats.get("errorstat_NOREPLICAS", {}).get("count", 0))


async def test_a_primary_briefly_without_replicas_stores_the_message_on_a_retry(
    private_store: RedisStore, redis_server: RedisServer
) -> None:
    async with redis.asyncio.Redis(port=redis_server.port) as admin:
        await admin.config_set("min-replicas-to-write", 1)  # and it has none
        enqueued = asyncio.create_task(private_store.enqueue(incoming("waits")))
        deadline = time.monotonic() + 5
        while await noreplicas_refusals(admin) == 0:
            assert time.monotonic() < deadline and not enqueued.done()
            await asyncio.sleep(0.01)
        await admin.config_set("min-replicas-to-write", 0)  # a replica caught up again

        assert await enqueued is Admission.ACCEPTED
        [entry] = await private_store.take("telegram", "worker-a", 10)
        assert entry.message.message_id == "waits"


async def test_a_primary_left_without_replicas_refuses_within_seconds(
    private_store: RedisStore, redis_server: RedisServer
) -> None:
    async with redis.asyncio.Redis(port=redis_server.port) as admin:
        await admin.config_set("min-replicas-to-write", 1)

        await fails_within(5, private_store.enqueue(incoming("refused")))
        assert await noreplicas_refusals(admin) > 1, "retried before giving up"
        assert await private_store.get_settings("tg:42") is not None, "reads still work"
