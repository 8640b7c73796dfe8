"""Receiving updates, persisting each before Telegram is told it arrived.

Polling: ``getUpdates`` is asked for the next batch with an ``offset`` past only the updates
already written to the inbox, so a crash at any point redelivers the rest (the inbox dedupes on
``update_id``). Webhook: the HTTP answer (2xx) is sent after the inbox write; a wrong secret
token gets 403.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from telegram import Bot, Update
from telegram.error import Conflict, InvalidToken, RetryAfter, TelegramError

from adapters.telegram.pacing import retry_seconds
from core.errors import StoreUnavailable

log = logging.getLogger("ollabot.telegram.receive")

Handler = Callable[[Update], Awaitable[None]]
ALLOWED_UPDATES = ["message"]
STORE_RETRY_S = 0.5
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


class Poller:
    """Long polling that advances the offset only past persisted updates.

    When the store is down, every update of the batch that could not be stored is shown to
    ``on_hold`` (to tell its chat, once), and polling retries within a second.
    """

    def __init__(
        self,
        bot: Bot,
        handle: Handler,
        timeout_s: int = 30,
        batch: int = 100,
        on_hold: Handler | None = None,
    ) -> None:
        self._bot = bot
        self._handle = handle
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
                elif not isinstance(error, TelegramError | StoreUnavailable):
                    log.exception("unexpected polling failure")
                log.warning("polling failed, retrying in %.1fs: %s", backoff, error)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def confirm(self) -> None:
        """Tell Telegram the persisted updates arrived (best effort, on shutdown)."""
        if self._offset is not None:
            try:
                await self._bot.get_updates(offset=self._offset, limit=1, timeout=0)
            except TelegramError as error:
                log.info("could not confirm the last updates: %s", error)

    async def _poll_once(self) -> None:
        updates = await self._bot.get_updates(
            offset=self._offset,
            limit=self._batch,
            timeout=self._timeout_s,
            allowed_updates=ALLOWED_UPDATES,
        )
        for index, update in enumerate(updates):
            try:
                await self._handle(update)
            except StoreUnavailable:
                await self._hold(updates[index:])
                raise
            self._offset = update.update_id + 1

    async def _hold(self, updates: Sequence[Update]) -> None:
        if self._on_hold is not None:
            for update in updates:
                await self._on_hold(update)


class WebhookServer:
    """An aiohttp endpoint that answers Telegram only once the update is in the inbox."""

    def __init__(self, bot: Bot, handle: Handler, secret: str, path: str) -> None:
        self._bot = bot
        self._handle = handle
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
        try:
            update = Update.de_json(json.loads(await request.read()), self._bot)
        except (ValueError, TypeError, KeyError, AttributeError):
            return web.Response(status=400, text="not an Update")
        try:
            await self._handle(update)
        except StoreUnavailable:
            return web.Response(status=503)  # Telegram retries later
        return web.Response(status=200)
