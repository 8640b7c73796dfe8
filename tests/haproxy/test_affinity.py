"""Prompt-cache hits behind HAProxy: every turn of a conversation on the host that has it."""

from __future__ import annotations

import asyncio
import random

from tests.haproxy.conftest import MakeFarm, reply, turn

CONVERSATIONS = 60
TURNS = 5
CONCURRENT = 6  # model calls at once: three hosts with OLLAMA_NUM_PARALLEL=2


async def hit_rate(make_farm: MakeFarm, balance: str | None) -> float:
    """60 conversations x 5 turns, each round of turns in a shuffled order, as users write."""
    farm = await make_farm()
    llm = farm.client(await farm.proxy(balance))
    slots = asyncio.Semaphore(CONCURRENT)

    async def one(conversation: str, n: int) -> None:
        async with slots:
            assert await reply(llm, turn(conversation, n)) == "echo: go on"

    shuffled = random.Random(11)
    for n in range(TURNS):
        order = [f"tg:{c}" for c in range(CONVERSATIONS)]
        shuffled.shuffle(order)
        await asyncio.gather(*(one(conversation, n) for conversation in order))
    caches = [fake.prompt_cache for fake in farm.fakes if fake]
    hits = sum(cache.hits for cache in caches)
    assert hits + sum(cache.misses for cache in caches) == CONVERSATIONS * TURNS
    return hits / (CONVERSATIONS * TURNS)


async def test_affinity_keeps_prompt_caches_warm_where_round_robin_does_not(
    make_farm: MakeFarm,
) -> None:
    hashed = await hit_rate(make_farm, None)
    round_robin = await hit_rate(make_farm, "roundrobin")
    least_connections = await hit_rate(make_farm, "leastconn")
    print(
        f"\nprompt-cache hit rate, {CONVERSATIONS} conversations x {TURNS} turns on 3 hosts "
        f"remembering 30 each: affinity {hashed:.2f}, round-robin {round_robin:.2f}, "
        f"least-connections {least_connections:.2f} (best possible {(TURNS - 1) / TURNS:.2f})"
    )
    assert hashed >= 0.7
    assert hashed >= max(round_robin, least_connections) + 0.3
