"""``/ollabot`` end to end: acknowledged at once, answered ephemerally, admins only, audited."""

from __future__ import annotations

from tests.fakes.ollama import FakeOllama
from tests.fakes.slack_api import ALICE, BOB, BOT_USER, LAB_CHANNEL, FakeSlack
from tests.slack.conftest import SlackBot, StartBot

LAB_SETTINGS = f"slack:T07TEAM0001:{LAB_CHANNEL}"


async def command(fake: FakeSlack, text: str, user: str) -> str:
    """Run a slash command; return the ephemeral answer the user saw."""
    seen = len(fake.ephemerals)
    envelope = await fake.deliver("slash_commands", fake.command_payload(text, user=user))
    assert await fake.wait_for_ack(envelope) < 3.0
    await fake.wait_until(lambda: len(fake.ephemerals) > seen)
    answer = fake.ephemerals[seen]
    assert (answer.user, answer.channel) == (user, LAB_CHANNEL)
    return answer.text


async def next_request_options(fake: FakeSlack, ollama: FakeOllama) -> dict[str, float]:
    n = len(ollama.chat_requests) + 1
    body = fake.user_message(f"<@{BOT_USER}> hi", channel=LAB_CHANNEL, kind="app_mention")
    await fake.deliver("events_api", body)
    request = await ollama.wait_for_chat(n)
    options: dict[str, float] = request["options"]
    return options


async def test_a_workspace_admin_changes_the_preset_and_the_next_request_uses_it(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    bot: SlackBot = await start_bot()

    answer = await command(fake_slack, "preset set top_k 50", ALICE)
    again = await command(fake_slack, "preset set temperature 0.2", ALICE)

    assert answer.startswith("Set top_k = 50") and again.startswith("Set temperature = 0.2")
    options = await next_request_options(fake_slack, fake_ollama)
    assert (options["top_k"], options["temperature"]) == (50, 0.2)
    audit = await bot.store.audit_log(LAB_SETTINGS, 10)
    assert {(entry.actor, entry.field) for entry in audit} == {(ALICE, "preset")}
    assert len(fake_slack.calls_to("users.info")) == 1, "the admin answer is cached"


async def test_a_non_admin_is_refused_and_nothing_changes(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    bot = await start_bot()

    answer = await command(fake_slack, "preset set temperature 1.5", BOB)

    assert answer == ":warning: Sorry, only admins of this chat can change its settings."
    options = await next_request_options(fake_slack, fake_ollama)
    assert options["temperature"] == 0.7
    [tried] = await bot.store.audit_log(LAB_SETTINGS, 10)
    assert (tried.actor, tried.new, tried.outcome) == (
        BOB,
        "set temperature 1.5",
        "refused: not an admin",
    )


async def test_configured_admin_ids_need_no_lookup(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    await start_bot(admin_ids=[BOB])

    answer = await command(fake_slack, "system set You answer like a pirate.", BOB)

    assert answer == "System prompt updated."
    n = len(fake_ollama.chat_requests) + 1
    body = fake_slack.user_message(f"<@{BOT_USER}> hi", channel=LAB_CHANNEL, kind="app_mention")
    await fake_slack.deliver("events_api", body)
    request = await fake_ollama.wait_for_chat(n)
    assert request["messages"][0] == {"role": "system", "content": "You answer like a pirate."}
    assert not fake_slack.calls_to("users.info")


async def test_a_bad_value_is_refused_with_the_range(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    await start_bot()

    answer = await command(fake_slack, "preset set top_k 500", ALICE)

    assert answer.startswith(":warning:") and "1" in answer and "100" in answer
    options = await next_request_options(fake_slack, fake_ollama)
    assert options["top_k"] == 40


async def test_help_and_reset_are_for_everyone(start_bot: StartBot, fake_slack: FakeSlack) -> None:
    await start_bot()

    help_text = await command(fake_slack, "help", BOB)
    empty = await command(fake_slack, "", BOB)
    reset = await command(fake_slack, "reset", BOB)

    assert "/ollabot reset" in help_text and "/ollabot preset set PARAM VALUE" in help_text
    assert empty == help_text
    assert reset == "Conversation forgotten; let's start afresh."
    assert not fake_slack.calls_to("users.info")
