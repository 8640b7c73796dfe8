"""Documents on Telegram: a file sent with the caption /kb add, or /kb add replying to a
message, joins the chat's knowledge; answers draw on it and name their sources."""

from __future__ import annotations

from tests.fakes.ollama import FakeOllama
from tests.fakes.telegram_api import (
    ALICE,
    FakeTelegram,
    document,
    media_message,
    message,
    private_chat,
    supergroup,
)
from tests.telegram.conftest import StartBot

ALICE_CHAT = private_chat(ALICE)
HANDBOOK = b"""# Parking

Visitors park in the blue zone behind the building.

# Coffee

The coffee machine on the third floor is descaled every Friday.
"""


def texts(fake: FakeTelegram, chat_id: int) -> list[str]:
    return [m["text"] for m in fake.sent(chat_id)]


async def test_a_file_with_the_caption_kb_add_is_fetched_read_and_cited(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    await start_bot(documents=True)
    file_id = fake_telegram.add_file(HANDBOOK, "documents", "md")
    sent = document(file_id, len(HANDBOOK), "handbook.md", "text/markdown")
    fake_telegram.push(media_message(ALICE_CHAT, ALICE, "/kb add", document=sent))

    await fake_telegram.wait_until(
        lambda: any(
            t.startswith("Added handbook.md as ") for t in texts(fake_telegram, ALICE["id"])
        )
    )
    fake_telegram.push(message(ALICE_CHAT, ALICE, "When is the coffee machine descaled?"))
    await fake_telegram.wait_until(
        lambda: any("Sources: [1] handbook.md #" in t for t in texts(fake_telegram, ALICE["id"]))
    )

    prompt = fake_ollama.chat_requests[-1]["messages"]
    assert "descaled every Friday" in prompt[-2]["content"]
    assert prompt[-1]["content"] == "When is the coffee machine descaled?"


async def test_kb_add_replying_to_a_group_message_cites_its_link(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    group = supergroup()
    await start_bot(documents=True)
    note = message(group, ALICE, "The guest wifi password is on the fridge door.")
    link = f"https://t.me/c/1987654321/{note['message']['message_id']}"
    fake_telegram.push(message(group, ALICE, "/kb add", reply_to_message=note["message"]))

    await fake_telegram.wait_until(
        lambda: any(t.startswith(f"Added {link} as ") for t in texts(fake_telegram, group["id"]))
    )
    fake_telegram.push(message(group, ALICE, "@ollabot_bot where is the wifi password?"))

    await fake_telegram.wait_until(
        lambda: any(f"Sources: [1] {link} #1" in t for t in texts(fake_telegram, group["id"]))
    )
