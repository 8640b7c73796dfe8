"""Redis down at receipt: the event is not acknowledged, so Slack's retry gets the answer."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from tests.fakes.slack_api import DM_CHANNEL, FakeSlack
from tests.fixtures.redis import RedisServer
from tests.slack.conftest import StartBot


async def poll(condition: object, within_s: float = 10.0) -> None:
    """A bounded poll, for what only shows in the logs."""
    deadline = time.monotonic() + within_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_an_event_that_cannot_be_stored_is_not_acknowledged_and_the_retry_is_answered(
    start_bot: StartBot,
    fake_slack: FakeSlack,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await start_bot(redis=redis_server.url)
    redis_server.stop()
    body = fake_slack.user_message("did you get this?")

    with caplog.at_level(logging.ERROR):
        first = await fake_slack.deliver("events_api", body)
        await poll(lambda: any("Failed to run listener" in r.getMessage() for r in caplog.records))
    assert first.acked_at is None, "acknowledged without being stored"
    redis_server.start()
    retry = await fake_slack.deliver("events_api", body, retry_attempt=1)

    await fake_slack.wait_for_ack(retry)
    await fake_slack.wait_until(
        lambda: [m.text for m in fake_slack.bot_messages(DM_CHANNEL)] == ["echo: did you get this?"]
    )
    assert first.acked_at is None


async def test_a_refused_placeholder_does_not_stop_the_reply(
    start_bot: StartBot, fake_slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    await start_bot()
    fake_slack.inject("chat.postMessage", 200, {"ok": False, "error": "fatal_error"})

    with caplog.at_level(logging.WARNING):
        await fake_slack.deliver("events_api", fake_slack.user_message("anyone?"))
        await fake_slack.wait_until(
            lambda: [m.text for m in fake_slack.bot_messages(DM_CHANNEL)] == ["echo: anyone?"]
        )

    assert any("thinking placeholder" in r.getMessage() for r in caplog.records)
    assert not any("unexpected error" in r.getMessage() for r in caplog.records)
