"""Thinking models on Telegram: the reasoning is hidden unless an admin says ``/think show``,
then it opens the answer as an expandable quote; it never enters the history."""

from __future__ import annotations

import asyncio
from typing import Any

from adapters.telegram.render import TELEGRAM_LIMIT, Part, render, with_reasoning
from core.errors import NotAuthorized
from core.generation import THINKING_NOTICE
from tests.fakes.ollama import FakeOllama, Reply
from tests.fakes.telegram_api import ALICE, BOB, FakeTelegram, message, private_chat, utf16_len
from tests.telegram.conftest import StartBot

THINKER = "qwen3:8b"
ALICE_CHAT = private_chat(ALICE)
REASONING = "Two plus two: start at two, count on two more."


async def say(fake: FakeTelegram, user: dict[str, Any], text: str) -> str:
    """Send ``text`` in the user's private chat; the bot's next message as first shown."""
    chat_id = user["id"]
    seen = len(fake.sent(chat_id))
    fake.push(message(private_chat(user), user, text))
    await fake.wait_until(lambda: len(fake.sent(chat_id)) > seen)
    answer: str = fake.sent(chat_id)[seen]["text"]
    return answer


async def use_thinker(fake_telegram: FakeTelegram, fake_ollama: FakeOllama) -> None:
    fake_ollama.add_thinking_model(THINKER)
    assert "qwen3:8b" in await say(fake_telegram, ALICE, f"/model use {THINKER}")


def entity_text(text: str, entity: dict[str, Any]) -> str:
    """What an entity covers (its offset and length count UTF-16 units)."""
    units = text.encode("utf-16-le")
    start, end = 2 * entity["offset"], 2 * (entity["offset"] + entity["length"])
    return units[start:end].decode("utf-16-le")


def shown_thinking(fake: FakeTelegram) -> bool:
    writes = ("sendMessage", "editMessageText", "sendMessageDraft")  # a draft in private chats
    calls = [call for method in writes for call in fake.calls_to(method, 200)]
    return any(call.params.get("text") == THINKING_NOTICE for call in calls)


async def test_reasoning_is_hidden_by_default_and_stays_out_of_the_history(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    await start_bot()
    await say(fake_telegram, ALICE, "hello")  # the default model cannot think
    assert "think" not in fake_ollama.chat_requests[0]
    await use_thinker(fake_telegram, fake_ollama)
    typed = len(fake_telegram.calls_to("sendChatAction"))
    gate = asyncio.Event()
    fake_ollama.script(Reply(text="It is 4.", thinking=REASONING, first_byte_gate=gate))

    fake_telegram.push(message(ALICE_CHAT, ALICE, "what is 2+2?"))
    # typing twice: the chat's pacing lets a status through again (no sleep needed)
    await fake_telegram.wait_until(
        lambda: len(fake_telegram.calls_to("sendChatAction")) > typed + 1
    )
    gate.set()
    await fake_telegram.wait_until(
        lambda: fake_telegram.sent(ALICE["id"])[-1]["text"] == "It is 4."
    )

    assert shown_thinking(fake_telegram), "the user saw the model was thinking"
    assert (await fake_ollama.wait_for_chat(2))["think"] is True
    texts = [call.params.get("text") or "" for call in fake_telegram.calls]
    assert not any("count on" in text for text in texts), "no reasoning shown anywhere"
    await say(fake_telegram, ALICE, "and 3+3?")
    history = fake_ollama.chat_requests[-1]["messages"]
    assert {"role": "assistant", "content": "It is 4."} in history
    assert not any("count on" in m["content"] for m in history)


async def test_think_show_folds_the_reasoning_atop_the_answer(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    bot = await start_bot()
    await use_thinker(fake_telegram, fake_ollama)
    assert "hidden" in await say(fake_telegram, ALICE, "/think")
    assert "shown" in await say(fake_telegram, ALICE, "/think show")
    assert "shown" in await say(fake_telegram, ALICE, "/think")
    fake_ollama.script(Reply(text="It is **4**.", thinking=REASONING))

    await say(fake_telegram, ALICE, "what is 2+2?")
    await fake_telegram.wait_until(
        lambda: fake_telegram.sent(ALICE["id"])[-1]["text"].endswith("4.")
    )

    final = fake_telegram.sent(ALICE["id"])[-1]
    quote = f"💭 {REASONING}"
    assert final["text"] == f"{quote}\nIt is 4."
    folded, bold = final["entities"]
    assert folded == {"type": "expandable_blockquote", "offset": 0, "length": utf16_len(quote)}
    assert entity_text(final["text"], folded) == quote
    assert (bold["type"], entity_text(final["text"], bold)) == ("bold", "4")
    assert fake_telegram.errors(400) == []
    await say(fake_telegram, ALICE, "thanks")
    history = fake_ollama.chat_requests[-1]["messages"]
    assert not any("count on" in m["content"] for m in history), "the answer alone is kept"
    changes = [(a.field, a.old, a.new) for a in await bot.store.audit_log(f"tg:{ALICE['id']}", 9)]
    assert ("think", "hide", "show") in changes


async def test_a_non_admin_cannot_show_the_reasoning(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    bot = await start_bot(admin_ids=(ALICE["id"],))

    assert await say(fake_telegram, BOB, "/think show") == NotAuthorized.notice
    assert "hidden" in await say(fake_telegram, BOB, "/think")
    [tried] = await bot.store.audit_log(f"tg:{BOB['id']}", 10)
    assert (tried.field, tried.new, tried.outcome) == ("think", "show", "refused: not an admin")


def test_the_answer_keeps_its_room_and_the_reasoning_is_cut_to_what_is_left() -> None:
    answer = "word " * 700  # one part of about 3,500 characters
    parts = with_reasoning(render(answer), "thought " * 1000)

    [first] = parts
    assert utf16_len(first.text) <= TELEGRAM_LIMIT
    assert first.text.endswith(render(answer)[0].text), "the answer whole"
    quote = first.entities[0]
    assert quote["type"] == "expandable_blockquote"
    assert entity_text(first.text, quote).startswith("💭 thought")
    assert entity_text(first.text, quote).endswith("…")


def test_no_room_left_means_no_quote_and_later_parts_are_untouched() -> None:
    parts = [Part("x" * TELEGRAM_LIMIT), Part("second")]

    assert with_reasoning(parts, "a thought") == parts
    assert with_reasoning([Part("answer")], "  ") == [Part("answer")]
