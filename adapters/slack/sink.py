"""Reply sinks for Slack: a streamed reply in the conversation, or an ephemeral command answer.

A streamed reply is a placeholder message ("thinking") posted by ``begin``, edited with
``chat.update`` at most once per ``update_interval_s`` while tokens arrive (and within a
preview budget shared by all replies, as Slack's rate tiers are per workspace), and replaced
by the final mrkdwn text; text beyond 4,000 characters continues in further messages.
Everything a sink needs is in the message's ``reply_to`` and its ``handle`` (the streamed
message's ts, the parts delivered), so a sink built after a restart finishes the same
message. Final text that Slack keeps refusing with 429s, or cannot be reached for, is raised
as ``DeliveryDeferred`` for the outbox to retry.

A reply in a thread is streamed with Slack's own methods (``chat.startStream``/
``appendStream``/``stopStream``) where the workspace allows it: Slack renders the Markdown
and each call carries only the new text. They are offered only to some apps and refuse
``chat.update`` (and buttons) while streaming, so a workspace that refuses them, a DM's top
level (no thread) and a final text the stream cannot carry all take the post-and-update way,
which works in every workspace and channel type within known rate tiers.

A thinking model's reasoning, when the channel shows it, sits in a context block above the
final text; only an edit can put it there, so a streamed reply then ends that way too.
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

from adapters.slack.blocks import (
    RETRY_ACTION,
    STOP_ACTION,
    WRITING,
    button_block,
    private_stop_blocks,
    reply_blocks,
)
from adapters.slack.formatting import preview, split_message, to_mrkdwn
from adapters.slack.pacing import ChannelCooldowns, TokenBucket, retry_after_s
from adapters.slack.streams import NativeStream, StreamSupport, stop_quietly
from core.errors import DeliveryDeferred, DeliveryRefused
from core.i18n import _
from core.models import IncomingMessage
from core.ports import ReplySink

log = logging.getLogger("ollabot.slack.sink")

THINKING = ":hourglass_flowing_sand: _thinking…_"
WARNING = ":warning:"
EPHEMERAL = "ephemeral"
THREAD = "thread"


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
        self.streams = StreamSupport()

    def __call__(self, message: IncomingMessage) -> ReplySink:
        address = SlackAddress.from_reply_to(message.reply_to)
        if address.kind == EPHEMERAL:
            return EphemeralSink(self._client, address, self.cooldowns)
        stream = self._stream(message, address)
        return ThreadReplySink(
            self._client, address, self.cooldowns, self._pace, stream, message.reply_tag
        )

    def _stream(self, message: IncomingMessage, address: SlackAddress) -> NativeStream | None:
        """Slack's own streaming, for a reply in a thread while the workspace allows it."""
        if not address.thread_ts or not self.streams.allowed:
            return None
        where = {
            "channel": address.channel,
            "thread_ts": address.thread_ts,
            "recipient_team_id": message.channel.split(":")[1],
            "recipient_user_id": address.user,
        }
        return NativeStream(
            self._client, self.streams, self.cooldowns, self._pace.interval_s, where
        )


@dataclass(frozen=True, slots=True)
class Pace:
    """How often previews may be sent: per message, and for all messages together."""

    interval_s: float
    budget: TokenBucket


class ThreadReplySink:
    """A reply that streams into one message and is finalised in mrkdwn.

    From ``begin`` on the message carries a Stop button; the final text carries Retry
    (on its last part), a failure notice neither. Given a ``stream``, the reply is streamed
    with Slack's own methods instead, when Slack agrees (``adapters.slack.streams``); the
    streaming message cannot carry buttons, so the asker gets Stop in a message of their own.
    """

    def __init__(
        self,
        client: AsyncWebClient,
        address: SlackAddress,
        cooldowns: ChannelCooldowns,
        pace: Pace,
        stream: NativeStream | None = None,
        reply_tag: str = "",
    ) -> None:
        self._client = client
        self._to = address
        self._reply_tag = reply_tag  # what Stop names: a late press stops no newer reply
        self._cooldowns = cooldowns
        self._pace = pace
        self._ts: str | None = None
        self._parts_done = 0
        self._shown = ""
        self._partial = ""
        self._next_update = 0.0
        self._button: str | None = None  # the button the message shows from now on
        self._shown_button: str | None = None
        self._reasoning = ""  # the reasoning the message shows from now on
        self._shown_reasoning = ""
        self._stream = stream
        self._streaming = False  # our stream is open
        self._left_open = False  # an earlier attempt's stream may still be open

    @property
    def handle(self) -> dict[str, str]:
        if self._ts is None:
            return {}
        handle = {"ts": self._ts, "parts": str(self._parts_done)}
        return handle | ({"stream": "open"} if self._streaming or self._left_open else {})

    def resume(self, handle: dict[str, str]) -> None:
        """Finish in the message an earlier attempt posted (stopping its stream first)."""
        if handle.get("ts"):
            self._ts = handle["ts"]
            self._parts_done = int(handle.get("parts", 0))
            self._left_open = bool(handle.get("stream"))

    async def begin(self) -> None:
        self._button = STOP_ACTION
        if self._ts is None and self._stream is not None and await self._stream.start():
            self._ts, self._streaming = self._stream.ts, True
            await self._offer_stop_privately()
            return
        if self._ts is None:
            with preview_errors_logged("the thinking placeholder", self._to):
                self._ts = await self._post(THINKING)
                self._shown = THINKING
            # the first preview waits one interval too: a quick reply then costs one
            # post and one final update, and the message is never edited twice in a row fast
            self._next_update = time.monotonic() + self._pace.interval_s

    async def _offer_stop_privately(self) -> None:
        with preview_errors_logged("the private Stop button", self._to):
            await self._client.chat_postEphemeral(
                channel=self._to.channel,
                user=self._to.user,
                thread_ts=self._to.thread_ts,
                text=_(WRITING),
                blocks=private_stop_blocks(self._to.thread_ts, self._to.user, self._reply_tag),
            )

    async def status(self, text: str) -> None:
        """Say where the reply stands (queued, model loading) until its text comes."""
        if self._streaming or self._partial or text == self._shown:
            return
        if not self._pace.budget.try_take():
            return
        with preview_errors_logged("a status", self._to):
            if self._ts is None:
                self._ts = await self._post(text)
            else:
                await self._edit(self._ts, text)
            self._shown = text

    async def update(self, text: str) -> None:
        self._partial = text
        if self._streaming and self._stream is not None:
            await self._stream.append(text)
            return
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
                await self._edit(self._ts, shown)
            self._shown = shown
        except SlackApiError as error:
            self._skip_preview(error)
        except (ClientError, TimeoutError) as error:
            log.warning("preview not sent to %s: %s", self._to.channel, error)

    async def finish(self, text: str, *, reasoning: str = "") -> None:
        with delivery_errors():
            if reasoning.strip():  # only an edit puts it above the text
                await self._stop_stream_as_it_is()
            elif await self._stream_ended(text, RETRY_ACTION):
                return
            await self._deliver(split_message(to_mrkdwn(text)), RETRY_ACTION, reasoning)

    async def fail(self, notice: str) -> None:
        note = f"{WARNING} {notice}"
        with delivery_errors():
            if not await self._stream_ended(_noted(self._partial.strip(), note), None):
                await self._deliver(split_message(_noted(to_mrkdwn(self._partial), note)), None)

    async def _stream_ended(self, markdown: str, button: str | None) -> bool:
        """True when a stream was open and now ends with ``markdown`` whole; otherwise any
        stream is stopped as it is and the message is finished by editing it."""
        if self._left_open and self._ts is not None:
            await stop_quietly(self._client, self._to.channel, self._ts)
            self._left_open = False
        if not self._streaming or self._stream is None:
            return False
        to = self._to
        blocks = (
            None
            if button is None
            else [button_block(button, to.thread_ts, to.user, self._reply_tag)]
        )
        ended = await self._stream.stop(markdown, blocks)
        self._streaming = False
        self._parts_done = 1 if ended else self._parts_done
        return ended

    async def _stop_stream_as_it_is(self) -> None:
        """End any stream (ours, or one an earlier attempt left open), so that the message
        can be edited."""
        if (self._streaming or self._left_open) and self._ts is not None:
            await stop_quietly(self._client, self._to.channel, self._ts)
        self._streaming = self._left_open = False

    async def _deliver(
        self, parts: list[str], last_button: str | None, reasoning: str = ""
    ) -> None:
        """Deliver the parts not delivered yet; the first one replaces the streamed message
        (with ``reasoning`` above it) and the last one carries ``last_button``."""
        for index in range(self._parts_done, len(parts)):
            self._button = last_button if index == len(parts) - 1 else None
            self._reasoning = reasoning if index == 0 else ""
            if index == 0:
                await self._replace_or_post(parts[0])
            else:
                await self._post(parts[index])
            self._parts_done = index + 1

    async def _replace_or_post(self, text: str) -> None:
        if self._ts is None:
            self._ts = await self._post(text)
            return
        shown = (self._shown, self._shown_button, self._shown_reasoning)
        if shown == (text, self._button, self._reasoning):
            return
        ts = self._ts
        try:
            await self._cooldowns.call(self._to.channel, lambda: self._edit(ts, text))
        except SlackApiError as error:
            if retry_after_s(error) is not None:
                raise
            log.warning(
                "chat.update failed (%s); posting the text instead", error.response.get("error")
            )
            self._ts = await self._post(text)
        self._shown = text

    async def _post(self, text: str) -> str:
        button, reasoning = self._button, self._reasoning
        response = await self._cooldowns.call(
            self._to.channel,
            lambda: self._client.chat_postMessage(
                channel=self._to.channel,
                thread_ts=self._to.thread_ts or None,
                text=text,
                blocks=self._blocks(text, button, reasoning),
            ),
        )
        self._shown_button, self._shown_reasoning = button, reasoning
        return str(response["ts"])

    async def _edit(self, ts: str, text: str) -> None:
        button, reasoning = self._button, self._reasoning
        blocks = self._blocks(text, button, reasoning)
        await self._client.chat_update(channel=self._to.channel, ts=ts, text=text, blocks=blocks)
        self._shown_button, self._shown_reasoning = button, reasoning

    def _blocks(self, text: str, button: str | None, reasoning: str) -> list[dict[str, Any]]:
        to = self._to
        return reply_blocks(text, button, to.thread_ts, to.user, reasoning, self._reply_tag)

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
        to = self._to
        first = reply_blocks(parts[0], None, to.thread_ts, to.user, reasoning)
        with delivery_errors():
            for index, part in enumerate(parts):
                await self._send(part, first if index == 0 and reasoning.strip() else None)

    async def fail(self, notice: str) -> None:
        with delivery_errors():
            await self._send(f"{WARNING} {notice}")

    async def _send(self, text: str, blocks: list[dict[str, Any]] | None = None) -> None:
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


def _noted(text: str, note: str) -> str:
    return f"{text}\n\n{note}" if text else note


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
