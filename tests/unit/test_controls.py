"""Team controls on in-memory ports: stop, retry, undo, quotas and usage, the default preset."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from adapters.memory_store import MemoryStore
from core.chat import ChatConfig, ChatService
from core.commands import AdminService
from core.fewshot import FewShotCatalog
from core.models import ChatRequest, InboxEntry, IncomingMessage, StreamEvent
from core.outbox import Outbox
from tests.unit.test_chat_service import Harness, RecordingSink

NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@dataclass
class EndlessLLM:
    """Writes one word after another until its stream is closed, and says when it was."""

    started: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        try:
            yield StreamEvent(delta="Once upon a time")
            self.started.set()
            while True:
                await asyncio.sleep(0.01)
                yield StreamEvent(delta=" and then")
        finally:
            self.closed.set()


async def test_undo_forgets_the_last_exchange_and_says_so_when_there_is_none() -> None:
    h = Harness()
    await h.say("first")
    await h.say("second")
    undone = await h.say("undo", command=True)
    assert undone.finished == ["Forgot the last question and its answer."]
    assert await h.history() == [("user", "first"), ("assistant", "echo: first")]
    await h.say("undo", command=True)
    nothing = await h.say("undo", command=True)
    assert nothing.finished == ["There is nothing to undo yet."]
    assert await h.history() == []


async def test_retry_writes_the_last_answer_again_and_it_replaces_the_old_one() -> None:
    h = Harness()
    h.llm.script = [["a first try"], ["a better answer"]]
    await h.say("explain")
    again = await h.say("retry", command=True)
    assert again.finished == ["a better answer"]
    assert h.llm.requests[1].messages[-1].content == "explain"
    assert await h.history() == [("user", "explain"), ("assistant", "a better answer")]
    assert (await h.say("retry", command=True)).finished == ["echo: explain"]
    assert len(await h.history()) == 2, "one question, one answer"


async def test_retry_with_nothing_to_retry_says_so() -> None:
    assert (await Harness().say("retry", command=True)).failures == [
        "There is no answer to write again yet."
    ]


async def test_stop_ends_the_reply_keeps_its_text_marked_and_closes_the_model_stream() -> None:
    store = MemoryStore(block_ms=10)
    llm = EndlessLLM()
    config = ChatConfig("m", stop_check_s=0.01)
    admin = AdminService(store, FewShotCatalog(), "m", config.num_ctx)
    service = ChatService(llm, store, FewShotCatalog(), config, "me", admin)
    outbox = Outbox(store, store)
    question = IncomingMessage("test", "1", "conv", "chan", "al", "Al", "tell me a story")
    stop = IncomingMessage("test", "2", "conv", "chan", "al", "Al", "stop", is_command=True)
    await store.enqueue(question)
    await store.enqueue(stop)
    asked, stopped = await store.take("test", "me", 10)
    assert stopped.seq == 0, "a stop takes no place in the conversation's order"

    sink = RecordingSink()
    answering = asyncio.create_task(service.handle(asked, sink))
    await llm.started.wait()
    stop_sink = RecordingSink()
    handled = await service.handle(stopped, stop_sink)
    assert handled.reply is not None
    await outbox.deliver(stopped, stop_sink, handled.reply)
    async with asyncio.timeout(1):
        await llm.closed.wait()
    answer = await answering
    assert answer.reply is not None
    await outbox.deliver(asked, sink, answer.reply)

    assert stop_sink.finished == ["Stopping the reply."]
    assert sink.finished[0].startswith("Once upon a time")
    assert sink.finished[0].endswith("\n\n(stopped)")
    probe = IncomingMessage("test", "probe", "conv", "chan", "al", "Al", "")
    context = await store.load_context(InboxEntry("x", probe), 10, "me", 1000)
    assert context.history[-1].content.startswith("Once upon a time")
    assert not context.history[-1].content.endswith("(stopped)")


async def test_a_stop_with_nothing_being_written_says_so_and_stops_nothing_later() -> None:
    h = Harness()
    nothing = await h.say("stop", command=True)
    assert nothing.finished == ["Nothing is being written here right now."]
    assert (await h.say("hello")).finished == ["echo: hello"]


class Day(Harness):
    """A harness whose service lives at noon UTC."""

    def __init__(self) -> None:
        super().__init__()
        config = ChatConfig(default_model="m")
        admin = AdminService(self.store, FewShotCatalog(), "m", 8192, clock=lambda: NOON)
        self.service = ChatService(
            self.llm, self.store, FewShotCatalog(), config, "me", admin, clock=lambda: NOON
        )


async def test_a_user_over_quota_is_told_until_when_and_the_model_is_not_asked() -> None:
    h = Day()
    refused = await h.say("quota user alice 1s/day", command=True)
    assert refused.failures == ["Sorry, only admins of this chat can change its settings."]
    set_ = await h.say("quota user alice 1s/day", command=True, admin=True, author="boss")
    assert set_.finished == ["alice may now use 1 s a day here."]

    await h.say("first")  # costs 0.5 s of GPU time (Ollama's durations)
    await h.say("second")  # 1.0 s: the quota is spent
    over = await h.say("third")

    assert len(h.llm.requests) == 2
    assert over.failures == [
        "You have used your 1 s of model time for today in this chat; "
        "it resets at 00:00 UTC (in 12 h)."
    ]
    assert (await h.say("hi", author="bob")).finished == ["echo: hi"], "others still may"


async def test_usage_shows_your_own_time_and_admins_see_the_top_users() -> None:
    h = Day()
    await h.say("quota channel 2h/day", command=True, admin=True, author="boss")
    for author in ("alice", "alice", "bob"):
        await h.say("hi", author=author)

    mine = (await h.say("usage", command=True, author="bob")).finished[0]
    everyone = (await h.say("usage", command=True, admin=True, author="boss")).finished[0]

    assert mine == "Your model time today in this chat: 0.5 s (no quota)."
    assert everyone.splitlines()[1:] == [
        "This chat today: 1.5 s of 2 h.",
        "  alice: 1 s",
        "  bob: 0.5 s",
    ]


async def test_a_new_channel_starts_with_the_deployments_preset() -> None:
    h = Harness()
    h.store = MemoryStore(block_ms=10, rate_per_minute=1000, default_preset="precise")
    admin = AdminService(h.store, FewShotCatalog(), "m", 8192, default_preset="precise")
    h.service = ChatService(h.llm, h.store, FewShotCatalog(), ChatConfig("m"), "me", admin)
    h.outbox = Outbox(h.store, h.store)
    await h.say("hello")
    assert h.llm.requests[-1].options["temperature"] == 0.1
    await h.say("preset use creative", command=True, admin=True)
    reset = await h.say("preset reset", command=True, admin=True)
    assert reset.finished == ["Preset reset to precise."]
