"""Slack conversations end to end: DMs, mentions, threads, ignored events, retries, faults."""

from __future__ import annotations

import asyncio

import pytest

from tests.fakes.ollama import FakeOllama, Reply, unused_port
from tests.fakes.slack_api import ALICE, BOB, BOT_USER, DM_CHANNEL, LAB_CHANNEL, FakeSlack
from tests.slack.conftest import StartBot


def final_text(fake: FakeSlack, channel: str, thread_ts: str = "") -> str:
    return "\n".join(m.text for m in fake.bot_messages(channel, thread_ts))


async def test_a_dm_is_answered_in_the_dm_after_the_ack(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    await start_bot()
    fake_ollama.script(Reply(text="A **KV cache** keeps keys and values."))

    envelope = await fake_slack.deliver(
        "events_api", fake_slack.user_message("what is a KV cache?")
    )
    assert await fake_slack.wait_for_ack(envelope) < 3.0

    await fake_slack.wait_until(lambda: "keeps keys" in final_text(fake_slack, DM_CHANNEL))
    assert final_text(fake_slack, DM_CHANNEL) == "A *KV cache* keeps keys and values."
    assert envelope.acked_at is not None
    first_post = fake_slack.calls_to("chat.postMessage")[0]
    assert envelope.acked_at < first_post.at, "a Web API call came before the ack"
    assert fake_ollama.chat_requests[0]["messages"][-1]["content"] == "what is a KV cache?"


async def test_a_dm_continues_one_conversation_and_a_dm_thread_is_its_own(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    await start_bot()
    await fake_slack.deliver("events_api", fake_slack.user_message("my name is Alice"))
    await fake_slack.wait_until(lambda: "echo: my name" in final_text(fake_slack, DM_CHANNEL))
    await fake_slack.deliver("events_api", fake_slack.user_message("what is my name?"))
    second = await fake_ollama.wait_for_chat(2)
    thread = fake_slack.user_message("start over here")
    thread_ts = thread["event"]["ts"]
    side = fake_slack.user_message("in the thread", thread_ts=thread_ts)
    await fake_slack.deliver("events_api", side)
    third = await fake_ollama.wait_for_chat(3)

    assert [m["content"] for m in second["messages"] if m["role"] == "user"][-2:] == [
        "my name is Alice",
        "what is my name?",
    ]
    assert "my name is Alice" not in [m["content"] for m in third["messages"]]
    await fake_slack.wait_until(
        lambda: final_text(fake_slack, DM_CHANNEL, thread_ts) == "echo: in the thread"
    )


async def test_a_mention_is_answered_in_its_thread_and_followups_need_no_mention(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    await start_bot()
    mention = fake_slack.user_message(
        f"<@{BOT_USER}> what is a KV cache?", channel=LAB_CHANNEL, kind="app_mention"
    )
    thread_ts = mention["event"]["ts"]
    await fake_slack.deliver("events_api", mention)
    await fake_slack.wait_until(
        lambda: "what is a KV cache?" in final_text(fake_slack, LAB_CHANNEL, thread_ts)
    )

    followup = fake_slack.user_message(
        "and at 8k context?", channel=LAB_CHANNEL, user=BOB, thread_ts=thread_ts
    )
    await fake_slack.deliver("events_api", followup)
    request = await fake_ollama.wait_for_chat(2)

    first_answer = fake_slack.bot_messages(LAB_CHANNEL, thread_ts)[0].text
    assert first_answer == f"echo: {ALICE}: what is a KV cache?"
    assert not fake_slack.bot_messages(LAB_CHANNEL), "the answer must stay in the thread"
    users = [m["content"] for m in request["messages"] if m["role"] == "user"]
    assert users[-2].endswith("what is a KV cache?") and users[-1].endswith("and at 8k context?")
    await fake_slack.wait_until(
        lambda: "8k context" in final_text(fake_slack, LAB_CHANNEL, thread_ts)
    )


async def test_two_threads_are_kept_apart_and_a_slow_one_delays_nothing(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    await start_bot()
    gate = asyncio.Event()
    fake_ollama.script(Reply(text="slow answer about cats", hold_gate=gate, hold_after=1))
    cats = fake_slack.user_message(f"<@{BOT_USER}> cats?", channel=LAB_CHANNEL, kind="app_mention")
    dogs = fake_slack.user_message(f"<@{BOT_USER}> dogs?", channel=LAB_CHANNEL, kind="app_mention")
    cats_ts, dogs_ts = cats["event"]["ts"], dogs["event"]["ts"]
    await fake_slack.deliver("events_api", cats)
    await fake_ollama.wait_for_chat(1)
    await fake_slack.deliver("events_api", dogs)

    await fake_slack.wait_until(lambda: "dogs?" in final_text(fake_slack, LAB_CHANNEL, dogs_ts))
    assert "thinking" in final_text(fake_slack, LAB_CHANNEL, cats_ts), "cats is still going"
    gate.set()
    await fake_slack.wait_until(
        lambda: "about cats" in final_text(fake_slack, LAB_CHANNEL, cats_ts)
    )
    second = fake_ollama.chat_requests[1]
    assert [m["content"] for m in second["messages"] if m["role"] == "user"] == [f"{ALICE}: dogs?"]


async def test_own_other_bots_edits_and_unrelated_chatter_get_no_reply(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    await start_bot()
    own = fake_slack.user_message("my own reply", user=BOT_USER)
    own["event"]["bot_id"] = "B07OLLABOT1"
    other_bot = fake_slack.user_message("Deploy finished", channel=LAB_CHANNEL, user="U07GHBOT001")
    other_bot["event"]["bot_id"] = "B07GHBOT001"
    edit = fake_slack.user_message("edited text")
    edit["event"]["subtype"] = "message_changed"
    chatter = fake_slack.user_message("lunch?", channel=LAB_CHANNEL)
    stranger_thread = fake_slack.user_message(
        "hm", channel=LAB_CHANNEL, thread_ts="1767200000.000001"
    )
    ignored = [own, other_bot, edit, chatter, stranger_thread]
    envelopes = [await fake_slack.deliver("events_api", body) for body in ignored]
    for envelope in envelopes:
        await fake_slack.wait_for_ack(envelope)
    # a last, real message proves the bot was listening all along
    await fake_slack.deliver("events_api", fake_slack.user_message("hello"))
    await fake_slack.wait_until(lambda: "echo: hello" in final_text(fake_slack, DM_CHANNEL))

    assert len(fake_ollama.chat_requests) == 1
    assert not fake_slack.bot_messages(LAB_CHANNEL)


async def test_a_retried_event_is_answered_once(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    await start_bot()
    body = fake_slack.user_message("only once please")
    first = await fake_slack.deliver("events_api", body)
    retry = await fake_slack.deliver("events_api", body, retry_attempt=1)
    await fake_slack.wait_for_ack(first)
    await fake_slack.wait_for_ack(retry)
    await fake_slack.wait_until(lambda: "echo: only once" in final_text(fake_slack, DM_CHANNEL))
    await fake_slack.deliver("events_api", fake_slack.user_message("next"))
    await fake_slack.wait_until(lambda: "echo: next" in final_text(fake_slack, DM_CHANNEL))

    assert len(fake_ollama.chat_requests) == 2
    texts = [m.text for m in fake_slack.bot_messages(DM_CHANNEL)]
    assert texts == ["echo: only once please", "echo: next"]


@pytest.mark.parametrize("posts_per_burst", [3, 1], ids=["within-rate", "rate-limited"])
async def test_a_10000_character_reply_arrives_whole_and_in_order(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama, posts_per_burst: int
) -> None:
    fake_slack.rates["chat.postMessage"] = (posts_per_burst, 1.0)
    await start_bot()
    lines = [f"line {n:04d} " + "x" * 40 for n in range(220)]
    fake_ollama.script(Reply(text="\n".join(lines), chunks=50))
    await fake_slack.deliver("events_api", fake_slack.user_message("a long one"))

    await fake_slack.wait_until(lambda: "line 0219" in final_text(fake_slack, DM_CHANNEL))
    messages = fake_slack.bot_messages(DM_CHANNEL)
    assert len(messages) == 3
    assert all(len(m.text) <= 4000 for m in messages)
    delivered = "\n".join(m.text for m in messages).split("\n")
    assert delivered == lines
    limited = [c for c in fake_slack.calls_to("chat.postMessage") if c.status == 429]
    assert bool(limited) == (posts_per_burst == 1)


async def test_a_429_on_the_final_text_is_waited_out_and_nothing_is_lost(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    await start_bot()
    gate = asyncio.Event()
    fake_ollama.script(Reply(text="patience pays off", hold_gate=gate, hold_after=1))
    await fake_slack.deliver("events_api", fake_slack.user_message("rate limit me"))
    await fake_slack.wait_until(lambda: "thinking" in final_text(fake_slack, DM_CHANNEL))
    fake_slack.inject(
        "chat.update", 429, {"ok": False, "error": "ratelimited"}, **{"Retry-After": "1"}
    )
    gate.set()

    await fake_slack.wait_until(lambda: "pays off" in final_text(fake_slack, DM_CHANNEL))
    limited = [c for c in fake_slack.calls_to("chat.update") if c.status == 429]
    assert limited, "the fake should have rate limited one update"
    assert final_text(fake_slack, DM_CHANNEL) == "patience pays off"


async def test_ollama_down_gives_a_one_line_notice_in_the_thread(
    start_bot: StartBot, fake_slack: FakeSlack
) -> None:
    await start_bot(ollama_url=f"http://127.0.0.1:{unused_port()}")
    mention = fake_slack.user_message(f"<@{BOT_USER}> hi", channel=LAB_CHANNEL, kind="app_mention")
    thread_ts = mention["event"]["ts"]
    await fake_slack.deliver("events_api", mention)

    await fake_slack.wait_until(lambda: "Ollama" in final_text(fake_slack, LAB_CHANNEL, thread_ts))
    text = final_text(fake_slack, LAB_CHANNEL, thread_ts)
    assert text.startswith(":warning:") and "not reachable" in text and "\n" not in text


async def test_a_fast_stream_is_edited_sparingly_and_never_with_unchanged_text(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    await start_bot()
    words = " ".join(f"w{n}" for n in range(300))
    fake_ollama.script(Reply(text=words, chunks=300))
    await fake_slack.deliver("events_api", fake_slack.user_message("stream"))

    await fake_slack.wait_until(lambda: final_text(fake_slack, DM_CHANNEL) == words)
    updates = [c.args["text"] for c in fake_slack.calls_to("chat.update")]
    assert 1 <= len(updates) <= 3, "300 tokens in well under a second: one preview, one final"
    assert len(set(updates)) == len(updates)
    assert not [c for c in fake_slack.calls if c.status == 429]


async def test_a_refresh_requested_disconnect_is_followed_by_a_new_connection(
    start_bot: StartBot, fake_slack: FakeSlack
) -> None:
    await start_bot()
    await fake_slack.wait_until(lambda: fake_slack.connections == 1)

    await fake_slack.ask_to_reconnect()
    await fake_slack.wait_until(lambda: fake_slack.connections == 2)
    envelope = await fake_slack.deliver("events_api", fake_slack.user_message("still there?"))

    await fake_slack.wait_for_ack(envelope)
    await fake_slack.wait_until(lambda: final_text(fake_slack, DM_CHANNEL) == "echo: still there?")


async def test_ollama_busy_gives_a_one_line_notice(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    await start_bot()
    fake_ollama.script(Reply.busy())
    await fake_slack.deliver("events_api", fake_slack.user_message("are you there?"))

    await fake_slack.wait_until(lambda: "busy" in final_text(fake_slack, DM_CHANNEL))
    assert final_text(fake_slack, DM_CHANNEL) == (
        ":warning: The model server is busy with other requests; please try again in a moment."
    )


async def test_an_error_midway_keeps_the_partial_text_and_adds_the_notice(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    await start_bot()
    fake_ollama.script(Reply(text="The first half", error_midway="llama runner process died"))
    await fake_slack.deliver("events_api", fake_slack.user_message("tell me"))

    await fake_slack.wait_until(lambda: ":warning:" in final_text(fake_slack, DM_CHANNEL))
    assert final_text(fake_slack, DM_CHANNEL) == (
        "The first half\n\n:warning: The model failed in the middle of the reply; please try again."
    )
