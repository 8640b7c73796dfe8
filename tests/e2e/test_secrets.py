"""Secrets as ``ollabot run`` meets them: read from systemd's credentials, never logged."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

from tests.e2e.conftest import NotifySocket
from tests.fakes.telegram_api import TOKEN, FakeTelegram
from tests.fakes.telegram_api import fake_telegram as fake_telegram  # the fixture
from tests.fixtures.redis import free_port

REJECTED = "7012345678:token-the-fake-telegram-rejects"


async def test_a_token_in_the_credentials_directory_wins_over_the_environment(
    ollabot: Any, fake_telegram: FakeTelegram, notify_socket: NotifySocket, tmp_path: Path
) -> None:
    # LoadCredential=ollabot:/etc/ollabot/credentials: the file telegram__token arrives as
    # $CREDENTIALS_DIRECTORY/ollabot_telegram__token.
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "ollabot_telegram__token").write_text(TOKEN + "\n")
    bot = ollabot(
        CREDENTIALS_DIRECTORY=str(credentials),
        OLLABOT_TELEGRAM__TOKEN=REJECTED,  # a stale one in the environment
        OLLABOT_TELEGRAM__API_BASE_URL=fake_telegram.url,
        OLLABOT_OPS__LISTEN="off",
        NOTIFY_SOCKET=str(notify_socket.path),
    )
    process = await bot.start("run", "telegram")
    try:
        await notify_socket.wait_for("READY=1")
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            _, err = await process.communicate()

    assert process.returncode == 0, err.decode()


async def test_a_rejected_token_is_redacted_from_the_log(
    ollabot: Any, fake_telegram: FakeTelegram
) -> None:
    bot = ollabot(
        OLLABOT_TELEGRAM__TOKEN=REJECTED,
        OLLABOT_TELEGRAM__API_BASE_URL=fake_telegram.url,
        OLLABOT_OPS__LISTEN="off",
    )
    process = await bot.start("run", "telegram")
    async with asyncio.timeout(30):
        _, raw = await process.communicate()
    log = raw.decode()

    assert process.returncode == 1, log
    # python-telegram-bot puts the token in its error: "The token `...` was rejected".
    assert "The token `**********` was rejected by the server" in log
    assert REJECTED not in log and REJECTED.split(":")[1] not in log


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
