"""Receiving updates, persisting each before Telegram is told it arrived.

Polling: ``getUpdates`` is asked for the next batch with an ``offset`` past only the updates
already written to the inbox, so a crash at any point redelivers the rest (the inbox dedupes on
``update_id``). Webhook: the HTTP answer (2xx) is sent after the inbox write; a wrong secret
token gets 403.

Several processes serving one bot: only the holder of a lease polls (``LeasedPolling``); the
others take it over when it lapses. A process alone holds its own lease (``OwnLease``).

Each update is read on its own: one that cannot be read or stored (no ``date``, a lone
surrogate in its text…) is set aside as a dead letter with the reason, and receiving goes on.
Only a Redis outage holds updates back, to be delivered again once Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from aiohttp import web
from telegram import Bot, Update
from telegram.error import Conflict, InvalidToken, RetryAfter, TelegramError
from telegram.request import BaseRequest, RequestData

# Not re-exported by telegram.request, but how PTB itself fills a RequestData.
from telegram.request._requestparameter import RequestParameter

from adapters.telegram.pacing import retry_seconds
from core.errors import StoreUnavailable

log = logging.getLogger("ollabot.telegram.receive")

Handler = Callable[[Update], Awaitable[None]]
SetAside = Callable[[object, str], Awaitable[None]]
ALLOWED_UPDATES = ["message", "callback_query"]
STORE_RETRY_S = 0.5
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


async def receive_one(raw: object, bot: Bot, handle: Handler, set_aside: SetAside) -> None:
    """Parse and persist one raw update; set it aside with the reason if either fails.

    ``StoreUnavailable`` passes: the update is not lost but waits for Redis.
    """
    try:
        await handle(Update.de_json(raw, bot))  # type: ignore[arg-type]
    except StoreUnavailable:
        raise
    except Exception as error:  # whatever it is, this update must not hold up the others
        await set_aside(raw, f"{type(error).__name__}: {error}")


class Poller:
    """Long polling that advances the offset only past persisted (or set aside) updates.

    Updates are fetched as JSON and read one by one, not with ``Bot.get_updates``, which
    fails the whole batch, and then every later poll, on one update it cannot read. When the
    store is down, every update of the batch that could not be stored is shown to ``on_hold``
    (to tell its chat, once), and polling retries within a second.
    """

    def __init__(
        self,
        bot: Bot,
        request: BaseRequest,
        handle: Handler,
        set_aside: SetAside,
        timeout_s: int = 30,
        batch: int = 100,
        on_hold: Callable[[object], Awaitable[None]] | None = None,
    ) -> None:
        self._bot = bot
        self._request = request
        self._handle = handle
        self._set_aside = set_aside
        self._on_hold = on_hold
        self._timeout_s = timeout_s
        self._batch = batch
        self._offset: int | None = None

    async def run(self) -> None:
        """Poll until cancelled."""
        backoff = 0.5
        while True:
            try:
                await self._poll_once()
                backoff = 0.5
            except InvalidToken:
                log.error("Telegram rejected the bot token; polling stops")
                raise
            except RetryAfter as error:
                await asyncio.sleep(retry_seconds(error))
            except StoreUnavailable as error:
                log.warning("store unavailable, retrying in %.1fs: %s", STORE_RETRY_S, error)
                await asyncio.sleep(STORE_RETRY_S)
            except Exception as error:  # keep receiving whatever happened
                if isinstance(error, Conflict):
                    log.warning("another getUpdates or a webhook is active for this bot")
                elif not isinstance(error, TelegramError):
                    log.exception("unexpected polling failure")
                log.warning("polling failed, retrying in %.1fs: %s", backoff, error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def confirm(self) -> None:
        """Tell Telegram the persisted updates arrived (best effort, on shutdown)."""
        if self._offset is not None:
            try:
                await self._fetch(limit=1, timeout_s=0)
            except TelegramError as error:
                log.info("could not confirm the last updates: %s", error)

    async def _poll_once(self) -> None:
        batch = await self._fetch(self._batch, self._timeout_s)
        for index, raw in enumerate(batch):
            try:
                await receive_one(raw, self._bot, self._handle, self._set_aside)
            except StoreUnavailable:
                await self._hold(batch[index + 1 :])
                raise
            update_id = raw.get("update_id") if isinstance(raw, dict) else None
            if isinstance(update_id, int):
                self._offset = update_id + 1

    async def _hold(self, waiting: list[object]) -> None:
        if self._on_hold is not None:
            for raw in waiting:
                await self._on_hold(raw)

    async def _fetch(self, limit: int, timeout_s: int) -> list[object]:
        """``getUpdates`` past the offset, as plain JSON values."""
        parameters = {
            "offset": self._offset,
            "limit": limit,
            "timeout": timeout_s,
            "allowed_updates": ALLOWED_UPDATES,
        }
        data = RequestData(
            [RequestParameter.from_input(k, v) for k, v in parameters.items() if v is not None]
        )
        result = await self._request.post(
            f"{self._bot.base_url}/getUpdates",
            data,
            read_timeout=timeout_s + (self._request.read_timeout or 10.0),
        )
        return list(result) if isinstance(result, list) else []


class Lease(Protocol):
    """The right to poll for one bot, renewed every ``renew_every_s`` by its holder."""

    renew_every_s: float

    async def hold(self) -> bool:
        """Take or renew it; False when another process holds it (``StoreUnavailable`` when
        that cannot be known)."""

    async def release(self) -> None:
        """Give it up, if held."""


class OwnLease:
    """The lease of a process that shares the bot with no other: always held."""

    renew_every_s = 60.0

    async def hold(self) -> bool:
        return True

    async def release(self) -> None:
        return None


class LeasedPolling:
    """Runs ``poll`` only while this process holds the lease, checked every ``renew_every_s``.

    When the lease cannot be checked (Redis down) nothing changes: a poller goes on polling,
    the others wait; a process that never learnt who holds it polls, as one alone would.
    """

    def __init__(self, lease: Lease, poll: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._lease = lease
        self._poll = poll
        self._held: bool | None = None
        self._unsure = False
        self._polling: asyncio.Task[None] | None = None
        self.polls = False  # whether this process is the poller (or was, when ``run`` ended)

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set (or this task is cancelled); polling stops with it."""
        try:
            while not stop.is_set():
                await self._follow_lease()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._lease.renew_every_s)
        finally:
            await self._stop_polling()

    async def _follow_lease(self) -> None:
        if self._polling is not None and self._polling.done():
            self._polling.result()  # polling gave up (a rejected token): so does this
        if await self._check():
            if self._polling is None:
                log.info("this process polls getUpdates for the bot")
                self._polling = asyncio.create_task(self._poll(), name="telegram-polling")
                self.polls = True
        elif self._polling is not None:
            log.warning("another process holds the polling lease now; this one stops polling")
            await self._stop_polling()
            self.polls = False

    async def _check(self) -> bool:
        try:
            self._held = await self._lease.hold()
        except StoreUnavailable:
            if not self._unsure:
                log.warning("the polling lease cannot be renewed (Redis): nothing changes")
            self._unsure = True
            return True if self._held is None else self._held
        if self._unsure:
            log.info("the polling lease can be renewed again")
            self._unsure = False
        return self._held

    async def _stop_polling(self) -> None:
        task, self._polling = self._polling, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait([task])  # unlike awaiting the task, never hides our own cancelling
        if not task.cancelled() and task.exception() is not None:
            log.warning("polling had ended: %s", task.exception())


class WebhookServer:
    """An aiohttp endpoint that answers Telegram only once the update is in the inbox."""

    def __init__(
        self, bot: Bot, handle: Handler, set_aside: SetAside, secret: str, path: str
    ) -> None:
        self._bot = bot
        self._handle = handle
        self._set_aside = set_aside
        self._secret = secret.encode()
        self._path = path
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        app = web.Application()
        app.router.add_post(self._path, self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _receive(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, self._secret):
            return web.Response(status=403)
        body = await request.read()
        try:
            raw: object = json.loads(body)
        except ValueError:
            raw = body.decode("utf-8", "replace")
        try:
            await receive_one(raw, self._bot, self._handle, self._set_aside)
        except StoreUnavailable:
            return web.Response(status=503)  # Telegram retries later
        # An update that was set aside is answered 200 too: Telegram would otherwise send it
        # again and again, and hold back the ones behind it.
        return web.Response(status=200)
