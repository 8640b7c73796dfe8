"""Hostile or broken input on Telegram: model text kept whole, unreadable updates set aside."""

from __future__ import annotations

from tests.fakes.ollama import FakeOllama, Reply
from tests.fakes.telegram_api import ALICE, FakeTelegram, message, private_chat
from tests.telegram.conftest import StartBot

ALICE_CHAT = private_chat(ALICE)


async def test_html_in_the_reply_reaches_the_user_as_text(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(
        Reply(text="Use the <div> tag, or **<section>**:\n\n<details>\nhidden\n</details>")
    )
    await start_bot()
    fake_telegram.push(message(ALICE_CHAT, ALICE, "which tag?"))

    expected = "Use the <div> tag, or <section>:\n\n<details>\nhidden\n</details>"
    await fake_telegram.wait_until(
        lambda: [m["text"] for m in fake_telegram.sent(ALICE["id"])] == [expected]
    )
    [shown] = fake_telegram.sent(ALICE["id"])
    assert [e["type"] for e in shown["entities"]] == ["bold"]
    assert fake_telegram.errors(400) == []
