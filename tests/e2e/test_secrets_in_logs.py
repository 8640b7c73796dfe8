"""``ollabot run`` at DEBUG: the calls that carry secrets are logged, the secrets are not."""

from __future__ import annotations

from typing import Any

from tests.fakes.telegram_api import TOKEN, FakeTelegram
from tests.fakes.telegram_api import fake_telegram as fake_telegram  # the fixture
from tests.fixtures.redis import free_port

SHORT_SECRET = "Zq9"  # Telegram accepts a webhook secret of one character and up


async def test_a_short_webhook_secret_is_redacted_in_debug_logs(
    ollabot: Any, fake_telegram: FakeTelegram
) -> None:
    bot = ollabot(
        OLLABOT_TELEGRAM__TOKEN=TOKEN,
        OLLABOT_TELEGRAM__API_BASE_URL=fake_telegram.url,
        OLLABOT_TELEGRAM__WEBHOOK_URL="https://bot.example.com/telegram/hook",
        OLLABOT_TELEGRAM__WEBHOOK_LISTEN=f"127.0.0.1:{free_port()}",
        OLLABOT_TELEGRAM__WEBHOOK_SECRET=SHORT_SECRET,
        OLLABOT_LOG__LEVEL="DEBUG",
        OLLABOT_OPS__LISTEN="off",
    )
    process = await bot.start("run", "telegram")
    try:
        await fake_telegram.wait_until(lambda: fake_telegram.webhook is not None, timeout=30)
    finally:
        process.terminate()
        _, stderr = await process.communicate()
    log = stderr.decode()

    assert fake_telegram.webhook is not None
    assert fake_telegram.webhook["secret_token"] == SHORT_SECRET
    assert "setWebhook" in log, "the call with the secret was not logged at all"
    assert SHORT_SECRET not in log
