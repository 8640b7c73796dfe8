"""What the Redis store leaves in Redis: expiring keys, single round trips, robust reads."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection

from adapters.redis_store import RedisStore, StoreLayoutError
from core.models import Admission, AuditEntry, ChannelSettings, Outcome, StoredReply, Turn
from tests.contract import incoming

DAY = 86400


@pytest.mark.parametrize("store_limits", [{"rate_per_minute": 1, "notice_window_s": 60}])
async def test_every_key_expires_but_the_inbox_and_the_channel_settings(
    redis_store: RedisStore, raw_redis: aioredis.Redis, key_prefix: str
) -> None:
    message = incoming("1", "hi")
    await redis_store.enqueue(message)
    assert await redis_store.enqueue(incoming("2")) is Admission.LIMITED
    [entry] = await redis_store.take("telegram", "worker-a", 1)
    await redis_store.load_context(entry, 10, "worker-a", 30_000)
    k = redis_store.keys
    lock_ttl_ms = await raw_redis.pttl(k.lock("tg:42", "tg:42"))
    await redis_store.save_handle(message, {"message_id": "99"})
    outcome = Outcome((Turn("user", "hi"),), 0, "hello")
    await redis_store.complete(entry, outcome, StoredReply("hello"), "worker-a")
    await redis_store.acknowledge(entry)
    await redis_store.claim_instance("worker-1", "host:1:abc", 10_000)
    audit = AuditEntry("tg:42", "u1", "preset", "balanced", "precise")
    await redis_store.save_settings("tg:42", ChannelSettings(preset="precise"), audit)

    ttls = {
        key: int(await raw_redis.ttl(key)) async for key in raw_redis.scan_iter(f"{key_prefix}*")
    }

    expiring = {
        k.conv("tg:42", "tg:42"): 30 * DAY,
        k.meta("tg:42", "tg:42"): 30 * DAY,
        k.order("tg:42", "tg:42"): 30 * DAY,
        k.backlog(message): 30 * DAY,
        k.seen(message): DAY,
        k.seen(incoming("2")): DAY,
        k.answered(message): DAY,
        k.handle(message): DAY,
        k.bucket(message): 61,  # by then the bucket is full: as good as none
        k.told(message): 60,
        k.instance("worker-1"): 10,
        k.writing("tg:42", "tg:42"): 30,  # the lease's reply: asked of only while it is held
    }
    kept = {*k.inboxes("telegram"), k.settings("tg:42"), k.audit("tg:42"), k.layout}
    assert set(ttls) == kept | set(expiring)
    assert {key: ttls[key] for key in expiring} == pytest.approx(expiring, rel=0.1)
    assert 0 < lock_ttl_ms <= 30_000  # and complete released it


async def test_a_channels_settings_and_its_audit_log_are_kept_alike(
    redis_store: RedisStore, raw_redis: aioredis.Redis, key_prefix: str
) -> None:
    audit = AuditEntry("tg:42", "u1", "model", "", "m:8b")
    await redis_store.save_settings("tg:42", ChannelSettings(model="m:8b"), audit)
    await redis_store.append_audit(AuditEntry("tg:42", "u9", "model", "", "x", "refused: no"))

    k = redis_store.keys
    assert await raw_redis.ttl(k.settings("tg:42")) == -1
    assert await raw_redis.ttl(k.audit("tg:42")) == -1
    assert await raw_redis.xlen(k.audit("tg:42")) == 2
    assert not await raw_redis.exists(f"{key_prefix}audit")


async def test_an_unreadable_inbox_entry_is_set_aside_without_stopping_the_inbox(
    redis_store: RedisStore, raw_redis: aioredis.Redis, key_prefix: str
) -> None:
    inbox = redis_store.keys.inbox("telegram", redis_store.keys.partition("tg:42"))
    await raw_redis.xadd(inbox, {"message": "{not json"})
    await redis_store.enqueue(incoming("1", "a real question"))

    taken = await redis_store.take("telegram", "worker-a", 10)

    assert [entry.message.text for entry in taken] == ["a real question"]
    assert await redis_store.claim_abandoned("telegram", "worker-b", 0) != []
    assert await raw_redis.xlen(inbox) == 1
    [(_, letter)] = await raw_redis.xrange(f"{key_prefix}deadletter")
    assert letter == {
        "platform": "telegram",
        "source": "inbox",
        "reason": "unreadable inbox entry",
        "payload": "{not json",
    }
    assert await raw_redis.ttl(f"{key_prefix}deadletter") == -1


async def test_unreadable_channel_settings_fall_back_to_defaults(
    redis_store: RedisStore, raw_redis: aioredis.Redis
) -> None:
    key = redis_store.keys.settings("tg:42")
    await raw_redis.set(key, json.dumps({"preset": "precise", "x": 1}))
    assert (await redis_store.get_settings("tg:42")).preset == "precise"

    await raw_redis.set(key, "{broken")
    assert (await redis_store.get_settings("tg:42")).preset == "balanced"


async def test_server_info_reports_what_doctor_checks(redis_store: RedisStore) -> None:
    info = await redis_store.server_info()

    assert info["redis_version"][0].isdigit()
    assert info["aof_enabled"] == "0"  # the test server runs without AOF
    assert info["appendfsync"] in {"always", "everysec", "no"}
    assert info["maxmemory_policy"] == "noeviction"
    assert info["min_replicas_to_write"] == "0" and info["connected_replicas"] == "0"


class CountingConnection(Connection):
    """A real connection that counts how often it writes to the socket (one per round trip)."""

    writes = 0

    async def send_packed_command(self, command: object, check_health: bool = True) -> None:
        CountingConnection.writes += 1
        await super().send_packed_command(command, check_health)  # type: ignore[arg-type]


@pytest.fixture
async def counted_store(redis_url: str, key_prefix: str) -> AsyncIterator[RedisStore]:
    def client() -> aioredis.Redis:
        return aioredis.Redis.from_url(
            redis_url, decode_responses=True, connection_class=CountingConnection
        )

    store = RedisStore(client(), client(), prefix=key_prefix, block_ms=200)
    await store.ping()  # connect first: the handshake is not the operation's round trip
    yield store
    await store.close()


async def round_trips(operation: object) -> int:
    before = CountingConnection.writes
    await operation  # type: ignore[misc]
    return CountingConnection.writes - before


async def test_each_step_of_a_message_takes_one_round_trip(counted_store: RedisStore) -> None:
    message = incoming("1", "hi")
    assert await round_trips(counted_store.enqueue(message)) == 1
    [entry] = await counted_store.take("telegram", "worker-a", 1)

    assert await round_trips(counted_store.load_context(entry, 200, "worker-a", 30_000)) == 1
    assert await round_trips(counted_store.save_handle(message, {"message_id": "99"})) == 1
    outcome = Outcome((Turn("user", "hi", 0), Turn("assistant", "hello", 1)), 0, "hello")
    reply = StoredReply("hello")
    assert await round_trips(counted_store.complete(entry, outcome, reply, "worker-a")) == 1
    assert await round_trips(counted_store.load_context(entry, 200, "worker-b", 30_000)) == 1
    assert await round_trips(counted_store.acknowledge(entry)) == 1
    assert await round_trips(counted_store.enqueue(message)) == 1
    assert await round_trips(counted_store.claim_instance("worker-1", "host:1:a", 10_000)) == 1


async def test_the_number_of_partitions_is_recorded_once_and_a_different_one_refused(
    redis_url: str, key_prefix: str
) -> None:
    first = RedisStore.from_url(redis_url, prefix=key_prefix, partitions=4)
    other = RedisStore.from_url(redis_url, prefix=key_prefix, partitions=8)
    try:
        await first.ensure_layout()
        await first.ensure_layout()  # the next start finds its own number

        with pytest.raises(StoreLayoutError, match="written with 4 partitions, not 8"):
            await other.ensure_layout()
    finally:
        await first.close()
        await other.close()


async def test_data_of_a_release_without_partitions_is_refused_not_mixed_in(
    redis_store: RedisStore, raw_redis: aioredis.Redis, redis_url: str, key_prefix: str
) -> None:
    older = f"{key_prefix}older:"
    await raw_redis.rpush(f"{older}conv:tg:42", '["user", "hi", 1, "u1"]')
    store = RedisStore.from_url(redis_url, prefix=older)
    try:
        with pytest.raises(StoreLayoutError, match="older ollabot"):
            await store.ensure_layout()
        assert not await raw_redis.exists(store.keys.layout)
    finally:
        await store.close()
