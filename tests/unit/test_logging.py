"""Logs never show a secret: every configured one is masked in every kind of log line."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from pydantic import SecretStr

from bots import logging as bot_logging
from bots.cli import secrets_of
from bots.settings import Settings

TELEGRAM = "7012345678:AAH-telegram-token-for-tests"
WEBHOOK = "webhook-secret-for-tests"
BOT = "bot-token-for-tests"  # any value: redaction goes by setting, not by shape
APP = "xapp-app-token-for-tests"
SIGNING = "signing-secret-for-tests"
REDIS = "redis://:redis-password-for-tests@127.0.0.1:6379/0"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level
    structlog.reset_defaults()


def settings_with_every_secret() -> Settings:
    return Settings(
        _env_file=None,
        redis={"url": SecretStr(REDIS)},
        telegram={"token": SecretStr(TELEGRAM), "webhook_secret": SecretStr(WEBHOOK)},
        slack={
            "bot_token": SecretStr(BOT),
            "app_token": SecretStr(APP),
            "signing_secret": SecretStr(SIGNING),
        },
    )


def test_every_secret_is_masked_in_structlog_stdlib_and_tracebacks(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    bot_logging.configure(True, "INFO", secrets_of(settings_with_every_secret()))

    log = structlog.get_logger("ollabot.test")
    log.info("calling telegram", url=f"https://api.telegram.org/bot{TELEGRAM}/getMe")
    log.info("calling slack", headers={"Authorization": f"Bearer {BOT}"})
    logging.getLogger("slack_sdk.socket_mode").warning("token %s refused", APP)
    logging.getLogger("ollabot.redis").error("cannot reach %s", REDIS)
    try:
        raise ValueError(f"bad signature with {SIGNING} for webhook {WEBHOOK}")
    except ValueError:
        log.exception("request failed")

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    text = "\n".join(json.dumps(line) for line in lines)
    assert [line["event"] for line in lines] == [
        "calling telegram",
        "calling slack",
        "token ********** refused",
        "cannot reach **********",
        "request failed",
    ]
    assert lines[0]["url"] == "https://api.telegram.org/bot**********/getMe"
    assert "Bearer **********" in lines[1]["headers"]
    assert "bad signature with ********** for webhook **********" in lines[4]["exception"]
    assert [s for s in (TELEGRAM, WEBHOOK, BOT, APP, SIGNING, REDIS) if s in text] == []
