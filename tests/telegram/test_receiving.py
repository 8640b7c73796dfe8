"""Receiving: an update is in the inbox before Telegram hears it arrived (polling and webhook)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest
from pydantic import SecretStr

from adapters.redis_store import RedisStore
from adapters.telegram.platform import TelegramPlatform
from bots.platform_config import telegram_config
from bots.settings import TelegramSettings
from tests.fakes.lost_cancel import LosesCancellation
from tests.fakes.ollama import FakeOllama
from tests.fakes.telegram_api import ALICE, TOKEN, FakeTelegram, message, private_chat
from tests.telegram.conftest import StartBot

SECRET = "webhook-secret-for-tests"
HOOK = "https://bot.example.com/telegram/hook"
MakePlatform = Callable[..., TelegramPlatform]


@pytest.fixture
async def inbox(redis_url: str, key_prefix: str) -> AsyncIterator[RedisStore]:
    store = RedisStore.from_url(redis_url, prefix=key_prefix, block_ms=100)
    yield store
    await store.close()


@pytest.fixture
async def make_platform(
    fake_telegram: FakeTelegram, inbox: RedisStore
) -> AsyncIterator[MakePlatform]:
    made: list[TelegramPlatform] = []

    def make(**settings: object) -> TelegramPlatform:
        config = TelegramSettings(
            token=SecretStr(TOKEN), api_base_url=fake_telegram.url, **settings
        )
        made.append(TelegramPlatform(telegram_config(config), inbox, poll_timeout_s=1))
        return made[-1]

    yield make
    for platform in made:
        await platform.stop()
        await platform.aclose()


async def test_polling_confirms_an_update_only_after_it_is_in_the_inbox(
    make_platform: MakePlatform, fake_telegram: FakeTelegram, inbox: RedisStore
) -> None:
    platform = make_platform()
    await platform.start()
    update_id = fake_telegram.push(message(private_chat(ALICE), ALICE, "persist me"))

    await fake_telegram.wait_until(lambda: fake_telegram.pending_updates() == 0)
    entries = await inbox.take("telegram", "probe", 10)
    assert [(e.message.message_id, e.message.text) for e in entries] == [
        (str(update_id), "persist me")
    ]


async def test_webhook_checks_the_secret_and_answers_after_the_inbox_write(
    make_platform: MakePlatform, fake_telegram: FakeTelegram, inbox: RedisStore
) -> None:
    platform = make_platform(
        webhook_url=HOOK, webhook_listen="127.0.0.1:0", webhook_secret=SecretStr(SECRET)
    )
    await platform.start()
    assert fake_telegram.webhook is not None
    assert fake_telegram.webhook["url"] == HOOK
    assert fake_telegram.webhook["secret_token"] == SECRET
    update = {"update_id": 815309999, **message(private_chat(ALICE), ALICE, "via webhook")}
    url = f"http://127.0.0.1:{platform.webhook_port}/telegram/hook"

    async with aiohttp.ClientSession() as http:
        for wrong in ({}, {"X-Telegram-Bot-Api-Secret-Token": "guess"}):
            async with http.post(url, json=update, headers=wrong) as response:
                assert response.status == 403
        assert await inbox.take("telegram", "probe", 10) == []
        headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
        async with http.post(url, json=update, headers=headers) as response:
            assert response.status == 200
        entries = await inbox.take("telegram", "probe", 10)
        assert [e.message.text for e in entries] == ["via webhook"]
        for junk in (b"not json", b"[1, 2]", b'{"update_id": "x", "message": 5}'):
            async with http.post(url, data=junk, headers=headers) as response:
                assert response.status == 200  # set aside; Telegram must not send it again
        assert await inbox.dead_letter_count() == 3


async def test_rejected_formatting_falls_back_to_plain_text(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    from tests.fakes.ollama import Reply

    fake_telegram.reject_entities = True
    fake_ollama.script(Reply(text="A **bold** claim with `code`."))
    await start_bot()
    fake_telegram.push(message(private_chat(ALICE), ALICE, "format"))

    await fake_telegram.wait_until(
        lambda: [m["text"] for m in fake_telegram.sent(ALICE["id"])] == ["A bold claim with code."]
    )
    assert fake_telegram.errors(400)  # it was refused once, then delivered as plain text


async def test_stop_ends_polling_even_when_the_store_loses_the_cancelling(
    fake_telegram: FakeTelegram, inbox: RedisStore
) -> None:
    losing = LosesCancellation(inbox, "enqueue")
    settings = TelegramSettings(token=SecretStr(TOKEN), api_base_url=fake_telegram.url)
    platform = TelegramPlatform(telegram_config(settings), losing, poll_timeout_s=1)  # type: ignore[arg-type]
    await platform.start()
    try:
        update_id = fake_telegram.push(message(private_chat(ALICE), ALICE, "at shutdown"))
        async with asyncio.timeout(5):
            await losing.in_flight.wait()

        async with asyncio.timeout(3):
            await platform.stop()
        polls_at_stop = fake_telegram.polls

        assert losing.lost == 1, "the enqueue in flight was not cancelled at all"
        polling = [t for t in asyncio.all_tasks() if t.get_name() == "telegram-polling"]
        assert all(task.done() for task in polling), "polling goes on after stop()"
        with pytest.raises(AssertionError, match="not reached"):  # it would poll within 1 s
            await fake_telegram.wait_until(lambda: fake_telegram.polls > polls_at_stop, 1.5)
        entries = await inbox.take("telegram", "probe", 10)
        assert [e.message.message_id for e in entries] == [str(update_id)]
        assert fake_telegram.pending_updates() == 0, "the stored update was not confirmed"
    finally:
        await platform.aclose()
