"""Telegram load benchmark: 100 private chats, 3 messages each, through the real bot at once.

Run: ``.venv/bin/python -m bench.telegram_load [--chats 100] [--messages 3]``.
Needs ``redis-server`` on the PATH (or ``OLLABOT_BENCH_REDIS_URL``). The fake Bot API and an
instant fake Ollama run in a child process, so the CPU time measured is the bot's alone
(python-telegram-bot, our request class, the Redis inbox and store, the bot-wide budget in
Redis, the core). The fake's rate limit and the bot's budget are off: this measures our cost,
not Telegram's limits; ``--bot-rate 30`` sets both to Telegram's 30 messages a second instead,
to count the 429s a bot meets at that limit. Then a bare loop replays
the same Bot API calls (same methods, same chats, same order per chat) straight over aiohttp
against the same fake: the best rate any bot could reach here. Prints messages per second,
Bot API calls per reply, bot CPU per message, the ratio to the bare loop, errors and lost
replies. Targets: CPU ≤ 5 ms per message, ratio ≥ 0.5.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import subprocess
import tempfile
import time
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import SecretStr

from adapters.ollama_llm import OllamaLLM
from adapters.redis_store import RedisStore
from adapters.telegram.platform import TelegramPlatform
from bots.app import build_services
from bots.platform_config import telegram_config
from bots.serve import telegram_sharing
from bots.settings import TelegramSettings
from core.chat import ChatConfig
from tests.fakes.ollama import FakeOllama
from tests.fakes.telegram_api import TOKEN, FakeTelegram, message, private_chat
from tests.fixtures.redis import RedisServer

SETUP = {"getMe", "setMyCommands", "deleteWebhook", "getUpdates"}
FIRST_USER = 200_000_000


# -- the child process: fakes ---------------------------------------------------------------------


def serve_fakes(pipe: Connection, chats: int, messages: int, bot_rate: int | None) -> None:
    """Child: run the fakes; on "go" push every update and report when all replies are in."""
    asyncio.run(_serve(pipe, chats, messages, bot_rate))


async def _serve(pipe: Connection, chats: int, messages: int, bot_rate: int | None) -> None:
    telegram, ollama = FakeTelegram(global_rate_count=bot_rate), FakeOllama(instant=True)
    await telegram.start()
    await ollama.start()
    pipe.send((telegram.url, ollama.url))
    loop = asyncio.get_running_loop()
    while (command := await loop.run_in_executor(None, pipe.recv)) != "stop":
        if command == "go":
            pipe.send(await _load(telegram, chats, messages))
        elif command == "reset":
            telegram.calls.clear()
            telegram.messages.clear()
            pipe.send("ok")
    await telegram.stop()
    await ollama.stop()


async def _load(telegram: FakeTelegram, chats: int, messages: int) -> dict[str, Any]:
    users = [_user(n) for n in range(chats)]
    started = time.monotonic()
    for round_ in range(messages):
        for user in users:
            telegram.push(message(private_chat(user), user, f"message {round_} of {user['id']}"))
    expected = chats * messages
    with contextlib.suppress(AssertionError):  # lost replies are counted, not raised
        await telegram.wait_until(lambda: _final_replies(telegram) >= expected, timeout=300)
    elapsed = time.monotonic() - started
    calls = [c for c in telegram.calls if c.method not in SETUP]
    return {
        "elapsed": elapsed,
        "replies": _final_replies(telegram),
        "calls": Counter(c.method for c in calls),
        "errors": sum(c.status != 200 for c in calls),
        "replay": [(c.method, c.params) for c in calls if c.status == 200],
    }


def _final_replies(telegram: FakeTelegram) -> int:
    return sum(m["text"].startswith("echo: ") for m in telegram.messages.values())


def _user(n: int) -> dict[str, Any]:
    return {"id": FIRST_USER + n, "is_bot": False, "first_name": f"User{n}"}


# -- the bot (this process) ---------------------------------------------------------------------


async def run_bot(
    telegram_url: str, ollama_url: str, redis_url: str, bot_rate: int | None
) -> tuple[Any, ...]:
    """Start the bot as ``ollabot run telegram`` would (with a larger worker)."""
    store = RedisStore.from_url(
        redis_url,
        prefix=f"bench-{time.time_ns()}:",
        block_ms=200,
        rate_per_minute=10**6,
        max_backlog=10**6,
    )
    llm = OllamaLLM(ollama_url)
    services = build_services(store, llm, ChatConfig(default_model="llama3.1:8b"), "bench")
    settings = TelegramSettings(
        token=SecretStr(TOKEN), api_base_url=telegram_url, bot_rate_per_s=bot_rate or 10**6
    )
    config = telegram_config(settings)
    budget, lease = telegram_sharing(config, store)
    platform = TelegramPlatform(config, store, poll_timeout_s=1, budget=budget, lease=lease)
    await platform.start()
    worker = services.worker("telegram", platform.sinks, slots=64)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    return platform, worker, store, llm, stop, task


async def stop_bot(parts: tuple[Any, ...]) -> None:
    platform, worker, store, llm, stop, task = parts
    await platform.stop()
    stop.set()
    await task
    await worker.drain(5)
    await platform.aclose()
    await llm.close()
    await store.close()


async def bare_loop(telegram_url: str, replay: list[tuple[str, dict[str, Any]]]) -> float:
    """Seconds to issue the same calls as fast as possible, in order per chat."""
    per_chat: dict[int, list[tuple[str, dict[str, Any]]]] = {}
    for method, params in replay:
        per_chat.setdefault(int(params["chat_id"]), []).append((method, params))
    base = f"{telegram_url}{TOKEN}/"
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def chat(calls: list[tuple[str, dict[str, Any]]]) -> None:
            last_id = 0
            for n, (method, params) in enumerate(calls):
                body = dict(params)
                if method == "editMessageText":
                    body.update(message_id=last_id, text=f"{params['text']} ({n})")
                async with http.post(base + method, json=body) as response:
                    answer = await response.json()
                if method == "sendMessage":
                    last_id = answer["result"]["message_id"]

        started = time.monotonic()
        await asyncio.gather(*(chat(calls) for calls in per_chat.values()))
        return time.monotonic() - started


async def main(chats: int, messages: int, redis_url: str, bot_rate: int | None) -> None:
    parent, child = mp.Pipe()
    fakes = mp.get_context("spawn").Process(
        target=serve_fakes, args=(child, chats, messages, bot_rate)
    )
    fakes.start()
    telegram_url, ollama_url = parent.recv()
    parts = await run_bot(telegram_url, ollama_url, redis_url, bot_rate)
    limit = f"{bot_rate} messages/s bot-wide" if bot_rate else "no rate limit"
    print(
        f"method: {chats} private chats x {messages} messages pushed at once by a child process "
        f"(fake Bot API, {limit}, instant Ollama); rate = replies / time to the last one, "
        "CPU = this process's; bare loop = the same Bot API calls replayed over aiohttp"
    )
    loop = asyncio.get_running_loop()
    cpu = time.process_time()
    parent.send("go")
    result = await loop.run_in_executor(None, parent.recv)
    cpu = time.process_time() - cpu
    await stop_bot(parts)
    parent.send("reset")
    await loop.run_in_executor(None, parent.recv)
    # at a rate limit the bare loop would only meet 429s: its rate is the limit
    bare_s = await bare_loop(telegram_url, result["replay"]) if not bot_rate else 0.0
    parent.send("stop")
    fakes.join(10)
    report(chats * messages, result, cpu, bare_s)


def report(expected: int, result: dict[str, Any], cpu_s: float, bare_s: float) -> None:
    replies, elapsed = result["replies"], result["elapsed"]
    calls = result["calls"]
    rate, bare_rate = replies / elapsed, expected / bare_s if bare_s else float("nan")
    print(f"messages: {expected}, replies: {replies}, lost: {expected - replies}")
    print(f"errors (non-200 Bot API answers): {result['errors']}")
    print(f"rate: {rate:.0f} messages/s in {elapsed:.2f} s")
    print(f"Bot API calls per reply: {sum(calls.values()) / max(1, replies):.2f} {dict(calls)}")
    print(f"bot CPU per message: {cpu_s / expected * 1000:.2f} ms (target <= 5 ms)")
    print(f"bare loop: {bare_rate:.0f} messages/s; ratio {rate / bare_rate:.2f} (target >= 0.5)")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chats", type=int, default=100)
    parser.add_argument("--messages", type=int, default=3)
    parser.add_argument("--bot-rate", type=int, help="Telegram's bot-wide limit, e.g. 30")
    args = parser.parse_args()
    given = os.environ.get("OLLABOT_BENCH_REDIS_URL")
    if given:
        asyncio.run(main(args.chats, args.messages, given, args.bot_rate))
        return
    with tempfile.TemporaryDirectory() as workdir:
        server = start_redis(Path(workdir))
        try:
            asyncio.run(main(args.chats, args.messages, server.url, args.bot_rate))
        finally:
            server.stop()


def start_redis(workdir: Path) -> RedisServer:
    """A private redis-server; retried when another process took its port first (then the
    readiness ping would have reached that other server, and ours would have exited)."""
    for _ in range(5):
        server = RedisServer(workdir)
        server.start()
        assert server.process is not None
        try:
            server.process.wait(timeout=0.3)
        except subprocess.TimeoutExpired:
            return server  # still running: the port is ours
    raise RuntimeError("could not start redis-server on a free port")


if __name__ == "__main__":
    cli()
