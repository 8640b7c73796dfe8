"""A steady stream of writes through the store, and what it saw: for failover tests."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

from adapters.redis_store import RedisStore
from core.errors import StoreUnavailable
from core.models import Admission
from tests.contract import incoming


@dataclass
class Tally:
    """What a steady stream of writes saw."""

    acknowledged: list[str] = field(default_factory=list)
    acknowledged_at: list[float] = field(default_factory=list)
    refused: int = 0

    def unavailable_s(self) -> float:
        """The longest time between two acknowledged writes."""
        times = self.acknowledged_at
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


async def write_steadily(
    store: RedisStore, tally: Tally, stop: asyncio.Event, rate: int, channel: str = "tg:42"
) -> None:
    """Enqueue a new message in ``channel`` ``rate`` times a second (never catching up after
    a stall)."""
    loop = asyncio.get_running_loop()
    next_at, number = loop.time(), 0
    while not stop.is_set():
        number += 1
        message_id = f"{channel}-w{number}"
        try:
            admission = await store.enqueue(
                incoming(message_id, conversation=channel, channel=channel)
            )
        except StoreUnavailable:
            tally.refused += 1
        else:
            # A duplicate is a write repeated after its first run was acknowledged by the
            # server but the answer was lost: stored all the same.
            assert admission in (Admission.ACCEPTED, Admission.DUPLICATE)
            tally.acknowledged.append(message_id)
            tally.acknowledged_at.append(loop.time())
        next_at = max(next_at + 1 / rate, loop.time())
        await asyncio.sleep(next_at - loop.time())
