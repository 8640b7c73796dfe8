"""``ollabot run``: an update it cannot read is counted in /metrics and named by the doctor."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.fakes.telegram_api import ALICE, TOKEN, FakeTelegram, message, private_chat
from tests.fakes.telegram_api import fake_telegram as fake_telegram  # the fixture
from tests.fixtures.redis import free_port


async def test_an_unreadable_update_is_counted_in_metrics_and_shown_by_the_doctor(
    ollabot: Any, fake_telegram: FakeTelegram, key_prefix: str
) -> None:
    port = free_port()
    bot = ollabot(
        OLLABOT_TELEGRAM__TOKEN=TOKEN,
        OLLABOT_TELEGRAM__API_BASE_URL=fake_telegram.url,
        OLLABOT_OPS__LISTEN=f"127.0.0.1:{port}",
    )
    chat = private_chat(ALICE)
    undated = message(chat, ALICE, "no date")
    del undated["message"]["date"]
    fake_telegram.push(undated)
    fake_telegram.push(message(chat, ALICE, "and this one?"))

    process = await bot.start("run", "telegram")
    try:
        await fake_telegram.wait_until(
            lambda: [m["text"] for m in fake_telegram.sent(ALICE["id"])] == ["echo: and this one?"],
            timeout=30,
        )
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/metrics") as response,
        ):
            metrics = await response.text()
    finally:
        process.terminate()
        await process.wait()
    doctor = await bot.start("doctor")
    report = (await doctor.communicate())[0].decode()

    assert 'ollabot_dead_letters_total{platform="telegram"} 1.0' in metrics
    assert (
        "[warn] dead letters: 1 received update(s) or message(s) could not be read, stored or "
        f"answered and were set aside. Inspect: redis-cli XRANGE {key_prefix}deadletter - +"
    ) in report
