"""Slack's own streaming where the workspace allows it, chat.update where it does not."""

from __future__ import annotations

import asyncio

from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.sink import SlackAddress, SlackSinks
from core.models import IncomingMessage
from tests.fakes.ollama import FakeOllama, Reply
from tests.fakes.slack_api import ALICE, BOT_TOKEN, BOT_USER, LAB_CHANNEL, TEAM, FakeSlack, Message
from tests.slack.conftest import StartBot
from tests.slack.test_security import MENTION

ANSWER = "A **KV cache** stores the attention keys and values of earlier tokens."


def mention(fake: FakeSlack, text: str) -> tuple[dict[str, object], str]:
    body = fake.user_message(f"<@{BOT_USER}> {text}", channel=LAB_CHANNEL, kind="app_mention")
    event = body["event"]
    assert isinstance(event, dict)
    return body, str(event["ts"])


def finished(fake: FakeSlack, thread: str) -> list[Message]:
    """The bot's messages in the thread, once the last one shows Retry."""
    messages = fake.bot_messages(LAB_CHANNEL, thread)
    last = messages[-1].button() if messages else None
    return messages if last is not None and last["action_id"] == "ollabot_retry" else []


async def test_a_thread_reply_streams_new_text_only_and_ends_with_retry(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    step = asyncio.Semaphore(0)
    fake_ollama.script(Reply(text=ANSWER, chunks=4, step=step))
    await start_bot(streams=True, update_interval_s=0.0)
    body, thread = mention(fake_slack, "what is a KV cache?")
    await fake_slack.deliver("events_api", body)
    for appended in range(1, 4):  # each chunk is appended once it arrives
        await fake_slack.wait_until(
            lambda n=appended: len(fake_slack.calls_to("chat.appendStream")) == n
        )
        step.release()
    await fake_slack.wait_until(lambda: bool(finished(fake_slack, thread)))

    [reply] = finished(fake_slack, thread)
    assert reply.text == ANSWER and not reply.streaming
    [start] = fake_slack.calls_to("chat.startStream")
    assert start.args["thread_ts"] == thread
    assert (start.args["recipient_team_id"], start.args["recipient_user_id"]) == (TEAM, ALICE)
    pieces = [
        c.args["markdown_text"]
        for c in fake_slack.stream_calls()[1:]
        if c.args.get("markdown_text")
    ]
    assert "".join(pieces) == ANSWER and len(pieces) == 4, "each call carries only new text"
    assert fake_slack.calls[-1].method == "chat.stopStream"
    assert not fake_slack.calls_to("chat.postMessage") and not fake_slack.calls_to("chat.update")
    [offer] = fake_slack.ephemerals
    assert (offer.user, offer.thread_ts, offer.text) == (ALICE, thread, "Writing the answer…")
    assert (offer.button() or {}).get("action_id") == "ollabot_stop"


async def test_the_asker_stops_a_streamed_reply_with_the_stop_only_they_see(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    story = "Once upon a time there was a very long story that never ended"
    fake_ollama.script(Reply(text=story, chunks=12, hold_gate=asyncio.Event(), hold_after=3))
    await start_bot(streams=True, update_interval_s=0.0)
    body, thread = mention(fake_slack, "tell me a story")
    await fake_slack.deliver("events_api", body)
    await fake_slack.wait_until(lambda: len(fake_slack.calls_to("chat.appendStream")) == 3)
    [offer] = fake_slack.ephemerals

    await fake_slack.deliver("interactive", fake_slack.press(offer, ALICE))
    async with asyncio.timeout(1.0):
        await fake_ollama.disconnected.wait()
    await fake_slack.wait_until(lambda: bool(finished(fake_slack, thread)))

    [reply] = finished(fake_slack, thread)
    assert reply.text.startswith("Once upon") and reply.text.endswith("(stopped)")
    assert not reply.streaming
    await fake_slack.wait_until(
        lambda: [e.text for e in fake_slack.ephemerals][1:] == ["Stopping the reply."]
    )


async def test_a_refused_stream_is_remembered_and_replies_are_edited_instead(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    await start_bot(streams=True)
    fake_slack.refuse_streams = "not_allowed"
    first, first_thread = mention(fake_slack, "first")
    second, second_thread = mention(fake_slack, "second")
    await fake_slack.deliver("events_api", first)
    await fake_slack.wait_until(lambda: bool(finished(fake_slack, first_thread)))
    await fake_slack.deliver("events_api", second)
    await fake_slack.wait_until(lambda: bool(finished(fake_slack, second_thread)))

    assert [m.text for m in finished(fake_slack, first_thread)] == [f"echo: {ALICE}: first"]
    assert [m.text for m in finished(fake_slack, second_thread)] == [f"echo: {ALICE}: second"]
    assert len(fake_slack.calls_to("chat.startStream")) == 1, "the refusal is remembered"
    assert len(fake_slack.calls_to("chat.update")) == 2


async def test_the_model_cannot_ping_anyone_through_a_stream(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(
        Reply(
            text="Hi <!channel>, [all](!here) and [boss](@U07ALICE001); "
            "see [guide](https://example.com/guide).",
            chunks=5,
        )
    )
    await start_bot(streams=True)
    body, thread = mention(fake_slack, "ping everyone")
    await fake_slack.deliver("events_api", body)
    await fake_slack.wait_until(lambda: bool(finished(fake_slack, thread)))

    [reply] = finished(fake_slack, thread)
    assert fake_slack.calls_to("chat.stopStream")
    assert not MENTION.search(reply.text) and "](!here)" not in reply.text
    assert "all (!here)" in reply.text and "[guide](https://example.com/guide)" in reply.text


async def test_a_reply_too_long_for_a_stream_is_finished_by_editing_it(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    lines = [f"line {n:04d} " + "x" * 40 for n in range(300)]  # 15,000 characters
    fake_ollama.script(Reply(text="\n".join(lines), chunks=60))
    await start_bot(streams=True)
    body, thread = mention(fake_slack, "a long one")
    await fake_slack.deliver("events_api", body)
    await fake_slack.wait_until(lambda: bool(finished(fake_slack, thread)))

    messages = finished(fake_slack, thread)
    assert "\n".join(m.text for m in messages).split("\n") == lines
    assert not any(m.streaming for m in messages)
    [replaced] = fake_slack.calls_to("chat.update")
    assert replaced.args["ts"] == messages[0].ts, "the streamed message holds the first part"
    assert len(messages) == 4 and fake_slack.calls_to("chat.stopStream")


async def test_a_successor_finishes_a_stream_an_earlier_attempt_left_open(
    fake_slack: FakeSlack,
) -> None:
    client = AsyncWebClient(token=BOT_TOKEN, base_url=fake_slack.url)
    thread = fake_slack.next_ts()
    message = IncomingMessage(
        platform="slack",
        message_id="Ev1",
        conversation=f"slack:{TEAM}:{LAB_CHANNEL}:{thread}",
        channel=f"slack:{TEAM}:{LAB_CHANNEL}",
        author_id=ALICE,
        author_name="alice",
        text="hi",
        in_group=True,
        reply_to=SlackAddress(LAB_CHANNEL, thread, ALICE).to_reply_to(),
    )
    first = SlackSinks(client, update_interval_s=0.0)(message)
    await first.begin()
    await first.update("The first half")
    left = first.handle
    assert left["stream"] == "open"

    successor = SlackSinks(client, update_interval_s=0.0)(message)
    successor.resume(left)
    await successor.finish("The first half and the **second** half.")

    [reply] = fake_slack.bot_messages(LAB_CHANNEL, thread)
    assert reply.ts == left["ts"] and not reply.streaming
    assert reply.text == "The first half and the *second* half."
    assert (reply.button() or {}).get("action_id") == "ollabot_retry"


async def test_a_stream_slack_ended_on_its_own_is_finished_by_editing_it(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    step = asyncio.Semaphore(0)
    fake_ollama.script(Reply(text=ANSWER, chunks=4, step=step))
    await start_bot(streams=True, update_interval_s=0.0)
    body, thread = mention(fake_slack, "what is a KV cache?")
    await fake_slack.deliver("events_api", body)
    await fake_slack.wait_until(lambda: len(fake_slack.calls_to("chat.appendStream")) == 1)
    [streamed] = fake_slack.bot_messages(LAB_CHANNEL, thread)
    streamed.streaming = False  # as if Slack had ended the stream itself
    for _ in range(3):
        step.release()
    await fake_slack.wait_until(lambda: bool(finished(fake_slack, thread)))

    [reply] = finished(fake_slack, thread)
    assert reply.ts == streamed.ts
    assert reply.text == "A *KV cache* stores the attention keys and values of earlier tokens."
    assert [c.error for c in fake_slack.stream_calls()][-1] == "message_not_in_streaming_state"
