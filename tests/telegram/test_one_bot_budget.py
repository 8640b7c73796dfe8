"""Two ``ollabot run telegram`` processes on one token, against a fake Bot API that holds the
bot to 30 messages a second and answers a second ``getUpdates`` with 409: they keep the limit
together, only one of them polls, and the other takes polling over when that one is killed.
Without Redis, a process still delivers, counting its messages alone."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from adapters.redis_keys import RedisKeys
from adapters.redis_store import GROUP
from adapters.telegram.shared import BotKeys, SharedBudget
from tests.e2e.conftest import NotifySocket, Ollabot
from tests.e2e.conftest import ollabot as ollabot  # the fixture
from tests.fakes.telegram_api import TOKEN, FakeTelegram, message, private_chat
from tests.fakes.telegram_api import fake_telegram as fake_telegram  # the fixture
from tests.telegram.conftest import StartBot

USERS, ROUNDS = 100, 3
SENDS = ("sendMessage", "editMessageText", "sendChatAction")
Process = asyncio.subprocess.Process


def user(n: int) -> dict[str, Any]:
    return {"id": 620_000_000 + n, "is_bot": False, "first_name": f"User{n}"}


def texts(fake: FakeTelegram, chat_id: int) -> list[str]:
    return [m["text"] for m in fake.sent(chat_id)]


@pytest.fixture
async def start_processes(
    ollabot: Callable[..., Ollabot], fake_telegram: FakeTelegram, tmp_path: Path
) -> AsyncIterator[Callable[..., Any]]:
    """Starts ``ollabot run telegram`` processes, each under its own instance name, and
    returns once each said READY; whatever still runs at the end is stopped."""
    started: list[Process] = []

    async def start(*names: str) -> list[Process]:
        ready = []
        for name in names:
            notify = NotifySocket(tmp_path / f"{name}.sock")
            bot = ollabot(
                OLLABOT_TELEGRAM__TOKEN=TOKEN,
                OLLABOT_TELEGRAM__API_BASE_URL=fake_telegram.url,
                OLLABOT_INSTANCE=name,
                OLLABOT_OPS__LISTEN="off",
                OLLABOT_OLLAMA__NUM_PARALLEL="8",
                # replies queue for the budget for seconds: none is taken for abandoned
                OLLABOT_CHAT__CLAIM_IDLE_S="30",
                NOTIFY_SOCKET=str(notify.path),
            )
            started.append(await bot.start("run", "telegram"))
            ready.append(notify)
        try:
            for notify in ready:
                await notify.wait_for("READY=1", within_s=60)
        finally:
            for notify in ready:
                notify.sock.close()
        return started[-len(names) :]

    yield start
    for process in started:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def stop(process: Process) -> str:
    """SIGTERM, as systemd stops it: the process must exit cleanly and soon."""
    process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(30):
        _, err = await process.communicate()
    assert process.returncode == 0, err.decode()[-3000:]
    return err.decode()


async def poller_and_survivor(
    processes: list[Process], redis_url: str, key_prefix: str
) -> tuple[Process, Process]:
    """The two processes: the one polling getUpdates, then the other."""
    pid = await poller_pid(redis_url, key_prefix)
    [poller] = [p for p in processes if p.pid == pid]
    [survivor] = [p for p in processes if p.pid != pid]
    return poller, survivor


async def poller_pid(redis_url: str, key_prefix: str) -> int:
    """The process holding the polling lease (its value is ``host:pid:nonce``)."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        async with asyncio.timeout(10):
            # Redis notifies nobody: the lease is taken within a moment of READY.
            while not (holder := await client.get(BotKeys.of(key_prefix, TOKEN).poller)):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    finally:
        await client.aclose()
    return int(holder.split(":")[1])


async def test_two_processes_keep_the_bot_wide_limit_together_and_only_one_polls(
    start_processes: Callable[..., Any],
    fake_telegram: FakeTelegram,
    redis_url: str,
    key_prefix: str,
) -> None:
    fake_telegram.global_rate_count = 30  # Telegram's flood limit for a whole bot
    first, second = await start_processes("bot-a", "bot-b")
    users = [user(n) for n in range(USERS)]
    for r in range(ROUNDS):
        for u in users:
            fake_telegram.push(message(private_chat(u), u, f"question {r} from {u['id']}"))

    def expected(u: dict[str, Any]) -> list[str]:
        return [f"echo: question {r} from {u['id']}" for r in range(ROUNDS)]

    def finals() -> int:  # cheap: the fake checks it after every call, in its own loop
        shown = [m["text"] for m in fake_telegram.messages.values()]
        return sum(t.startswith("echo: ") and not t.endswith("…") for t in shown)

    with contextlib.suppress(AssertionError):  # the assertion below says what is missing
        await fake_telegram.wait_until(lambda: finals() >= USERS * ROUNDS, timeout=60)
    missing = [u["id"] for u in users if texts(fake_telegram, u["id"]) != expected(u)]
    some = [texts(fake_telegram, chat) for chat in missing[:2]]
    assert not missing, f"{len(missing)} chats without their answers in order, e.g. {some}"

    calls = [c for c in fake_telegram.calls if c.method in SENDS]
    refused = [c for c in calls if c.status == 429]
    assert len(refused) <= len(calls) // 100, f"{len(refused)} of {len(calls)} calls got 429"
    assert not fake_telegram.errors(409), "two processes polled getUpdates at once"
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        names = {
            str(c["name"])
            for inbox in RedisKeys(key_prefix).inboxes("telegram")
            for c in await client.xinfo_consumers(inbox, GROUP)
        }
    finally:
        await client.aclose()
    assert names == {"bot-a", "bot-b"}, "both processes answered"
    await stop(first)
    await stop(second)


async def test_when_the_poller_is_killed_the_other_process_takes_polling_over(
    start_processes: Callable[..., Any],
    fake_telegram: FakeTelegram,
    redis_url: str,
    key_prefix: str,
) -> None:
    processes = await start_processes("bot-a", "bot-b")
    poller, survivor = await poller_and_survivor(processes, redis_url, key_prefix)
    poller.kill()  # SIGKILL: the lease is not handed on, it lapses
    await poller.wait()

    alice = user(1)
    fake_telegram.push(message(private_chat(alice), alice, "anyone left?"))
    await fake_telegram.wait_until(
        lambda: texts(fake_telegram, alice["id"]) == ["echo: anyone left?"], timeout=20
    )
    assert await poller_pid(redis_url, key_prefix) == survivor.pid
    assert not fake_telegram.errors(409)
    await stop(survivor)


async def test_a_poller_stopped_cleanly_hands_the_lease_on_at_once(
    start_processes: Callable[..., Any],
    fake_telegram: FakeTelegram,
    redis_url: str,
    key_prefix: str,
) -> None:
    processes = await start_processes("bot-a", "bot-b")
    poller, survivor = await poller_and_survivor(processes, redis_url, key_prefix)
    await stop(poller)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        holder = await client.get(BotKeys.of(key_prefix, TOKEN).poller)
    finally:
        await client.aclose()
    assert holder is None or f":{survivor.pid}:" in holder, "released, not left to lapse"

    alice = user(2)
    fake_telegram.push(message(private_chat(alice), alice, "still there?"))
    await fake_telegram.wait_until(
        lambda: texts(fake_telegram, alice["id"]) == ["echo: still there?"], timeout=20
    )
    assert not fake_telegram.errors(409)
    await stop(survivor)


async def test_with_redis_down_replies_still_go_out_paced_here_and_it_is_said_once(
    start_bot: StartBot,
    fake_telegram: FakeTelegram,
    redis_server: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await start_bot(redis=redis_server.url, bot_rate_per_s=30)
    redis_server.stop()
    users = [user(n) for n in range(5)]
    for u in users:
        fake_telegram.push(message(private_chat(u), u, "hello?"))

    # the notice that the store is down is a final text: it takes its place in the budget
    await fake_telegram.wait_until(
        lambda: all("not reachable" in str(texts(fake_telegram, u["id"])) for u in users)
    )
    said = [r.getMessage() for r in caplog.records if r.name == "ollabot.telegram.shared"]
    assert len(said) == 1, said
    assert "paces its messages alone" in said[0]


async def test_two_processes_budgets_share_the_room_for_optional_sends(
    redis_url: str, key_prefix: str
) -> None:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    key = BotKeys.of(key_prefix, TOKEN).budget
    try:
        first, second = SharedBudget(client, key, 30), SharedBudget(client, key, 30)
        for _ in range(10):
            assert await first.try_take()
            assert await second.try_take()
        # 20 of 30 are taken: the last third stays for final texts, whoever asks
        assert not await first.try_take()
        assert not await second.try_take()
        await second.take()  # a final text still goes at once
        assert await client.zcard(key) == 21
    finally:
        await client.aclose()
