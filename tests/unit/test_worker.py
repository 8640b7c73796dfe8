"""The inbox worker: one conversation in order, across workers too; users served fairly; model
slots never held by waiting messages; deliveries retried without a slot."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field

from adapters.memory_store import MemoryStore
from core.chat import ChatConfig, ChatService
from core.commands import AdminService
from core.errors import DeliveryDeferred
from core.fewshot import FewShotCatalog
from core.models import ChatRequest, DoneReason, IncomingMessage, StreamEvent
from core.outbox import Outbox
from core.worker import InboxWorker, WorkerConfig
from tests.unit.test_chat_service import RecordingSink


@dataclass
class GatedLLM:
    """Holds the reply to a message until its gate opens; records requests as they arrive."""

    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    requests: list[ChatRequest] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        text = request.messages[-1].content
        async with self.changed:
            self.requests.append(request)
            self.changed.notify_all()
        if text in self.gates:
            await self.gates[text].wait()
        yield StreamEvent(delta=f"re {text}")
        yield StreamEvent(done=True, done_reason=DoneReason.STOP, eval_duration_ns=10**9)

    def asked(self) -> list[str]:
        return [r.messages[-1].content for r in self.requests]


async def until(condition: Callable[[], bool], changed: asyncio.Condition) -> None:
    async with asyncio.timeout(5), changed:
        await changed.wait_for(condition)


@dataclass
class Sinks:
    """One recording sink per message text, and a condition notified on every delivery."""

    by_text: dict[str, RecordingSink] = field(default_factory=dict)
    delivered: list[str] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    defer_first: int = 0

    def __call__(self, message: IncomingMessage) -> DeliveringSink:
        sink = self.by_text.setdefault(message.text, DeliveringSink(self, message.text))
        assert isinstance(sink, DeliveringSink)
        return sink


@dataclass
class DeliveringSink(RecordingSink):
    owner: Sinks | None = None
    text: str = ""

    def __init__(self, owner: Sinks, text: str) -> None:
        super().__init__()
        self.owner, self.text = owner, text

    async def finish(self, text: str, *, reasoning: str = "") -> None:
        assert self.owner is not None
        if self.owner.defer_first > 0:
            self.owner.defer_first -= 1
            raise DeliveryDeferred("429", 0.01)
        await super().finish(text, reasoning=reasoning)
        async with self.owner.changed:
            self.owner.delivered.append(self.text)
            self.owner.changed.notify_all()


def make_worker(
    store: MemoryStore,
    llm: GatedLLM,
    sinks: Sinks,
    consumer: str = "w",
    slots: int = 1,
    queued_notice_s: float = 2.0,
) -> InboxWorker:
    config = ChatConfig("m")
    admin = AdminService(store, FewShotCatalog(), "m", config.num_ctx)
    service = ChatService(llm, store, FewShotCatalog(), config, consumer, admin)
    config = WorkerConfig("test", consumer, slots=slots, queued_notice_s=queued_notice_s)
    return InboxWorker(store, service, Outbox(store, store), sinks, config)


@contextlib.asynccontextmanager
async def running(*workers: InboxWorker) -> AsyncIterator[None]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    try:
        yield
    finally:
        stop.set()
        for worker in workers:
            await worker.drain(5)
        await asyncio.gather(*tasks, return_exceptions=True)


async def send(store: MemoryStore, text: str, conversation: str = "conv", user: str = "u") -> None:
    message = IncomingMessage("test", text, conversation, conversation, user, user.title(), text)
    await store.enqueue(message)


async def test_a_conversation_is_answered_in_order_and_history_follows() -> None:
    store, llm, sinks = MemoryStore(block_ms=10), GatedLLM(gates={"one": asyncio.Event()}), Sinks()
    async with running(make_worker(store, llm, sinks, slots=4)):
        for text in ("one", "two", "three"):
            await send(store, text)
        await until(lambda: len(llm.requests) == 1, llm.changed)
        for _ in range(200):  # give "two" every chance to overtake: it must keep waiting
            await asyncio.sleep(0)
        assert llm.asked() == ["one"], "a later message started while the previous streamed"
        llm.gates["one"].set()
        await until(lambda: len(sinks.delivered) == 3, sinks.changed)
    assert sinks.delivered == ["one", "two", "three"]
    history = [m.content for m in llm.requests[2].messages[1:]]
    assert history == ["one", "re one", "two", "re two", "three"]


async def test_a_message_waiting_for_its_conversation_holds_no_model_slot() -> None:
    store, llm, sinks = MemoryStore(block_ms=10), GatedLLM(gates={"x1": asyncio.Event()}), Sinks()
    async with running(make_worker(store, llm, sinks, slots=2)):
        await send(store, "x1", "x")
        await send(store, "x2", "x")
        await send(store, "y1", "y", user="v")
        await until(lambda: "y1" in sinks.delivered, sinks.changed)
        assert llm.asked() == ["x1", "y1"], "y1 got the free slot while x2 waited for x1"
        llm.gates["x1"].set()
        await until(lambda: len(sinks.delivered) == 3, sinks.changed)


async def test_one_users_flood_delays_another_user_by_one_reply_at_most() -> None:
    store = MemoryStore(block_ms=10, rate_per_minute=1000, max_backlog=1000)
    llm, sinks = GatedLLM(gates={"flood 0": asyncio.Event()}), Sinks()
    async with running(make_worker(store, llm, sinks, slots=1)):
        for n in range(20):  # twenty conversations of one user, in one channel
            message = IncomingMessage("test", f"f{n}", f"c{n}", "chan", "flood", "F", f"flood {n}")
            await store.enqueue(message)
        await until(lambda: len(llm.requests) == 1, llm.changed)
        await send(store, "late", "dm", user="other")
        for _ in range(50):  # let the worker take "late" into its waiting room
            await asyncio.sleep(0.001)
        llm.gates["flood 0"].set()
        await until(lambda: "late" in sinks.delivered, sinks.changed)
    assert llm.asked().index("late") <= 2, llm.asked()


async def test_two_workers_answer_one_conversation_in_arrival_order() -> None:
    store = MemoryStore(block_ms=10)
    llm, sinks = GatedLLM(gates={"one": asyncio.Event()}), Sinks()
    first, second = make_worker(store, llm, sinks, "a"), make_worker(store, llm, sinks, "b")
    async with running(first, second):
        for text in ("one", "two", "three", "four"):
            await send(store, text)
        await until(lambda: len(llm.requests) == 1, llm.changed)
        for _ in range(200):
            await asyncio.sleep(0.001)
        assert llm.asked() == ["one"], "the other worker answered a later message first"
        llm.gates["one"].set()
        await until(lambda: len(sinks.delivered) == 4, sinks.changed)
    assert sinks.delivered == ["one", "two", "three", "four"]


async def test_a_deferred_delivery_is_retried_without_holding_the_model() -> None:
    store, llm = MemoryStore(block_ms=10), GatedLLM()
    sinks = Sinks(defer_first=3)
    async with running(make_worker(store, llm, sinks, slots=1)):
        await send(store, "one", "a")
        await send(store, "two", "b", user="v")
        await until(lambda: len(sinks.delivered) == 2, sinks.changed)
    assert sorted(sinks.delivered) == ["one", "two"]
    assert await store.claim_abandoned("test", "w", 0) == [], "both entries are done"


async def test_a_message_that_cannot_start_soon_shows_its_place_in_line() -> None:
    store, llm = MemoryStore(block_ms=10), GatedLLM(gates={"long": asyncio.Event()})
    sinks = Sinks()
    async with running(make_worker(store, llm, sinks, slots=1, queued_notice_s=0.05)):
        await send(store, "long", "a")
        await until(lambda: len(llm.requests) == 1, llm.changed)
        await send(store, "short", "b", user="v")
        async with asyncio.timeout(5):  # the notice comes from the worker's own clock
            while "short" not in sinks.by_text or not sinks.by_text["short"].statuses:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        llm.gates["long"].set()
        await until(lambda: len(sinks.delivered) == 2, sinks.changed)
    assert sinks.by_text["short"].statuses == ["queued: #1, about 1 s"]
    assert sinks.by_text["short"].finished == ["re short"], "the reply replaced the notice"
    assert sinks.by_text["long"].statuses == [], "a message that started at once is not told"


async def test_messages_held_a_long_time_stay_claimed_and_are_not_set_aside() -> None:
    store = MemoryStore(block_ms=10, max_deliveries=2)
    llm, sinks = GatedLLM(gates={"slow": asyncio.Event()}), Sinks()
    config = ChatConfig("m")
    admin = AdminService(store, FewShotCatalog(), "m", config.num_ctx)
    service = ChatService(llm, store, FewShotCatalog(), config, "w", admin)
    settings = WorkerConfig("test", "w", slots=1, claim_idle_ms=100)  # claims every 50 ms
    worker = InboxWorker(store, service, Outbox(store, store), sinks, settings)
    async with running(worker):
        await send(store, "slow", "a")
        await until(lambda: len(llm.requests) == 1, llm.changed)
        await send(store, "patient", "b", user="v")  # waits for the only model slot
        for _ in range(40):  # a second: many times the idle time after which entries go
            await asyncio.sleep(0.025)
        llm.gates["slow"].set()
        await until(lambda: len(sinks.delivered) == 2, sinks.changed)
    assert store.dead_letters == [], "an entry kept waiting was given up as undeliverable"


async def test_drain_waits_for_the_reply_in_progress_and_delivers_it() -> None:
    store, llm = MemoryStore(block_ms=10), GatedLLM(gates={"last words": asyncio.Event()})
    sinks = Sinks()
    worker = make_worker(store, llm, sinks)
    stop = asyncio.Event()
    running_task = asyncio.create_task(worker.run(stop))
    await send(store, "last words")
    await until(lambda: len(llm.requests) == 1, llm.changed)
    stop.set()
    await running_task
    draining = asyncio.create_task(worker.drain(5))
    for _ in range(50):
        await asyncio.sleep(0)
    assert not draining.done(), "drain returned while a reply was still being written"
    llm.gates["last words"].set()
    await draining
    assert sinks.delivered == ["last words"]
