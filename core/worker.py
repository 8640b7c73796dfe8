"""The inbox worker: takes entries for one platform and answers them, in order per conversation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from core.chat import ChatService
from core.errors import StoreUnavailable
from core.models import InboxEntry
from core.ports import Inbox, SinkFactory

log = logging.getLogger("ollabot.worker")


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    platform: str
    consumer: str
    concurrency: int = 32
    batch: int = 16
    claim_idle_ms: int = 60_000


class InboxWorker:
    """Runs until ``stop`` is set, then lets replies in progress finish."""

    def __init__(
        self, inbox: Inbox, service: ChatService, sinks: SinkFactory, config: WorkerConfig
    ) -> None:
        self._inbox = inbox
        self._service = service
        self._sinks = sinks
        self._config = config
        self._slots = asyncio.Semaphore(config.concurrency)
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._order: dict[str, asyncio.Lock] = {}
        self._queued: dict[str, int] = {}

    @property
    def busy(self) -> int:
        return len(self._in_flight)

    async def run(self, stop: asyncio.Event) -> None:
        heartbeat = asyncio.create_task(self._heartbeat())
        backoff, next_claim = 0.1, 0.0
        try:
            while not stop.is_set():
                try:
                    if time.monotonic() >= next_claim:
                        await self._start_all(await self._claim())
                        next_claim = time.monotonic() + self._config.claim_idle_ms / 2000
                    await self._start_all(await self._take())
                    backoff = 0.1
                except StoreUnavailable as error:
                    log.warning("inbox unavailable, retrying in %.1fs: %s", backoff, error)
                    await _wait(stop, backoff)
                    backoff = min(backoff * 2, 5.0)
        finally:
            heartbeat.cancel()

    async def drain(self, timeout_s: float) -> None:
        """Wait for the replies in progress; cancel what is left after ``timeout_s``."""
        tasks = list(self._in_flight.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _claim(self) -> list[InboxEntry]:
        c = self._config
        entries = await self._inbox.claim_abandoned(c.platform, c.consumer, c.claim_idle_ms)
        return [e for e in entries if e.entry_id not in self._in_flight]

    async def _take(self) -> list[InboxEntry]:
        await self._slots.acquire()
        self._slots.release()
        return await self._inbox.take(
            self._config.platform, self._config.consumer, self._config.batch
        )

    async def _start_all(self, entries: list[InboxEntry]) -> None:
        for entry in entries:
            await self._slots.acquire()
            task = asyncio.create_task(self._process(entry))
            self._in_flight[entry.entry_id] = task

    async def _process(self, entry: InboxEntry) -> None:
        conversation = entry.message.conversation
        order = self._order.setdefault(conversation, asyncio.Lock())
        self._queued[conversation] = self._queued.get(conversation, 0) + 1
        try:
            async with order:
                await self._service.handle(entry, self._sinks(entry.message))
        except StoreUnavailable as error:
            log.warning("store unavailable; entry %s stays pending: %s", entry.entry_id, error)
        except Exception:
            log.exception("unexpected error answering entry %s", entry.entry_id)
        finally:
            self._in_flight.pop(entry.entry_id, None)
            # A released lock may still have waiters; forget it only when none are queued.
            self._queued[conversation] -= 1
            if not self._queued[conversation]:
                del self._queued[conversation], self._order[conversation]
            self._slots.release()

    async def _heartbeat(self) -> None:
        c = self._config
        while True:
            await asyncio.sleep(c.claim_idle_ms / 3000)
            if self._in_flight:
                with contextlib.suppress(StoreUnavailable):
                    await self._inbox.keep_alive(c.platform, c.consumer, list(self._in_flight))


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
