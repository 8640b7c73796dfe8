"""Redis Cluster failing over under load: a primary killed or switched over is replaced by
its replica and the store writes on; channels whose partitions live on other primaries are
not held up. The figures these tests print (``-s``) are those of deploy/README.md.

The cluster runs three primaries with a replica each and ``cluster-node-timeout`` 2 s
(Redis's default is 15 s: a killed primary is replaced that much later).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from pydantic import SecretStr
from redis.crc import key_slot

from adapters.redis_store import RedisStore
from bots.doctor import check_redis
from bots.settings import RedisSettings, Settings
from tests.contract.steady import Tally, write_steadily
from tests.fixtures.cluster import ClusterNode, LocalCluster, redis_binary

RATE = 200  # writes a second, per channel
NODE_TIMEOUT_S = 2.0
PREFIX = "cluster-failover:"


@pytest.fixture
def replicated_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    cluster = LocalCluster(tmp_path, redis_binary(), replicas=1)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
async def cluster_store(replicated_cluster: LocalCluster) -> AsyncIterator[RedisStore]:
    limits = {"rate_per_minute": 10**9, "max_backlog": 10**9}
    store = RedisStore.from_cluster(replicated_cluster.url, prefix=PREFIX, **limits)
    await store.ensure_layout()
    yield store
    await store.close()


def serving(cluster: LocalCluster, slot: int) -> tuple[int, list[int]]:
    """The ports of the primary and the replicas of ``slot``, as a live node sees them."""
    for node in cluster.nodes:
        if node.process is None:
            continue
        with redis.Redis(port=node.port) as client:
            ranges: Any = client.execute_command("CLUSTER", "SLOTS")
        for first, last, primary, *replicas in ranges:
            if first <= slot <= last:
                return int(primary[1]), [int(replica[1]) for replica in replicas]
    raise AssertionError(f"no live node serves slot {slot}")


def node_at(cluster: LocalCluster, port: int) -> ClusterNode:
    return next(node for node in cluster.nodes if node.port == port)


def inbox_of(store: RedisStore, channel: str) -> str:
    return store.keys.inbox("telegram", store.keys.partition(channel))


@dataclass(frozen=True)
class Failover:
    lost: int
    acknowledged: int
    unavailable_s: float
    elsewhere_unavailable_s: float


async def fail_over_under_load(
    store: RedisStore, cluster: LocalCluster, fail: str, timeout_s: float = 30.0
) -> Failover:
    """Write steadily to a channel and to one on another primary, fail the first one's
    primary (``kill``, or ``failover``: CLUSTER FAILOVER on its replica), write on until a
    second of writes reached the promoted replica; then count what it lacks."""
    channel = "tg:42"
    slot = key_slot(inbox_of(store, channel).encode())
    old, [replica] = serving(cluster, slot)
    other = next(
        f"tg:{n}"
        for n in range(1000)
        if serving(cluster, key_slot(inbox_of(store, f"tg:{n}").encode()))[0] != old
    )
    tallies, stop = (Tally(), Tally()), asyncio.Event()
    writers = [
        asyncio.create_task(write_steadily(store, tally, stop, RATE, name))
        for tally, name in zip(tallies, (channel, other), strict=True)
    ]
    tally = tallies[0]
    try:
        while len(tally.acknowledged) < RATE:
            assert not any(writer.done() for writer in writers)
            await asyncio.sleep(0.05)
        if fail == "kill":
            process = node_at(cluster, old).process
            assert process is not None
            process.kill()
            process.wait()
            node_at(cluster, old).process = None
        else:
            async with aioredis.Redis(port=replica) as client:
                await client.execute_command("CLUSTER", "FAILOVER")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while serving(cluster, slot)[0] != replica:
            assert loop.time() < deadline, "the replica was never promoted"
            await asyncio.sleep(0.05)
        goal = len(tally.acknowledged) + RATE
        while len(tally.acknowledged) < goal:
            assert loop.time() < deadline, "the store did not write on the promoted replica"
            assert not any(writer.done() for writer in writers)
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*writers)
    async with aioredis.Redis(port=replica, decode_responses=True) as client:
        records: Any = await client.xrange(inbox_of(store, channel))
    stored = {json.loads(fields["message"])["message_id"] for _, fields in records}
    result = Failover(
        lost=sum(m not in stored for m in tally.acknowledged),
        acknowledged=len(tally.acknowledged),
        unavailable_s=tally.unavailable_s(),
        elsewhere_unavailable_s=tallies[1].unavailable_s(),
    )
    print(
        f"\n{fail}: {result.lost} of {result.acknowledged} acknowledged writes lost, "
        f"{result.unavailable_s:.2f} s without a write in the failed partition, "
        f"{result.elsewhere_unavailable_s:.2f} s on another primary"
    )
    return result


async def test_a_killed_primary_is_replaced_and_other_primaries_serve_on(
    cluster_store: RedisStore, replicated_cluster: LocalCluster
) -> None:
    result = await fail_over_under_load(cluster_store, replicated_cluster, "kill")

    assert result.lost <= RATE, "at most a second of acknowledged writes lost"
    assert result.unavailable_s < NODE_TIMEOUT_S + 5, "the replica is promoted within seconds"
    assert result.elsewhere_unavailable_s < NODE_TIMEOUT_S + 5


async def test_a_planned_failover_loses_nothing(
    cluster_store: RedisStore, replicated_cluster: LocalCluster
) -> None:
    result = await fail_over_under_load(cluster_store, replicated_cluster, "failover")

    assert result.lost == 0, "CLUSTER FAILOVER waits for the replica to catch up"
    assert result.unavailable_s < 2


async def test_doctor_checks_a_cluster_through_one_of_its_primaries(cluster_url: str) -> None:
    cluster = RedisSettings(url=SecretStr(cluster_url), cluster=True, prefix=PREFIX)
    checks = {c.name: c for c in await check_redis(Settings(_env_file=None, redis=cluster))}

    assert checks["redis"].ok and checks["redis"].detail.startswith("reachable, version ")
    assert checks["redis memory"].ok and checks["dead letters"].ok
