"""Private chats: typing, a reply streamed into one message, safe formatting, long replies."""

from __future__ import annotations

import asyncio

from tests.fakes.ollama import FakeOllama, Reply
from tests.fakes.telegram_api import ALICE, FakeTelegram, message, private_chat, utf16_len
from tests.telegram.conftest import StartBot

ALICE_CHAT = private_chat(ALICE)


async def test_reply_streams_as_a_native_draft_then_arrives_as_one_formatted_message(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    first_byte, rest = asyncio.Event(), asyncio.Event()
    reply = "Hello there, this is a **streamed** reply with `code`."
    fake_ollama.script(Reply(text=reply, first_byte_gate=first_byte, hold_gate=rest, hold_after=2))
    await start_bot()
    fake_telegram.push(message(ALICE_CHAT, ALICE, "what is a KV cache?"))

    await fake_telegram.wait_until(lambda: bool(fake_telegram.calls_to("sendChatAction")))
    assert fake_telegram.sent(ALICE["id"]) == [] and fake_telegram.drafted == []  # typing only
    first_byte.set()
    await fake_telegram.wait_until(lambda: bool(fake_telegram.drafted))
    partial = fake_telegram.drafted[0]["text"]
    assert partial.startswith("Hello") and partial.endswith("…")
    assert fake_telegram.sent(ALICE["id"]) == [], "the reply so far is a draft, not a message"
    rest.set()

    final = "Hello there, this is a streamed reply with code."
    await fake_telegram.wait_until(lambda: bool(fake_telegram.sent(ALICE["id"])))
    [shown] = fake_telegram.sent(ALICE["id"])
    assert shown["text"] == final
    assert {e["type"] for e in shown["entities"]} == {"bold", "code"}
    assert len(fake_telegram.calls_to("sendMessage")) == 1 and not fake_telegram.calls_to(
        "editMessageText"
    )
    assert len({d["draft_id"] for d in fake_telegram.drafted}) == 1, "one animated draft"
    assert fake_telegram.drafts == {}, "the message replaced the draft"
    assert fake_telegram.errors(400) == []
    request = fake_ollama.chat_requests[0]
    assert request["messages"][-1] == {"role": "user", "content": "what is a KV cache?"}


async def test_markdown_full_of_reserved_characters_is_delivered_without_400(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    markdown = (
        "# Results (v1.2) - *draft*!\n\n"
        "Use `a_b*c` and __init__ [docs](https://example.com/a_(b)) 1+1=2 {x} | y > z.\n\n"
        "- item_one! #tag ~strike~ ||spoiler|| \\ backslash\n"
        "1. first. 2) second\n\n"
        "```python\nprint('*_[]()~`>#+-=|{}.!')\n```\n"
        "Unclosed **bold and `tick and _under\n"
    )
    fake_ollama.script(Reply(text=markdown))
    await start_bot()
    fake_telegram.push(message(ALICE_CHAT, ALICE, "format test"))

    await fake_telegram.wait_until(lambda: _final(fake_telegram, "Unclosed"))
    shown = fake_telegram.sent(ALICE["id"])
    assert fake_telegram.errors(400) == []
    text = shown[-1]["text"]
    assert "print('*_[]()~`>#+-=|{}.!')" in text and "1+1=2" in text
    assert any(e["type"] == "pre" for e in shown[-1].get("entities", []))


async def test_ten_thousand_characters_arrive_split_in_order(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    paragraphs = [f"Paragraph {n:03d}. " + "word " * 50 for n in range(30)]
    code = "```python\n" + "".join(f"line_{n} = {n}\n" for n in range(400)) + "```"
    text = "\n\n".join(paragraphs[:15]) + "\n\n" + code + "\n\n" + "\n\n".join(paragraphs[15:])
    assert len(text) > 10_000
    fake_ollama.script(Reply(text=text, chunks=40))
    await start_bot()
    fake_telegram.push(message(ALICE_CHAT, ALICE, "write a lot"))

    await fake_telegram.wait_until(lambda: _final(fake_telegram, "Paragraph 029."))
    parts = [m["text"] for m in fake_telegram.sent(ALICE["id"])]
    assert len(parts) >= 3
    assert all(utf16_len(p) <= 4096 for p in parts)
    assert fake_telegram.errors(400) == []
    joined = "\n".join(parts)
    positions = [joined.index(f"Paragraph {n:03d}.") for n in range(30)]
    assert positions == sorted(positions)  # every paragraph, in order
    assert all(f"line_{n} = {n}" in joined for n in range(400))
    for message_ in fake_telegram.sent(ALICE["id"]):
        for entity in message_.get("entities", []):
            assert entity["offset"] + entity["length"] <= utf16_len(message_["text"])
        if "line_" in message_["text"]:  # every part with code has its own code block
            assert any(e["type"] == "pre" for e in message_.get("entities", []))


async def test_sticker_gets_a_text_only_answer(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    await start_bot()
    fake_telegram.push(message(ALICE_CHAT, ALICE, None))

    await fake_telegram.wait_until(lambda: bool(fake_telegram.sent(ALICE["id"])))
    assert "text" in fake_telegram.sent(ALICE["id"])[0]["text"].lower()
    assert fake_ollama.chat_requests == []


async def test_edited_messages_and_other_bots_are_ignored(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    await start_bot()
    edited = message(ALICE_CHAT, ALICE, "changed my mind")["message"]
    fake_telegram.push({"edited_message": {**edited, "edit_date": edited["date"] + 5}})
    other_bot = {"id": 5550001, "is_bot": True, "first_name": "Other", "username": "other_bot"}
    fake_telegram.push(message(ALICE_CHAT, other_bot, "I am a bot"))
    fake_telegram.push(message(ALICE_CHAT, ALICE, "real question"))

    await fake_telegram.wait_until(lambda: _final(fake_telegram, "echo: real question"))
    assert [m["text"] for m in fake_telegram.sent(ALICE["id"])] == ["echo: real question"]
    assert len(fake_ollama.chat_requests) == 1


def _final(fake: FakeTelegram, needle: str) -> bool:
    return any(needle in m["text"] and not m["text"].endswith("…") for m in fake.sent(ALICE["id"]))
