"""What a hostile prompt or a guest cannot do on Slack: ping people, hide text, be admin."""

from __future__ import annotations

import json
import re

from tests.fakes.ollama import FakeOllama, Reply
from tests.fakes.slack_api import ALICE, BOT_USER, DM_CHANNEL, LAB_CHANNEL, FakeSlack
from tests.slack.conftest import StartBot
from tests.slack.test_commands import LAB_SETTINGS, command

# Slack's <…> syntax for anything but a web or mail link mentions someone or something.
MENTION = re.compile(r"<(?!(?:https?://|mailto:)[^\s|>]+[|>])[^>]*>")
GUEST = "U09GUEST001"


async def ask(fake: FakeSlack, text: str) -> str:
    """Mention the bot in #llm-lab; return the finished reply in the thread."""
    body = fake.user_message(f"<@{BOT_USER}> {text}", channel=LAB_CHANNEL, kind="app_mention")
    thread = body["event"]["ts"]
    await fake.deliver("events_api", body)
    await fake.wait_until(lambda: any(m.edits for m in fake.bot_messages(LAB_CHANNEL, thread)))
    return "\n".join(m.text for m in fake.bot_messages(LAB_CHANNEL, thread))


async def test_markdown_links_the_model_writes_cannot_ping_anyone(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    await start_bot()
    fake_ollama.script(
        Reply(
            text="Hi [all](!here), [everyone](!channel), [boss](@U07ALICE001), "
            "[room](#C07LLMLAB01), [team](!subteam^S0123) and <!channel>. "
            "Docs: [guide](https://example.com/guide)."
        )
    )

    shown = await ask(fake_slack, "print some links")

    assert MENTION.findall(shown) == []
    assert "all (!here)" in shown and "boss (@U07ALICE001)" in shown
    assert "<https://example.com/guide|guide>" in shown


async def test_inline_html_and_images_from_the_model_stay_readable(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    await start_bot()
    fake_ollama.script(
        Reply(text="Use the <div> tag, not <font>. ![a cat on a mat](https://example.com/c.png)")
    )

    shown = await ask(fake_slack, "html?")

    assert "&lt;div&gt; tag, not &lt;font&gt;" in shown  # Slack shows these as <div>, <font>
    assert "<https://example.com/c.png|a cat on a mat>" in shown


async def test_an_admin_of_another_workspace_is_not_an_admin_here(
    start_bot: StartBot, fake_slack: FakeSlack
) -> None:
    fake_slack.users[GUEST] = {
        "name": "guest",
        "is_admin": True,
        "is_owner": True,
        "team": "T09PARTNER1",
    }
    bot = await start_bot()

    refused = await command(fake_slack, "preset set temperature 1.5", GUEST)
    allowed = await command(fake_slack, "preset set temperature 0.3", ALICE)

    assert refused == ":warning: Sorry, only admins of this chat can change its settings."
    assert allowed.startswith("Set temperature = 0.3")
    assert (await bot.store.get_settings(LAB_SETTINGS)).overrides == {"temperature": 0.3}
    trail = (await command(fake_slack, "audit", ALICE)).splitlines()[1:]
    assert [line.split(" UTC ", 1)[1] for line in trail] == [
        f"{GUEST} preset: refused (not an admin): set temperature 1.5",
        f"{ALICE} preset: balanced → balanced temperature=0.3",
    ]


async def test_events_that_cannot_be_read_or_stored_are_set_aside_and_acknowledged(
    start_bot: StartBot, fake_slack: FakeSlack, key_prefix: str
) -> None:
    bot = await start_bot()
    channelless = fake_slack.user_message("where am I?")
    del channelless["event"]["channel"]
    surrogate = fake_slack.user_message("a lone surrogate: \ud800")

    acks = []
    for body in (channelless, surrogate):
        acks.append(await fake_slack.wait_for_ack(await fake_slack.deliver("events_api", body)))
    await fake_slack.deliver("events_api", fake_slack.user_message("still there?"))

    await fake_slack.wait_until(
        lambda: [m.text for m in fake_slack.bot_messages(DM_CHANNEL)] == ["echo: still there?"]
    )
    assert all(seconds < 3.0 for seconds in acks)
    letters = await bot.store.client.xrange(f"{key_prefix}deadletter")
    assert [f["reason"].split(":")[0] for _, f in letters] == ["KeyError", "UnicodeEncodeError"]
    assert [json.loads(f["payload"])["event_id"] for _, f in letters] == [
        channelless["event_id"],
        surrogate["event_id"],
    ]
