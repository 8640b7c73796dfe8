"""The Stop and Retry buttons under a reply: pressed in Slack, checked, acted on."""

from __future__ import annotations

import asyncio
import json

from adapters.i18n import Catalogues
from tests.fakes.ollama import FakeOllama, Reply
from tests.fakes.slack_api import ALICE, BOB, BOT_USER, DM_CHANNEL, LAB_CHANNEL, FakeSlack, Message
from tests.slack.conftest import SIGNING_SECRET, StartBot

STORY = "Once upon a time there was a very long story that never ended"


def showing(fake: FakeSlack, channel: str, action: str, thread_ts: str = "") -> Message | None:
    """The bot's newest message in the thread that shows the button ``action``."""
    for message in reversed(fake.bot_messages(channel, thread_ts)):
        button = message.button()
        if button is not None and button["action_id"] == action:
            return message
    return None


async def wait_for_button(
    fake: FakeSlack, channel: str, action: str, thread_ts: str = ""
) -> Message:
    await fake.wait_until(lambda: showing(fake, channel, action, thread_ts) is not None)
    message = showing(fake, channel, action, thread_ts)
    assert message is not None
    return message


def told(fake: FakeSlack, user: str) -> list[str]:
    return [e.text for e in fake.ephemerals if e.user == user]


async def test_stop_closes_the_model_stream_within_a_second_and_offers_retry(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(text=STORY, chunks=12, hold_gate=asyncio.Event(), hold_after=3))
    await start_bot()
    await fake_slack.deliver("events_api", fake_slack.user_message("tell me a story"))
    await fake_ollama.wait_for_chat(1)
    writing = await wait_for_button(fake_slack, DM_CHANNEL, "ollabot_stop")
    button = dict(writing.button() or {})
    value = json.loads(button.pop("value"))
    assert button == {
        "type": "button",
        "action_id": "ollabot_stop",
        "text": {"type": "plain_text", "text": "Stop"},
    }
    assert value == {"thread": "", "author": ALICE, "reply": value["reply"]}
    assert len(value["reply"]) == 6, "the reply it stops"

    envelope = await fake_slack.deliver("interactive", fake_slack.press(writing, ALICE))
    assert await fake_slack.wait_for_ack(envelope) < 1.0
    async with asyncio.timeout(1.0):
        await fake_ollama.disconnected.wait()

    stopped = await wait_for_button(fake_slack, DM_CHANNEL, "ollabot_retry")
    assert stopped.ts == writing.ts, "the streamed message itself gets the Retry button"
    assert stopped.text.startswith("Once upon") and stopped.text.endswith("(stopped)")
    assert stopped.blocks[0]["text"]["text"] == stopped.text
    await fake_slack.wait_until(lambda: told(fake_slack, ALICE) == ["Stopping the reply."])


async def test_retry_replaces_the_answer_in_the_history(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply(text="first try"), Reply(text="second try"))
    await start_bot()
    await fake_slack.deliver("events_api", fake_slack.user_message("name a colour"))
    first = await wait_for_button(fake_slack, DM_CHANNEL, "ollabot_retry")
    assert first.text == "first try"

    await fake_slack.deliver("interactive", fake_slack.press(first, ALICE))
    await fake_slack.wait_until(
        lambda: [m.text for m in fake_slack.bot_messages(DM_CHANNEL)] == ["first try", "second try"]
    )
    again = await wait_for_button(fake_slack, DM_CHANNEL, "ollabot_retry")
    assert again.text == "second try"
    await fake_slack.deliver("events_api", fake_slack.user_message("what did I ask?"))
    request = await fake_ollama.wait_for_chat(3)
    history = [m["content"] for m in request["messages"][1:]]
    assert history == ["name a colour", "second try", "what did I ask?"]


async def test_another_users_press_is_refused_privately_and_changes_nothing(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    gate = asyncio.Event()
    fake_ollama.script(Reply(text=STORY, chunks=6, hold_gate=gate, hold_after=2))
    bot = await start_bot(http=True)
    mention = fake_slack.user_message(
        f"<@{BOT_USER}> a story please", channel=LAB_CHANNEL, user=BOB, kind="app_mention"
    )
    thread = mention["event"]["ts"]
    await fake_slack.send_http(bot.events_url, json.dumps(mention).encode(), SIGNING_SECRET)
    writing = await wait_for_button(fake_slack, LAB_CHANNEL, "ollabot_stop", thread)

    carol = "U07CAROL001"
    fake_slack.users[carol] = {"name": "carol", "is_admin": False, "is_owner": False}
    press = fake_slack.interaction_form(fake_slack.press(writing, carol))
    status, _, seconds = await fake_slack.send_http(
        bot.events_url, press, SIGNING_SECRET, content_type="application/x-www-form-urlencoded"
    )
    assert status == 200 and seconds < 1.0
    await fake_slack.wait_until(lambda: bool(told(fake_slack, carol)))
    assert told(fake_slack, carol) == [
        ":warning: Only the person who asked, or an admin, can use these buttons."
    ]

    gate.set()
    done = await wait_for_button(fake_slack, LAB_CHANNEL, "ollabot_retry", thread)
    assert done.text == STORY, "the refused Stop did not stop anything"
    assert not fake_ollama.disconnected.is_set()
    assert len(fake_ollama.chat_requests) == 1


async def test_a_stale_stop_says_there_is_nothing_to_stop_and_an_admin_may_press(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    gate = asyncio.Event()
    fake_ollama.script(Reply(text="short answer", hold_gate=gate, hold_after=1))
    await start_bot()
    mention = fake_slack.user_message(
        f"<@{BOT_USER}> quick one", channel=LAB_CHANNEL, user=BOB, kind="app_mention"
    )
    thread = mention["event"]["ts"]
    await fake_slack.deliver("events_api", mention)
    writing = await wait_for_button(fake_slack, LAB_CHANNEL, "ollabot_stop", thread)
    late_press = fake_slack.press(writing, ALICE)  # Alice is a workspace admin
    gate.set()
    await wait_for_button(fake_slack, LAB_CHANNEL, "ollabot_retry", thread)

    await fake_slack.deliver("interactive", late_press)
    await fake_slack.wait_until(lambda: bool(told(fake_slack, ALICE)))
    assert told(fake_slack, ALICE) == ["Nothing is being written here right now."]
    [answer] = fake_slack.bot_messages(LAB_CHANNEL, thread)
    assert answer.text.endswith("short answer") and answer.button() is not None


async def test_a_spanish_asker_sees_spanish_buttons_and_notices(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    fake_slack.users[ALICE]["locale"] = "es-ES"
    fake_slack.users[BOB]["locale"] = "es-ES"
    fake_ollama.script(Reply(text=STORY, chunks=6, hold_gate=asyncio.Event(), hold_after=2))
    await start_bot(translations=Catalogues("en"))
    mention = fake_slack.user_message(
        f"<@{BOT_USER}> un cuento", channel=LAB_CHANNEL, kind="app_mention"
    )
    thread = mention["event"]["ts"]
    await fake_slack.deliver("events_api", mention)
    writing = await wait_for_button(fake_slack, LAB_CHANNEL, "ollabot_stop", thread)
    stop = writing.button()
    assert stop is not None and stop["text"]["text"] == "Detener"

    await fake_slack.deliver("interactive", fake_slack.press(writing, BOB))
    await fake_slack.wait_until(lambda: bool(told(fake_slack, BOB)))
    assert told(fake_slack, BOB) == [
        ":warning: Solo quien preguntó, o un administrador, puede usar estos botones."
    ]
    await fake_slack.deliver("interactive", fake_slack.press(writing, ALICE))
    stopped = await wait_for_button(fake_slack, LAB_CHANNEL, "ollabot_retry", thread)
    retry = stopped.button()
    assert stopped.text.endswith("(detenida)")
    assert retry is not None and retry["text"]["text"] == "Reintentar"


async def test_a_late_stop_under_an_older_reply_leaves_the_newer_one_alone(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    gate = asyncio.Event()
    fake_ollama.script(
        Reply(text="short answer", hold_gate=gate, hold_after=1),
        Reply(text=STORY, chunks=12, hold_gate=asyncio.Event(), hold_after=3),
    )
    await start_bot()
    await fake_slack.deliver("events_api", fake_slack.user_message("quick one"))
    first = await wait_for_button(fake_slack, DM_CHANNEL, "ollabot_stop")
    late_press = fake_slack.press(first, ALICE)  # on a screen that still shows the first Stop
    gate.set()
    await wait_for_button(fake_slack, DM_CHANNEL, "ollabot_retry")
    await fake_slack.deliver("events_api", fake_slack.user_message("tell me a story"))
    await fake_ollama.wait_for_chat(2)
    second = await wait_for_button(fake_slack, DM_CHANNEL, "ollabot_stop")
    assert second.ts != first.ts

    await fake_slack.deliver("interactive", late_press)
    await fake_slack.wait_until(lambda: bool(told(fake_slack, ALICE)))
    assert told(fake_slack, ALICE) == ["Nothing is being written here right now."]
    assert not fake_ollama.disconnected.is_set(), "the story goes on"

    await fake_slack.deliver("interactive", fake_slack.press(second, ALICE))
    async with asyncio.timeout(1.0):
        await fake_ollama.disconnected.wait()
    await fake_slack.wait_until(lambda: len(told(fake_slack, ALICE)) == 2)
    assert told(fake_slack, ALICE)[1] == "Stopping the reply."
    await fake_slack.wait_until(
        lambda: getattr(showing(fake_slack, DM_CHANNEL, "ollabot_retry"), "ts", "") == second.ts
    )
    first_now, second_now = fake_slack.bot_messages(DM_CHANNEL)
    assert first_now.text == "short answer" and second_now.text.endswith("(stopped)")
