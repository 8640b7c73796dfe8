"""The Telegram platform: receives updates into the inbox and builds reply sinks.

Wiring: ``TelegramPlatform(config, inbox)``; give ``platform.sinks`` to the
``InboxWorker`` and ``platform.files`` (attachments) to the chat service; ``await start()``.
Shutdown: ``await stop()``, drain the worker, then ``await aclose()``. Several processes
serving the bot pass the budget and the polling lease they share
(``adapters.telegram.shared``); by default the process counts alone and polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from dataclasses import replace
from urllib.parse import urlsplit

from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeAllChatAdministrators,
    BotCommandScopeChat,
    BotCommandScopeDefault,
    Update,
)
from telegram.error import TelegramError
from telegram.request import BaseRequest

from adapters.i18n import LANGUAGES, SOURCE_LANGUAGE
from adapters.telegram.admins import AdminDirectory
from adapters.telegram.buttons import NOT_YOURS, STOP, controls_for
from adapters.telegram.config import TelegramConfig, Webhook
from adapters.telegram.drafts import DraftSupport
from adapters.telegram.files import TelegramFiles, file_base_url
from adapters.telegram.inbound import BotIdentity, is_admin_command, translate
from adapters.telegram.pacing import BotBudget, Limits, LocalBudget, Pacers
from adapters.telegram.presses import (
    ButtonPress,
    PressAnswer,
    answer_press,
    from_button,
    read_press,
)
from adapters.telegram.receive import (
    ALLOWED_UPDATES,
    Lease,
    LeasedPolling,
    OwnLease,
    Poller,
    WebhookServer,
)
from adapters.telegram.request import AiohttpRequest, BotApi
from adapters.telegram.sink import TelegramSink
from core.chat import NOTHING_TO_STOP
from core.errors import DeliveryError, RateLimited, StoreFull, StoreUnavailable
from core.i18n import N_, Translations, only_english
from core.models import Admission, IncomingMessage
from core.ports import Inbox, ReplySink

log = logging.getLogger("ollabot.telegram")
STOP_RECEIVING_S = 5.0  # for a lease check under way to end (bounded by Redis's timeout)

STORE_DOWN_NOTICE = N_(
    "My conversation store (Redis) is not reachable right now; "
    "I will answer this message as soon as it is back."
)
PUBLIC_MENU = (
    BotCommand("help", N_("What I can do")),
    BotCommand("stop", N_("Stop the reply being written")),
    BotCommand("retry", N_("Write the last answer again")),
    BotCommand("undo", N_("Forget the last question and answer")),
    BotCommand("reset", N_("Forget this conversation")),
    BotCommand("usage", N_("Model time used today")),
    BotCommand("ask", N_("Ask me something (in groups)")),
    BotCommand("kb", N_("Documents my answers draw on: kb add, kb list")),
)
ADMIN_MENU = (
    *PUBLIC_MENU,
    BotCommand("preset", N_("Show or change the generation preset")),
    BotCommand("system", N_("Show or change the system prompt")),
    BotCommand("fewshot", N_("Show or choose few-shot examples")),
    BotCommand("model", N_("Show or change the model")),
    BotCommand("think", N_("Show or hide thinking models' reasoning")),
    BotCommand("audit", N_("Recent changes to this chat's settings")),
    BotCommand("quota", N_("Show or set model-time quotas")),
)


class TelegramPlatform:
    """Long polling (default) or webhook receiving, per-chat paced replies."""

    name = "telegram"

    def __init__(
        self,
        config: TelegramConfig,
        inbox: Inbox,
        limits: Limits | None = None,
        poll_timeout_s: int = 30,
        request: BaseRequest | None = None,
        translations: Translations | None = None,
        budget: BotBudget | None = None,
        lease: Lease | None = None,
    ) -> None:
        self._config = config
        # Without catalogues everyone is answered in English, and the menus are English only.
        self._translations = translations or only_english
        self._menu_languages = (
            [x for x in LANGUAGES if x != SOURCE_LANGUAGE] if translations else []
        )
        self._inbox = inbox
        self._poll_timeout_s = poll_timeout_s
        request = request or AiohttpRequest()
        self._updates_request = AiohttpRequest(connections=2)
        self.bot = Bot(
            config.token.get_secret_value(),
            base_url=config.api_base_url,
            base_file_url=file_base_url(config.api_base_url),
            request=request,
            get_updates_request=self._updates_request,
        )
        self._api = BotApi(request, self.bot.base_url)
        self.files = TelegramFiles(self._api, request, self.bot.base_file_url)
        self._pacers = Pacers(limits or Limits(), budget or LocalBudget(config.bot_rate_per_s))
        self._lease = lease or OwnLease()
        self._drafts = DraftSupport(config.drafts)
        self._admins = AdminDirectory(self.bot, list(config.admin_ids))
        self._told_store_down: set[str] = set()
        self._me: BotIdentity | None = None
        self._poller: Poller | None = None
        self._receiving: LeasedPolling | None = None
        self._stop_receiving = asyncio.Event()
        self._polling: asyncio.Task[None] | None = None
        self._webhook: WebhookServer | None = None
        self.webhook_port: int | None = None

    def sinks(self, message: IncomingMessage) -> ReplySink:
        """The ``SinkFactory``: a sink built from the message alone (its ``reply_to``, and
        whether its answer gets buttons)."""
        if from_button(message) and message.text == STOP:
            return PressAnswer(self._api, message)
        controls = controls_for(message)
        return TelegramSink(self._api, self._pacers, message.reply_to, controls, self._drafts)

    async def start(self) -> None:
        """Connect (getMe), register the command menus and start receiving."""
        await self.bot.initialize()
        self._me = BotIdentity(self.bot.id, self.bot.username)
        await self._register_menus()
        if self._config.webhook is not None:
            await self._start_webhook(self._config.webhook)
        else:
            await self.bot.delete_webhook()
            self._poller = Poller(
                self.bot,
                self._updates_request,
                self.receive,
                self.set_aside,
                self._poll_timeout_s,
                on_hold=self._on_hold,
            )
            self._receiving = LeasedPolling(self._lease, self._poller.run)
            self._polling = asyncio.create_task(
                self._receiving.run(self._stop_receiving), name="telegram-receiving"
            )
        log.info("telegram receiving as @%s", self._me.username)

    async def stop(self) -> None:
        """Stop receiving; replies in progress are finished by the worker."""
        if self._polling is not None:
            await self._stop_polling(self._polling)
            self._polling = None
        if self._webhook is not None:
            await self._webhook.stop()
            self._webhook = None

    async def _stop_polling(self, task: asyncio.Task[None]) -> None:
        """End the lease loop (and polling with it); the poller confirms what it stored, then
        hands the lease on at once."""
        self._stop_receiving.set()
        await asyncio.wait([task], timeout=STOP_RECEIVING_S)
        task.cancel()
        await asyncio.wait([task], timeout=STOP_RECEIVING_S)  # a lost cancellation: go on
        error = None if not task.done() or task.cancelled() else task.exception()
        if error is not None and not isinstance(error, TelegramError):
            raise error
        if self._receiving is not None and self._receiving.polls and self._poller is not None:
            await self._poller.confirm()
        with contextlib.suppress(StoreUnavailable):
            await self._lease.release()

    async def aclose(self) -> None:
        """Release the HTTP sessions (after the worker has drained)."""
        await self.bot.shutdown()

    async def receive(self, update: Update) -> None:
        """Persist one update as an ``IncomingMessage`` (or ignore it); returns once stored."""
        assert self._me is not None, "start() first"
        if update.callback_query is not None:
            await self._receive_press(update)
            return
        incoming = translate(update, self._me)
        if incoming is None:
            return
        if incoming.is_command:
            incoming = await self._with_admin_flag(incoming)
        await self._enqueue(incoming)

    async def _enqueue(self, incoming: IncomingMessage) -> None:
        try:
            admission = await self._inbox.enqueue(incoming)
        except StoreUnavailable as error:
            await self._tell_store_is_down(incoming, error)
            raise  # the update is not confirmed: Telegram delivers it again
        if admission is Admission.LIMITED:
            await self._tell(incoming, RateLimited.notice)

    async def _receive_press(self, update: Update) -> None:
        """Answer a button press (the app shows a spinner until then) and queue the command
        it stands for, unless it is refused or there is nothing left to stop. An allowed
        Stop is answered once the store has said whether its reply is still being written."""
        pressed = read_press(update)
        if not isinstance(pressed, ButtonPress):
            if pressed is not None:  # not one of our buttons: only end the spinner
                await self._answer_press(pressed.id, "", "")
            return
        refusal = await self._press_refusal(pressed)
        if refusal is not None or pressed.press.verb != STOP:
            await self._answer_press(pressed.query_id, refusal or "", pressed.language)
        if refusal is None:
            await self._enqueue(pressed.incoming)

    async def _press_refusal(self, pressed: ButtonPress) -> str | None:
        """Why the press changes nothing (an English text of the catalogue), or None."""
        if not pressed.own_conversation:
            return NOT_YOURS
        if str(pressed.presser_id) != pressed.press.author_id and not await self._admins.is_admin(
            pressed.presser_id, pressed.chat_id, pressed.in_group
        ):
            return NOT_YOURS
        return NOTHING_TO_STOP if pressed.stale else None

    async def _answer_press(self, query_id: str, text: str, language: str) -> None:
        shown = self._translations(language).gettext(text) if text else None
        await answer_press(self._api, query_id, shown)

    async def set_aside(self, raw: object, reason: str) -> None:
        """Keep an update that cannot be read or stored as a dead letter; log it once."""
        update_id = raw.get("update_id") if isinstance(raw, dict) else None
        log.warning("update %s set aside as a dead letter: %s", update_id, ascii(reason))
        payload = json.dumps(raw, ensure_ascii=True, default=repr)
        await self._inbox.dead_letter(self.name, payload, reason)

    async def _on_hold(self, raw: object) -> None:
        """An update left waiting behind one the store refused: tell its chat too."""
        assert self._me is not None, "start() first"
        with contextlib.suppress(Exception):
            incoming = translate(Update.de_json(raw, self.bot), self._me)  # type: ignore[arg-type]
            if incoming is not None:
                await self._tell_store_is_down(incoming, StoreUnavailable())

    async def _tell_store_is_down(self, incoming: IncomingMessage, error: StoreUnavailable) -> None:
        """Say once per message that it waits for Redis, while polling retries it."""
        if incoming.message_id in self._told_store_down:
            return
        if len(self._told_store_down) > 10_000:
            self._told_store_down.clear()
        self._told_store_down.add(incoming.message_id)
        notice = error.notice if isinstance(error, StoreFull) else STORE_DOWN_NOTICE
        await self._tell(incoming, notice)

    async def _tell(self, incoming: IncomingMessage, notice: str) -> None:
        """Send ``notice`` (an English text of the catalogue) in the author's language."""
        text = self._translations(incoming.language).gettext(notice)
        with contextlib.suppress(DeliveryError):
            await self.sinks(incoming).fail(text)

    async def _with_admin_flag(self, incoming: IncomingMessage) -> IncomingMessage:
        if not is_admin_command(incoming):
            return incoming
        allowed = await self._admins.is_admin(
            int(incoming.author_id), int(incoming.reply_to["chat_id"]), incoming.in_group
        )
        return replace(incoming, is_admin=allowed)

    async def _register_menus(self) -> None:
        scopes = [
            (PUBLIC_MENU, BotCommandScopeDefault()),
            (ADMIN_MENU, BotCommandScopeAllChatAdministrators()),
            *((ADMIN_MENU, BotCommandScopeChat(user_id)) for user_id in self._config.admin_ids),
        ]
        for menu, scope in scopes:
            for language in ["", *self._menu_languages]:
                try:
                    await self.bot.set_my_commands(
                        self._menu_in(language, menu), scope=scope, language_code=language or None
                    )
                except TelegramError as error:
                    log.warning("could not register the command menu (%s): %s", scope.type, error)

    def _menu_in(self, language: str, menu: tuple[BotCommand, ...]) -> list[BotCommand]:
        """The menu for users of ``language`` ("": everyone else, in English)."""
        if not language:
            return list(menu)
        gettext = self._translations(language).gettext
        return [BotCommand(c.command, gettext(c.description)) for c in menu]

    async def _start_webhook(self, webhook: Webhook) -> None:
        secret = webhook.secret
        token = secret.get_secret_value() if secret else secrets.token_urlsafe(32)
        path = urlsplit(webhook.url).path or "/"
        self._webhook = WebhookServer(self.bot, self.receive, self.set_aside, token, path)
        self.webhook_port = await self._webhook.start(webhook.host, webhook.port)
        await self.bot.set_webhook(webhook.url, secret_token=token, allowed_updates=ALLOWED_UPDATES)
