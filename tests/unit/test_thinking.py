"""Thinking models in the chat service: the reasoning apart from the answer, shown only when
the channel says so, never in the history; the ``think`` command; the console's rendering."""

from __future__ import annotations

import io
import json
from dataclasses import asdict

from adapters.console import ConsoleSink
from adapters.redis_store import decode_reply, decode_settings
from core.chat import REASONING_KEPT_CHARS
from core.commands import help_text
from core.errors import NotAuthorized
from core.generation import THINKING_NOTICE, THOUGHT_TOO_LONG
from core.models import DoneReason, IncomingMessage, StoredReply, StreamEvent
from tests.unit.test_chat_service import Harness, RecordingSink

THOUGHT = [StreamEvent(thinking="Two plus two, "), StreamEvent(thinking="count on.")]


async def test_reasoning_is_hidden_by_default_and_the_user_sees_the_model_thinking() -> None:
    h = Harness()
    h.llm.script = [[*THOUGHT, "It is ", "4."]]

    sink = await h.say("what is 2+2?")

    assert sink.statuses == [THINKING_NOTICE, THINKING_NOTICE], "while only reasoning came"
    assert sink.updates == ["It is ", "It is 4."]
    assert (sink.finished, sink.reasonings) == (["It is 4."], [""])
    assert await h.history() == [("user", "what is 2+2?"), ("assistant", "It is 4.")]


async def test_think_show_delivers_the_reasoning_with_the_answer_and_not_into_history() -> None:
    h = Harness()
    changed = await h.say("think show", admin=True, command=True)
    h.llm.script = [[*THOUGHT, "It is 4."]]

    sink = await h.say("what is 2+2?")
    h.llm.script = [["Six."]]
    await h.say("and 3+3?")

    assert "shown" in changed.finished[0]
    assert (sink.finished, sink.reasonings) == (["It is 4."], ["Two plus two, count on."])
    assert ("assistant", "It is 4.") in await h.history()
    sent = [m.content for m in h.llm.requests[-1].messages]
    assert not any("count on" in content for content in sent), "the model never sees it again"
    [audit] = await h.store.audit_log("chan", 5)
    assert (audit.field, audit.old, audit.new) == ("think", "hide", "show")


async def test_the_reasoning_survives_a_crash_between_answer_and_delivery() -> None:
    h = Harness()
    await h.say("think show", admin=True, command=True)
    h.llm.script = [[*THOUGHT, "It is 4."]]
    message = IncomingMessage("test", "m1", "conv", "chan", "alice", "Alice", "2+2?")
    await h.store.enqueue(message)
    [entry] = await h.store.take("test", "worker", 10)
    await h.service.handle(entry, RecordingSink())  # answered and stored; then the crash

    successor = RecordingSink()
    await h.answer(entry, successor)

    assert successor.reasonings == ["Two plus two, count on."]


async def test_very_long_reasoning_is_kept_short_for_delivery() -> None:
    h = Harness()
    await h.say("think show", admin=True, command=True)
    h.llm.script = [[StreamEvent(thinking="hmm " * 5000), "Yes."]]

    sink = await h.say("well?")

    assert len(sink.reasonings[0]) == REASONING_KEPT_CHARS and sink.reasonings[0].endswith("…")


async def test_a_model_that_only_thought_until_its_limit_says_so() -> None:
    h = Harness()
    h.llm.script = [THOUGHT]
    h.llm.done_reason = DoneReason.LENGTH

    sink = await h.say("prove it")

    assert sink.failures == [THOUGHT_TOO_LONG] and sink.finished == []
    assert await h.history() == []


async def test_think_alone_shows_the_setting_and_only_admins_change_it() -> None:
    h = Harness()

    assert "hidden" in (await h.say("think", command=True)).finished[0]
    assert (await h.say("think show", command=True)).failures == [NotAuthorized.notice]
    assert "hidden" in (await h.say("/think", command=True)).finished[0]
    await h.say("think show", admin=True, command=True)
    assert "shown" in (await h.say("think", command=True)).finished[0]
    await h.say("think hide", admin=True, command=True)
    assert "hidden" in (await h.say("think", command=True)).finished[0]
    wrong = await h.say("think loudly", admin=True, command=True)
    assert wrong.failures == ["Usage: think | think show | think hide"]
    assert {"/think", "/think show", "/think hide"} <= set(help_text("/").splitlines())


def test_stored_replies_and_settings_from_before_thinking_still_read() -> None:
    old_reply = json.dumps({"text": "hi", "failed": False, "deliver_by": 5.0})
    new_reply = json.dumps(asdict(StoredReply("hi", False, 5.0, "because")))
    old_settings = json.dumps({"preset": "precise", "overrides": {}})

    assert decode_reply(old_reply) == StoredReply("hi", False, 5.0)
    assert decode_reply(new_reply).reasoning == "because"
    assert decode_settings(old_settings).think == "hide"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_the_console_prints_the_reasoning_after_the_answer_dimmed_on_a_terminal() -> None:
    piped, terminal = io.StringIO(), Terminal()
    for out in (piped, terminal):
        sink = ConsoleSink(out, None)
        await sink.begin()
        await sink.update("It is 4.")
        await sink.finish("It is 4.", reasoning="count on")

    assert piped.getvalue() == "ollabot> It is 4.\n💭 count on\n"
    assert terminal.getvalue() == "ollabot> It is 4.\n\x1b[2m💭 count on\x1b[0m\n"
