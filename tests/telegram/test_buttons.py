"""The inline Stop and Retry buttons: a press is the /stop or /retry of the one who asked (or
of an admin), answered on the button at once; anyone else's press changes nothing."""

from __future__ import annotations

import asyncio
import copy
from dataclasses import replace
from typing import Any

from adapters.i18n import Catalogues
from tests.fakes.ollama import FakeOllama, Reply
from tests.fakes.telegram_api import (
    ALICE,
    BOB,
    FakeTelegram,
    message,
    private_chat,
    supergroup,
)
from tests.telegram.conftest import TEST_LIMITS, StartBot

LAB = supergroup()
ALICE_CHAT = private_chat(ALICE)
NOT_YOURS = "Only the person who asked, or an admin, can use these buttons."
UNPACED = replace(TEST_LIMITS, group_per_minute=600_000)
STORY = "Once upon a time there was a very long story that never ended"


def buttons(shown: dict[str, Any]) -> dict[str, str]:
    """The message's buttons now: label -> callback data."""
    rows = shown.get("reply_markup", {}).get("inline_keyboard", [])
    return {b["text"]: b["callback_data"] for row in rows for b in row}


def _data(shown: dict[str, Any], verb: str) -> str | None:
    return next((d for d in buttons(shown).values() if d.startswith(f"{verb} ")), None)


def in_chat(fake: FakeTelegram, chat: dict[str, Any]) -> list[dict[str, Any]]:
    return fake.sent(int(chat["id"]))


def _answered(fake: FakeTelegram, chat: dict[str, Any]) -> list[dict[str, Any]]:
    """The bot's finished answers in ``chat`` (those that offer Retry)."""
    return [m for m in in_chat(fake, chat) if _data(m, "retry")]


async def streaming_with_stop(
    fake: FakeTelegram, ollama: FakeOllama, chat: dict[str, Any], user: dict[str, Any]
) -> dict[str, Any]:
    """``user`` asks for a story that never ends; the bot's message once it shows Stop."""
    ollama.script(Reply(text=STORY, chunks=12, hold_gate=asyncio.Event(), hold_after=3))
    fake.push(message(chat, user, "@ollabot_bot tell me a story"))
    await fake.wait_until(lambda: any(_data(m, "stop") for m in in_chat(fake, chat)))
    [streaming] = in_chat(fake, chat)
    return streaming


async def test_stop_button_frees_the_model_and_the_reply_ends_stopped_with_retry(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    await start_bot()
    streaming = await streaming_with_stop(fake_telegram, fake_ollama, LAB, ALICE)
    assert streaming["text"].endswith("…") and list(buttons(streaming)) == ["Stop"]

    query = fake_telegram.press(ALICE, streaming, buttons(streaming)["Stop"])
    async with asyncio.timeout(1.5):  # the press arrives by polling; Ollama sees the close < 1 s
        await fake_ollama.disconnected.wait()
    await fake_telegram.wait_until(
        lambda: in_chat(fake_telegram, LAB)[0]["text"].endswith("(stopped)")
    )
    [stopped] = in_chat(fake_telegram, LAB)
    assert stopped["text"].startswith("Once upon")
    assert list(buttons(stopped)) == ["Retry"], "Stop is gone, Retry takes its place"
    await fake_telegram.wait_until(lambda: query in fake_telegram.callback_answers)
    assert fake_telegram.callback_answers[query].get("text") == "Stopping the reply."
    assert len(in_chat(fake_telegram, LAB)) == 1, "the press is answered on the button only"


async def test_retry_button_writes_a_new_answer_that_replaces_the_old_one(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(text="first try"), Reply(text="second try"))
    await start_bot()
    fake_telegram.push(message(ALICE_CHAT, ALICE, "name a colour"))
    await fake_telegram.wait_until(lambda: bool(in_chat(fake_telegram, ALICE_CHAT)))
    [first] = in_chat(fake_telegram, ALICE_CHAT)
    assert first["text"] == "first try" and list(buttons(first)) == ["Retry"]

    query = fake_telegram.press(ALICE, first, buttons(first)["Retry"])
    await fake_telegram.wait_until(lambda: len(in_chat(fake_telegram, ALICE_CHAT)) == 2)
    second = in_chat(fake_telegram, ALICE_CHAT)[1]
    assert second["text"] == "second try" and list(buttons(second)) == ["Retry"]
    assert query in fake_telegram.callback_answers

    fake_telegram.push(message(ALICE_CHAT, ALICE, "what did I ask?"))
    await fake_telegram.wait_until(lambda: len(in_chat(fake_telegram, ALICE_CHAT)) == 3)
    history = [m["content"] for m in fake_ollama.chat_requests[-1]["messages"][1:]]
    assert history == ["name a colour", "second try", "what did I ask?"]


async def test_someone_elses_press_is_refused_and_changes_nothing_but_an_admins_is_not(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    await start_bot(admin_ids=(ALICE["id"],))
    fake_telegram.push(message(LAB, BOB, "@ollabot_bot name a colour"))
    await fake_telegram.wait_until(lambda: bool(_answered(fake_telegram, LAB)))
    [answer] = in_chat(fake_telegram, LAB)
    retry = buttons(answer)["Retry"]
    intruder = {"id": 444000111, "is_bot": False, "first_name": "Mallory", "language_code": "en"}

    refused = fake_telegram.press(intruder, answer, retry)
    await fake_telegram.wait_until(lambda: refused in fake_telegram.callback_answers)
    assert fake_telegram.callback_answers[refused]["text"] == NOT_YOURS

    allowed = fake_telegram.press(ALICE, answer, retry)  # an admin may retry anyone's answer
    fake_telegram.push(message(LAB, BOB, "@ollabot_bot thanks"))  # answered after both presses
    await fake_telegram.wait_until(lambda: len(_answered(fake_telegram, LAB)) == 3)
    assert fake_telegram.callback_answers[allowed].get("text") is None
    asked = [r["messages"][-1]["content"] for r in fake_ollama.chat_requests]
    assert asked == ["Bob: name a colour"] * 2 + ["Bob: thanks"], "one retry: the admin's"
    retried = in_chat(fake_telegram, LAB)[1]
    assert retried["reply_to_message"]["from"] == BOB, "the new answer quotes the question"
    assert buttons(retried)["Retry"] == retry, "the buttons stay the asker's"


async def test_a_stop_pressed_after_the_reply_finished_says_nothing_to_stop(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    release = asyncio.Event()
    fake_ollama.script(Reply(text="a short answer", chunks=4, hold_gate=release, hold_after=2))
    await start_bot()
    fake_telegram.push(message(LAB, ALICE, "@ollabot_bot say something"))
    await fake_telegram.wait_until(
        lambda: any("Stop" in buttons(m) for m in in_chat(fake_telegram, LAB))
    )
    stop = buttons(in_chat(fake_telegram, LAB)[0])["Stop"]
    release.set()
    await fake_telegram.wait_until(
        lambda: in_chat(fake_telegram, LAB)[0]["text"] == "a short answer"
    )

    query = fake_telegram.press(ALICE, in_chat(fake_telegram, LAB)[0], stop)  # an old screen
    await fake_telegram.wait_until(lambda: query in fake_telegram.callback_answers)
    said = fake_telegram.callback_answers[query]["text"]
    assert said == "Nothing is being written here right now."
    [finished] = in_chat(fake_telegram, LAB)
    assert finished["text"] == "a short answer" and list(buttons(finished)) == ["Retry"]


async def test_a_button_moved_to_another_conversation_is_refused(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    other = supergroup(-1001555000111, "Other Lab")
    await start_bot()
    fake_telegram.push(message(other, ALICE, "@ollabot_bot hello"))
    fake_telegram.push(message(LAB, ALICE, "@ollabot_bot hello"))
    await fake_telegram.wait_until(
        lambda: bool(_answered(fake_telegram, other)) and bool(_answered(fake_telegram, LAB))
    )
    forged = buttons(in_chat(fake_telegram, other)[0])["Retry"]
    query = fake_telegram.press(ALICE, in_chat(fake_telegram, LAB)[0], forged)
    await fake_telegram.wait_until(lambda: query in fake_telegram.callback_answers)
    assert fake_telegram.callback_answers[query]["text"] == NOT_YOURS
    assert len(fake_ollama.chat_requests) == 2


async def test_button_labels_and_answers_speak_the_users_language(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    assert ALICE["language_code"] == "es"
    await start_bot(translations=Catalogues("en"))
    streaming = await streaming_with_stop(fake_telegram, fake_ollama, LAB, ALICE)
    assert streaming["text"].endswith("…")
    assert list(buttons(streaming)) == ["Detener"]
    query = fake_telegram.press(ALICE, streaming, buttons(streaming)["Detener"])

    await fake_telegram.wait_until(
        lambda: "Reintentar" in buttons(in_chat(fake_telegram, LAB)[0]), timeout=5
    )
    await fake_telegram.wait_until(lambda: query in fake_telegram.callback_answers)
    assert fake_telegram.callback_answers[query]["text"] == "Deteniendo la respuesta."


async def test_a_late_stop_under_an_older_reply_leaves_the_newer_one_alone(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    release = asyncio.Event()
    fake_ollama.script(
        Reply(text="a short answer", chunks=4, hold_gate=release, hold_after=2),
        Reply(text=STORY, chunks=12, hold_gate=asyncio.Event(), hold_after=3),
    )
    await start_bot(limits=UNPACED)  # the story's first words come right after the answer
    fake_telegram.push(message(LAB, ALICE, "@ollabot_bot say something"))
    await fake_telegram.wait_until(
        lambda: any(_data(m, "stop") for m in in_chat(fake_telegram, LAB))
    )
    first_writing = copy.deepcopy(in_chat(fake_telegram, LAB)[0])
    release.set()
    await fake_telegram.wait_until(lambda: bool(_answered(fake_telegram, LAB)))
    fake_telegram.push(message(LAB, ALICE, "@ollabot_bot tell me a story"))
    await fake_telegram.wait_until(lambda: bool(_data(in_chat(fake_telegram, LAB)[-1], "stop")))
    first, second = in_chat(fake_telegram, LAB)

    # The first reply's Stop, as the chat showed it had the edit to Retry been lost
    late = fake_telegram.press(ALICE, first, buttons(first_writing)["Stop"], shown=first_writing)
    await fake_telegram.wait_until(lambda: late in fake_telegram.callback_answers)
    assert (
        fake_telegram.callback_answers[late]["text"] == "Nothing is being written here right now."
    )
    assert not fake_ollama.disconnected.is_set(), "the story goes on"

    query = fake_telegram.press(ALICE, second, buttons(second)["Stop"])
    async with asyncio.timeout(1.5):
        await fake_ollama.disconnected.wait()
    await fake_telegram.wait_until(
        lambda: (
            in_chat(fake_telegram, LAB)[1]["text"].endswith("(stopped)")
            and query in fake_telegram.callback_answers
        )
    )
    assert fake_telegram.callback_answers[query]["text"] == "Stopping the reply."
    assert in_chat(fake_telegram, LAB)[0]["text"] == "a short answer"
