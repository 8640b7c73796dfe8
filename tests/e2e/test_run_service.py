"""``ollabot run`` as systemd runs it: READY after start-up, health, metrics, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import NotifySocket
from tests.fakes.ollama import FakeOllama, Reply
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, DM_CHANNEL, FakeSlack
from tests.fixtures.redis import free_port


@pytest.fixture
def service_env(ollabot: Any, fake_slack: FakeSlack, notify_socket: NotifySocket) -> Any:
    port = free_port()
    bot = ollabot(
        OLLABOT_SLACK__BOT_TOKEN=BOT_TOKEN,
        OLLABOT_SLACK__APP_TOKEN=APP_TOKEN,
        OLLABOT_SLACK__API_BASE_URL=fake_slack.url,
        OLLABOT_OPS__LISTEN=f"127.0.0.1:{port}",
        NOTIFY_SOCKET=str(notify_socket.path),
        WATCHDOG_USEC="2000000",  # WatchdogSec=2s: a ping every second
    )
    bot.ops_url = f"http://127.0.0.1:{port}"
    return bot


@contextlib.asynccontextmanager
async def running(bot: Any, notify: NotifySocket) -> Any:
    process = await bot.start("run", "slack")
    try:
        await notify.wait_for("READY=1")
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def dm_reply(fake_slack: FakeSlack, text: str) -> str:
    await fake_slack.wait_until(
        lambda: any(text in m.text for m in fake_slack.bot_messages(DM_CHANNEL)), within_s=15
    )
    return fake_slack.bot_messages(DM_CHANNEL)[-1].text


async def test_ready_health_and_metrics_by_outcome_of_a_running_service(
    service_env: Any, fake_slack: FakeSlack, fake_ollama: FakeOllama, notify_socket: NotifySocket
) -> None:
    fake_ollama.load("llama3.1:8b")
    async with running(service_env, notify_socket):
        await notify_socket.wait_for("WATCHDOG=1")
        status, body = await get(f"{service_env.ops_url}/healthz")
        assert status == 200, body
        assert {name for name, check in json.loads(body)["checks"].items() if check["ok"]} == {
            "redis",
            "ollama",
            "model",
        }
        await fake_slack.deliver("events_api", fake_slack.user_message("hello"))
        assert "echo: hello" in await dm_reply(fake_slack, "echo: hello")
        fake_ollama.script(Reply.not_found())
        await fake_slack.deliver("events_api", fake_slack.user_message("and now?"))
        assert "ollabot model pull" in await dm_reply(fake_slack, "ollabot model pull")
        status, metrics = await get(f"{service_env.ops_url}/metrics")
        assert 'ollabot_messages_total{outcome="ok",platform="slack"} 1.0' in metrics
        assert 'ollabot_messages_total{outcome="ModelNotFound",platform="slack"} 1.0' in metrics
        assert 'ollabot_ollama_errors_total{kind="ModelNotFound"} 1.0' in metrics
        fake_ollama.loaded.clear()
        status, body = await get(f"{service_env.ops_url}/healthz")
        assert status == 503 and not json.loads(body)["checks"]["model"]["ok"]


async def test_sigterm_during_a_streamed_reply_finishes_and_stores_it(
    service_env: Any,
    fake_slack: FakeSlack,
    fake_ollama: FakeOllama,
    notify_socket: NotifySocket,
    redis_client: Any,
    key_prefix: str,
) -> None:
    release = asyncio.Event()
    fake_ollama.script(
        Reply(),  # the warm-up at start-up
        Reply(text="a long and careful answer", chunks=5, hold_gate=release, hold_after=2),
    )
    async with running(service_env, notify_socket) as process:
        await fake_slack.deliver("events_api", fake_slack.user_message("question"))
        warm_up, _ = await fake_ollama.wait_for_chat(1), await fake_ollama.wait_for_chat(2)
        assert warm_up["messages"] == [] and warm_up["options"]["num_ctx"] == 8192
        process.send_signal(signal.SIGTERM)
        await notify_socket.wait_for("STOPPING=1")
        release.set()
        async with asyncio.timeout(20):
            assert await process.wait() == 0
    assert "a long and careful answer" in fake_slack.bot_messages(DM_CHANNEL)[-1].text
    [conversation] = await redis_client.keys(f"{key_prefix}*:conv:*")
    turns = [json.loads(t)[1] for t in await redis_client.lrange(conversation, 0, -1)]
    assert turns == ["question", "a long and careful answer"]


async def test_a_hanging_ollama_neither_blocks_receiving_nor_leaves_users_in_silence(
    ollabot: Any, fake_slack: FakeSlack, fake_ollama: FakeOllama, notify_socket: NotifySocket
) -> None:
    never, later = asyncio.Event(), asyncio.Event()
    fake_ollama.script(
        Reply(first_byte_gate=never),  # the warm-up: accepted, never answered
        Reply(text="sorry for the wait", first_byte_gate=later),
    )
    bot = ollabot(
        OLLABOT_SLACK__BOT_TOKEN=BOT_TOKEN,
        OLLABOT_SLACK__APP_TOKEN=APP_TOKEN,
        OLLABOT_SLACK__API_BASE_URL=fake_slack.url,
        OLLABOT_OPS__LISTEN="off",
        OLLABOT_OLLAMA__FIRST_TOKEN_TIMEOUT_S="0.5",
        NOTIFY_SOCKET=str(notify_socket.path),
    )
    async with running(bot, notify_socket):
        await fake_slack.deliver("events_api", fake_slack.user_message("are you there?"))
        notice = await dm_reply(fake_slack, "busy or still loading")
        assert "waiting" in notice
        later.set()
        assert "sorry for the wait" in await dm_reply(fake_slack, "sorry for the wait")
    never.set()
