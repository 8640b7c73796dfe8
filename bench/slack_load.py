"""Slack load benchmark: the bot's capacity when offered more threads than it can answer.

Run: ``.venv/bin/python -m bench.slack_load [--threads 200] [--followups 2] [--rate 200]``.
Needs ``redis-server`` on the PATH (or ``OLLABOT_BENCH_REDIS_URL``). Every thread starts
with an @mention in its own channel and continues with follow-ups without mention; every
fifth event is delivered twice, as Slack does after a missed ack. The fake Slack (Socket Mode,
with its real per-channel rate limits), an instant fake Ollama and the load generator run in
a child process, so the generator is never slowed down by the bot it loads; the bot runs here.

Events are offered at ``--rate`` per second (0: as fast as the fake sends), faster than the
bot answers, so a backlog builds in the inbox and the bot works flat out. Its capacity is the
replies it completes per second, from the first completed reply to the last, timed by the
fake's Web API calls; the offered rate is printed beside it, with a note when the bot kept up
(then the figure is a lower bound). Also printed: Web API calls per message, the
acknowledgement latency under that load (p50, p99; target p99 < 100 ms), events never
acknowledged, and lost / duplicated replies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from adapters.ollama_llm import OllamaLLM
from adapters.redis_store import RedisStore
from adapters.slack.platform import SlackPlatform
from adapters.slack.threads import RedisThreadRegistry
from bots.app import build_services
from bots.platform_config import slack_config
from bots.settings import SlackSettings
from core.chat import ChatConfig
from tests.fakes.ollama import FakeOllama
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, BOT_USER, Envelope, FakeSlack
from tests.fixtures.redis import RedisServer

SETUP_METHODS = {"auth.test", "apps.connections.open"}


# -- the child process: fakes and load generator ------------------------------------------------


def serve_fakes(pipe: Connection, threads: int, followups: int, rate: float) -> None:
    """Child: run the fakes; on "go" offer the load and send back what Slack saw."""
    asyncio.run(_serve(pipe, threads, followups, rate))


async def _serve(pipe: Connection, threads: int, followups: int, rate: float) -> None:
    slack, ollama = FakeSlack(), FakeOllama(instant=True)
    slack.refuse_streams = "not_allowed"  # the edit way; bench.slack_stream_calls compares both
    await slack.start()
    await ollama.start()
    pipe.send((slack.url, ollama.url))
    loop = asyncio.get_running_loop()
    if await loop.run_in_executor(None, pipe.recv) == "go":
        pipe.send(await offer(slack, threads, followups, rate))
    await loop.run_in_executor(None, pipe.recv)  # "stop", once the bot has disconnected
    await slack.stop()
    await ollama.stop()


async def offer(slack: FakeSlack, threads: int, followups: int, rate: float) -> dict[str, Any]:
    """Deliver every round (acks awaited per round, not replies); wait for every reply."""
    tokens: list[str] = []
    envelopes: list[Envelope] = []
    opened: dict[str, str] = {}  # channel -> ts of the mention that opened its thread
    for round_ in range(followups + 1):
        first = len(envelopes)
        for n in range(threads):
            token = f"m{n:04d}r{round_}"
            tokens.append(token)
            redeliver = len(tokens) % 5 == 0
            envelopes += await deliver(slack, opened, f"C{n:010d}", token, redeliver)
            if rate:
                await asyncio.sleep(1 / rate)  # the offered pace, not synchronisation
        with contextlib.suppress(TimeoutError):  # counted as unacknowledged below
            await slack.wait_until(all_acknowledged(envelopes[first:]), 10)
    with contextlib.suppress(TimeoutError):  # lost replies are counted, not raised
        await slack.wait_until(lambda: all(token in answered(slack) for token in tokens), 120)
    calls = [c for c in slack.calls if c.method not in SETUP_METHODS]
    first_sent = {e.payload["event"]["ts"]: e.sent_at for e in reversed(envelopes)}
    return {
        "tokens": tokens,
        "deliveries": len(envelopes),
        "offered_at": list(first_sent.values()),
        "completed_at": completed_at(slack),
        "acks": sorted(e.acked_at - e.sent_at for e in envelopes if e.acked_at is not None),
        "unacknowledged": sum(1 for e in envelopes if e.acked_at is None),
        "calls": Counter(c.method for c in calls),
        "limited": sum(1 for c in calls if c.status == 429),
        "answered": answered(slack),
    }


async def deliver(
    slack: FakeSlack, opened: dict[str, str], channel: str, token: str, redeliver: bool
) -> list[Envelope]:
    """A mention opening the channel's thread, or a follow-up in it without mention."""
    if channel not in opened:
        body = slack.user_message(f"<@{BOT_USER}> {token}", channel=channel, kind="app_mention")
        opened[channel] = body["event"]["ts"]
    else:
        body = slack.user_message(token, channel=channel, thread_ts=opened[channel])
    sent = [await slack.deliver("events_api", body)]
    if redeliver:
        sent.append(await slack.deliver("events_api", body, retry_attempt=1))
    return sent


def all_acknowledged(envelopes: list[Envelope]) -> Callable[[], bool]:
    """Whether every one of ``envelopes`` was acknowledged (one wait for a whole round: an
    unacknowledged event then costs the round one timeout, not one each)."""
    return lambda: all(envelope.acked_at is not None for envelope in envelopes)


def answered(slack: FakeSlack) -> Counter[str]:
    """How many bot messages carry each token (the fake Ollama echoes the question)."""
    found: Counter[str] = Counter()
    for message in slack.messages.values():
        if message.user == BOT_USER and message.text.startswith("echo:"):
            found[message.text.rsplit(" ", 1)[-1]] += 1
    return found


def completed_at(slack: FakeSlack) -> dict[str, float]:
    """When each token's reply reached Slack: the first accepted call carrying it."""
    done: dict[str, float] = {}
    for call in slack.calls:
        text = str(call.args.get("text", ""))
        if call.status == 200 and text.startswith("echo:"):
            done.setdefault(text.rsplit(" ", 1)[-1], call.at)
    return done


# -- the bot (this process) ----------------------------------------------------------------------


async def run(threads: int, followups: int, rate: float, redis_url: str) -> None:
    parent, child = mp.Pipe()
    fakes = mp.get_context("spawn").Process(
        target=serve_fakes, args=(child, threads, followups, rate)
    )
    fakes.start()
    slack_url, ollama_url = parent.recv()
    store = RedisStore.from_url(
        redis_url,
        prefix=f"bench-{time.time_ns()}:",
        block_ms=200,
        rate_per_minute=10**6,
        max_backlog=10**6,
    )
    settings = SlackSettings(
        bot_token=SecretStr(BOT_TOKEN), app_token=SecretStr(APP_TOKEN), api_base_url=slack_url
    )
    llm = OllamaLLM(ollama_url)
    services = build_services(store, llm, ChatConfig(default_model="llama3.1:8b"), "bench")
    platform = SlackPlatform(
        slack_config(settings), store, RedisThreadRegistry(store.client, "bench:")
    )
    worker = services.worker("slack", platform.sinks, slots=64)
    stop = asyncio.Event()
    await platform.start()
    worker_task = asyncio.create_task(worker.run(stop))
    print(
        f"method: {threads} threads x {followups + 1} messages offered "
        + (f"at {rate:g} events/s" if rate else "as fast as the fake sends")
        + " from a child process over Socket Mode; capacity = replies completed per second "
        "from the first to the last (timed by the fake's Web API calls) while a backlog waits"
    )
    try:
        parent.send("go")
        result = await asyncio.get_running_loop().run_in_executor(None, parent.recv)
    finally:
        await platform.stop()
        stop.set()
        await worker_task
        await worker.drain(10)
        await platform.aclose()
        await llm.close()
        await store.close()
        parent.send("stop")
        fakes.join(10)
    report(result)


def per_second(times: list[float]) -> float:
    """Events per second between the first and the last of ``times``."""
    span = max(times) - min(times)
    return (len(times) - 1) / span if span > 0 else float("inf")


def report(result: dict[str, Any]) -> None:
    tokens, found, calls = result["tokens"], result["answered"], result["calls"]
    done = result["completed_at"]
    capacity = per_second([done[t] for t in tokens if t in done])
    offered = per_second(result["offered_at"])
    acks = result["acks"]
    p99 = acks[min(len(acks) - 1, int(len(acks) * 0.99))]
    print(f"messages            {len(tokens)} ({result['deliveries']} deliveries incl. retries)")
    print(f"offered             {offered:.1f} messages/s")
    print(f"capacity            {capacity:.1f} messages/s answered")
    if offered < 1.1 * capacity:
        print("                    the bot kept up (a lower bound): raise --threads or --rate")
    total_calls = sum(calls.values())
    print(
        f"Web API calls/msg   {total_calls / len(tokens):.2f}  {dict(calls)}, "
        f"429s: {result['limited']}"
    )
    print(
        f"ack latency         p50 {statistics.median(acks) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"
    )
    print(f"unacknowledged      {result['unacknowledged']} deliveries")
    print(f"lost replies        {sum(1 for t in tokens if found[t] == 0)}")
    print(f"duplicated replies  {sum(1 for t in tokens if found[t] > 1)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=200)
    parser.add_argument("--followups", type=int, default=2)
    parser.add_argument(
        "--rate", type=float, default=200, help="events per second offered (0: as fast as sent)"
    )
    args = parser.parse_args()
    given = os.environ.get("OLLABOT_BENCH_REDIS_URL")
    if given:
        asyncio.run(run(args.threads, args.followups, args.rate, given))
        return
    with tempfile.TemporaryDirectory() as workdir:
        server = RedisServer(Path(workdir))
        server.start()
        try:
            asyncio.run(run(args.threads, args.followups, args.rate, server.url))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
