"""Slack load benchmark: many threads at once through the real bot, fake Slack, instant Ollama.

Run: ``.venv/bin/python -m bench.slack_load [--threads 200] [--followups 2]``.
Needs ``redis-server`` on the PATH (or ``OLLABOT_BENCH_REDIS_URL``). Every thread starts
with an @mention in its own channel and continues with follow-ups without mention; every
fifth event is delivered twice, as Slack does after a missed ack. Everything runs in one
process (the fakes take their share of the CPU), over Socket Mode, with the fake's real
per-channel rate limits. Prints messages per second, Web API calls per message, the
acknowledgement latency (p50, p99; target p99 < 100 ms) and lost / duplicated replies.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import redis.asyncio as aioredis
from pydantic import SecretStr

from adapters.ollama_llm import OllamaLLM
from adapters.redis_store import RedisStore
from adapters.slack.platform import SlackPlatform
from adapters.slack.threads import RedisThreadRegistry
from bots.platform_config import slack_config
from bots.settings import SlackSettings
from core.chat import ChatConfig, ChatService
from core.fewshot import FewShotCatalog
from core.worker import InboxWorker, WorkerConfig
from tests.fakes.ollama import FakeOllama
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, BOT_USER, Envelope, FakeSlack
from tests.fixtures.redis import RedisServer

SETUP_METHODS = {"auth.test", "apps.connections.open"}


async def run(threads: int, followups: int, rate: float, redis_url: str) -> None:
    slack, ollama = FakeSlack(), FakeOllama(instant=True)
    await slack.start()
    await ollama.start()
    store = RedisStore.from_url(redis_url, prefix=f"bench-{time.time_ns()}:", block_ms=200)
    threads_client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    settings = SlackSettings(
        bot_token=SecretStr(BOT_TOKEN), app_token=SecretStr(APP_TOKEN), api_base_url=slack.url
    )
    llm = OllamaLLM(ollama.url)
    service = ChatService(
        llm,
        store,
        store,
        FewShotCatalog(),
        ChatConfig(default_model="llama3.1:8b", rate_limit=1000),
        owner="bench",
    )
    platform = SlackPlatform(
        slack_config(settings), store, RedisThreadRegistry(threads_client, "bench:")
    )
    worker = InboxWorker(store, service, platform.sinks, WorkerConfig("slack", "bench", 64))
    stop = asyncio.Event()
    await platform.start()
    worker_task = asyncio.create_task(worker.run(stop))
    try:
        await measure(slack, threads, followups, rate)
    finally:
        await platform.stop()
        stop.set()
        await worker_task
        await worker.drain(10)
        await platform.aclose()
        await llm.close()
        await store.close()
        await threads_client.aclose()
        await slack.stop()
        await ollama.stop()


async def measure(slack: FakeSlack, threads: int, followups: int, rate: float) -> None:
    tokens: list[str] = []
    envelopes: list[Envelope] = []
    opened: dict[str, str] = {}  # channel -> ts of the mention that opened its thread
    started = time.monotonic()
    for round_ in range(followups + 1):
        for n in range(threads):
            token = f"m{n:04d}r{round_}"
            tokens.append(token)
            redeliver = len(tokens) % 5 == 0
            envelopes += await deliver(slack, opened, f"C{n:010d}", token, redeliver)
            await asyncio.sleep(1 / rate)  # Slack's pace, not synchronisation
        for envelope in envelopes[-threads:]:
            await slack.wait_for_ack(envelope, 30)
    await slack.wait_until(lambda: all(token in answered(slack) for token in tokens), 300)
    elapsed = time.monotonic() - started
    report(slack, tokens, envelopes, elapsed)


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


def answered(slack: FakeSlack) -> Counter[str]:
    """How many bot messages carry each token (the fake Ollama echoes the question)."""
    found: Counter[str] = Counter()
    for message in slack.messages.values():
        if message.user == BOT_USER and message.text.startswith("echo:"):
            found[message.text.rsplit(" ", 1)[-1]] += 1
    return found


def report(slack: FakeSlack, tokens: list[str], envelopes: list[Envelope], elapsed: float) -> None:
    found = answered(slack)
    calls = [c for c in slack.calls if c.method not in SETUP_METHODS]
    acks = sorted((e.acked_at or 0) - e.sent_at for e in envelopes)
    p99 = acks[min(len(acks) - 1, int(len(acks) * 0.99))]
    by_method = Counter(c.method for c in calls)
    limited = sum(1 for c in calls if c.status == 429)
    print(f"messages            {len(tokens)} ({len(envelopes)} deliveries incl. retries)")
    print(f"messages per second {len(tokens) / elapsed:.1f}  ({elapsed:.2f} s)")
    print(f"Web API calls/msg   {len(calls) / len(tokens):.2f}  {dict(by_method)}, 429s: {limited}")
    print(
        f"ack latency         p50 {statistics.median(acks) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"
    )
    print(f"lost replies        {sum(1 for t in tokens if found[t] == 0)}")
    print(f"duplicated replies  {sum(1 for t in tokens if found[t] > 1)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=200)
    parser.add_argument("--followups", type=int, default=2)
    parser.add_argument("--rate", type=float, default=200, help="events per second sent")
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
