"""Through the sidecar: replies stream chunk by chunk, and a host that fails before the first
byte costs the user nothing, while one that fails after it is reported."""

from __future__ import annotations

import asyncio

import pytest

from adapters.ollama_llm import CUT_OFF
from core.errors import LLMFailed, LLMUnavailable
from tests.fakes.ollama import Reply
from tests.haproxy.conftest import MakeFarm, affinity, reply, turn

WORDS = [f" w{n}" for n in range(20)]


def owner_of(farm_fakes: list[object], conversation: str) -> int:
    """Index of the host that served ``conversation`` (it was sent once before)."""
    key = affinity(conversation)
    [index] = [i for i, f in enumerate(farm_fakes) if f and key in f.affinities]  # type: ignore[attr-defined]
    return index


async def test_each_chunk_reaches_the_user_before_the_host_writes_the_next(
    make_farm: MakeFarm,
) -> None:
    farm = await make_farm()
    llm = farm.client(await farm.proxy())
    step = asyncio.Semaphore(0)
    for fake in farm.fakes:
        assert fake is not None
        fake.script(Reply(text="".join(WORDS), step=step))
    received: list[str] = []
    async with asyncio.timeout(10):  # a proxy holding a chunk back would stall the host here
        async for event in llm.stream(turn("tg:stream", 0)):
            if event.delta:
                received.append(event.delta)
                step.release()
    assert received == WORDS


async def test_a_host_that_stopped_listening_is_skipped_and_the_user_answered(
    make_farm: MakeFarm,
) -> None:
    farm = await make_farm()
    proxy = await farm.proxy()
    llm = farm.client(proxy)
    await reply(llm, turn("tg:7", 0))
    owner = owner_of(farm.fakes, "tg:7")
    await farm.stop_host(owner)  # before any health check can notice

    assert await reply(llm, turn("tg:7", 1)) == "echo: go on"
    assert sum(farm.counts()) == 1, "the hosts still up got this one turn, once"
    name = farm.hosts[owner].name
    stats = await proxy.stats()
    assert int(stats[name]["wredis"]) == 1, "HAProxy redispatched the refused connection"
    assert stats[name]["status"] == "DOWN", "the refusal marked the host down at once"


async def test_a_host_dropping_the_request_before_the_first_byte_is_retried_once(
    make_farm: MakeFarm,
) -> None:
    farm = await make_farm()
    llm = farm.client(await farm.proxy())
    await reply(llm, turn("tg:8", 0))
    owner = farm.fakes[owner_of(farm.fakes, "tg:8")]
    assert owner is not None
    owner.script(Reply(hang_up=True))  # accepts, then closes: a crashing Ollama

    assert await reply(llm, turn("tg:8", 1)) == "echo: go on"
    assert len(owner.chat_requests) == 3, "the first turn, the dropped try, the retry"
    assert sum(farm.counts()) == 3


async def test_a_host_dying_before_the_first_byte_costs_the_user_nothing(
    make_farm: MakeFarm,
) -> None:
    farm = await make_farm()
    llm = farm.client(await farm.proxy())
    await reply(llm, turn("tg:11", 0))
    index = owner_of(farm.fakes, "tg:11")
    owner = farm.fakes[index]
    assert owner is not None
    owner.script(Reply(first_byte_gate=asyncio.Event()))  # evaluating the prompt...
    answer = asyncio.create_task(reply(llm, turn("tg:11", 1)))
    await owner.wait_for_chat(2)
    await farm.stop_host(index)  # ...when Ollama dies

    assert await answer == "echo: go on", "ollabot tried again; the sidecar chose another host"
    assert sum(farm.counts()) == 1


async def test_a_host_failing_after_the_first_byte_is_reported_not_repeated(
    make_farm: MakeFarm,
) -> None:
    farm = await make_farm()
    llm = farm.client(await farm.proxy())
    await reply(llm, turn("tg:9", 0))
    owner = farm.fakes[owner_of(farm.fakes, "tg:9")]
    assert owner is not None
    owner.script(Reply(text="half an answer", done=False, abort=True))

    with pytest.raises(LLMFailed) as failure:
        await reply(llm, turn("tg:9", 1))
    assert failure.value.notice == CUT_OFF
    assert sum(farm.counts()) == 2, "not retried: the user saw part of the reply"


async def test_with_every_host_down_the_user_hears_the_model_is_unreachable_not_busy(
    make_farm: MakeFarm,
) -> None:
    farm = await make_farm()
    proxy = await farm.proxy()
    llm = farm.client(proxy)
    for index in range(3):
        await farm.stop_host(index)
    await proxy.wait_for_states({"gpu1": "DOWN", "gpu2": "DOWN", "gpu3": "DOWN"})

    with pytest.raises(LLMUnavailable) as failure:
        await reply(llm, turn("tg:10", 0))
    assert failure.value.notice == LLMUnavailable.notice

    await farm.start_host(1)
    await proxy.wait_for_states({"gpu2": "UP"})
    assert await reply(llm, turn("tg:10", 0)) == "echo: go on", "back as soon as one host is"
