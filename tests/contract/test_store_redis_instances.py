"""Worker instance names on a shared Redis: one live holder each, a dead one replaced."""

from __future__ import annotations

from adapters.redis_store import RedisStore
from tests.contract import arrive, incoming

TTL_MS = 10_000


async def test_an_instance_name_is_held_by_one_process_and_renewed_by_it(
    redis_store: RedisStore,
) -> None:
    assert await redis_store.claim_instance("worker-1", "host-a:100:x", TTL_MS) is None
    assert await redis_store.claim_instance("worker-1", "host-a:100:x", TTL_MS) is None

    assert await redis_store.claim_instance("worker-1", "host-b:200:y", TTL_MS) == "host-a:100:x"
    assert await redis_store.claim_instance("worker-2", "host-b:200:y", TTL_MS) is None


async def test_a_holder_known_dead_is_replaced_and_no_other(redis_store: RedisStore) -> None:
    await redis_store.claim_instance("worker-1", "host-a:100:x", TTL_MS)

    wrong_guess = await redis_store.claim_instance(
        "worker-1", "host-a:300:z", TTL_MS, dead_holder="host-a:101:x"
    )
    taken_over = await redis_store.claim_instance(
        "worker-1", "host-a:300:z", TTL_MS, dead_holder="host-a:100:x"
    )

    assert wrong_guess == "host-a:100:x"
    assert taken_over is None
    assert await redis_store.claim_instance("worker-1", "host-a:100:x", TTL_MS) == "host-a:300:z"


async def test_only_the_holder_gives_an_instance_name_up(redis_store: RedisStore) -> None:
    await redis_store.claim_instance("worker-1", "host-a:100:x", TTL_MS)

    await redis_store.release_instance("worker-1", "host-b:200:y")
    assert await redis_store.claim_instance("worker-1", "host-b:200:y", TTL_MS) == "host-a:100:x"

    await redis_store.release_instance("worker-1", "host-a:100:x")
    assert await redis_store.claim_instance("worker-1", "host-b:200:y", TTL_MS) is None


async def test_consumers_gone_for_good_are_swept_and_those_with_work_are_kept(
    redis_store: RedisStore,
) -> None:
    await arrive(redis_store, incoming("1"))  # taken by "worker-a", still pending
    await redis_store.enqueue(incoming("2", conversation="other"))
    [done] = await redis_store.take("telegram", "gone-host", 10)
    await redis_store.acknowledge(done)  # the process finished its work, then went away

    assert await redis_store.sweep_consumers("telegram", min_idle_ms=0) == 1
    assert await redis_store.sweep_consumers("telegram", min_idle_ms=0) == 0
    [kept] = await redis_store.claim_abandoned("telegram", "worker-a", 60_000)
    assert kept.message.message_id == "1"
