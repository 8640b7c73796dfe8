"""Redis behind Sentinel: ollabot's store finds the primary through the Sentinels and keeps
working across a failover, losing no more acknowledged writes than the replication settings
of deploy/redis/ allow.

The failover tests write a steady stream of messages (``RATE`` a second) while the primary
fails, then print what they measured: acknowledged writes missing on the new primary, and the
longest time without a successful write. Run with ``-s`` to see the figures.

A graceful ``SENTINEL FAILOVER`` loses the writes the old primary takes between the promotion
of one replica and the move of the other (Sentinel moves it after the next INFO, within about
a second): then the old primary has no replica left and refuses writes. Pausing writes on the
primary first (``CLIENT PAUSE ... WRITE``, as deploy/README.md advises for maintenance) closes
that window.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import SecretStr

from adapters.redis_keys import RedisKeys
from adapters.redis_store import RedisStore
from bots.app import open_store
from bots.doctor import Check, check_redis
from bots.settings import ChatSettings, RedisSettings, Settings
from core.models import Admission, StoredReply, TurnState
from tests.contract import incoming
from tests.contract.steady import Tally, write_steadily
from tests.fixtures.sentinel import DOWN_AFTER_MS, PASSWORD, SERVICE, Node, SentinelGroup

DB = 2
PREFIX = "sentinel-test:"
KEYS = RedisKeys(PREFIX)
INBOX = KEYS.inbox("telegram", KEYS.partition(incoming("1").channel))
RATE = 200  # writes a second
ENOUGH_AFTER = RATE  # a second of writes on the new primary ends the stream
MANY = 10**9
PAUSE_MS = 5000  # a switchover pauses writes this long: longer than a failover takes


def settings_for(
    group: SentinelGroup, url: str = f"redis://:{PASSWORD}@nowhere.invalid:1/{DB}"
) -> Settings:
    """ollabot's settings for ``group``: the URL's host leads nowhere, its password and
    database apply."""
    return Settings(
        _env_file=None,
        redis=RedisSettings(
            url=SecretStr(url),
            sentinels=group.addresses,
            service=SERVICE,
            prefix=PREFIX,
        ),
        chat=ChatSettings(rate_limit_per_minute=MANY, max_queued_per_user=MANY),
    )


@pytest.fixture
async def sentinel_store(sentinel_group: SentinelGroup) -> AsyncIterator[RedisStore]:
    opened = open_store(settings_for(sentinel_group))
    assert isinstance(opened, RedisStore)
    yield opened
    await opened.close()


async def stored_ids(node: Node) -> set[str]:
    """The message ids in the inbox stream of ``node``."""
    async with node.async_client(DB) as client:
        records: Any = await client.xrange(INBOX)
    return {json.loads(fields["message"])["message_id"] for _, fields in records}


async def test_the_store_works_through_sentinel_on_the_primarys_database(
    sentinel_store: RedisStore, sentinel_group: SentinelGroup
) -> None:
    assert await sentinel_store.enqueue(incoming("1", "hello")) is Admission.ACCEPTED
    [entry] = await sentinel_store.take("telegram", "worker-a", 10)
    assert entry.message.text == "hello"

    context = await sentinel_store.load_context(entry, 10, "worker-a", 30_000)
    assert context.state is TurnState.READY and context.history == ()
    assert await sentinel_store.complete(entry, None, StoredReply("hi Ana"), "worker-a") is not None
    await sentinel_store.acknowledge(entry)

    again = await sentinel_store.load_context(entry, 10, "worker-a", 30_000)
    assert again.answered == StoredReply("hi Ana"), "the stored reply is found, not generated anew"
    async with sentinel_group.primary.async_client(DB) as primary:
        assert await primary.exists(KEYS.answered(incoming("1")))
        assert await primary.xlen(INBOX) == 0, "acknowledged and deleted"


async def test_a_burst_beyond_the_pool_waits_for_connections_to_the_primary(
    sentinel_group: SentinelGroup,
) -> None:
    settings = settings_for(sentinel_group)
    settings.redis.max_connections = 5
    store = open_store(settings)
    burst = [incoming(str(n), f"burst {n}") for n in range(50)]
    try:
        admissions = await asyncio.gather(*(store.enqueue(message) for message in burst))
    finally:
        await store.close()

    assert set(admissions) == {Admission.ACCEPTED}
    assert await stored_ids(sentinel_group.primary) == {m.message_id for m in burst}


async def replication_check(settings: Settings) -> Check | None:
    checks = [c for c in await check_redis(settings) if c.name == "redis replication"]
    return checks[0] if checks else None


async def test_doctor_warns_of_a_primary_that_accepts_writes_no_replica_sees(
    sentinel_group: SentinelGroup,
) -> None:
    settings = settings_for(sentinel_group)
    check = await replication_check(settings)
    assert check == Check(
        "redis replication", True, "2 replicas connected, min-replicas-to-write 1"
    )

    async with sentinel_group.primary.async_client() as primary:
        await primary.config_set("min-replicas-to-write", 0)
        await primary.acl_setuser(
            "ollabot",
            enabled=True,
            passwords=["+pw"],
            keys=["*"],
            categories=["+@all"],
            commands=["-config"],
        )
    check = await replication_check(settings)
    assert check is not None and not check.ok and check.warning_only
    assert "min-replicas-to-write is 0" in check.detail
    assert "Fix: min-replicas-to-write 1 and min-replicas-max-lag 10" in check.detail

    without_config = settings_for(sentinel_group, f"redis://ollabot:pw@nowhere.invalid:1/{DB}")
    check = await replication_check(without_config)
    assert check is not None and not check.ok and check.warning_only
    assert "min-replicas-to-write unknown (CONFIG GET is not allowed)" in check.detail

    url = f"redis://:{PASSWORD}@127.0.0.1:{sentinel_group.primary.port}"
    alone = Settings(_env_file=None, redis=RedisSettings(url=SecretStr(url)))
    assert await replication_check(alone) is None, "no replicas expected without Sentinel"


@dataclass(frozen=True)
class Failover:
    lost: list[str]
    acknowledged: int
    refused: int
    unavailable_s: float


async def reaches(node: Node, count: int, writer: asyncio.Task[None], timeout_s: float) -> None:
    """Wait until ``count`` more writes have reached ``node``'s inbox."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with node.async_client(DB) as client:
        key = INBOX
        goal = await client.xlen(key) + count
        while await client.xlen(key) < goal:
            assert loop.time() < deadline, "the store did not write on the new primary"
            assert not writer.done()
            await asyncio.sleep(0.05)


async def fail_over_under_load(
    store: RedisStore, group: SentinelGroup, fail: str, timeout_s: float = 30.0
) -> Failover:
    """Write steadily, fail the primary (``kill``, ``failover``, or ``switchover``: writes
    paused, then a failover), write on until a second of writes reached the new primary; then
    count the acknowledged writes it lacks."""
    tally, stop = Tally(), asyncio.Event()
    writer = asyncio.create_task(write_steadily(store, tally, stop, RATE))
    try:
        while len(tally.acknowledged) < RATE:  # a second of writes on the first primary
            assert not writer.done()
            await asyncio.sleep(0.05)
        old = group.primary
        if fail == "kill":
            old.kill()
        else:
            if fail == "switchover":
                async with old.async_client() as primary:
                    await primary.execute_command("CLIENT", "PAUSE", PAUSE_MS, "WRITE")
            async with group.sentinels[0].async_client() as sentinel:
                await sentinel.sentinel_failover(SERVICE)
        new = await group.wait_for_new_primary(old.port, timeout_s)
        await reaches(new, ENOUGH_AFTER, writer, timeout_s)
    finally:
        stop.set()
        await writer
    stored = await stored_ids(new)
    result = Failover(
        lost=[m for m in tally.acknowledged if m not in stored],
        acknowledged=len(tally.acknowledged),
        refused=tally.refused,
        unavailable_s=tally.unavailable_s(),
    )
    print(
        f"\n{fail}: {len(result.lost)} of {result.acknowledged} acknowledged writes lost "
        f"({len(result.lost) / RATE:.2f} s of writes), {result.refused} refused, "
        f"{result.unavailable_s:.2f} s without a successful write"
    )
    return result


async def test_a_killed_primary_is_replaced_and_the_store_writes_on(
    sentinel_store: RedisStore, sentinel_group: SentinelGroup
) -> None:
    result = await fail_over_under_load(sentinel_store, sentinel_group, "kill")

    assert len(result.lost) <= RATE, "at most a second of acknowledged writes lost"
    down_after_s = DOWN_AFTER_MS / 1000
    assert result.unavailable_s < down_after_s + 5, "a replica is promoted within seconds"


async def test_a_graceful_failover_loses_about_a_second_of_writes_at_most(
    sentinel_store: RedisStore, sentinel_group: SentinelGroup
) -> None:
    result = await fail_over_under_load(sentinel_store, sentinel_group, "failover")

    # Measured about 0.9 s of writes; without min-replicas-to-write, over 10 s.
    assert len(result.lost) <= 2 * RATE, "at most two seconds of acknowledged writes lost"
    assert result.unavailable_s < 5, "the old primary refuses writes; the store moves on at once"


async def test_a_switchover_with_writes_paused_loses_nothing(
    sentinel_store: RedisStore, sentinel_group: SentinelGroup
) -> None:
    result = await fail_over_under_load(sentinel_store, sentinel_group, "switchover")

    assert result.lost == []
    assert result.unavailable_s < PAUSE_MS / 1000 + 1
