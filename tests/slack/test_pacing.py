"""Rate limits as the sinks see them: the shared preview budget and Slack's Retry-After."""

from __future__ import annotations

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from adapters.slack.pacing import TokenBucket, retry_after_s


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def slack_error(status: int, error: str, headers: dict[str, str]) -> SlackApiError:
    response = AsyncSlackResponse(
        client=AsyncWebClient(),
        http_verb="POST",
        api_url="https://slack.com/api/chat.update",
        req_args={},
        data={"ok": False, "error": error},
        headers=headers,
        status_code=status,
    )
    return SlackApiError(error, response)


def test_the_preview_budget_allows_a_burst_then_the_tier_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(per_minute=60, capacity=3, clock=clock)

    burst = [bucket.try_take() for _ in range(4)]
    clock.now += 1.0
    after_a_second = [bucket.try_take(), bucket.try_take()]

    assert burst == [True, True, True, False]
    assert after_a_second == [True, False]


def test_retry_after_is_read_from_a_429_and_from_rate_limited() -> None:
    assert retry_after_s(slack_error(429, "ratelimited", {"retry-after": "7"})) == 7.0
    assert retry_after_s(slack_error(200, "rate_limited", {})) == 1.0
    assert retry_after_s(slack_error(200, "msg_too_long", {})) is None
