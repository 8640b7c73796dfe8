"""The chat service on in-memory ports: what the user sees and what the history keeps."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

import pytest

from adapters.memory_store import MemoryStore
from core.affinity import Affinity
from core.chat import ChatConfig, ChatService
from core.commands import AdminService
from core.errors import LLMBusy, LLMFailed, LLMUnavailable
from core.fewshot import FewShotCatalog
from core.models import (
    Admission,
    ChatRequest,
    DoneReason,
    InboxEntry,
    IncomingMessage,
    StreamEvent,
)
from core.outbox import Outbox


@dataclass
class ScriptedLLM:
    """An LLM port that replays scripted pieces, or raises, and records every request."""

    script: list[list[str | StreamEvent | Exception]] = field(default_factory=list)
    requests: list[ChatRequest] = field(default_factory=list)
    done_reason: DoneReason = DoneReason.STOP

    async def stream(self, request: ChatRequest) -> AsyncGenerator[StreamEvent, None]:
        self.requests.append(request)
        step = self.script.pop(0) if self.script else [f"echo: {request.messages[-1].content}"]
        for piece in step:
            if isinstance(piece, Exception):
                raise piece
            yield piece if isinstance(piece, StreamEvent) else StreamEvent(delta=piece)
        yield StreamEvent(
            done=True,
            done_reason=self.done_reason,
            prompt_eval_count=50,
            prompt_eval_duration_ns=100_000_000,
            eval_duration_ns=400_000_000,
        )


@dataclass
class RecordingSink:
    updates: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    resumed: dict[str, str] = field(default_factory=dict)
    statuses: list[str] = field(default_factory=list)
    reasonings: list[str] = field(default_factory=list)

    @property
    def handle(self) -> dict[str, str]:
        return {"shown": "yes"} if self.updates else {}

    def resume(self, handle: dict[str, str]) -> None:
        self.resumed = handle

    async def status(self, text: str) -> None:
        self.statuses.append(text)

    async def begin(self) -> None:
        pass

    async def update(self, text: str) -> None:
        self.updates.append(text)

    async def finish(self, text: str, *, reasoning: str = "") -> None:
        self.finished.append(text)
        self.reasonings.append(reasoning)

    async def fail(self, notice: str) -> None:
        self.failures.append(notice)


class Harness:
    def __init__(self, rate_per_minute: int = 1000, **config: Any) -> None:
        self.store = MemoryStore(block_ms=10, rate_per_minute=rate_per_minute)
        self.llm = ScriptedLLM()
        chat_config = ChatConfig(default_model="m", **config)
        catalog = FewShotCatalog()
        admin = AdminService(self.store, catalog, "m", chat_config.num_ctx)
        self.service = ChatService(self.llm, self.store, catalog, chat_config, "me", admin)
        self.outbox = Outbox(self.store, self.store)
        self.count = 0
        self.admissions: list[Admission] = []

    async def answer(self, entry: InboxEntry, sink: RecordingSink) -> None:
        """What a worker does with a ready entry: answer it, then deliver the answer."""
        handled = await self.service.handle(entry, sink)
        assert handled.reply is not None
        await self.outbox.deliver(entry, sink, handled.reply)

    async def say(
        self,
        text: str,
        *,
        admin: bool = False,
        command: bool = False,
        author: str = "alice",
        message_id: str | None = None,
        conversation: str = "conv",
        channel: str = "chan",
    ) -> RecordingSink:
        self.count += 1
        message = IncomingMessage(
            "test",
            message_id or str(self.count),
            conversation,
            channel,
            author,
            author.title(),
            text,
            is_admin=admin,
            is_command=command,
        )
        self.admissions.append(await self.store.enqueue(message))
        sink = RecordingSink()
        for entry in await self.store.take("test", "worker", 10):
            await self.answer(entry, sink)
        return sink

    async def history(self) -> list[tuple[str, str]]:
        message = IncomingMessage("test", "probe", "conv", "chan", "x", "X", "")
        context = await self.store.load_context(InboxEntry("probe", message), 100, "me", 1000)
        await self.store.release_lock("chan", "conv", "me")
        return [(t.role, t.content) for t in context.history]


async def test_a_reply_streams_and_both_turns_are_stored() -> None:
    h = Harness()
    h.llm.script = [["Hel", "lo", "!"]]
    sink = await h.say("hi")
    assert sink.updates == ["Hel", "Hello", "Hello!"]
    assert sink.finished == ["Hello!"]
    assert await h.history() == [("user", "hi"), ("assistant", "Hello!")]


@pytest.mark.parametrize("error", [LLMUnavailable(), LLMBusy(), LLMFailed()])
async def test_a_failed_generation_says_why_and_leaves_history_untouched(error: Exception) -> None:
    h = Harness()
    await h.say("first")
    h.llm.script = [["half an ans", error]] if isinstance(error, LLMFailed) else [[error]]
    sink = await h.say("second")
    assert sink.failures == [error.notice]  # type: ignore[attr-defined]
    assert sink.finished == []
    assert await h.history() == [("user", "first"), ("assistant", "echo: first")]
    assert await h.store.take("test", "worker", 10) == [], "the entry is acknowledged"


async def test_a_redelivered_message_is_not_answered_twice() -> None:
    h = Harness()
    await h.say("hello", message_id="update-7")
    sink = await h.say("hello", message_id="update-7")
    assert sink.finished == [] and len(h.llm.requests) == 1


async def test_a_message_answered_before_a_crash_is_redelivered_from_the_store() -> None:
    h = Harness()
    message = IncomingMessage("test", "m1", "conv", "chan", "alice", "Alice", "hi")
    await h.store.enqueue(message)
    [entry] = await h.store.take("test", "worker", 10)
    crashed = RecordingSink()
    await h.service.handle(entry, crashed)  # answered and stored, then the process died
    sink = RecordingSink()
    await h.answer(entry, sink)
    assert sink.finished == ["echo: hi"]
    assert sink.resumed == {"shown": "yes"}, "the successor finishes the streamed message"
    assert len(h.llm.requests) == 1
    assert len(await h.history()) == 2
    assert await h.store.claim_abandoned("test", "worker", 0) == [], "delivered: done"


async def test_an_answer_stays_pending_until_the_platform_takes_it() -> None:
    h = Harness()
    message = IncomingMessage("test", "m1", "conv", "chan", "alice", "Alice", "hi")
    await h.store.enqueue(message)
    [entry] = await h.store.take("test", "worker", 10)
    handled = await h.service.handle(entry, RecordingSink())
    assert handled.reply is not None and handled.reply.text == "echo: hi"
    assert handled.cost_s == pytest.approx(0.5), "GPU time: prompt eval + eval durations"
    [pending] = await h.store.claim_abandoned("test", "worker", 0)
    assert pending.entry_id == entry.entry_id


async def test_too_many_messages_are_refused_on_arrival_and_told_once() -> None:
    h = Harness(rate_per_minute=2)
    admissions = [
        await h.store.enqueue(IncomingMessage("test", str(n), "conv", "chan", "al", "Al", "x"))
        for n in range(5)
    ]
    assert admissions == [
        Admission.ACCEPTED,
        Admission.ACCEPTED,
        Admission.LIMITED,
        Admission.LIMITED_QUIETLY,
        Admission.LIMITED_QUIETLY,
    ]
    assert len(await h.store.take("test", "worker", 10)) == 2, "refused ones are not queued"


async def test_only_admins_change_settings_and_changes_are_audited() -> None:
    h = Harness()
    refused = await h.say("preset set temperature 0.2", command=True, author="bob")
    assert refused.failures == ["Sorry, only admins of this chat can change its settings."]
    done = await h.say("preset set temperature 0.2", command=True, admin=True)
    assert "temperature = 0.2" in done.finished[0]
    await h.say("hi")
    assert h.llm.requests[-1].options["temperature"] == 0.2
    tried, changed = await h.store.audit_log("chan", 10)
    assert (tried.actor, tried.field, tried.new, tried.outcome) == (
        "bob",
        "preset",
        "set temperature 0.2",
        "refused: not an admin",
    )
    assert (changed.actor, changed.field, changed.old, changed.new, changed.outcome) == (
        "alice",
        "preset",
        "balanced",
        "balanced temperature=0.2",
        "changed",
    )


async def test_a_bad_value_changes_nothing() -> None:
    h = Harness()
    sink = await h.say("preset set top_k 500", command=True, admin=True)
    assert sink.failures == ["top_k must be a whole number in 1 to 100."]
    [tried] = await h.store.audit_log("chan", 10)
    assert (tried.new, tried.outcome) == (
        "set top_k 500",
        "refused: top_k must be a whole number in 1 to 100.",
    )
    await h.say("hi")
    assert h.llm.requests[-1].options["top_k"] == 40


async def test_system_prompt_and_fewshot_reach_the_model_in_order() -> None:
    h = Harness()
    await h.say("system set Eres un clasificador.", command=True, admin=True)
    await h.say("fewshot use sentiment", command=True, admin=True)
    await h.say('Texto: "El servicio es excelente"')
    roles = [(m.role, m.content[:12]) for m in h.llm.requests[-1].messages]
    assert roles[0] == ("system", "Eres un clas")
    assert [r for r, _ in roles] == ["system", "user", "assistant", "user", "assistant", "user"]


async def test_reset_forgets_the_conversation() -> None:
    h = Harness()
    await h.say("remember me")
    sink = await h.say("reset", command=True)
    assert "forgotten" in sink.finished[0]
    assert await h.history() == []


async def test_max_tokens_cannot_exceed_half_the_context() -> None:
    h = Harness(num_ctx=4096)
    sink = await h.say("preset set max_tokens 4000", command=True, admin=True)
    assert sink.failures == [
        "max_tokens must be in 1 to 2048 (half of this deployment's context of 4096 tokens)."
    ]


async def test_commands_count_towards_the_rate_limit_and_a_flood_is_not_audited() -> None:
    h = Harness(rate_per_minute=3)
    await h.say("hi")
    for _ in range(2):
        await h.say("preset set temperature 1.5", command=True, author="alice")
    for _ in range(5):
        await h.say("preset set temperature 1.5", command=True)
    await h.say("help", command=True)

    assert h.admissions[3:] == [Admission.LIMITED] + [Admission.LIMITED_QUIETLY] * 5
    assert len(await h.store.audit_log("chan", 100)) == 2, "refused on arrival: not audited"


async def test_audit_shows_the_channels_changes_to_admins_only() -> None:
    h = Harness()
    await h.say("preset use precise", command=True, admin=True)
    await h.say("system set You are terse.", command=True, author="bob")

    refused = await h.say("audit", command=True, author="bob")
    shown = (await h.say("audit", command=True, admin=True)).finished[0]

    assert refused.failures == ["Sorry, only admins of this chat can see its audit log."]
    first, changed, tried, asked = shown.splitlines()
    assert first == "Recent settings changes in this chat (newest last):"
    assert changed.endswith(" UTC alice preset: balanced → precise")
    assert tried.endswith(" UTC bob system_prompt: refused (not an admin): set You are terse.")
    assert asked.endswith(" UTC bob audit: refused (not an admin): show")


async def affinities(h: Harness, *places: tuple[str, str]) -> list[str]:
    """The affinity each request carried, for one message in each (conversation, channel)."""
    for conversation, channel in places:
        await h.say("hi", conversation=conversation, channel=channel)
    return [request.affinity for request in h.llm.requests]


async def test_every_turn_of_a_conversation_asks_for_the_same_model_host() -> None:
    places = [("tg:1", "tg:1"), ("tg:2", "tg:2"), ("tg:1", "tg:1"), ("tg:2:7", "tg:2")]
    first, second, again, thread = await affinities(Harness(), *places)
    assert first == again, "the next turn goes where the conversation's prompt is cached"
    assert len({first, second, thread}) == 3
    assert all(len(a) == 16 and int(a, 16) >= 0 for a in (first, second, thread))
    assert "tg" not in first, "the proxy sees a digest, not the platform's ids"


async def test_channel_affinity_keeps_a_channels_threads_together_and_off_sends_none() -> None:
    places = [("sl:T:C:1", "sl:T:C"), ("sl:T:C:2", "sl:T:C"), ("sl:T:D:1", "sl:T:D")]
    one, two, other = await affinities(Harness(affinity=Affinity.CHANNEL), *places)
    assert one == two != other
    assert await affinities(Harness(affinity=Affinity.OFF), *places) == ["", "", ""]
