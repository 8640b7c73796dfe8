"""Which waiting message a free model slot takes next.

Messages wait in one queue per conversation, in arrival order; only a conversation's oldest
message is ever ready, and a conversation with a message in progress has none. Among the
ready ones the choice is start-time fair queueing across users, then across channels (a tie
between users goes to the less served channel): each is charged the GPU seconds its replies
cost (estimated when a reply starts, corrected when it ends), and the least charged goes
first. A user who was idle starts level with the others, not ahead by their idle time, so a
flood from one user, in however many chats, delays anyone else by about one reply.

Urgent commands (``stop``) wait for nothing: they go first, outside their conversation's queue.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field

from core.commands import is_urgent
from core.models import InboxEntry

DEFAULT_COST_S = 1.0


@dataclass(slots=True)
class _Account:
    """Virtual time of a user or a channel: GPU seconds charged, levelled on arrival."""

    charged: float = 0.0
    last_cost: float = DEFAULT_COST_S


@dataclass(slots=True)
class _Queue:
    entries: list[tuple[int, int, InboxEntry]] = field(default_factory=list)
    running: bool = False
    not_before: float = 0.0

    def head(self) -> InboxEntry:
        return self.entries[0][2]


class FairScheduler:
    """The in-process waiting room of one worker; pure bookkeeping, no waiting."""

    def __init__(self) -> None:
        self._queues: dict[str, _Queue] = {}
        self._users: dict[str, _Account] = {}
        self._channels: dict[str, _Account] = {}
        self._charges: dict[str, float] = {}  # entry id -> estimate charged at start
        self._held: set[str] = set()
        self._urgent: deque[tuple[float, InboxEntry]] = deque()  # (not before, entry)
        self._urgent_running: set[str] = set()
        self._arrivals = 0
        self._mean_cost = DEFAULT_COST_S
        self._channel_clock = 0.0  # charge of the last channel served
        self._user_clock = 0.0  # charge of the last user served

    def __len__(self) -> int:
        """Messages held: waiting or in progress."""
        return len(self._held)

    def held_ids(self) -> list[str]:
        return list(self._held)

    def waiting(self, entry_id: str) -> InboxEntry | None:
        """The held entry if it has not started (nor is running now), else None."""
        for queue in self._queues.values():
            for index, (_, _, entry) in enumerate(queue.entries):
                if entry.entry_id == entry_id:
                    return None if index == 0 and queue.running else entry
        return None

    def position(self, entry: InboxEntry) -> int:
        """About how many replies start before ``entry`` (1: it is next), by today's ranks."""
        own = self._queues.get(entry.message.conversation)
        if own is None:
            return 1
        ahead_in_own = next(i for i, item in enumerate(own.entries) if item[2] is entry)
        rank = self._rank(own)
        others = sum(
            1 for queue in self._queues.values() if queue is not own and self._rank(queue) < rank
        )
        return 1 + ahead_in_own + others

    @property
    def mean_cost_s(self) -> float:
        """A reply's GPU time, averaged over the recent ones."""
        return self._mean_cost

    def _rank(self, queue: _Queue) -> tuple[float, float, int]:
        head = queue.head()
        return (self._user(head).charged, self._channel(head).charged, queue.entries[0][1])

    def add(self, entry: InboxEntry) -> bool:
        """Queue ``entry`` behind its conversation's earlier messages; False if held already."""
        if entry.entry_id in self._held:
            return False
        self._held.add(entry.entry_id)
        if is_urgent(entry.message):
            self._urgent.append((0.0, entry))
            return True
        message = entry.message
        queue = self._queues.setdefault(message.conversation, _Queue())
        self._arrivals += 1
        bisect.insort(queue.entries, (entry.seq, self._arrivals, entry), key=lambda t: t[:2])
        user, channel = self._user(entry), self._channel(entry)
        user.charged = max(user.charged, self._user_clock)
        channel.charged = max(channel.charged, self._channel_clock)
        return True

    def next_ready(self, now: float, commands_only: bool = False) -> InboxEntry | None:
        """The next message to start (its conversation is then running), or None."""
        if self._urgent and self._urgent[0][0] <= now:
            _, entry = self._urgent.popleft()
            self._urgent_running.add(entry.entry_id)
            return entry
        best: tuple[float, float, int] | None = None
        chosen: _Queue | None = None
        for queue in self._queues.values():
            if queue.running or queue.not_before > now:
                continue
            entry = queue.head()
            if commands_only and not entry.message.is_command:
                continue
            rank = self._rank(queue)
            if best is None or rank < best:
                best, chosen = rank, queue
        if chosen is None:
            return None
        chosen.running = True
        entry = chosen.head()
        self._channel_clock = max(self._channel_clock, self._channel(entry).charged)
        self._user_clock = max(self._user_clock, self._user(entry).charged)
        self._charge(entry, self._user(entry).last_cost)
        return entry

    def finished(self, entry: InboxEntry, cost_s: float) -> None:
        """``entry`` is done; charge what it really cost and free its conversation."""
        self._held.discard(entry.entry_id)
        if entry.entry_id in self._urgent_running:
            self._urgent_running.discard(entry.entry_id)
            return
        queue = self._queues.get(entry.message.conversation)
        estimate = self._charges.pop(entry.entry_id, 0.0)
        cost = max(cost_s, 0.0)
        self._user(entry).last_cost = cost or DEFAULT_COST_S
        if cost:
            self._mean_cost = 0.8 * self._mean_cost + 0.2 * cost
        for account in (self._user(entry), self._channel(entry)):
            account.charged += cost - estimate
        if queue is None:
            return
        queue.entries = [item for item in queue.entries if item[2].entry_id != entry.entry_id]
        queue.running = False
        if not queue.entries:
            del self._queues[entry.message.conversation]
        self._forget_idle_accounts()

    def postpone(self, entry: InboxEntry, until: float) -> None:
        """``entry`` cannot start yet (its turn comes later); keep it first in its queue."""
        if entry.entry_id in self._urgent_running:
            self._urgent_running.discard(entry.entry_id)
            self._urgent.append((until, entry))
            return
        queue = self._queues.get(entry.message.conversation)
        self._refund(entry)
        if queue is not None:
            queue.running, queue.not_before = False, until

    def next_wakeup(self) -> float | None:
        """When the earliest postponed conversation may be tried again."""
        times = [q.not_before for q in self._queues.values() if not q.running and q.not_before]
        times += [not_before for not_before, _ in self._urgent if not_before]
        return min(times) if times else None

    def _charge(self, entry: InboxEntry, estimate: float) -> None:
        self._charges[entry.entry_id] = estimate
        for account in (self._user(entry), self._channel(entry)):
            account.charged += estimate

    def _refund(self, entry: InboxEntry) -> None:
        estimate = self._charges.pop(entry.entry_id, 0.0)
        for account in (self._user(entry), self._channel(entry)):
            account.charged -= estimate

    def _user(self, entry: InboxEntry) -> _Account:
        message = entry.message
        return self._users.setdefault(f"{message.platform}:{message.author_id}", _Account())

    def _channel(self, entry: InboxEntry) -> _Account:
        return self._channels.setdefault(entry.message.channel, _Account())

    def _forget_idle_accounts(self) -> None:
        """Accounts of users and channels with nothing held: they restart level anyway."""
        if len(self._users) + len(self._channels) < 4096:
            return
        active = [q.entries[0][2] for q in self._queues.values() if q.entries]
        users = {f"{e.message.platform}:{e.message.author_id}" for e in active}
        channels = {e.message.channel for e in active}
        self._users = {k: v for k, v in self._users.items() if k in users}
        self._channels = {k: v for k, v in self._channels.items() if k in channels}
