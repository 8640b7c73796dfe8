"""``ollabot run`` with an unusable setting: exit 2 (systemd stops restarting) naming it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from adapters.redis_store import RedisStore
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN

CASES = [
    pytest.param(["telegram"], {}, "OLLABOT_TELEGRAM__TOKEN is not set", id="no-telegram-token"),
    pytest.param(
        ["slack"],
        {"OLLABOT_SLACK__BOT_TOKEN": BOT_TOKEN},
        "Slack needs OLLABOT_SLACK__APP_TOKEN (Socket Mode) or OLLABOT_SLACK__SIGNING_SECRET",
        id="slack-without-a-way-to-receive",
    ),
    pytest.param(
        ["telegram"],
        {
            "OLLABOT_TELEGRAM__TOKEN": "7012345678:token-for-a-config-test",
            "OLLABOT_TELEGRAM__WEBHOOK_URL": "https://bot.example.com/hook",
            "OLLABOT_TELEGRAM__WEBHOOK_LISTEN": "localhost",
        },
        "OLLABOT_TELEGRAM__WEBHOOK_LISTEN=localhost: expected host:port",
        id="webhook-listen-without-port",
    ),
    pytest.param(
        ["slack"],
        {
            "OLLABOT_SLACK__BOT_TOKEN": BOT_TOKEN,
            "OLLABOT_SLACK__SIGNING_SECRET": "c0ffee00ba5eba11c0ffee00ba5eba11",
            "OLLABOT_SLACK__HTTP_LISTEN": "0.0.0.0:http",
        },
        "OLLABOT_SLACK__HTTP_LISTEN=0.0.0.0:http: expected host:port",
        id="slack-listen-without-port",
    ),
    pytest.param(
        ["slack"],
        {
            "OLLABOT_SLACK__BOT_TOKEN": BOT_TOKEN,
            "OLLABOT_SLACK__APP_TOKEN": APP_TOKEN,
            "OLLABOT_OPS__LISTEN": "9464",
        },
        "OLLABOT_OPS__LISTEN=9464",
        id="ops-listen-without-host",
    ),
]


@pytest.mark.parametrize(("platforms", "env", "says"), CASES)
async def test_an_unusable_setting_exits_2_naming_it(
    ollabot: Any, platforms: list[str], env: dict[str, str], says: str
) -> None:
    process = await ollabot(**env).start("run", *platforms)
    async with asyncio.timeout(30):
        _, err = await process.communicate()

    assert process.returncode == 2, err.decode()
    assert says in err.decode()
    assert "Traceback" not in err.decode()


async def test_data_written_with_another_number_of_partitions_exits_2(
    ollabot: Any, redis_url: str, key_prefix: str
) -> None:
    earlier = RedisStore.from_url(redis_url, prefix=key_prefix, partitions=4)
    await earlier.ensure_layout()
    await earlier.close()
    token = {"OLLABOT_TELEGRAM__TOKEN": "7012345678:token-for-a-config-test"}

    process = await ollabot(**token).start("run", "telegram")
    async with asyncio.timeout(30):
        _, err = await process.communicate()

    assert process.returncode == 2, err.decode()
    assert "written with 4 partitions, not 16: set OLLABOT_REDIS__PARTITIONS=4" in err.decode()
    assert "Traceback" not in err.decode()
