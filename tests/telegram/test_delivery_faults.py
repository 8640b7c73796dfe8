"""Delivery under pressure: 429 storms, a crash between storing and delivering, two processes
sharing one chat, and a user flooding the bot. What each test checks is what the chat shows."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from adapters.redis_store import GROUP
from adapters.telegram.pacing import Limits
from core.errors import RateLimited
from tests.fakes.ollama import FakeOllama, Reply
from tests.fakes.telegram_api import ALICE, FakeTelegram, message, private_chat
from tests.telegram.conftest import RunningBot, StartBot

ALICE_CHAT = private_chat(ALICE)
ALICE_ID = int(str(ALICE["id"]))
ELLIPSIS = "…"
# PTB 22 warns inside RetryAfter() itself until PTB_TIMEDELTA is set; we accept both types.
pytestmark = pytest.mark.filterwarnings("ignore:.*retry_after.*:DeprecationWarning")


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Wait until ``check()`` holds (state in Redis, which notifies nobody), or fail."""
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - Redis has no event to wait on
            await asyncio.sleep(0.02)


def texts(fake: FakeTelegram, chat_id: int) -> list[str]:
    return [m["text"] for m in fake.sent(chat_id)]


def user(n: int) -> dict[str, Any]:
    return {"id": 610_000_000 + n, "is_bot": False, "first_name": f"User{n}"}


async def test_a_429_storm_delays_replies_but_every_chat_gets_all_of_them_in_order(
    start_bot: StartBot, fake_telegram: FakeTelegram
) -> None:
    chats, rounds = 30, 3
    # One message a second per private chat (Telegram's figure) and a bot-wide flood limit of
    # 6 a second, far below Telegram's 30: 30 chats answered at once run into 429s everywhere,
    # and a reply may be refused many times in a row before its turn comes.
    fake_telegram.rate_count, fake_telegram.rate_window_s = 1, 1.0
    fake_telegram.global_rate_count = 6
    await start_bot(limits=Limits())  # production pacing
    users = [user(n) for n in range(chats)]
    for r in range(rounds):
        for u in users:
            fake_telegram.push(message(private_chat(u), u, f"user {u['id']} question {r}"))

    def expected(u: dict[str, Any]) -> list[str]:
        return [f"echo: user {u['id']} question {r}" for r in range(rounds)]

    with contextlib.suppress(AssertionError):  # the assertion below says what is missing
        await fake_telegram.wait_until(
            lambda: all(texts(fake_telegram, u["id"]) == expected(u) for u in users), timeout=40
        )
    wrong = {
        u["id"]: texts(fake_telegram, u["id"])
        for u in users
        if texts(fake_telegram, u["id"]) != expected(u)
    }
    assert not wrong, f"chats without all their replies in order: {wrong}"
    assert len(fake_telegram.errors(429)) >= chats, "the storm did hit Telegram's flood control"
    assert all(ELLIPSIS not in t for u in users for t in texts(fake_telegram, u["id"]))


# Streaming edits only every 5 s: after the preview, the next call is the final text.
SLOW_EDITS = Limits(
    private_interval_s=5.0,
    group_per_minute=600,
    group_reserve=4,
    first_show_delay_s=0.0,
    typing_delay_s=0.0,
    typing_every_s=0.2,
)


async def test_killed_while_a_429_holds_the_final_text_the_restart_finishes_the_same_message(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    answer = "Paris is the capital of France and sits on the Seine."
    rest = asyncio.Event()
    fake_ollama.script(Reply(text=answer, hold_gate=rest, hold_after=2))
    fake_telegram.drafts_enabled = False  # the reply streams into a message to finish
    first = await start_bot(consumer="worker-1", limits=SLOW_EDITS)
    fake_telegram.push(message(ALICE_CHAT, ALICE, "What is the capital of France?"))
    await fake_telegram.wait_until(lambda: len(fake_telegram.sent(ALICE_ID)) == 1)
    (preview,) = fake_telegram.sent(ALICE_ID)
    assert preview["text"].endswith(ELLIPSIS)

    fake_telegram.rate_count, fake_telegram.rate_window_s = 1, 60.0  # a flood wait of a minute
    rest.set()
    await fake_telegram.wait_until(
        lambda: any(c.params.get("text") == answer for c in fake_telegram.errors(429))
    )
    await first.kill()  # while it waits out the 429, its answer stored

    fake_telegram.rate_count = 1000  # the flood wait is over
    await start_bot(consumer="worker-1", limits=SLOW_EDITS)  # the same process, restarted
    await fake_telegram.wait_until(lambda: texts(fake_telegram, ALICE_ID) == [answer])

    (shown,) = fake_telegram.sent(ALICE_ID)
    assert shown["message_id"] == preview["message_id"], "the preview was finished, not left"
    assert "edit_date" in shown
    assert len(fake_ollama.chat_requests) == 1, "the stored answer was delivered, not redone"


async def pending_by_consumer(bot: RunningBot, platform: str = "telegram") -> dict[str, int]:
    """Which process holds how many of the messages not yet done."""
    held: dict[str, int] = {}
    for inbox in bot.store.keys.inboxes(platform):
        if await bot.store.client.exists(inbox):
            for c in (await bot.store.client.xpending(inbox, GROUP))["consumers"]:
                held[c["name"]] = held.get(c["name"], 0) + int(c["pending"])
    return held


async def taken(bot: RunningBot, count: int) -> bool:
    return sum((await pending_by_consumer(bot)).values()) == count


async def test_two_processes_answer_one_chat_in_the_order_it_asked(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    release = asyncio.Event()
    fake_ollama.script(Reply(text="answer to question 1", hold_gate=release, hold_after=1))
    a = await start_bot(consumer="process-a")
    await start_bot(consumer="process-b")
    questions = [f"question {n}" for n in range(1, 7)]
    fake_telegram.push(message(ALICE_CHAT, ALICE, questions[0]))
    await fake_ollama.wait_for_chat(1)  # one process is answering question 1, held
    for count, question in enumerate(questions[1:], start=2):
        fake_telegram.push(message(ALICE_CHAT, ALICE, question))
        await eventually(functools.partial(taken, a, count))
    held = await pending_by_consumer(a)
    assert len(held) == 2, f"both processes hold questions of this chat: {held}"
    release.set()

    wanted = ["answer to question 1", *(f"echo: {q}" for q in questions[1:])]
    await fake_telegram.wait_until(
        lambda: (
            len(fake_telegram.sent(ALICE_ID)) >= len(questions)
            and all(ELLIPSIS not in t for t in texts(fake_telegram, ALICE_ID))
        ),
        timeout=15,
    )
    assert texts(fake_telegram, ALICE_ID) == wanted
    chat = f"tg:{ALICE_ID}"
    stored = await a.store.client.lrange(a.store.keys.conv(chat, chat), 0, -1)
    turns = [tuple(json.loads(raw)[:2]) for raw in stored]
    assert turns == [
        pair
        for q, w in zip(questions, wanted, strict=True)
        for pair in (("user", q), ("assistant", w))
    ]


async def test_a_flood_gets_the_first_messages_answered_and_one_notice(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    bot = await start_bot(rate_per_minute=5)
    for n in range(30):
        fake_telegram.push(message(ALICE_CHAT, ALICE, f"flood {n}"))

    async def settled() -> bool:
        inboxes = bot.store.keys.inboxes("telegram")
        waiting = sum([await bot.store.client.xlen(inbox) for inbox in inboxes])
        return (
            fake_telegram.pending_updates() == 0  # every update read and confirmed
            and waiting == 0  # every accepted one answered
            and len(fake_telegram.sent(ALICE_ID)) >= 6
        )

    await eventually(settled)
    shown = texts(fake_telegram, ALICE_ID)
    assert [t for t in shown if t != RateLimited.notice] == [f"echo: flood {n}" for n in range(5)]
    assert shown.count(RateLimited.notice) == 1
    assert len(shown) == 6, "the 25 refused messages share that one notice, nothing more"
    assert len(fake_ollama.chat_requests) == 5
