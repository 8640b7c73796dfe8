"""Pure parts of the Telegram adapter: reading real updates, splitting, group pacing, the
bot-wide send window."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from telegram import Bot, Update

from adapters.telegram.buttons import DATA_LIMIT, Press
from adapters.telegram.inbound import BotIdentity, strip_mention, translate
from adapters.telegram.pacing import WINDOW_GUARD_S, ChatPacer, Limits, SendWindow
from adapters.telegram.render import render, split_ranges
from core.models import IncomingMessage
from tests.fakes.telegram_api import TOKEN, utf16_len

ME = BotIdentity(7012345678, "ollabot_bot")


def wire_update(name: str) -> Update:
    """One of the reference updates in ``tests/fakes/wire/telegram``."""
    folder = Path(__file__).resolve().parents[1] / "fakes" / "wire" / "telegram"
    data: dict[str, Any] = json.loads((folder / name).read_text(encoding="utf-8"))
    return Update.de_json(data, Bot(TOKEN))


def test_private_text_is_one_conversation_per_chat() -> None:
    incoming = translate(wire_update("update_private_text.json"), ME)
    assert incoming is not None
    assert (incoming.conversation, incoming.channel, incoming.in_group) == (
        "tg:123456789",
        "tg:123456789",
        False,
    )
    assert incoming.text == "Hola, ¿qué es un KV cache?"
    assert incoming.message_id == "815300101"  # the update_id: the dedupe key


def test_group_mention_is_stripped_and_the_author_named() -> None:
    incoming = translate(wire_update("update_group_mention.json"), ME)
    assert incoming is not None and incoming.in_group
    assert incoming.text == "🇪🇸 ¿cómo se dice «KV cache» en español? #llm"
    assert incoming.author_name == "Bob"
    assert incoming.reply_to["chat_id"] == "-1001987654321" and incoming.reply_to["message_id"]


def test_mention_is_removed_anywhere_keeping_lines() -> None:
    text = "Hey @OllaBot_Bot, what is  top_p?\n@ollabot_bot2 is another bot"
    assert strip_mention(text, "ollabot_bot") == (
        "Hey , what is top_p?\n@ollabot_bot2 is another bot"
    )


def test_forum_topic_message_is_its_own_conversation() -> None:
    incoming = translate(wire_update("update_forum_topic.json"), ME)
    assert incoming is not None
    assert incoming.conversation == "tg:-1002233445566:77"
    assert incoming.channel == "tg:-1002233445566"
    assert incoming.reply_to["thread_id"] == "77"


def test_forum_topic_without_mention_is_not_a_reply_to_the_bot() -> None:
    update = wire_update("update_forum_topic.json").to_dict()
    update["message"]["text"] = "just talking in the topic"
    update["message"].pop("entities")
    assert translate(Update.de_json(update, Bot(TOKEN)), ME) is None


def test_reply_to_the_bot_in_a_basic_group_is_answered() -> None:
    incoming = translate(wire_update("update_group_reply_to_bot.json"), ME)
    assert incoming is not None and incoming.conversation == "tg:-4123456789"


def test_command_for_us_becomes_the_grammar_text() -> None:
    incoming = translate(wire_update("update_command.json"), ME)
    assert incoming is not None and incoming.is_command
    assert incoming.text == "preset set temperature 0.2"


@pytest.mark.parametrize("name", ["update_edited_message.json", "update_channel_post.json"])
def test_edits_and_channel_posts_are_ignored(name: str) -> None:
    assert translate(wire_update(name), ME) is None


def test_sticker_in_private_chat_is_passed_on_empty() -> None:
    incoming = translate(wire_update("update_sticker.json"), ME)
    assert incoming is not None and incoming.text == ""


def test_split_prefers_paragraphs_then_lines_then_words() -> None:
    def split(text: str, limit: int) -> list[str]:
        return [text[start:end] for start, end in split_ranges(text, limit)]

    words = "c" * 10 + " " + "d" * 10
    lines = "b" * 20 + "\n" + words
    assert split("a" * 30 + "\n\n" + lines, 60) == ["a" * 30, lines]
    assert split(lines, 35) == ["b" * 20, words]
    assert split(words, 15) == ["c" * 10, "d" * 10]
    assert split("e" * 25, 10) == ["e" * 10, "e" * 10, "e" * 5]


def test_split_counts_utf16_units() -> None:
    text = "😀" * 3000  # 6,000 UTF-16 units, no break anywhere
    parts = render(text)
    assert all(utf16_len(part.text) <= 4096 for part in parts)
    assert "".join(part.text for part in parts) == text


def test_code_block_cut_in_two_is_closed_and_reopened() -> None:
    code = "```python\n" + "".join(f"x_{n} = {n}\n" for n in range(800)) + "```"
    parts = render(code)
    assert len(parts) >= 2
    for part in parts:
        assert [e["type"] for e in part.entities] == ["pre"]
        assert part.entities[0]["length"] == utf16_len(part.text)


def test_group_edits_slow_down_with_more_replies_streaming() -> None:
    pacer = ChatPacer(group=True, limits=Limits(group_per_minute=20, group_reserve=4))
    now = 1_000.0
    pacer.streaming(1, now)
    assert pacer.edit_allowed(now)
    pacer.last_sent = now
    assert not pacer.edit_allowed(now + 2.9) and pacer.edit_allowed(now + 3.0)
    pacer.streaming(2, now)  # three conversations of the group stream at once
    pacer.streaming(3, now)
    assert not pacer.edit_allowed(now + 8.9) and pacer.edit_allowed(now + 9.0)
    pacer.done(2)
    assert pacer.edit_allowed(now + 6.0)


def test_an_abandoned_reply_stops_slowing_its_group() -> None:
    pacer = ChatPacer(group=True, limits=Limits(group_per_minute=20))
    pacer.streaming(1, 1_000.0)  # cancelled mid-way: neither finish nor fail comes
    pacer.streaming(2, 1_000.0)
    assert pacer.streams(1_030.0) == 2
    pacer.streaming(2, 1_050.0)
    assert pacer.streams(1_070.0) == 1


def test_group_keeps_room_for_final_texts() -> None:
    pacer = ChatPacer(group=True, limits=Limits(group_per_minute=20, group_reserve=4))
    for _ in range(16):
        pacer.sent()
    pacer.last_sent -= 60.0 / 20  # spacing is not what stops it
    assert not pacer.edit_allowed(pacer.last_sent + 3.0)


def test_a_429_blocks_only_its_chat() -> None:
    blocked = ChatPacer(group=False, limits=Limits())
    other = ChatPacer(group=False, limits=Limits())
    blocked.block(30)
    assert not blocked.edit_allowed(blocked.blocked_until - 1)
    assert other.edit_allowed(blocked.blocked_until - 1)


def kb_add_update(**message: Any) -> Update:
    """``/kb add`` in the reference supergroup, with ``message`` fields laid over it."""
    data: dict[str, Any] = json.loads(
        (
            Path(__file__).resolve().parents[1]
            / "fakes"
            / "wire"
            / "telegram"
            / "update_command.json"
        ).read_text(encoding="utf-8")
    )
    data["message"].update(
        text="/kb add", entities=[{"offset": 0, "length": 3, "type": "bot_command"}]
    )
    data["message"].update(message)
    return Update.de_json(data, Bot(TOKEN))


def test_kb_add_replying_to_a_message_carries_its_text_and_link() -> None:
    replied = {
        "message_id": 1490,
        "from": {"id": 55, "is_bot": False, "first_name": "Marta"},
        "chat": {"id": -1001987654321, "title": "LLM Lab", "type": "supergroup"},
        "date": 1767262000,
        "text": "The VPN needs the new certificate from Monday.",
    }
    incoming = translate(kb_add_update(reply_to_message=replied), ME)

    assert incoming is not None and incoming.is_command and incoming.text == "kb add"
    assert incoming.replied_text == "The VPN needs the new certificate from Monday."
    assert incoming.replied_link == "https://t.me/c/1987654321/1490"


def test_a_command_in_a_files_caption_is_read() -> None:
    update = kb_add_update(
        text=None,
        entities=None,
        caption="/kb add",
        caption_entities=[{"offset": 0, "length": 3, "type": "bot_command"}],
        document={"file_id": "F1", "file_unique_id": "U1", "file_name": "manual.pdf"},
    )
    incoming = translate(update, ME)

    assert incoming is not None and incoming.is_command and incoming.text == "kb add"
    assert incoming.replied_text == ""


def test_button_data_fits_telegrams_64_bytes_and_reads_back() -> None:
    longest_retry = Press("retry", str(2**53), f"tg:-100{2**52}:{2**31}")
    tag = IncomingMessage("telegram", str(2**53), "", "", "", "", "").reply_tag
    longest_stop = Press("stop", str(2**53), f"tg:-100{2**52}:{2**31}", tag)
    for longest in (longest_retry, longest_stop):
        assert len(longest.data.encode()) <= DATA_LIMIT
        assert Press.read(longest.data) == longest
    assert Press.read("stop 1 tg:5") == Press("stop", "1", "tg:5", ""), "drawn before tags"
    for foreign in (None, "", "like 1 tg:5", "stop alice tg:5", "stop 1"):
        assert Press.read(foreign) is None


def most_in_any_window(places: list[float], window_s: float) -> int:
    return max(sum(p <= q < p + window_s for q in places) for p in places)


def test_required_sends_never_put_more_than_the_limit_in_a_second() -> None:
    window, sends = SendWindow.for_rate(30), []
    places = [window.place(sends, now=n / 100, required=True) for n in range(200)]  # 100/s
    assert all(p is not None for p in places)
    taken = [p for p in places if p is not None]
    assert taken[:30] == [n / 100 for n in range(30)], "an idle bot sends at once"
    assert most_in_any_window(taken, 1.0 + WINDOW_GUARD_S) == 30
    gaps = [b - a for a, b in itertools.pairwise(taken[30:])]
    assert min(gaps) >= (1.0 + WINDOW_GUARD_S) / 30 - 1e-9, "sends that waited go evenly"


def test_optional_sends_leave_a_third_of_the_window_to_final_texts() -> None:
    window, sends = SendWindow.for_rate(30), []
    allowed = [window.place(sends, now=0.0, required=False) is not None for _ in range(30)]
    assert allowed.count(True) == 20
    assert window.place(sends, now=0.0, required=True) == 0.0, "final texts still go at once"
    later = 1.0 + WINDOW_GUARD_S + 0.01
    assert window.place(sends, now=later, required=False) == later, "room again a second on"


def test_a_rate_under_one_a_second_spaces_single_sends() -> None:
    window, sends = SendWindow.for_rate(0.5), []
    assert window.place(sends, now=0.0, required=True) == 0.0
    assert window.place(sends, now=0.0, required=True) == 2.0 + WINDOW_GUARD_S
