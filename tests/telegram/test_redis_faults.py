"""Redis trouble as chats see it: down, frozen mid-reply; each waiting chat hears once, and
answering resumes promptly when Redis is back, with nothing that was generated thrown away."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.fakes.ollama import FakeOllama, Reply
from tests.fakes.telegram_api import ALICE, BOB, FakeTelegram, message, private_chat
from tests.telegram.conftest import StartBot

CAROL = {**BOB, "id": BOB["id"] + 1, "first_name": "Carol", "username": "carol"}
PEOPLE = (ALICE, BOB, CAROL)


def answer(person: dict[str, Any]) -> str:
    return f"echo: hello from {person['id']}"


def texts(fake_telegram: FakeTelegram, person: dict[str, Any]) -> list[str]:
    return [m["text"] for m in fake_telegram.sent(person["id"])]


async def test_redis_down_every_waiting_chat_hears_once_and_all_are_answered_after(
    start_bot: StartBot, fake_telegram: FakeTelegram, redis_server: Any
) -> None:
    await start_bot(redis=redis_server.url)
    redis_server.stop()
    for person in PEOPLE:
        fake_telegram.push(message(private_chat(person), person, f"hello from {person['id']}"))
    await fake_telegram.wait_until(lambda: all(texts(fake_telegram, p) for p in PEOPLE), timeout=10)

    redis_server.start()
    # within a few seconds: polling and the worker retry at most a second apart
    await fake_telegram.wait_until(
        lambda: all(texts(fake_telegram, p)[1:] == [answer(p)] for p in PEOPLE), timeout=6
    )
    for person in PEOPLE:
        [notice, _] = texts(fake_telegram, person)
        assert "Redis) is not reachable" in notice


async def test_replies_finished_while_redis_is_frozen_are_delivered_not_retracted(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama, redis_server: Any
) -> None:
    gate = asyncio.Event()
    fake_ollama.script(*(Reply(chunks=3, hold_gate=gate, hold_after=1) for _ in PEOPLE))
    await start_bot(redis=redis_server.url)
    for person in PEOPLE:
        fake_telegram.push(message(private_chat(person), person, f"question {person['id']}"))
    await fake_ollama.wait_for_chat(len(PEOPLE))

    redis_server.pause()
    try:
        gate.set()
        await fake_ollama.wait_for_streams_done(len(PEOPLE))
    finally:
        redis_server.resume()

    def delivered() -> bool:
        return all(texts(fake_telegram, p) == [f"echo: question {p['id']}"] for p in PEOPLE)

    await fake_telegram.wait_until(delivered, timeout=15)
    said = [str(call.params.get("text", "")) for call in fake_telegram.calls]
    assert not any("try again" in t or "not reachable" in t for t in said), said
