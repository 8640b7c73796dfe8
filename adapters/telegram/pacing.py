"""Per-chat pacing of Bot API calls: Telegram's limits, kept per chat rather than per bot.

Two kinds of calls: optional ones (streaming edits, typing) are skipped when the chat has no
room; required ones (the final text) wait for room. A private chat gets about one message a
second; a group shares 20 messages a minute among all its conversations, so the spacing of
streaming edits grows with the number of replies streaming there at once. A 429 blocks only
its own chat for ``retry_after`` seconds.

Above the chats, the bot as a whole may send about 30 messages a second: a ``BotBudget``
(``LocalBudget`` for one process; ``adapters.telegram.shared`` for several) gives each send a
place in a sliding window. Required calls get the next free place and wait for it; optional
ones go only while the window has room to spare, so previews never crowd out final texts.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import time
import warnings
from collections import deque
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

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


# Sends leave a little after their place comes (the event loop, the network): the window is
# kept this much longer than the rate asks, so that Telegram's own count never sees one too many.
WINDOW_GUARD_S = 0.05


@dataclass(frozen=True, slots=True)
class SendWindow:
    """At most ``limit`` sends within any ``window_s``; optional ones leave ``reserve`` free."""

    limit: int
    window_s: float
    reserve: int

    @classmethod
    def for_rate(cls, per_s: float) -> SendWindow:
        """30 a second: 30 sends per second (plus the guard); 0.5: one per two seconds."""
        limit = max(1, math.floor(per_s))
        return cls(limit, limit / per_s + WINDOW_GUARD_S, limit // 3)

    def place(self, sends: list[float], now: float, required: bool) -> float | None:
        """When a send asked for at ``now`` may go, noted in ``sends`` (sorted, places taken
        and reserved); ``None`` for an optional send that finds no room to spare. Sends that
        must wait are spaced evenly: bursts would arrive spread out, some too late.

        The same rule as the shared budget's script, which keeps it in Redis for every process.
        """
        del sends[: bisect.bisect_right(sends, now - self.window_s)]
        at = now
        if not required:
            if len(sends) >= self.limit - self.reserve:
                return None
        elif len(sends) >= self.limit:
            spaced = sends[-1] + self.window_s / self.limit
            at = max(now, sends[len(sends) - self.limit] + self.window_s, spaced)
        bisect.insort(sends, at)
        return at


class BotBudget(Protocol):
    """The bot-wide share of Telegram's limits, taken before every message, edit or typing."""

    async def take(self) -> None:
        """Wait for this process's turn to send a required message (a final text)."""

    async def try_take(self) -> bool:
        """Whether an optional call (a streaming edit, typing) may go now."""


class LocalBudget:
    """The bot-wide budget as this process alone sees it."""

    def __init__(self, per_s: float) -> None:
        self._window = SendWindow.for_rate(per_s)
        self._sends: list[float] = []

    async def take(self) -> None:
        now = time.monotonic()
        at = self._window.place(self._sends, now, required=True)
        if at is not None and at > now:
            await asyncio.sleep(at - now)  # a place in time to reach, not an event to wait for

    async def try_take(self) -> bool:
        return self._window.place(self._sends, time.monotonic(), required=False) is not None


class Pacers:
    """One ``ChatPacer`` per chat id, forgotten after a quiet while, and the bot-wide budget
    (by default this process's alone, at Telegram's 30 messages a second)."""

    def __init__(
        self, limits: Limits, budget: BotBudget | None = None, forget_after_s: float = 300.0
    ) -> None:
        self.limits = limits
        self.budget: BotBudget = budget or LocalBudget(30.0)
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
