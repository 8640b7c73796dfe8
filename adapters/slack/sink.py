"""Reply sinks for Slack: a streamed reply in the conversation, or an ephemeral command answer.

A streamed reply is a placeholder message ("thinking") posted by ``begin``, edited with
``chat.update`` at most once per ``update_interval_s`` while tokens arrive (and within a
preview budget shared by all replies, as Slack's rate tiers are per workspace), and replaced
by the final mrkdwn text; text beyond 4,000 characters continues in further messages.
Everything a sink needs is in the message's ``reply_to`` and its ``handle`` (the streamed
message's ts, the parts delivered), so a sink built after a restart finishes the same
message. Final text that Slack keeps refusing with 429s, or cannot be reached for, is raised
as ``DeliveryDeferred`` for the outbox to retry.

Why not Slack's streaming methods (``chat.startStream``/``appendStream``/``stopStream``):
they exist only for apps with the AI-app features enabled, need the recipient user and team
outside DMs, render their own Markdown (so the 4,000-character split and our mrkdwn are
out of our hands) and refuse ``chat.update`` while streaming. Post-and-update works in
every workspace and channel type, within known rate tiers.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientError
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.formatting import preview, split_message, to_mrkdwn, with_reasoning_blocks
from adapters.slack.pacing import ChannelCooldowns, TokenBucket, retry_after_s
from core.errors import DeliveryDeferred, DeliveryRefused
from core.models import IncomingMessage
from core.ports import ReplySink

log = logging.getLogger("ollabot.slack.sink")

THINKING = ":hourglass_flowing_sand: _thinking…_"
WARNING = ":warning:"
EPHEMERAL = "ephemeral"
THREAD = "thread"
Blocks = list[dict[str, Any]] | None  # a message's Block Kit layout; None: its text alone


@dataclass(frozen=True, slots=True)
class SlackAddress:
    """Where a reply goes: channel, thread (empty: top level), the asking user, and how."""

    channel: str
    thread_ts: str
    user: str
    kind: str = THREAD

    def to_reply_to(self) -> dict[str, str]:
        return {
            "channel": self.channel,
            "thread_ts": self.thread_ts,
            "user": self.user,
            "kind": self.kind,
        }

    @classmethod
    def from_reply_to(cls, reply_to: dict[str, str]) -> SlackAddress:
        return cls(
            reply_to["channel"],
            reply_to.get("thread_ts", ""),
            reply_to.get("user", ""),
            reply_to.get("kind", THREAD),
        )


class SlackSinks:
    """The ``SinkFactory`` of the Slack platform: one sink per message taken from the inbox."""

    def __init__(
        self,
        client: AsyncWebClient,
        update_interval_s: float = 1.2,
        previews_per_minute: float = 40.0,
    ) -> None:
        self._client = client
        self._pace = Pace(update_interval_s, TokenBucket(previews_per_minute, capacity=10))
        self.cooldowns = ChannelCooldowns()

    def __call__(self, message: IncomingMessage) -> ReplySink:
        address = SlackAddress.from_reply_to(message.reply_to)
        if address.kind == EPHEMERAL:
            return EphemeralSink(self._client, address, self.cooldowns)
        return ThreadReplySink(self._client, address, self.cooldowns, self._pace)


@dataclass(frozen=True, slots=True)
class Pace:
    """How often previews may be sent: per message, and for all messages together."""

    interval_s: float
    budget: TokenBucket


class ThreadReplySink:
    """A reply that streams into one message and is finalised in mrkdwn."""

    def __init__(
        self,
        client: AsyncWebClient,
        address: SlackAddress,
        cooldowns: ChannelCooldowns,
        pace: Pace,
    ) -> None:
        self._client = client
        self._to = address
        self._cooldowns = cooldowns
        self._pace = pace
        self._ts: str | None = None
        self._parts_done = 0
        self._shown = ""
        self._partial = ""
        self._next_update = 0.0

    @property
    def handle(self) -> dict[str, str]:
        return {} if self._ts is None else {"ts": self._ts, "parts": str(self._parts_done)}

    def resume(self, handle: dict[str, str]) -> None:
        """Finish in the message an earlier attempt posted."""
        if handle.get("ts"):
            self._ts = handle["ts"]
            self._parts_done = int(handle.get("parts", 0))

    async def begin(self) -> None:
        if self._ts is None:
            with preview_errors_logged("the thinking placeholder", self._to):
                self._ts = await self._post(THINKING)
                self._shown = THINKING
            # the first preview waits one interval too: a quick reply then costs one
            # post and one final update, and the message is never edited twice in a row fast
            self._next_update = time.monotonic() + self._pace.interval_s

    async def status(self, text: str) -> None:
        """Say where the reply stands (queued, model loading) until its text comes."""
        if self._partial or text == self._shown or not self._pace.budget.try_take():
            return
        with preview_errors_logged("a status", self._to):
            if self._ts is None:
                self._ts = await self._post(text)
            else:
                await self._client.chat_update(channel=self._to.channel, ts=self._ts, text=text)
            self._shown = text

    async def update(self, text: str) -> None:
        self._partial = text
        now = time.monotonic()
        if now < self._next_update or self._cooldowns.cooling(self._to.channel):
            return
        shown = preview(text)
        if not shown or shown == self._shown or not self._pace.budget.try_take():
            return
        self._next_update = now + self._pace.interval_s
        try:
            if self._ts is None:
                self._ts = await self._post(shown)
            else:
                await self._client.chat_update(channel=self._to.channel, ts=self._ts, text=shown)
            self._shown = shown
        except SlackApiError as error:
            self._skip_preview(error)
        except (ClientError, TimeoutError) as error:
            log.warning("preview not sent to %s: %s", self._to.channel, error)

    async def finish(self, text: str, *, reasoning: str = "") -> None:
        """The final text; a thinking model's reasoning goes in a context block above it."""
        parts = split_message(to_mrkdwn(text))
        blocks = with_reasoning_blocks(parts[0], reasoning) if reasoning.strip() else None
        with delivery_errors():
            await self._deliver(parts, blocks)

    async def fail(self, notice: str) -> None:
        partial = to_mrkdwn(self._partial)
        note = f"{WARNING} {notice}"
        with delivery_errors():
            await self._deliver(split_message(f"{partial}\n\n{note}" if partial else note))

    async def _deliver(self, parts: list[str], first_blocks: Blocks = None) -> None:
        """Deliver the parts not delivered yet; the first one (as ``first_blocks`` when given)
        replaces the streamed message."""
        for index in range(self._parts_done, len(parts)):
            if index == 0:
                await self._replace_or_post(parts[0], first_blocks)
            else:
                await self._post(parts[index])
            self._parts_done = index + 1

    async def _replace_or_post(self, text: str, blocks: Blocks = None) -> None:
        if self._ts is None:
            self._ts = await self._post(text, blocks)
            return
        if text == self._shown and blocks is None:
            return
        ts = self._ts
        try:
            await self._cooldowns.call(
                self._to.channel,
                lambda: self._client.chat_update(
                    channel=self._to.channel, ts=ts, text=text, blocks=blocks
                ),
            )
        except SlackApiError as error:
            if retry_after_s(error) is not None:
                raise
            log.warning(
                "chat.update failed (%s); posting the text instead", error.response.get("error")
            )
            self._ts = await self._post(text, blocks)
        self._shown = text

    async def _post(self, text: str, blocks: Blocks = None) -> str:
        response = await self._cooldowns.call(
            self._to.channel,
            lambda: self._client.chat_postMessage(
                channel=self._to.channel,
                thread_ts=self._to.thread_ts or None,
                text=text,
                blocks=blocks,
            ),
        )
        return str(response["ts"])

    def _skip_preview(self, error: SlackApiError) -> None:
        wait = retry_after_s(error)
        if wait is not None:
            self._cooldowns.note(self._to.channel, wait)
        else:
            log.warning("preview update failed: %s", error.response.get("error"))


class EphemeralSink:
    """A command answer only the asking user sees."""

    def __init__(
        self, client: AsyncWebClient, address: SlackAddress, cooldowns: ChannelCooldowns
    ) -> None:
        self._client = client
        self._to = address
        self._cooldowns = cooldowns

    async def begin(self) -> None:
        pass

    async def status(self, text: str) -> None:
        pass

    async def update(self, text: str) -> None:
        pass

    @property
    def handle(self) -> dict[str, str]:
        return {}

    def resume(self, handle: dict[str, str]) -> None:
        pass

    async def finish(self, text: str, *, reasoning: str = "") -> None:
        """The answer (a ``retry`` may bring a model's reasoning, above its first part)."""
        parts = split_message(to_mrkdwn(text))
        blocks = with_reasoning_blocks(parts[0], reasoning) if reasoning.strip() else None
        with delivery_errors():
            for index, part in enumerate(parts):
                await self._send(part, blocks if index == 0 else None)

    async def fail(self, notice: str) -> None:
        with delivery_errors():
            await self._send(f"{WARNING} {notice}")

    async def _send(self, text: str, blocks: Blocks = None) -> None:
        await self._cooldowns.call(
            self._to.channel,
            lambda: self._client.chat_postEphemeral(
                channel=self._to.channel,
                user=self._to.user,
                text=text,
                thread_ts=self._to.thread_ts or None,
                blocks=blocks,
            ),
        )


@contextlib.contextmanager
def delivery_errors() -> Iterator[None]:
    """Slack's refusals as the outbox understands them: wait (429s that outlasted the
    channel's own retries, network trouble) or give up (any other API error)."""
    try:
        yield
    except SlackApiError as error:
        wait = retry_after_s(error)
        if wait is not None:
            raise DeliveryDeferred("Slack is rate limiting", wait) from error
        raise DeliveryRefused(str(error.response.get("error"))) from error
    except (ClientError, TimeoutError) as error:
        raise DeliveryDeferred(f"Slack not reachable: {error!r}") from error


@contextlib.contextmanager
def preview_errors_logged(what: str, to: SlackAddress) -> Iterator[None]:
    """A placeholder or preview that did not go out costs nothing: the final text follows."""
    try:
        yield
    except (SlackApiError, ClientError, TimeoutError) as error:
        reason = error.response.get("error") if isinstance(error, SlackApiError) else error
        log.warning("could not deliver %s to %s: %s", what, to.channel, reason)
