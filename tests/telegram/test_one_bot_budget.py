"""Two processes on one bot token: one poller, one bot-wide budget. Telegram allows a bot about
30 messages a second over all its chats and answers 409 Conflict to a second ``getUpdates``;
the fake enforces both, so what the test sees is what Telegram would do."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from adapters.telegram.shared import Bucket, Budget, MemoryBucket, RedisShared
from tests.fakes.telegram_api import FakeTelegram, message, private_chat
from tests.telegram.conftest import RunningBot, StartBot

pytestmark = pytest.mark.filterwarnings("ignore:.*retry_after.*:DeprecationWarning")


def user(n: int) -> dict[str, Any]:
    return {"id": 620_000_000 + n, "is_bot": False, "first_name": f"User{n}"}


def answers(fake: FakeTelegram, chat_id: int) -> list[str]:
    return [m["text"] for m in fake.sent(chat_id)]


async def poller_of(bots: list[RunningBot]) -> RunningBot:
    """The process that polls, once one does (each checks the lease every second)."""
    async with asyncio.timeout(5):
        while not any(bot.platform.polls for bot in bots):  # noqa: ASYNC110 - lease in Redis
            await asyncio.sleep(0.05)
    polling = [bot for bot in bots if bot.platform.polls]
    assert len(polling) == 1, "exactly one process polls getUpdates"
    return polling[0]


async def test_two_processes_answer_300_messages_within_the_bot_wide_limit_and_one_poller(
    start_bot: StartBot, fake_telegram: FakeTelegram
) -> None:
    chats, rounds = 100, 3
    fake_telegram.global_rate_count, fake_telegram.global_rate_window_s = 30, 1.0
    bots = [
        await start_bot(consumer="process-a", bot_rate_per_s=30),
        await start_bot(consumer="process-b", bot_rate_per_s=30),
    ]
    await poller_of(bots)
    users = [user(n) for n in range(chats)]
    for r in range(rounds):
        for u in users:
            fake_telegram.push(message(private_chat(u), u, f"user {u['id']} question {r}"))

    def expected(u: dict[str, Any]) -> list[str]:
        return [f"echo: user {u['id']} question {r}" for r in range(rounds)]

    # About 11 s at the limit; the bound leaves room for a busy machine.
    try:
        await fake_telegram.wait_until(
            lambda: all(answers(fake_telegram, u["id"]) == expected(u) for u in users), timeout=45
        )
    except AssertionError:
        wrong = [(answers(fake_telegram, u["id"]), expected(u)) for u in users]
        wrong = [pair for pair in wrong if pair[0] != pair[1]]
        raise AssertionError(f"{len(wrong)} chats not answered as asked: {wrong[:3]}") from None
    calls, limited = len(fake_telegram.calls), len(fake_telegram.errors(429))
    print(f"\n{chats * rounds} answered; {calls} Bot API calls, {limited} answered 429")
    assert fake_telegram.errors(409) == [], "two processes polled getUpdates at once"
    assert limited <= calls / 100, f"{limited} of {calls} calls were refused with 429"


async def test_when_the_polling_process_dies_the_other_takes_over_and_answers(
    start_bot: StartBot, fake_telegram: FakeTelegram
) -> None:
    alice, bob = user(1), user(2)
    bots = [await start_bot(consumer="process-a"), await start_bot(consumer="process-b")]
    poller = await poller_of(bots)
    fake_telegram.push(message(private_chat(alice), alice, "before"))
    await fake_telegram.wait_until(lambda: answers(fake_telegram, alice["id"]) == ["echo: before"])

    await poller.kill()
    killed_at = time.monotonic()
    fake_telegram.push(message(private_chat(bob), bob, "after"))
    await fake_telegram.wait_until(
        lambda: answers(fake_telegram, bob["id"]) == ["echo: after"], timeout=6
    )
    print(f"\nanswered {time.monotonic() - killed_at:.1f}s after the polling process died")
    (survivor,) = [bot for bot in bots if bot is not poller]
    assert survivor.platform.polls
    assert fake_telegram.errors(409) == []


@pytest.mark.parametrize("kind", ["redis", "memory"])
async def test_streaming_edits_yield_to_final_texts_when_the_bot_wide_budget_is_short(
    kind: str, redis_url: str, key_prefix: str
) -> None:
    client = Redis.from_url(redis_url)
    per_s = 2.0  # one token in the bucket, the next in about half a second

    def bucket(process: str) -> Bucket:
        if kind == "memory":
            return shared_memory
        return RedisShared(client, key_prefix, process).bucket("7012345678", per_s)

    shared_memory = MemoryBucket(per_s)
    a, b = Budget(bucket("process-a")), Budget(bucket("process-b"))
    try:
        await a.required()  # a final text takes the only token
        assert not await b.optional(), "a preview in another process finds no room"
        await b.required()  # a final text there waits for the next token instead
        assert not await a.optional(), "and still no room for a preview"
    finally:
        await client.aclose()
