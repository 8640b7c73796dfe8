"""Faults: 429 bursts, duplicated updates, a crash between receipt and reply, Ollama down."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from core.errors import LLMBusy, LLMUnavailable
from tests.fakes.ollama import FakeOllama, Reply, unused_port
from tests.fakes.telegram_api import (
    ALICE,
    BOB,
    FakeTelegram,
    message,
    private_chat,
    supergroup,
)
from tests.telegram.conftest import StartBot

ALICE_CHAT = private_chat(ALICE)
# PTB 22 warns inside RetryAfter() itself until PTB_TIMEDELTA is set; we accept both types.
pytestmark = pytest.mark.filterwarnings("ignore:.*retry_after.*:DeprecationWarning")


async def test_burst_hits_429_and_every_reply_still_arrives(
    start_bot: StartBot, fake_telegram: FakeTelegram
) -> None:
    fake_telegram.rate_count, fake_telegram.rate_window_s = 3, 1.0
    await start_bot()
    for n in range(6):
        fake_telegram.push(message(ALICE_CHAT, ALICE, f"question {n}"))

    await fake_telegram.wait_until(lambda: len(fake_telegram.sent(ALICE["id"])) == 6, timeout=10)
    assert fake_telegram.errors(429)  # the burst did trigger Telegram's flood control
    assert [m["text"] for m in fake_telegram.sent(ALICE["id"])] == [
        f"echo: question {n}" for n in range(6)
    ]


async def test_duplicated_update_gets_one_reply(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    await start_bot()
    update = message(ALICE_CHAT, ALICE, "only once please")
    update_id = fake_telegram.push(update)
    await fake_telegram.wait_until(lambda: len(fake_telegram.sent(ALICE["id"])) == 1)
    fake_telegram.push({"update_id": update_id, **update})  # Telegram delivers it again
    fake_telegram.push(message(ALICE_CHAT, ALICE, "next"))

    await fake_telegram.wait_until(lambda: len(fake_telegram.sent(ALICE["id"])) >= 2)
    assert [m["text"] for m in fake_telegram.sent(ALICE["id"])] == [
        "echo: only once please",
        "echo: next",
    ]
    assert len(fake_ollama.chat_requests) == 2


async def test_killed_after_receipt_then_restarted_answers_once(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    never = asyncio.Event()  # the first process dies while the model is still thinking
    fake_ollama.script(Reply(text="first process reply", first_byte_gate=never))
    first = await start_bot(consumer="process-1")
    fake_telegram.push(message(ALICE_CHAT, ALICE, "survive a crash"))
    await fake_ollama.wait_for_chat(1)
    await first.kill()

    await start_bot(consumer="process-2", claim_idle_ms=200)
    await fake_telegram.wait_until(lambda: len(fake_telegram.sent(ALICE["id"])) == 1)
    fake_telegram.push(message(ALICE_CHAT, ALICE, "and then?"))
    # received once the killed process's polling lease lapses, and perhaps streamed first
    await fake_telegram.wait_until(
        lambda: "…" not in str(fake_telegram.sent(ALICE["id"])[1:] or "…")
    )

    texts = [m["text"] for m in fake_telegram.sent(ALICE["id"])]
    assert texts == ["echo: survive a crash", "echo: and then?"]
    history = [m["content"] for m in fake_ollama.chat_requests[-1]["messages"]]
    assert history.count("survive a crash") == 1


async def test_ollama_down_gives_a_one_line_notice(
    start_bot: StartBot, fake_telegram: FakeTelegram
) -> None:
    await start_bot(ollama_url=f"http://127.0.0.1:{unused_port()}")
    fake_telegram.push(message(ALICE_CHAT, ALICE, "anyone there?"))

    await fake_telegram.wait_until(lambda: len(fake_telegram.sent(ALICE["id"])) == 1)
    assert fake_telegram.sent(ALICE["id"])[0]["text"] == LLMUnavailable.notice


async def test_ollama_busy_gives_a_notice_and_the_bot_keeps_going(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply.busy())
    await start_bot()
    fake_telegram.push(message(private_chat(BOB), BOB, "busy?"))
    await fake_telegram.wait_until(lambda: len(fake_telegram.sent(BOB["id"])) == 1)
    fake_telegram.push(message(private_chat(BOB), BOB, "and now?"))

    await fake_telegram.wait_until(lambda: len(fake_telegram.sent(BOB["id"])) == 2)
    texts = [m["text"] for m in fake_telegram.sent(BOB["id"])]
    assert texts == [LLMBusy.notice, "echo: and now?"]


async def test_reply_follows_a_group_upgraded_to_a_supergroup(
    start_bot: StartBot, fake_telegram: FakeTelegram
) -> None:
    team = {"id": -4123456789, "title": "Team Chat", "type": "group"}
    upgraded = supergroup(-1004123456789, "Team Chat")
    fake_telegram.chats[upgraded["id"]] = upgraded
    fake_telegram.migrated[team["id"]] = upgraded["id"]
    await start_bot()
    fake_telegram.push(message(team, BOB, "@ollabot_bot still there?"))

    await fake_telegram.wait_until(lambda: len(fake_telegram.sent(upgraded["id"])) == 1)
    assert fake_telegram.sent(upgraded["id"])[0]["text"] == "echo: Bob: still there?"


async def test_redis_down_says_so_once_then_the_message_is_answered_when_it_is_back(
    start_bot: StartBot, fake_telegram: FakeTelegram, redis_server: Any
) -> None:
    await start_bot(redis=redis_server.url)
    redis_server.stop()
    fake_telegram.push(message(ALICE_CHAT, ALICE, "are you there?"))
    await fake_telegram.wait_until(lambda: len(fake_telegram.sent(ALICE["id"])) == 1, timeout=10)
    assert "Redis) is not reachable" in fake_telegram.sent(ALICE["id"])[0]["text"]

    redis_server.start()
    await fake_telegram.wait_until(
        lambda: (
            [m["text"] for m in fake_telegram.sent(ALICE["id"])][1:] == ["echo: are you there?"]
        ),
        timeout=20,
    )
    texts = [m["text"] for m in fake_telegram.sent(ALICE["id"])]
    assert sum("not reachable" in t for t in texts) == 1, "the notice is not repeated"
