"""Fairness benchmark: does one user's flood delay everyone else, and who gets the model?

Run: ``.venv/bin/python -m bench.fairness [--slots 2] [--tokens-per-s 50] [--tokens 20]
[--interval 3] [--duration 20]`` (about 100 s). Nothing external: the worker comes from
``bots.app.build_services`` on a ``MemoryStore`` whose admission limits are raised (the flood
is queued, not refused), and the model is ``PacedLLM`` below: ``slots`` streams at a fixed
token rate, each reporting its GPU time as Ollama does, so the scheduler is charged real costs.

Eight ordinary users, each in their own channel, send at a steady rate. The default interval
is 3 s, not 0.5 s: at 0.42 s a reply, eight users sending every 0.5 s need 6.7 slots, and with
two the baseline alone would queue without bound; 3 s keeps it at 56 % of the model. A flooder
then adds 200 messages in 10 s over 20 conversations, laid out two ways: 20 threads of one
channel, and 20 channels. Prints, measured in one run:

1. the ordinary users' time from enqueue to first token, p50 and p95, without and with each
   flood, and whether p95 with the flood stays within 2 x p95 without it + 1 s;
2. Jain's fairness index over all nine users of the model-slot time each held while all were
   backlogged (everyone queued at once), for each flood layout (target 0.9).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from adapters.memory_store import MemoryStore
from bots.app import build_services
from core.chat import ChatConfig
from core.models import ChatRequest, DoneReason, IncomingMessage, StreamEvent
from core.ports import NullSink

PLATFORM = "bench"
FLOODER = "flooder"
UNLIMITED = 10**9
LAYOUTS = {"threads": "20 threads of one channel", "channels": "20 channels"}


@dataclass(frozen=True, slots=True)
class Scenario:
    slots: int = 2
    tokens_per_s: float = 50.0
    tokens: int = 20
    prompt_s: float = 0.02
    users: int = 8
    interval_s: float = 3.0
    duration_s: float = 20.0
    flood: int = 200
    flood_start_s: float = 2.0
    flood_spread_s: float = 10.0
    flood_conversations: int = 20
    backlog_per_user: int = 8
    backlog_window_s: float = 10.0
    grace_s: float = 10.0
    seed: int = 7

    @property
    def reply_s(self) -> float:
        return self.prompt_s + self.tokens / self.tokens_per_s


# -- the model ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Busy:
    """One model call: whose, and when it held a slot."""

    user: str
    start: float
    end: float


class PacedLLM:
    """The LLM port as a GPU: ``slots`` streams at once, each at a fixed token rate.

    A call holds a slot from its first prompt token to its last reply token, whether or not
    the caller keeps up, as a GPU does. The user is the first word of the last message.
    """

    def __init__(self, scenario: Scenario) -> None:
        self._s = scenario
        self._slots = asyncio.Semaphore(scenario.slots)
        self.calls: list[Busy] = []
        self.ended = asyncio.Event()  # set after each call; waiters clear it

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        user = request.messages[-1].content.split(" ", 1)[0]
        async with self._slots:
            start = prompt_end = end = time.monotonic()
            try:
                await asyncio.sleep(self._s.prompt_s)
                prompt_end = time.monotonic()
                for n in range(1, self._s.tokens + 1):
                    await sleep_until(prompt_end + n / self._s.tokens_per_s)
                    yield StreamEvent(delta=" token")
            finally:
                end = time.monotonic()
                self.calls.append(Busy(user, start, end))
                self.ended.set()
        yield StreamEvent(
            done=True,
            done_reason=DoneReason.STOP,
            prompt_eval_count=100,
            eval_count=self._s.tokens,
            prompt_eval_duration_ns=int((prompt_end - start) * 1e9),
            eval_duration_ns=int((end - prompt_end) * 1e9),
        )


# -- the platform side: messages in, first tokens out ------------------------------------------


class Recorder:
    """When each message was enqueued and when its first token reached its sink."""

    def __init__(self) -> None:
        self.sent: dict[str, float] = {}
        self.first_token: dict[str, float] = {}
        self.failed: dict[str, str] = {}
        self.changed = asyncio.Condition()

    def sink(self, message: IncomingMessage) -> TimingSink:
        return TimingSink(self, message.message_id)

    async def token(self, message_id: str) -> None:
        if message_id not in self.first_token:
            async with self.changed:
                self.first_token[message_id] = time.monotonic()
                self.changed.notify_all()

    async def wait_first_tokens(self, message_ids: set[str], timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s), self.changed:
                await self.changed.wait_for(lambda: message_ids <= self.first_token.keys())


class TimingSink(NullSink):
    """A ``ReplySink`` that shows nothing and notes the first streamed token."""

    def __init__(self, recorder: Recorder, message_id: str) -> None:
        self._recorder = recorder
        self._message_id = message_id

    async def update(self, text: str) -> None:
        await self._recorder.token(self._message_id)

    async def fail(self, notice: str) -> None:
        self._recorder.failed[self._message_id] = notice


@dataclass(frozen=True, slots=True)
class Send:
    at: float
    message: IncomingMessage


def incoming(user: str, channel: str, conversation: str, n: int) -> IncomingMessage:
    return IncomingMessage(
        platform=PLATFORM,
        message_id=f"{user}-{n}",
        conversation=conversation,
        channel=channel,
        author_id=user,
        author_name=user,
        text=f"{user} message {n}",
    )


def ordinary(n: int) -> str:
    return f"u{n}"


def steady(s: Scenario) -> list[Send]:
    """Each ordinary user one message every ``interval_s`` (+-20 %), from a random phase."""
    rng, sends = random.Random(s.seed), []
    for u in range(s.users):
        user, at, n = ordinary(u), rng.uniform(0, s.interval_s), 0
        while at < s.duration_s:
            sends.append(Send(at, incoming(user, f"dm-{user}", f"dm-{user}", n)))
            at += s.interval_s * rng.uniform(0.8, 1.2)
            n += 1
    return sends


def flood(s: Scenario, layout: str, start_s: float, spread_s: float) -> list[Send]:
    """``s.flood`` messages, evenly in time, round robin over the flooder's conversations."""
    sends = []
    for n in range(s.flood):
        k = n % s.flood_conversations
        channel = "flood-channel" if layout == "threads" else f"flood-channel-{k}"
        at = start_s + spread_s * n / s.flood
        sends.append(Send(at, incoming(FLOODER, channel, f"{channel}/thread-{k}", n)))
    return sends


# -- one run --------------------------------------------------------------------------------


@dataclass
class Run:
    """A worker built as the bot builds it, with the paced model and the timing sinks."""

    scenario: Scenario
    store: MemoryStore = field(init=False)
    llm: PacedLLM = field(init=False)
    recorder: Recorder = field(default_factory=Recorder)

    def __post_init__(self) -> None:
        self.store = MemoryStore(rate_per_minute=UNLIMITED, max_backlog=UNLIMITED)
        self.llm = PacedLLM(self.scenario)

    async def execute(self, sends: list[Send], until: Callable[[], Awaitable[None]]) -> None:
        """Start the worker, send on schedule, wait for ``until``, then stop everything."""
        config = ChatConfig(default_model="bench")
        services = build_services(self.store, self.llm, config, "bench-worker")
        worker = services.worker(PLATFORM, self.recorder.sink, slots=self.scenario.slots)
        stop = asyncio.Event()
        running = asyncio.create_task(worker.run(stop))
        started = time.monotonic()
        for send in sorted(sends, key=lambda x: x.at):
            await sleep_until(started + send.at)
            self.recorder.sent[send.message.message_id] = time.monotonic()
            await self.store.enqueue(send.message)
        await until()
        stop.set()
        await running
        await worker.drain(0)


async def first_token_latencies(s: Scenario, extra: list[Send]) -> tuple[list[float], int]:
    """Enqueue to first token of the ordinary messages sent from the flood's start on, and how
    many got none within ``grace_s`` after the last send: those count as their time to the
    end of the run, so the percentiles are then lower bounds."""
    sends = steady(s)
    measured = {x.message.message_id for x in sends if x.at >= s.flood_start_s}
    run = Run(s)
    await run.execute(sends + extra, lambda: run.recorder.wait_first_tokens(measured, s.grace_s))
    got, sent, ended = run.recorder.first_token, run.recorder.sent, time.monotonic()
    latencies = [got.get(m, ended) - sent[m] for m in measured]
    return latencies, len(measured - got.keys())


async def backlogged_shares(s: Scenario, layout: str) -> tuple[dict[str, float], float]:
    """Model-slot seconds per user while every user had work queued; and that window's length.

    The flood and then ``backlog_per_user`` messages of each ordinary user are queued at
    once; the window runs from then to the first moment some user has nothing left (their
    last model call ended), at most ``backlog_window_s``.
    """
    users = [ordinary(u) for u in range(s.users)]
    backlog = [
        Send(0, incoming(user, f"dm-{user}", f"dm-{user}", n))
        for n in range(s.backlog_per_user)
        for user in users
    ]
    run = Run(s)
    emptied = 0.0

    def someone_done() -> bool:
        calls = run.llm.calls
        return any(sum(c.user == u for c in calls) >= s.backlog_per_user for u in users)

    async def until_someone_done() -> None:
        nonlocal emptied
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(s.backlog_window_s):
                while not someone_done():
                    run.llm.ended.clear()
                    await run.llm.ended.wait()
        emptied = time.monotonic()

    await run.execute(flood(s, layout, 0, 0) + backlog, until_someone_done)
    start = max(run.recorder.sent.values())
    held = {user: 0.0 for user in [*users, FLOODER]}
    for call in run.llm.calls:
        held[call.user] += max(0.0, min(call.end, emptied) - max(call.start, start))
    return held, emptied - start


# -- figures --------------------------------------------------------------------------------


def jain(values: Iterable[float]) -> float:
    """Jain's fairness index: 1 when all equal, 1/n when one value holds everything."""
    xs = list(values)
    squares = sum(x * x for x in xs)
    return sum(xs) ** 2 / (len(xs) * squares) if squares else 0.0


def p(samples: list[float], q: int) -> float:
    """The ``q``-th percentile (inclusive method); NaN without samples."""
    if len(samples) < 2:
        return samples[0] if samples else float("nan")
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def method(s: Scenario) -> str:
    return (
        f"method: one worker from bots.app.build_services on a MemoryStore (admission limits "
        f"off), {s.slots} worker slots = {s.slots} model slots at {s.tokens_per_s:g} tokens/s, "
        f"{s.tokens}-token replies after {s.prompt_s * 1000:g} ms of prompt "
        f"({s.reply_s:.2f} s of GPU time each, reported to the scheduler); {s.users} ordinary "
        f"users, each in their own channel, send one message every {s.interval_s:g} s +-20 % "
        f"for {s.duration_s:g} s (same seeded schedule in every run); a flooder adds "
        f"{s.flood} messages evenly from t={s.flood_start_s:g} s over {s.flood_spread_s:g} s, "
        f"round robin over {s.flood_conversations} conversations ({' or '.join(LAYOUTS.values())}"
        f"); latency = enqueue to the first streamed token reaching the sink, for the ordinary "
        f"messages sent from t={s.flood_start_s:g} s on, target p95 with flood <= 2 x p95 "
        f"without + 1 s; fairness = Jain's index (sum x)^2 / (n sum x^2) over all "
        f"{s.users + 1} users of x = model-slot seconds each held between the moment the "
        f"{s.flood} flood messages and then {s.backlog_per_user} per ordinary user are all "
        f"queued and the first moment any user has nothing left (at most "
        f"{s.backlog_window_s:g} s), target >= 0.9"
    )


def latency_line(label: str, latencies: list[float], lost: int) -> None:
    at_least = ">=" if lost else "  "
    missing = f", {lost} without a first token by the end" if lost else ""
    print(
        f"  {label:38} p50 {at_least}{p(latencies, 50):6.2f} s  "
        f"p95 {at_least}{p(latencies, 95):6.2f} s  (n={len(latencies)}{missing})"
    )


async def main(s: Scenario) -> None:
    print(method(s), flush=True)
    print("1. ordinary users, enqueue to first token")
    base, base_lost = await first_token_latencies(s, [])
    latency_line("no flood", base, base_lost)
    target = 2 * p(base, 95) + 1
    for layout, label in LAYOUTS.items():
        extra = flood(s, layout, s.flood_start_s, s.flood_spread_s)
        flooded, lost = await first_token_latencies(s, extra)
        latency_line(f"flood over {label}", flooded, lost)
        ratio = p(flooded, 95) / p(base, 95)
        met = p(flooded, 95) <= target and not lost
        bound = ">=" if lost else ""
        print(f"  {'':38} p95 ratio {bound}{ratio:.2f}, target <= {target:.2f} s: {verdict(met)}")
    print(f"2. Jain's index of model-slot time, all {s.users + 1} users backlogged")
    for layout, label in LAYOUTS.items():
        held, window = await backlogged_shares(s, layout)
        index = jain(held.values())
        share = held[FLOODER] / sum(held.values()) if sum(held.values()) else 0.0
        print(
            f"  flood over {label:27} {index:5.2f} (target >= 0.9: {verdict(index >= 0.9)}); "
            f"window {window:.1f} s, flooder's share {share:.0%} (fair {1 / len(held):.0%})"
        )


async def sleep_until(deadline: float) -> None:
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))


def cli() -> None:
    default = Scenario()
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--slots", type=int, default=default.slots)
    parser.add_argument("--tokens-per-s", type=float, default=default.tokens_per_s)
    parser.add_argument("--tokens", type=int, default=default.tokens)
    parser.add_argument("--interval", type=float, default=default.interval_s)
    parser.add_argument("--duration", type=float, default=default.duration_s)
    a = parser.parse_args()
    scenario = Scenario(
        slots=a.slots,
        tokens_per_s=a.tokens_per_s,
        tokens=a.tokens,
        interval_s=a.interval,
        duration_s=a.duration,
    )
    asyncio.run(main(scenario))


if __name__ == "__main__":
    cli()
