"""Documents on Slack: a file shared with the text ``kb add`` (a slash command cannot carry
a file) joins the chat's knowledge; in a channel only admins may add one."""

from __future__ import annotations

from tests.fakes.ollama import FakeOllama
from tests.fakes.slack_api import ALICE, BOB, DM_CHANNEL, LAB_CHANNEL, FakeSlack
from tests.slack.conftest import StartBot

NOTES = b"The release train leaves every second Tuesday at noon."


def final_text(fake: FakeSlack, channel: str, thread_ts: str = "") -> str:
    return "\n".join(m.text for m in fake.bot_messages(channel, thread_ts))


async def test_a_file_shared_in_a_dm_with_kb_add_is_added_and_cited(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    await start_bot(documents=True)
    shared = fake_slack.add_file(NOTES, "release.txt", "text/plain")
    await fake_slack.deliver("events_api", fake_slack.user_message("kb add", files=[shared]))

    await fake_slack.wait_until(
        lambda: final_text(fake_slack, DM_CHANNEL).startswith("Added release.txt as ")
    )
    assert fake_slack.downloads == [(shared["id"], True)]

    question = fake_slack.user_message("when does the release train leave?")
    await fake_slack.deliver("events_api", question)
    await fake_slack.wait_until(
        lambda: "Sources: [1] release.txt #1" in final_text(fake_slack, DM_CHANNEL)
    )
    assert "every second Tuesday" in fake_ollama.chat_requests[-1]["messages"][-2]["content"]


async def test_in_a_channel_only_an_admin_adds_a_file(
    start_bot: StartBot, fake_slack: FakeSlack
) -> None:
    await start_bot(documents=True)  # Alice is a workspace admin, Bob is not
    shared = fake_slack.add_file(NOTES, "release.txt", "text/plain")

    async def share(user: str) -> str:
        event = fake_slack.user_message(
            "<@U07OLLABOT1> kb add",
            channel=LAB_CHANNEL,
            user=user,
            kind="app_mention",
            files=[shared],
        )
        await fake_slack.deliver("events_api", event)
        return str(event["event"]["ts"])

    bobs = await share(BOB)
    await fake_slack.wait_until(
        lambda: (
            final_text(fake_slack, LAB_CHANNEL, bobs)
            == ":warning: Sorry, only admins of this chat can change its settings."
        )
    )
    alices = await share(ALICE)
    await fake_slack.wait_until(
        lambda: final_text(fake_slack, LAB_CHANNEL, alices).startswith("Added release.txt as ")
    )
