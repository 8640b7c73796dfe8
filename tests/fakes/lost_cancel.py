"""A store whose client swallows a cancellation, as redis-py can.

redis-py writes each command under ``asyncio.wait_for``; on Python 3.11 a cancellation that
lands just as the write finishes is dropped and the command completes as if nothing happened
(most cancelled commands, in a loop against a live server). That instant cannot be hit on
purpose from outside, so here the first call of one method waits in flight until it is
cancelled, drops the cancellation, and then runs on the real store.
"""

from __future__ import annotations

import asyncio
from typing import Any


class LosesCancellation:
    """Wraps ``store``; the first call to ``method`` is in flight (``in_flight``) until
    cancelled, and the cancellation is lost (``lost``); everything else goes straight through."""

    def __init__(self, store: Any, method: str) -> None:
        self._store = store
        self._method = method
        self.in_flight = asyncio.Event()
        self.lost = 0

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._store, name)
        if name != self._method:
            return real

        async def call(*args: Any, **kwargs: Any) -> Any:
            if not self.in_flight.is_set():
                self.in_flight.set()
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:  # dropped, as by redis-py's wait_for
                    self.lost += 1
            return await real(*args, **kwargs)

        return call
