"""HTTP mode: Slack's signature and 5-minute window checked first, retries answered once."""

from __future__ import annotations

import json
import time

from tests.fakes.ollama import FakeOllama
from tests.fakes.slack_api import BOB, DM_CHANNEL, LAB_CHANNEL, FakeSlack
from tests.slack.conftest import SIGNING_SECRET, StartBot


def replies(fake: FakeSlack) -> list[str]:
    return [m.text for m in fake.bot_messages(DM_CHANNEL)]


async def test_a_signed_event_is_accepted_and_answered(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    bot = await start_bot(http=True)
    body = json.dumps(fake_slack.user_message("hello over http")).encode()

    status, _, seconds = await fake_slack.send_http(bot.events_url, body, SIGNING_SECRET)

    assert status == 200 and seconds < 3.0
    await fake_slack.wait_until(lambda: replies(fake_slack) == ["echo: hello over http"])


async def test_bad_and_stale_signatures_are_refused_and_change_nothing(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    bot = await start_bot(http=True)
    forged = json.dumps(fake_slack.user_message("forged")).encode()
    stale = json.dumps(fake_slack.user_message("stale")).encode()

    bad = await fake_slack.send_http(bot.events_url, forged, SIGNING_SECRET, signature="v0=00")
    old = await fake_slack.send_http(
        bot.events_url, stale, SIGNING_SECRET, timestamp=int(time.time()) - 301
    )
    other_key = await fake_slack.send_http(bot.events_url, forged, "not-the-secret")
    good = json.dumps(fake_slack.user_message("genuine")).encode()
    await fake_slack.send_http(bot.events_url, good, SIGNING_SECRET)

    assert [bad[0], old[0], other_key[0]] == [401, 401, 401]
    await fake_slack.wait_until(lambda: replies(fake_slack) == ["echo: genuine"])
    assert len(fake_ollama.chat_requests) == 1


async def test_a_retried_http_delivery_is_answered_once(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    bot = await start_bot(http=True)
    body = json.dumps(fake_slack.user_message("once")).encode()

    first = await fake_slack.send_http(bot.events_url, body, SIGNING_SECRET)
    retry = await fake_slack.send_http(bot.events_url, body, SIGNING_SECRET, retry_num=1)
    await fake_slack.send_http(
        bot.events_url, json.dumps(fake_slack.user_message("then")).encode(), SIGNING_SECRET
    )

    assert first[0] == retry[0] == 200
    await fake_slack.wait_until(lambda: replies(fake_slack) == ["echo: once", "echo: then"])
    assert len(fake_ollama.chat_requests) == 2


async def test_a_slash_command_form_and_url_verification(
    start_bot: StartBot, fake_slack: FakeSlack
) -> None:
    bot = await start_bot(http=True)
    form = fake_slack.command_form(fake_slack.command_payload("help", user=BOB))
    challenge = json.dumps(
        {
            "token": "x",
            "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
            "type": "url_verification",
        }
    ).encode()

    status, _, seconds = await fake_slack.send_http(
        bot.events_url, form, SIGNING_SECRET, content_type="application/x-www-form-urlencoded"
    )
    verified = await fake_slack.send_http(bot.events_url, challenge, SIGNING_SECRET)

    assert status == 200 and seconds < 3.0
    assert (
        verified[0] == 200 and "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" in verified[1]
    )
    await fake_slack.wait_until(lambda: bool(fake_slack.ephemerals))
    assert fake_slack.ephemerals[0].channel == LAB_CHANNEL
    assert "/ollabot reset" in fake_slack.ephemerals[0].text
