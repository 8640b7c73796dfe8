"""The inbox worker answers one conversation's messages in order, others in parallel."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field

from adapters.memory_store import MemoryStore
from core.chat import ChatConfig, ChatService
from core.fewshot import FewShotCatalog
from core.models import ChatRequest, DoneReason, IncomingMessage, StreamEvent
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
        yield StreamEvent(done=True, done_reason=DoneReason.STOP)


async def until(condition: Callable[[], bool], changed: asyncio.Condition) -> None:
    async with asyncio.timeout(5), changed:
        await changed.wait_for(condition)


async def test_a_message_arriving_while_the_previous_streams_waits_its_turn() -> None:
    store = MemoryStore(block_ms=10)
    llm = GatedLLM(gates={"one": asyncio.Event(), "two": asyncio.Event()})
    service = ChatService(llm, store, store, FewShotCatalog(), ChatConfig("m"), owner="w")
    sinks: dict[str, RecordingSink] = {}
    worker = InboxWorker(
        store,
        service,
        lambda m: sinks.setdefault(m.text, RecordingSink()),
        WorkerConfig("test", "w", batch=1),
    )
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))

    async def send(text: str) -> None:
        await store.enqueue(IncomingMessage("test", text, "conv", "chan", "u", "U", text))

    async def taken(count: int) -> None:
        async with asyncio.timeout(5):  # bounded poll: the worker signals nothing when it takes
            while worker.busy != count:  # noqa: ASYNC110
                await asyncio.sleep(0.001)

    await send("one")
    await send("two")
    await until(lambda: len(llm.requests) == 1, llm.changed)
    await taken(2)
    llm.gates["one"].set()
    await until(lambda: len(llm.requests) == 2, llm.changed)
    await send("three")
    await taken(2)
    for _ in range(200):  # give "three" every chance to overtake: it must keep waiting
        await asyncio.sleep(0)
    assert len(llm.requests) == 2, "a later message started while the previous one streamed"
    llm.gates["two"].set()
    await until(lambda: len(llm.requests) == 3, llm.changed)
    await worker.drain(5)
    stop.set()
    with contextlib.suppress(asyncio.CancelledError):
        await running

    history = [m.content for m in llm.requests[2].messages[1:]]
    assert history == ["one", "re one", "two", "re two", "three"]
    assert [sinks[t].finished for t in ("one", "two", "three")] == [
        ["re one"],
        ["re two"],
        ["re three"],
    ]
