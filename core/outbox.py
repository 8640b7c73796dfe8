"""Delivering stored replies: the step between "answered" and "done".

A reply is stored (with its inbox entry still pending) before it is delivered, and the entry
is acknowledged only once the platform took the reply. Until then the entry stays claimable:
if this process dies, whoever takes the entry next (this process restarted, or another one)
finds the stored reply and delivers it into the same preview message. Here the platform's
"not now" (429, network) is waited out for as long as it asks, up to the reply's deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable

from core.errors import DeliveryDeferred, DeliveryRefused, StoreUnavailable
from core.i18n import N_, _
from core.models import InboxEntry, StoredReply
from core.ports import ConversationStore, Inbox, Metrics, NullMetrics, ReplySink

log = logging.getLogger("ollabot.outbox")

GAVE_UP_NOTICE = N_(
    "Sorry, I could not deliver my answer to your message in time; please ask again."
)
MAX_BACKOFF_S = 60.0

Sleep = Callable[[float], Awaitable[None]]


class Outbox:
    """Delivers one stored reply at a time per call; many calls run side by side."""

    def __init__(
        self,
        inbox: Inbox,
        store: ConversationStore,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._inbox = inbox
        self._store = store
        self._metrics = metrics or NullMetrics()
        self._clock = clock
        self._sleep = sleep

    async def deliver(self, entry: InboxEntry, sink: ReplySink, reply: StoredReply) -> None:
        """Hand ``reply`` to the platform, then mark the entry done.

        ``StoreUnavailable`` from the final acknowledgement leaves the entry pending: it is
        delivered again later, into the same message (the sink's saved handle).
        """
        platform = entry.message.platform
        attempt = 0
        while True:
            try:
                if reply.failed:
                    await sink.fail(reply.text)
                else:
                    await sink.finish(reply.text, reasoning=reply.reasoning)
                break
            except DeliveryDeferred as error:
                await self._save_handle(entry, sink)
                wait = error.after_s if error.after_s is not None else _backoff(attempt)
                if self._clock() + wait > reply.deliver_by:
                    await self._give_up(entry, sink, error)
                    break
                self._metrics.delivery_retried(platform)
                log.info("delivery to %s deferred %.1fs: %s", platform, wait, error)
                await self._sleep(wait)
                attempt += 1
            except DeliveryRefused as error:
                log.warning(
                    "%s refused the reply to %s for good: %s", platform, entry.entry_id, error
                )
                break
        await self._inbox.acknowledge(entry)

    async def _save_handle(self, entry: InboxEntry, sink: ReplySink) -> None:
        with contextlib.suppress(StoreUnavailable):
            await self._store.save_handle(entry.message, sink.handle)

    async def _give_up(self, entry: InboxEntry, sink: ReplySink, error: Exception) -> None:
        log.error(
            "reply to %s on %s not delivered before its deadline: %s",
            entry.entry_id,
            entry.message.platform,
            error,
        )
        self._metrics.delivery_abandoned(entry.message.platform)
        with contextlib.suppress(DeliveryDeferred, DeliveryRefused):
            await sink.fail(_(GAVE_UP_NOTICE))


def _backoff(attempt: int) -> float:
    """Exponential with full jitter, for failures that give no hint of how long to wait."""
    ceiling: float = min(MAX_BACKOFF_S, 0.5 * 2**attempt)
    return random.uniform(0.5, 1.0) * ceiling
