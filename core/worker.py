"""The inbox worker: takes one platform's entries, answers them fairly, delivers the answers.

Three loops share one ``FairScheduler``: the reader moves entries from the inbox into it (and
takes back this consumer's own pending entries after a restart, and others' abandoned ones);
the dispatcher starts the next ready message whenever a model slot is free (commands need no
slot); the heartbeat keeps every held entry claimed. A message whose conversation is busy
elsewhere, or whose earlier message is not done, goes back to wait without holding a slot.
Delivery runs after the slot is freed, for as long as the platform needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from core.chat import ChatService
from core.errors import StoreUnavailable
from core.i18n import _, speaking
from core.models import InboxEntry, StoredReply, TurnState
from core.outbox import Outbox
from core.ports import Inbox, Metrics, NullMetrics, ReplySink, SinkFactory
from core.scheduler import FairScheduler
from core.stopping import stopped_after

log = logging.getLogger("ollabot.worker")

MAX_FAILED_ATTEMPTS = 5
STOP_LOOPS_S = 5.0  # for the loops to end once cancelled (a blocking read ends within it)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    platform: str
    consumer: str
    slots: int = 1  # model calls in flight: what the Ollama hosts run at once
    batch: int = 16
    max_held: int = 1000
    claim_idle_ms: int = 60_000
    sweep_idle_ms: int = 24 * 3600 * 1000  # a consumer silent that long is a process gone
    order_wait_s: float = 120.0  # after this, an earlier message still open is not waited for
    queued_notice_s: float = 2.0  # a message not started by then shows its place in line


class InboxWorker:
    """Runs until ``stop`` is set; ``drain`` then lets replies in progress finish."""

    def __init__(
        self,
        inbox: Inbox,
        service: ChatService,
        outbox: Outbox,
        sinks: SinkFactory,
        config: WorkerConfig,
        metrics: Metrics | None = None,
    ) -> None:
        self._inbox = inbox
        self._service = service
        self._outbox = outbox
        self._sinks = sinks
        self._config = config
        self._metrics = metrics or NullMetrics()
        self._scheduler = FairScheduler()
        self._free_slots = config.slots
        self._wake = asyncio.Event()
        self._answering: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._delivering: dict[str, InboxEntry] = {}
        self._first_tried: dict[str, float] = {}
        self._attempts: dict[str, int] = {}
        self._told_store_down: set[str] = set()
        self._claimed_once = False
        self._held_since: dict[str, float] = {}
        self._reply_sinks: dict[str, ReplySink] = {}
        self._changed = asyncio.Condition()

    @property
    def busy(self) -> int:
        """Entries being answered or delivered."""
        return len(self._tasks)

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set. Each loop also ends by itself once ``stop`` is set, as a
        store client may swallow the cancellation of a command in flight; one still busy
        after ``STOP_LOOPS_S`` is left to end on its own."""
        loops = [self._read, self._dispatch, self._heartbeat, self._tell_queued]
        tasks = [asyncio.create_task(loop(stop)) for loop in loops]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            _done, busy = await asyncio.wait(tasks, timeout=STOP_LOOPS_S)
            if busy:
                log.warning("%d worker loops still busy; they end on their own", len(busy))

    async def caught_up(self) -> None:
        """Wait until what this worker's name left unfinished in an earlier run is done."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._claimed_once and not self._scheduler)

    async def drain(self, timeout_s: float) -> None:
        """Wait for the replies in progress; cancel what is left after ``timeout_s``.

        Messages not started stay pending in the inbox for the next run to take back.
        """
        tasks = list(self._tasks)
        if not tasks:
            return
        _finished, pending = await asyncio.wait(tasks, timeout=timeout_s)
        if not pending:
            return
        for task in pending:
            task.cancel()
        _cancelled, busy = await asyncio.wait(pending, timeout=STOP_LOOPS_S)
        if busy:
            log.warning("%d replies did not stop when cancelled", len(busy))

    # Reading

    async def _read(self, stop: asyncio.Event) -> None:
        backoff, next_claim = 0.1, 0.0
        while not stop.is_set():
            try:
                if time.monotonic() >= next_claim:
                    self._hold(await self._claim())
                    next_claim = time.monotonic() + self._config.claim_idle_ms / 2000
                    self._claimed_once = True
                    await self._notify()
                if len(self._scheduler) < self._config.max_held:
                    self._hold(await self._take())
                else:
                    await stopped_after(stop, 0.1)
                backoff = 0.1
            except StoreUnavailable as error:
                log.warning("inbox unavailable, retrying in %.1fs: %s", backoff, error)
                await stopped_after(stop, backoff)
                backoff = min(backoff * 2, 1.0)

    async def _claim(self) -> list[InboxEntry]:
        c = self._config
        entries = await self._inbox.claim_abandoned(c.platform, c.consumer, c.claim_idle_ms)
        if swept := await self._inbox.sweep_consumers(c.platform, c.sweep_idle_ms):
            log.info("forgot %d consumers of %s gone for a day", swept, c.platform)
        return entries

    async def _take(self) -> list[InboxEntry]:
        c = self._config
        return await self._inbox.take(c.platform, c.consumer, c.batch)

    def _hold(self, entries: list[InboxEntry]) -> None:
        added = [entry for entry in entries if self._scheduler.add(entry)]
        for entry in added:
            self._held_since[entry.entry_id] = time.monotonic()
        if added:
            self._report_depth()
            self._wake.set()

    def _sink_of(self, entry: InboxEntry) -> ReplySink:
        """One sink per entry for as long as it is held: its queue notice, its attempts and
        its delivery all show in the same message."""
        sink = self._reply_sinks.get(entry.entry_id)
        if sink is None:
            sink = self._reply_sinks[entry.entry_id] = self._sinks(entry.message)
        return sink

    # Dispatching

    async def _dispatch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._wake.clear()
            self._start_ready()
            wakeup = self._scheduler.next_wakeup()
            delay = 1.0 if wakeup is None else max(0.0, wakeup - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(delay, 1.0))

    def _start_ready(self) -> None:
        now = time.monotonic()
        while True:
            with_slot = self._free_slots > 0
            entry = self._scheduler.next_ready(now, commands_only=not with_slot)
            if entry is None:
                return
            uses_slot = not entry.message.is_command
            self._free_slots -= uses_slot
            self._answering.add(entry.entry_id)
            task = asyncio.create_task(self._answer(entry, uses_slot))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _answer(self, entry: InboxEntry, uses_slot: bool) -> None:
        with speaking(self._service.translations(entry.message.language)):
            await self._answer_in_language(entry, uses_slot)

    async def _answer_in_language(self, entry: InboxEntry, uses_slot: bool) -> None:
        sink = self._sink_of(entry)
        reply, cost = None, 0.0
        try:
            handled = await self._service.handle(entry, sink, self._waited_too_long(entry))
            reply, cost = handled.reply, handled.cost_s
            if reply is None:
                self._retry_later(entry, quick=handled.state is not TurnState.READY)
        except StoreUnavailable as error:
            await self._tell_store_down(entry, sink, error)
            self._retry_later(entry, quick=False)
        except Exception:
            log.exception("unexpected error answering entry %s", entry.entry_id)
            if self._attempts.get(entry.entry_id, 0) >= MAX_FAILED_ATTEMPTS:
                await self._give_up(entry)
            else:
                self._retry_later(entry, quick=False)
        finally:
            self._free_slots += uses_slot
            self._answering.discard(entry.entry_id)
            self._wake.set()
        if reply is not None:
            await self._deliver(entry, sink, reply)
            self._release(entry)
            self._scheduler.finished(entry, cost)  # the conversation's next message may start
            self._wake.set()
            await self._notify()

    async def _deliver(self, entry: InboxEntry, sink: ReplySink, reply: StoredReply) -> None:
        self._forget_attempts(entry)
        self._delivering[entry.entry_id] = entry
        self._report_depth()
        try:
            await self._outbox.deliver(entry, sink, reply)
        except StoreUnavailable as error:
            log.warning("entry %s delivered but not acknowledged: %s", entry.entry_id, error)
        except Exception:
            log.exception("unexpected error delivering entry %s", entry.entry_id)
        finally:
            del self._delivering[entry.entry_id]
            self._report_depth()

    async def _give_up(self, entry: InboxEntry) -> None:
        """A message that keeps failing for a reason of our own must not block its
        conversation for ever: it is dropped, loudly."""
        log.error("giving up on entry %s after %d failures", entry.entry_id, MAX_FAILED_ATTEMPTS)
        self._forget_attempts(entry)
        with contextlib.suppress(StoreUnavailable):
            await self._inbox.acknowledge(entry)
        self._release(entry)
        self._scheduler.finished(entry, 0.0)

    def _waited_too_long(self, entry: InboxEntry) -> bool:
        first = self._first_tried.setdefault(entry.entry_id, time.monotonic())
        return time.monotonic() - first > self._config.order_wait_s

    def _retry_later(self, entry: InboxEntry, quick: bool) -> None:
        attempt = self._attempts.get(entry.entry_id, 0)
        self._attempts[entry.entry_id] = attempt + 1
        delay = min((0.05 if quick else 0.5) * 2**attempt, 1.0 if quick else 2.0)
        self._scheduler.postpone(entry, time.monotonic() + delay)

    def _forget_attempts(self, entry: InboxEntry) -> None:
        self._attempts.pop(entry.entry_id, None)
        self._first_tried.pop(entry.entry_id, None)
        self._told_store_down.discard(entry.message.conversation)

    async def _tell_store_down(
        self, entry: InboxEntry, sink: ReplySink, error: StoreUnavailable
    ) -> None:
        """Once per conversation until it is answered again, not once per retry."""
        conversation = entry.message.conversation
        log.warning("store unavailable; entry %s waits: %s", entry.entry_id, error)
        if conversation in self._told_store_down:
            return
        self._told_store_down.add(conversation)
        with contextlib.suppress(Exception):
            await sink.fail(error.localized())

    def _release(self, entry: InboxEntry) -> None:
        self._reply_sinks.pop(entry.entry_id, None)
        self._held_since.pop(entry.entry_id, None)

    # Telling waiting users where they are

    async def _tell_queued(self, stop: asyncio.Event) -> None:
        while not await stopped_after(stop, self._config.queued_notice_s / 2):
            due = time.monotonic() - self._config.queued_notice_s
            for entry_id, since in list(self._held_since.items()):
                entry = self._scheduler.waiting(entry_id)
                if since <= due and entry is not None and not entry.message.is_command:
                    del self._held_since[entry_id]  # told once; the reply replaces it
                    language = self._service.translations(entry.message.language)
                    with contextlib.suppress(Exception), speaking(language):
                        await self._sink_of(entry).status(self._queued_text(entry))

    def _queued_text(self, entry: InboxEntry) -> str:
        place = self._scheduler.position(entry)
        seconds = place * self._scheduler.mean_cost_s / max(1, self._config.slots)
        return _("queued: #{place}, about {seconds} s").format(
            place=place, seconds=max(1, round(seconds))
        )

    # Keeping entries claimed

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        c = self._config
        while not await stopped_after(stop, c.claim_idle_ms / 3000):
            held = self._scheduler.held_ids()
            for start in range(0, len(held), 500):
                with contextlib.suppress(StoreUnavailable):
                    await self._inbox.keep_alive(c.platform, c.consumer, held[start : start + 500])

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _report_depth(self) -> None:
        waiting = len(self._scheduler) - len(self._answering)
        self._metrics.queue_depth(self._config.platform, max(0, waiting))
        self._metrics.outbox_pending(self._config.platform, len(self._delivering))
