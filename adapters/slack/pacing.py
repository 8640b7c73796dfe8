"""Slack rate limits as the sinks see them: per-channel cool-downs after a 429, and retries."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from slack_sdk.errors import SlackApiError

T = TypeVar("T")
RATE_LIMIT_ERRORS = ("ratelimited", "rate_limited")


def retry_after_s(error: SlackApiError) -> float | None:
    """Seconds Slack asks us to wait, or None when ``error`` is not rate limiting."""
    response = error.response
    if response.status_code != 429 and response.get("error") not in RATE_LIMIT_ERRORS:
        return None
    header = response.headers.get("retry-after") or response.headers.get("Retry-After")
    try:
        return max(float(header), 0.0) if header is not None else 1.0
    except ValueError:
        return 1.0


class ChannelCooldowns:
    """When each channel may be written to again, shared by every sink of one app."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def note(self, channel: str, seconds: float) -> None:
        until = time.monotonic() + seconds
        self._until[channel] = max(until, self._until.get(channel, 0.0))

    def cooling(self, channel: str) -> bool:
        return self.remaining(channel) > 0

    def remaining(self, channel: str) -> float:
        left = self._until.get(channel, 0.0) - time.monotonic()
        if left <= 0:
            self._until.pop(channel, None)
        return max(left, 0.0)

    async def wait(self, channel: str) -> None:
        left = self.remaining(channel)
        if left > 0:
            await asyncio.sleep(left)

    async def call(self, channel: str, call: Callable[[], Awaitable[T]], attempts: int = 6) -> T:
        """Run ``call``, waiting out the channel's cool-down and retrying on 429s.

        Used for text that must arrive (final replies, notices); previews skip instead.
        """
        for attempt in range(attempts):
            await self.wait(channel)
            try:
                return await call()
            except SlackApiError as error:
                wait = retry_after_s(error)
                if wait is None or attempt == attempts - 1:
                    raise
                self.note(channel, wait)
        raise AssertionError("unreachable")


class TokenBucket:
    """At most ``capacity`` actions at once, refilled at ``per_minute``.

    Slack's rate tiers count per method and workspace, so one bucket is shared by the
    previews of every reply in progress: under load each reply is edited less often, and
    the final texts (which are not budgeted, only retried) keep their room.
    """

    def __init__(
        self, per_minute: float, capacity: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = per_minute / 60
        self._capacity = capacity
        self._tokens = capacity
        self._clock = clock
        self._stamp = clock()

    def try_take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
