"""Per-chat pacing of Bot API calls: Telegram's limits, kept per chat rather than per bot.

Two kinds of calls: optional ones (streaming edits, typing) are skipped when the chat has no
room; required ones (the final text) wait for room. A private chat gets about one message a
second; a group shares 20 messages a minute among all its conversations, so the spacing of
streaming edits grows with the number of replies streaming there at once. A 429 blocks only
its own chat for ``retry_after`` seconds.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections import deque
from dataclasses import dataclass
from datetime import timedelta

from telegram.error import RetryAfter
from telegram.warnings import PTBDeprecationWarning


@dataclass(frozen=True, slots=True)
class Limits:
    """Telegram's pacing figures and the sink's streaming cadence (tests shrink them)."""

    private_interval_s: float = 1.0
    group_per_minute: int = 20
    group_reserve: int = 4  # room kept in a group's minute for final texts
    first_show_delay_s: float = 0.6  # short replies arrive whole, in one call
    typing_delay_s: float = 0.3
    typing_every_s: float = 4.5
    draft_keep_s: float = 20.0  # a draft unchanged this long is sent again (it fades at 30 s)


STREAM_SILENCE_S = 60.0


class ChatPacer:
    """The call budget of one chat, shared by every reply streaming into it."""

    def __init__(self, group: bool, limits: Limits) -> None:
        self._group = group
        self._limits = limits
        self._recent: deque[float] = deque()
        self.last_sent = 0.0
        self.blocked_until = 0.0
        self._streams: dict[int, float] = {}  # reply id -> last sign of life

    def streaming(self, reply: int, now: float) -> None:
        """Note that a reply is streaming into this chat (forgotten if it falls silent)."""
        self._streams[reply] = now

    def done(self, reply: int) -> None:
        self._streams.pop(reply, None)

    def streams(self, now: float) -> int:
        """Replies streaming here now; one abandoned mid-way stops counting after a while."""
        for reply, seen in list(self._streams.items()):
            if now - seen > STREAM_SILENCE_S:
                del self._streams[reply]
        return len(self._streams)

    def edit_allowed(self, now: float) -> bool:
        """Whether an optional call fits now without eating the final texts' room."""
        if now < self.blocked_until:
            return False
        if not self._group:
            return now - self.last_sent >= self._limits.private_interval_s
        self._forget_old(now)
        spacing = 60.0 / self._limits.group_per_minute * max(1, self.streams(now))
        room = self._limits.group_per_minute - self._limits.group_reserve
        return len(self._recent) < room and now - self.last_sent >= spacing

    async def wait_turn(self) -> None:
        """Wait until a required call may go: after any 429 block and within a group's minute."""
        for _ in range(1000):  # a deadline to reach, not an event to wait for
            delay = self._required_delay(time.monotonic())
            if delay <= 0:
                return
            await asyncio.sleep(delay)

    def sent(self) -> None:
        """Count one message sent or edited in this chat."""
        self.last_sent = time.monotonic()
        if self._group:
            self._recent.append(self.last_sent)

    def block(self, seconds: float) -> None:
        """Honour a 429: nothing goes to this chat for ``seconds``."""
        self.blocked_until = max(self.blocked_until, time.monotonic() + seconds)

    def idle_since(self, now: float) -> float:
        return now - max(self.last_sent, self.blocked_until)

    def _required_delay(self, now: float) -> float:
        delay = self.blocked_until - now
        if self._group:
            self._forget_old(now)
            if len(self._recent) >= self._limits.group_per_minute:
                delay = max(delay, self._recent[0] + 60.0 - now)
        return delay

    def _forget_old(self, now: float) -> None:
        while self._recent and self._recent[0] <= now - 60.0:
            self._recent.popleft()


class Pacers:
    """One ``ChatPacer`` per chat id, forgotten after a quiet while."""

    def __init__(self, limits: Limits, forget_after_s: float = 300.0) -> None:
        self.limits = limits
        self._forget_after_s = forget_after_s
        self._by_chat: dict[int, ChatPacer] = {}

    def for_chat(self, chat_id: int, group: bool) -> ChatPacer:
        pacer = self._by_chat.get(chat_id)
        if pacer is None:
            if len(self._by_chat) >= 4096:
                self._forget_quiet()
            pacer = self._by_chat[chat_id] = ChatPacer(group, self.limits)
        return pacer

    def _forget_quiet(self) -> None:
        now = time.monotonic()
        for chat_id, pacer in list(self._by_chat.items()):
            if pacer.streams(now) == 0 and pacer.idle_since(now) > self._forget_after_s:
                del self._by_chat[chat_id]


def retry_seconds(error: RetryAfter) -> float:
    """A 429's ``retry_after`` in seconds (PTB 22 is moving it from int to timedelta)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value: int | timedelta = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)
