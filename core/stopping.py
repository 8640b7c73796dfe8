"""Waiting that a stop event cuts short.

Loops that must end at shutdown check an event between rounds instead of relying on being
cancelled alone: a client library may swallow a cancellation that arrives while a command is
in flight (redis-py does, in ``asyncio.wait_for`` on Python 3.11), and the loop would go on.
"""

from __future__ import annotations

import asyncio
import contextlib


async def stopped_after(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds``, or less if ``stop`` is set meanwhile; whether it is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()
