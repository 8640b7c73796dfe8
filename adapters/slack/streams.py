"""Slack's own streaming (``chat.startStream``/``appendStream``/``stopStream``) for one reply.

Slack renders the streamed Markdown itself, and each call carries only the new text. It is
offered only to some apps and only for replies in a thread, so a refusal of
``chat.startStream`` (anything but a rate limit) is remembered for the workspace and every
later reply goes the ``chat.update`` way. Appends are paced like previews: at most one per
interval per reply, within a budget per minute shared by all replies (Slack counts
``chat.appendStream`` per workspace). A streaming message cannot be edited or given buttons
until it is stopped, so the sink offers Stop to the asker in a message of their own; the
final call adds Retry below the text.

What is streamed is what the user will keep, so it is sanitised as the final text would be:
no ``<!here>``-style syntax, no links to anything but the web. When the final text is not
a continuation of what was streamed, or is too long for one message, the stream is stopped
as it is and the sink finishes the message with ``chat.update`` instead.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from aiohttp import ClientError
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.formatting import escape
from adapters.slack.pacing import ChannelCooldowns, TokenBucket, retry_after_s

log = logging.getLogger("ollabot.slack.streams")

STREAM_LIMIT = 12_000  # characters of Markdown in one streamed message (and in one call)
_MARKDOWN_LINK = re.compile(r"\[([^\]\n]*)\]\(([^)\s]*)\)")
_WEB_TARGET = re.compile(r"(?:https?://|mailto:)\S+")


def safe_markdown(markdown: str) -> str:
    """The model's Markdown with Slack's control characters escaped and links to anything
    but the web (``!here``, ``@U…``, ``#C…``) turned into plain text."""
    return _MARKDOWN_LINK.sub(_web_link_or_text, escape(markdown.strip()))


def _web_link_or_text(match: re.Match[str]) -> str:
    label, target = match.group(1), match.group(2)
    if _WEB_TARGET.fullmatch(target):
        return match.group(0)
    return f"{label} ({target})" if label and target else label or target


class StreamSupport:
    """Whether the workspace lets this app stream (one workspace per app)."""

    def __init__(self, per_minute: float = 90.0) -> None:
        self.refused = ""  # Slack's error, once it refused to start a stream
        self.appends = TokenBucket(per_minute, capacity=10)

    @property
    def allowed(self) -> bool:
        return not self.refused

    def refuse(self, error: str) -> None:
        if not self.refused:
            log.warning("Slack refused chat.startStream (%s); replies are edited instead", error)
        self.refused = error or "refused"


class NativeStream:
    """One reply streamed into a thread: ``start``, paced ``append``, then ``stop``."""

    def __init__(
        self,
        client: AsyncWebClient,
        support: StreamSupport,
        cooldowns: ChannelCooldowns,
        interval_s: float,
        where: dict[str, str],
    ) -> None:
        self._client = client
        self._support = support
        self._cooldowns = cooldowns
        self._interval_s = interval_s
        self._where = where  # channel, thread_ts, recipient_team_id, recipient_user_id
        self._channel = where["channel"]
        self._next_append = 0.0
        self._broken = False
        self.ts = ""
        self.sent = ""  # the Markdown Slack has so far

    async def start(self) -> bool:
        """Open the stream; False (and the sink edits instead) when Slack will not."""
        try:
            w = self._where
            response = await self._client.chat_startStream(
                channel=w["channel"],
                thread_ts=w["thread_ts"],
                recipient_team_id=w["recipient_team_id"],
                recipient_user_id=w["recipient_user_id"],
            )
        except SlackApiError as error:
            if retry_after_s(error) is None:
                self._support.refuse(str(error.response.get("error")))
            else:
                self._cooldowns.note(self._channel, retry_after_s(error) or 1.0)
            return False
        except (ClientError, TimeoutError) as error:
            log.warning("chat.startStream not sent to %s: %s", self._channel, error)
            return False
        self.ts = str(response["ts"])
        self._next_append = time.monotonic() + self._interval_s
        return True

    async def append(self, markdown: str) -> None:
        """Send what is new in ``markdown`` (the reply so far), when pacing allows."""
        now = time.monotonic()
        if self._broken or now < self._next_append or self._cooldowns.cooling(self._channel):
            return
        delta = self._delta(safe_markdown(markdown))
        if not delta or not self._support.appends.try_take():
            return
        self._next_append = now + self._interval_s
        try:
            await self._client.chat_appendStream(
                channel=self._channel, ts=self.ts, markdown_text=delta
            )
            self.sent += delta
        except SlackApiError as error:
            wait = retry_after_s(error)
            if wait is not None:
                self._cooldowns.note(self._channel, wait)
            else:
                self._broken = True  # the final text will be delivered by chat.update
                log.warning("chat.appendStream failed: %s", error.response.get("error"))
        except (ClientError, TimeoutError) as error:
            log.warning("chat.appendStream not sent to %s: %s", self._channel, error)

    async def stop(self, markdown: str, blocks: list[dict[str, Any]] | None) -> bool:
        """End the stream with ``markdown`` complete and ``blocks`` below it; False when the
        stream cannot carry it (it is then stopped as it is, for ``chat.update`` to finish).

        A rate limit that outlasts the channel's retries is raised, to be retried later.
        """
        final = safe_markdown(markdown)
        delta = self._delta(final) if len(final) <= STREAM_LIMIT else None
        if delta is None:
            await self.stop_as_it_is()
            return False
        try:
            await self._cooldowns.call(
                self._channel,
                lambda: self._client.chat_stopStream(
                    channel=self._channel, ts=self.ts, markdown_text=delta or None, blocks=blocks
                ),
            )
        except SlackApiError as error:
            if retry_after_s(error) is not None:
                raise
            log.warning("chat.stopStream failed (%s); editing instead", error.response.get("error"))
            return False
        self.sent = final
        return True

    async def stop_as_it_is(self) -> None:
        """Best effort: a stream left open cannot be edited."""
        await stop_quietly(self._client, self._channel, self.ts)

    def _delta(self, safe: str) -> str | None:
        """What ``safe`` adds to what was sent; None when it does not continue it."""
        if not safe.startswith(self.sent) or len(safe) > STREAM_LIMIT:
            return None
        return safe[len(self.sent) :]


async def stop_quietly(client: AsyncWebClient, channel: str, ts: str) -> None:
    """Stop a stream that may still be open (an earlier attempt's), ignoring every error."""
    try:
        await client.chat_stopStream(channel=channel, ts=ts)
    except (SlackApiError, ClientError, TimeoutError) as error:
        log.info("stopping the stream of %s in %s: %s", ts, channel, error)
