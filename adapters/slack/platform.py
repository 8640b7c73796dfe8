"""The Slack platform: a slack-bolt ``AsyncApp`` in Socket Mode or HTTP mode.

Listeners only translate and write to the inbox; Bolt acknowledges when they return
(``process_before_response=True``), so every event is in Redis before Slack hears back,
and no Web API call happens before the acknowledgement (the one exception: a bounded
``users.info`` for an admin-only command from a user not cached yet). A button press is
the other way round: acknowledged at once, then checked and written in the background
(a press lost to a crash is pressed again; a slow check must not make Slack show an
error). An event that cannot be read or stored is set aside as a dead letter, with the
reason, and acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any, Protocol

import aiohttp
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import events
from adapters.slack.admins import AdminDirectory
from adapters.slack.blocks import RETRY_ACTION, STOP_ACTION
from adapters.slack.buttons import ButtonPresses
from adapters.slack.config import HttpMode, SlackConfig, SocketMode
from adapters.slack.events import BotIdentity
from adapters.slack.files import SlackFiles
from adapters.slack.http_mode import SlackHttpServer
from adapters.slack.sink import SlackSinks
from adapters.slack.threads import MemoryThreadRegistry
from core import commands
from core.errors import DeliveryError, InvalidCommand, OllabotError, RateLimited, StoreUnavailable
from core.i18n import N_, Translations, only_english, speaking
from core.models import Admission, IncomingMessage
from core.ports import Inbox

log = logging.getLogger("ollabot.slack")

COMMAND = "/ollabot"
UNREADABLE_COMMAND = N_("Sorry, I could not read that command.")
Ack = Callable[..., Awaitable[Any]]


class ThreadRegistry(Protocol):
    """Remembers the channel threads the bot takes part in."""

    async def join(self, team: str, channel: str, thread_ts: str) -> None: ...

    async def takes_part(self, team: str, channel: str, thread_ts: str) -> bool: ...


class SlackPlatform:
    """Receives DMs, mentions, thread replies and ``/ollabot``; ``sinks`` answers them.

    ``threads`` remembers the channel threads the bot answers in (``RedisThreadRegistry``
    in production, so that follow-ups survive restarts and are shared by instances).
    Lifecycle: ``start``; ``stop`` (no new events); the worker drains; ``aclose``.
    """

    def __init__(
        self,
        config: SlackConfig,
        inbox: Inbox,
        threads: ThreadRegistry | None = None,
        *,
        command: str = COMMAND,
        update_interval_s: float = 1.2,
        admin_cache_s: float = 300.0,
        translations: Translations | None = None,
    ) -> None:
        self._config = config
        # Without catalogues everyone is answered in English: no locale to ask Slack for.
        self._translations = translations or only_english
        self._ask_locales = translations is not None
        self._inbox = inbox
        if threads is None:
            log.warning("threads the bot is in are remembered in memory only; pass a Redis one")
        self._threads = threads or MemoryThreadRegistry()
        self._command = command
        self.client = AsyncWebClient(
            token=config.bot_token.get_secret_value(), base_url=config.api_base_url
        )
        self.sinks = SlackSinks(self.client, update_interval_s)
        self.files = SlackFiles(config.bot_token, config.api_base_url)
        self._admins = AdminDirectory(self.client, list(config.admin_ids), admin_cache_s)
        self._buttons = ButtonPresses(
            inbox, self._admins, self.sinks, self._translations, self._language, command
        )
        self._session: aiohttp.ClientSession | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self._notices: set[asyncio.Task[None]] = set()
        self.http: SlackHttpServer | None = None
        self.identity: BotIdentity | None = None

    async def start(self) -> None:
        """Learn who we are (``auth.test``), then connect or listen; returns when ready."""
        self._session = aiohttp.ClientSession()
        self.client.session = self._session
        auth = await self.client.auth_test()
        self.identity = BotIdentity(
            str(auth["team_id"]), str(auth["user_id"]), str(auth.get("bot_id") or "")
        )
        app = self._build_app(
            AuthorizeResult.from_auth_test_response(
                auth_test_response=auth, bot_token=self.client.token
            )
        )
        if isinstance(self._config.receive, HttpMode):
            await self._listen(app, self._config.receive)
        else:
            await self._connect(app, self._config.receive)

    async def stop(self) -> None:
        """Stop receiving; replies in progress still reach Slack (call ``aclose`` after)."""
        if self._socket is not None:
            await self._socket.close_async()  # type: ignore[no-untyped-call]
            self._socket = None
        if self.http is not None:
            await self.http.stop()
            self.http = None

    async def aclose(self) -> None:
        """Release the HTTP connection pool once the worker has drained."""
        await self._buttons.aclose()
        self.client.session = None
        await self.files.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _connect(self, app: AsyncApp, mode: SocketMode) -> None:
        opener = AsyncWebClient(base_url=self._config.api_base_url, session=self._session)
        token = mode.app_token.get_secret_value()
        self._socket = AsyncSocketModeHandler(app, token, web_client=opener)
        await self._socket.connect_async()  # type: ignore[no-untyped-call]

    async def _listen(self, app: AsyncApp, mode: HttpMode) -> None:
        secret = mode.signing_secret.get_secret_value()
        self.http = SlackHttpServer(app, secret, mode.host, mode.port, mode.path)
        await self.http.start()

    def _build_app(self, authorized: AuthorizeResult) -> AsyncApp:
        async def authorize() -> AuthorizeResult:
            return authorized

        app = AsyncApp(
            # Bolt takes the token from ``authorize``; our listeners never call the Web API
            client=AsyncWebClient(base_url=self._config.api_base_url, session=self._session),
            authorize=authorize,
            process_before_response=True,
            request_verification_enabled=False,  # HTTP mode verifies before Bolt sees it
        )

        async def on_mention(body: dict[str, Any]) -> None:
            async with self._set_aside_on_failure(body):
                await self._on_mention(body)

        async def on_message(body: dict[str, Any]) -> None:
            async with self._set_aside_on_failure(body):
                await self._on_message(body)

        async def on_command(body: dict[str, Any], ack: Ack) -> None:
            await self._on_command(body, ack)

        app.event("app_mention")(on_mention)
        app.event("message")(on_message)
        app.command(self._command)(on_command)

        async def on_button(body: dict[str, Any], ack: Ack) -> None:
            await ack()  # at once: the check may ask Slack who the presser is
            self._buttons.press(body, self._bot.team_id)

        app.action(STOP_ACTION)(on_button)
        app.action(RETRY_ACTION)(on_button)
        return app

    @property
    def _bot(self) -> BotIdentity:
        assert self.identity is not None, "start() first"
        return self.identity

    async def _on_mention(self, body: dict[str, Any]) -> None:
        event = body["event"]
        if not events.is_from_person(event, self._bot):
            return
        if not events.is_direct(event):
            team = events.team_of(body, self._bot)
            await self._threads.join(team, event["channel"], events.thread_of(event))
        await self._enqueue(body)

    async def _on_message(self, body: dict[str, Any]) -> None:
        event = body["event"]
        if not events.is_from_person(event, self._bot):
            return
        if events.is_direct(event):
            await self._enqueue(body)
            return
        if events.mentions(event, self._bot) or not event.get("thread_ts"):
            return  # mentions arrive as app_mention; other channel chatter is not for us
        team = events.team_of(body, self._bot)
        if await self._threads.takes_part(team, event["channel"], event["thread_ts"]):
            await self._enqueue(body)

    async def _enqueue(self, body: dict[str, Any]) -> None:
        message = events.message_from_event(body, self._bot)
        message = replace(message, language=await self._language(message.author_id))
        if events.shares_a_document(message):
            message = await self._as_kb_add(message)
        admission = await self._inbox.enqueue(message)
        if admission is Admission.DUPLICATE:
            log.info("event %s already received; not answering twice", message.message_id)
        elif admission is Admission.LIMITED:
            # after the ack: nothing may call Slack before it, so the notice goes in the background
            self._notices.add(task := asyncio.create_task(self._tell_limited(message)))
            task.add_done_callback(self._notices.discard)

    async def _as_kb_add(self, message: IncomingMessage) -> IncomingMessage:
        """The shared file's message as ``kb add``; in a channel it needs an admin (Slack is
        asked only then), in a DM it is the author's own."""
        admin = message.in_group and await self._admins.is_admin(
            message.author_id, self._bot.team_id
        )
        prefix = f"{self._command} "
        return replace(
            message, text="kb add", is_command=True, is_admin=admin, command_prefix=prefix
        )

    async def _tell_limited(self, message: IncomingMessage) -> None:
        with contextlib.suppress(DeliveryError):
            await self.sinks(message).fail(self._localized(message.language, RateLimited()))

    async def _on_command(self, payload: dict[str, Any], ack: Ack) -> None:
        language = ""
        try:
            language = await self._language(str(payload["user_id"]))
            admin = await self._decide_admin(payload)
            message = events.message_from_command(payload, self._bot, self._command, admin)
            message = replace(message, language=language)
            admission = await self._inbox.enqueue(message)
        except OllabotError as error:
            await ack(text=f":warning: {self._localized(language, error)}")
            return
        except Exception as error:  # a command that cannot be read or stored
            await self._set_aside(payload, error)
            unreadable = self._translations(language).gettext(UNREADABLE_COMMAND)
            await ack(text=f":warning: {unreadable}")
            return
        if admission in (Admission.LIMITED, Admission.LIMITED_QUIETLY):
            await ack(text=f":warning: {self._localized(language, RateLimited())}")
            return
        await ack()

    @contextlib.asynccontextmanager
    async def _set_aside_on_failure(self, body: dict[str, Any]) -> AsyncIterator[None]:
        """Set an event aside when it cannot be read or stored, so that it is acknowledged
        instead of being delivered again; only a Redis outage leaves it to Slack's retries."""
        try:
            yield
        except StoreUnavailable:
            raise
        except Exception as error:
            await self._set_aside(body, error)

    async def _set_aside(self, body: dict[str, Any], error: Exception) -> None:
        reason = f"{type(error).__name__}: {error}"
        what = body.get("event_id") or body.get("trigger_id")
        log.warning("event %s set aside as a dead letter: %s", what, ascii(reason))
        payload = json.dumps(body, ensure_ascii=True, default=repr)
        await self._inbox.dead_letter(events.PLATFORM, payload, reason)

    async def _language(self, user_id: str) -> str:
        """The user's Slack locale (cached with the admin answer), when there is a choice."""
        return await self._admins.locale(user_id) if self._ask_locales else ""

    def _localized(self, language: str, error: OllabotError) -> str:
        with speaking(self._translations(language)):
            return error.localized()

    async def _decide_admin(self, payload: dict[str, Any]) -> bool:
        """Ask Slack only when the command needs an admin and the user is not configured."""
        user = str(payload["user_id"])
        if _admin_only(str(payload.get("text", ""))):
            return await self._admins.is_admin(user, self._bot.team_id)
        return self._admins.is_configured(user)


def _admin_only(text: str) -> bool:
    try:
        return commands.parse(text).admin_only
    except InvalidCommand:
        return False
