"""Groups and forum topics: answer only when addressed, one conversation per chat or topic."""

from __future__ import annotations

import asyncio

from tests.fakes.ollama import FakeOllama, Reply
from tests.fakes.telegram_api import ALICE, BOB, BOT, FakeTelegram, message, supergroup
from tests.telegram.conftest import StartBot

LAB = supergroup()
FORUM = supergroup(-1002233445566, "Ollabot Forum", forum=True)


async def test_group_answers_mentions_only_and_knows_who_speaks(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    await start_bot()
    fake_telegram.push(message(LAB, BOB, "just chatting with humans here"))
    fake_telegram.push(message(LAB, BOB, "/weather@other_bot Paris"))
    fake_telegram.push(message(LAB, BOB, None))  # a sticker: silence in groups
    asked = message(LAB, ALICE, "@ollabot_bot what is top_p?")
    fake_telegram.push(asked)

    await fake_telegram.wait_until(
        lambda: _texts(fake_telegram, LAB) == ["echo: Alice Moreno: what is top_p?"]
    )
    assert len(fake_ollama.chat_requests) == 1  # the unaddressed messages got silence
    user_turn = fake_ollama.chat_requests[0]["messages"][-1]
    assert user_turn["role"] == "user" and "Alice Moreno" in user_turn["content"]
    assert "@ollabot_bot" not in user_turn["content"]
    send = fake_telegram.calls_to("sendMessage", 200)[0]
    assert send.params["reply_parameters"]["message_id"] == asked["message"]["message_id"]


async def test_reply_to_the_bot_and_ask_command_are_answered(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    await start_bot()
    fake_telegram.push(message(LAB, BOB, "/ask@ollabot_bot why is the sky blue?"))
    await fake_telegram.wait_until(lambda: len(_texts(fake_telegram, LAB)) == 1)
    bot_message = fake_telegram.sent(LAB["id"])[0]
    fake_telegram.push(message(LAB, BOB, "and at sunset?", reply_to_message=bot_message))
    await fake_telegram.wait_until(lambda: len(_texts(fake_telegram, LAB)) == 2)
    human = message(LAB, ALICE, "hello")["message"]
    fake_telegram.push(message(LAB, BOB, "replying to Alice", reply_to_message=human))
    fake_telegram.push(message(LAB, BOB, "@ollabot_bot thanks"))

    await fake_telegram.wait_until(lambda: len(_texts(fake_telegram, LAB)) == 3)
    assert _texts(fake_telegram, LAB) == [
        "echo: Bob: why is the sky blue?",
        "echo: Bob: and at sunset?",
        "echo: Bob: thanks",
    ]
    history = [m["content"] for m in fake_ollama.chat_requests[-1]["messages"]]
    assert any("and at sunset?" in c for c in history)  # one conversation per chat, in order


async def test_forum_topics_are_separate_conversations_answered_in_their_topic(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    await start_bot()
    for topic, question in ((77, "topic seventy-seven"), (78, "topic seventy-eight")):
        creation = {
            "message_id": topic,
            "from": ALICE,
            "chat": FORUM,
            "date": 1767000000,
            "message_thread_id": topic,
            "forum_topic_created": {"name": f"T{topic}", "icon_color": 7322096},
            "is_topic_message": True,
        }
        fake_telegram.push(
            message(
                FORUM,
                BOB,
                f"@ollabot_bot {question}",
                message_thread_id=topic,
                is_topic_message=True,
                reply_to_message=creation,
            )
        )
    # The implicit reply to the topic's creation message is not a reply to the bot.
    fake_telegram.push(
        message(FORUM, BOB, "not for the bot", message_thread_id=77, is_topic_message=True)
    )
    await fake_telegram.wait_until(lambda: len(fake_telegram.sent(FORUM["id"])) == 2)
    fake_telegram.push(
        message(FORUM, BOB, "@ollabot_bot again", message_thread_id=77, is_topic_message=True)
    )
    await fake_telegram.wait_until(lambda: len(fake_telegram.sent(FORUM["id"])) == 3)

    assert [m["text"] for m in fake_telegram.sent(FORUM["id"], thread_id=77)] == [
        "echo: Bob: topic seventy-seven",
        "echo: Bob: again",
    ]
    assert [m["text"] for m in fake_telegram.sent(FORUM["id"], thread_id=78)] == [
        "echo: Bob: topic seventy-eight"
    ]
    contents = [m["content"] for m in fake_ollama.chat_requests[-1]["messages"]]
    assert any("seventy-seven" in c for c in contents)
    assert not any("seventy-eight" in c for c in contents)


async def test_group_edits_share_the_groups_budget(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    from adapters.telegram.pacing import Limits

    gates = [asyncio.Event(), asyncio.Event()]
    long_text = " ".join(f"token{n}" for n in range(60))
    fake_ollama.script(*(Reply(text=long_text, hold_gate=gate, hold_after=3) for gate in gates))
    # 6 messages a minute, 2 kept for final texts: the group never exceeds its minute.
    await start_bot(limits=Limits(group_per_minute=6, group_reserve=2, first_show_delay_s=0.0))
    for topic in (77, 78):
        fake_telegram.push(
            message(
                FORUM, BOB, f"@ollabot_bot {topic}", message_thread_id=topic, is_topic_message=True
            )
        )
    await fake_ollama.wait_for_chat(2)
    for gate in gates:
        gate.set()

    await fake_telegram.wait_until(
        lambda: sum(m["text"] == long_text for m in fake_telegram.sent(FORUM["id"])) == 2
    )
    writes = fake_telegram.calls_to("sendMessage") + fake_telegram.calls_to("editMessageText")
    assert len(writes) <= 6
    assert fake_telegram.errors(400) == [] and fake_telegram.errors(429) == []


def _texts(fake: FakeTelegram, chat: dict[str, object]) -> list[str]:
    return [m["text"] for m in fake.sent(int(str(chat["id"]))) if m["from"] == BOT]
