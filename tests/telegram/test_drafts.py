"""Native streaming: private chats show the reply so far as a draft, then one message; groups
edit one message; where Telegram refuses drafts, private chats edit too."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from telegram.error import BadRequest, InvalidToken

from adapters.telegram.drafts import DraftSupport
from tests.fakes.ollama import FakeOllama, Reply
from tests.fakes.telegram_api import ALICE, BOB, FakeTelegram, message, private_chat, supergroup
from tests.telegram.conftest import TEST_LIMITS, StartBot

LAB = supergroup()
ALICE_CHAT = private_chat(ALICE)
TEXT = " ".join(f"word{n}" for n in range(40))


def labels(shown: dict[str, Any]) -> list[str]:
    rows = shown.get("reply_markup", {}).get("inline_keyboard", [])
    return [b["text"] for row in rows for b in row]


async def test_a_group_streams_by_editing_one_message_that_offers_stop_then_retry(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    rest = asyncio.Event()
    fake_ollama.script(Reply(text=TEXT, chunks=8, hold_gate=rest, hold_after=3))
    await start_bot()
    fake_telegram.push(message(LAB, BOB, "@ollabot_bot count"))
    await fake_telegram.wait_until(lambda: bool(fake_telegram.sent(LAB["id"])))
    [streaming] = fake_telegram.sent(LAB["id"])
    assert streaming["text"].endswith("…") and labels(streaming) == ["Stop"]
    rest.set()

    await fake_telegram.wait_until(lambda: fake_telegram.sent(LAB["id"])[0]["text"] == TEXT)
    [final] = fake_telegram.sent(LAB["id"])
    assert labels(final) == ["Retry"]
    assert len(fake_telegram.calls_to("sendMessage")) == 1
    assert fake_telegram.calls_to("editMessageText", 200)
    assert fake_telegram.calls_to("sendMessageDraft") == [], "drafts are for private chats"


async def test_a_private_chat_streams_by_edits_where_telegram_refuses_drafts(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    fake_telegram.drafts_enabled = False  # a Bot API server without sendMessageDraft: 404
    rest = asyncio.Event()
    fake_ollama.script(Reply(text=TEXT, chunks=8, hold_gate=rest, hold_after=3))
    await start_bot()
    fake_telegram.push(message(ALICE_CHAT, ALICE, "count"))
    await fake_telegram.wait_until(lambda: bool(fake_telegram.sent(ALICE["id"])))
    [streaming] = fake_telegram.sent(ALICE["id"])
    assert streaming["text"].endswith("…") and labels(streaming) == ["Stop"]
    rest.set()
    await fake_telegram.wait_until(lambda: fake_telegram.sent(ALICE["id"])[0]["text"] == TEXT)

    fake_telegram.push(message(ALICE_CHAT, ALICE, "again"))
    await fake_telegram.wait_until(lambda: len(fake_telegram.sent(ALICE["id"])) == 2)
    assert [m["text"] for m in fake_telegram.sent(ALICE["id"])] == [TEXT, "echo: again"]
    assert len(fake_telegram.calls_to("sendMessageDraft")) == 1, "asked once, then edits"


async def test_a_stopped_private_reply_arrives_as_one_message_with_retry(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(text=TEXT, chunks=8, hold_gate=asyncio.Event(), hold_after=3))
    await start_bot()
    fake_telegram.push(message(ALICE_CHAT, ALICE, "count"))
    await fake_telegram.wait_until(lambda: bool(fake_telegram.drafted))
    fake_telegram.push(message(ALICE_CHAT, ALICE, "/stop"))

    await fake_telegram.wait_until(
        lambda: any(m["text"].endswith("(stopped)") for m in fake_telegram.sent(ALICE["id"]))
    )
    [stopped] = [m for m in fake_telegram.sent(ALICE["id"]) if m["text"].endswith("(stopped)")]
    assert stopped["text"].startswith("word0") and labels(stopped) == ["Retry"]
    assert not fake_telegram.calls_to("editMessageText"), "the draft became one message"


def test_drafts_refused_in_one_chat_stay_on_elsewhere_but_an_unknown_method_ends_them() -> None:
    drafts = DraftSupport()
    drafts.refused(1, BadRequest("Bad Request: TEXTDRAFT_PEER_INVALID"))
    assert not drafts.allowed(1) and drafts.allowed(2)
    drafts.refused(2, InvalidToken("Not Found"))
    assert not drafts.allowed(3)
    assert not DraftSupport(enabled=False).allowed(4)


async def test_a_draft_is_kept_from_fading_while_the_model_is_silent(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(text=TEXT, chunks=8, hold_gate=asyncio.Event(), hold_after=1))
    await start_bot(limits=replace(TEST_LIMITS, draft_keep_s=0.3))
    fake_telegram.push(message(ALICE_CHAT, ALICE, "count"))
    await fake_telegram.wait_until(lambda: bool(fake_telegram.drafted))
    typing = len(fake_telegram.calls_to("sendChatAction"))

    await fake_telegram.wait_until(lambda: len(fake_telegram.drafted) >= 3)
    first, *again = fake_telegram.drafted
    assert all(d == first for d in again), "the same draft, sent again before it fades"
    assert len(fake_telegram.calls_to("sendChatAction")) == typing, "no typing over a draft"
