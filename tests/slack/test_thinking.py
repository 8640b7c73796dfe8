"""Thinking models on Slack: the reasoning is hidden unless an admin says ``think show``, then
it sits in a context block above the answer; it never enters the history."""

from __future__ import annotations

import json

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.blocks import TEXT_LIMIT, reply_blocks
from adapters.slack.formatting import MESSAGE_LIMIT, split_message
from adapters.slack.pacing import ChannelCooldowns
from adapters.slack.sink import EPHEMERAL, EphemeralSink, SlackAddress
from tests.fakes.ollama import FakeOllama, Reply
from tests.fakes.slack_api import (
    ALICE,
    BOB,
    BOT_TOKEN,
    BOT_USER,
    LAB_CHANNEL,
    FakeSlack,
    Message,
    blocks_fit,
)
from tests.slack.conftest import StartBot
from tests.slack.test_commands import LAB_SETTINGS, command

THINKER = "qwen3:8b"
REASONING = "Two plus two: start at two, count on two more."


async def ask(fake: FakeSlack, text: str) -> Message:
    """Mention the bot in the lab channel; its reply in the thread, once it shows Retry."""
    mention = fake.user_message(f"<@{BOT_USER}> {text}", channel=LAB_CHANNEL, kind="app_mention")
    await fake.deliver("events_api", mention)
    thread = mention["event"]["ts"]

    def answered() -> bool:
        replies = fake.bot_messages(LAB_CHANNEL, thread)
        button = replies[0].button() if replies else None
        return button is not None and button["action_id"] == "ollabot_retry"

    await fake.wait_until(answered)
    return fake.bot_messages(LAB_CHANNEL, thread)[0]


async def use_thinker(fake_slack: FakeSlack, fake_ollama: FakeOllama) -> None:
    fake_ollama.add_thinking_model(THINKER)
    assert THINKER in await command(fake_slack, f"model use {THINKER}", ALICE)


def everything_sent(fake: FakeSlack) -> str:
    return json.dumps([call.args for call in fake.calls], ensure_ascii=False)


async def test_reasoning_is_hidden_by_default(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    await start_bot()
    await use_thinker(fake_slack, fake_ollama)
    fake_ollama.script(Reply(text="It is 4.", thinking=REASONING))

    reply = await ask(fake_slack, "what is 2+2?")

    assert reply.text == "It is 4."
    assert [block["type"] for block in reply.blocks] == ["section", "actions"]
    assert (await fake_ollama.wait_for_chat(1))["think"] is True
    assert "count on" not in everything_sent(fake_slack)


@pytest.mark.parametrize("streams", [False, True], ids=["edited", "streamed"])
async def test_think_show_puts_the_reasoning_in_a_context_block_above_the_answer(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama, streams: bool
) -> None:
    bot = await start_bot(streams=streams)
    await use_thinker(fake_slack, fake_ollama)
    assert "shown" in await command(fake_slack, "think show", ALICE)
    fake_ollama.script(Reply(text="It is **4**.", thinking=REASONING))

    reply = await ask(fake_slack, "what is 2+2?")

    assert reply.text == "It is *4*." and not reply.streaming  # the notification: the answer
    context, section, retry = reply.blocks
    assert context == {
        "type": "context",
        "elements": [{"type": "plain_text", "text": f"💭 {REASONING}"}],
    }
    assert section == {"type": "section", "text": {"type": "mrkdwn", "text": "It is *4*."}}
    assert retry["type"] == "actions"
    assert any(not call.error for call in fake_slack.calls_to("chat.startStream")) == streams
    follow_up = fake_slack.user_message("thanks", channel=LAB_CHANNEL, thread_ts=reply.thread_ts)
    await fake_slack.deliver("events_api", follow_up)
    history = (await fake_ollama.wait_for_chat(2))["messages"]
    assert {"role": "assistant", "content": "It is **4**."} in history
    assert not any("count on" in m["content"] for m in history)
    audit = await bot.store.audit_log(LAB_SETTINGS, 10)
    assert ("think", "hide", "show") in [(a.field, a.old, a.new) for a in audit]


async def test_a_non_admin_cannot_show_the_reasoning(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    bot = await start_bot()

    refused = await command(fake_slack, "think show", BOB)

    assert refused == ":warning: Sorry, only admins of this chat can change its settings."
    assert "hidden" in await command(fake_slack, "think", BOB)
    [tried] = await bot.store.audit_log(LAB_SETTINGS, 10)
    assert (tried.field, tried.outcome) == ("think", "refused: not an admin")


def test_long_reasoning_is_cut_to_fit_and_the_answer_is_kept_whole() -> None:
    answer = split_message("word " * 2000)[0]  # one message's worth, 4,000 characters
    blocks = reply_blocks(answer, None, "", "", reasoning="thought " * 2000)

    assert blocks_fit(blocks), "within Slack's block sizes"
    note = blocks[0]["elements"][0]["text"]
    assert len(note) <= TEXT_LIMIT and note.endswith("…")
    sections = [block["text"]["text"] for block in blocks[1:]]
    assert len(answer) <= MESSAGE_LIMIT and " ".join(sections).split() == answer.split()


async def test_a_retried_answer_for_one_user_carries_its_reasoning_too(
    fake_slack: FakeSlack,
) -> None:
    """``/ollabot retry`` answers only its asker (ephemeral), reasoning included."""
    client = AsyncWebClient(token=BOT_TOKEN, base_url=fake_slack.url)
    address = SlackAddress(LAB_CHANNEL, "", ALICE, EPHEMERAL)
    sink = EphemeralSink(client, address, ChannelCooldowns())

    await sink.finish("It is **4**.", reasoning=REASONING)

    [answer] = fake_slack.ephemerals
    assert answer.text == "It is *4*."
    assert answer.blocks[0]["elements"][0]["text"] == f"💭 {REASONING}"
