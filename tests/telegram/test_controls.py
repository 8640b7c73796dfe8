"""Team controls in a Telegram chat: /stop frees the model at once, /retry and /undo rewrite
the history, quotas refuse with the reset time, usage tells each their share."""

from __future__ import annotations

import asyncio

from tests.fakes.ollama import FakeOllama, Reply
from tests.fakes.telegram_api import ALICE, BOB, FakeTelegram, message, private_chat, supergroup
from tests.telegram.conftest import StartBot

ALICE_CHAT = private_chat(ALICE)


def texts(fake_telegram: FakeTelegram, chat_id: int) -> list[str]:
    return [m["text"] for m in fake_telegram.sent(chat_id)]


async def test_stop_closes_the_model_stream_within_a_second_and_keeps_the_text(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    never = asyncio.Event()
    story = "Once upon a time there was a very long story that never ended"
    fake_ollama.script(Reply(text=story, chunks=12, hold_gate=never, hold_after=3))
    await start_bot()
    fake_telegram.push(message(ALICE_CHAT, ALICE, "tell me a story"))
    await fake_ollama.wait_for_chat(1)
    fake_telegram.push(message(ALICE_CHAT, ALICE, "/stop"))

    async with asyncio.timeout(1.5):  # /stop arrives by polling; Ollama sees the close < 1 s
        await fake_ollama.disconnected.wait()
    await fake_telegram.wait_until(
        lambda: any(t.endswith("(stopped)") for t in texts(fake_telegram, ALICE["id"]))
    )
    shown = texts(fake_telegram, ALICE["id"])
    assert "Stopping the reply." in shown
    [stopped] = [t for t in shown if t.endswith("(stopped)")]
    assert stopped.startswith("Once upon")

    fake_telegram.push(message(ALICE_CHAT, ALICE, "and now?"))
    await fake_telegram.wait_until(lambda: "echo: and now?" in texts(fake_telegram, ALICE["id"]))
    history = [m["content"] for m in fake_ollama.chat_requests[-1]["messages"][1:]]
    assert history[:2] == ["tell me a story", stopped.removesuffix("\n\n(stopped)")]


async def test_retry_replaces_the_answer_and_undo_forgets_it(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(text="first try"), Reply(text="second try"))
    await start_bot()
    fake_telegram.push(message(ALICE_CHAT, ALICE, "name a colour"))
    fake_telegram.push(message(ALICE_CHAT, ALICE, "/retry"))
    fake_telegram.push(message(ALICE_CHAT, ALICE, "what did I ask?"))
    await fake_telegram.wait_until(lambda: len(texts(fake_telegram, ALICE["id"])) == 3)
    history = [m["content"] for m in fake_ollama.chat_requests[-1]["messages"][1:]]
    assert history == ["name a colour", "second try", "what did I ask?"]

    fake_telegram.push(message(ALICE_CHAT, ALICE, "/undo"))
    fake_telegram.push(message(ALICE_CHAT, ALICE, "/undo"))
    fake_telegram.push(message(ALICE_CHAT, ALICE, "hello"))
    await fake_telegram.wait_until(lambda: len(texts(fake_telegram, ALICE["id"])) == 6)
    assert (
        texts(fake_telegram, ALICE["id"])[3:5] == ["Forgot the last question and its answer."] * 2
    )
    assert [m["content"] for m in fake_ollama.chat_requests[-1]["messages"][1:]] == ["hello"]


async def test_a_quota_refuses_with_the_reset_time_and_usage_shows_the_time_spent(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    lab = supergroup()
    await start_bot(admin_ids=(ALICE["id"],))
    fake_telegram.push(message(lab, ALICE, f"/quota user {BOB['id']} 0.1s/day"))
    for n in range(3):  # the fake Ollama reports about 0.07 s of GPU time per reply
        fake_telegram.push(message(lab, BOB, f"/ask question {n}"))
    fake_telegram.push(message(lab, BOB, "/usage"))
    await fake_telegram.wait_until(lambda: len(texts(fake_telegram, lab["id"])) == 5)

    said = texts(fake_telegram, lab["id"])
    assert said[0] == f"{BOB['id']} may now use 0.1 s a day here."
    assert said[3].startswith("You have used your 0.1 s of model time for today in this chat;")
    assert "resets at 00:00 UTC" in said[3]
    assert said[4].startswith("Your model time today in this chat: ") and "of 0.1 s" in said[4]
    assert len(fake_ollama.chat_requests) == 2, "over quota, the model is not asked"
