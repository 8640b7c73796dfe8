"""The Telegram reply sink: typing, one streamed message, then the formatted final parts.

Built from ``IncomingMessage.reply_to`` alone, so a message claimed after a restart is
answered just the same; its ``handle`` (the streamed message's id, the parts delivered) lets
a successor finish the same message. Private chats stream as native drafts where Telegram
allows them (nothing for a successor to finish: it sends the final text). A streamed message
carries a Stop button while it shows the reply so far; an answer's last part carries Retry.
Streaming edits are optional (skipped when the chat has no room, here or in the bot-wide
budget, or the text is unchanged); the final parts are required, and wait for their place in
the budget: a 429 or a network failure is raised as ``DeliveryDeferred`` for the outbox to
retry, and parts already delivered are not sent again.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

from telegram.error import (
    BadRequest,
    ChatMigrated,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)

from adapters.telegram.buttons import RETRY, STOP, Controls, Markup
from adapters.telegram.drafts import DraftSupport
from adapters.telegram.pacing import ChatPacer, Pacers, retry_seconds
from adapters.telegram.render import Part, render, with_reasoning
from adapters.telegram.request import BotApi
from core.errors import DeliveryDeferred, DeliveryRefused

log = logging.getLogger("ollabot.telegram.sink")

ATTEMPTS = 4
TYPING_AT_MOST_S = 600.0
_ELLIPSIS = " …"


class TelegramSink:
    """A ``ReplySink`` bound to one chat (and forum topic) of one incoming message."""

    def __init__(
        self,
        api: BotApi,
        pacers: Pacers,
        reply_to: dict[str, str],
        controls: Controls | None = None,
        drafts: DraftSupport | None = None,
    ) -> None:
        self._api = api
        self._limits = pacers.limits
        self._budget = pacers.budget
        self._chat_id = int(reply_to["chat_id"])
        self._thread_id = int(reply_to["thread_id"]) if reply_to.get("thread_id") else None
        self._quote = int(reply_to["message_id"]) if reply_to.get("message_id") else None
        self._group = bool(reply_to.get("group"))
        self._pacer: ChatPacer = pacers.for_chat(self._chat_id, self._group)
        self._controls = controls
        self._drafts = drafts
        self._draft_id = 0  # nonzero once a draft shows
        self._drafted_at = 0.0
        self._message_id: int | None = None
        self._parts_done = 0
        self._shown: Part | None = None
        self._shown_markup: Markup | None = None
        self._latest = ""
        self._first_text_at = 0.0
        self._typing: asyncio.Task[None] | None = None

    @property
    def handle(self) -> dict[str, str]:
        if self._message_id is None:
            return {}
        return {"message_id": str(self._message_id), "parts": str(self._parts_done)}

    def resume(self, handle: dict[str, str]) -> None:
        """Finish in the message an earlier attempt streamed into."""
        if handle.get("message_id"):
            self._message_id = int(handle["message_id"])
            self._parts_done = int(handle.get("parts", 0))

    async def begin(self) -> None:
        """Start the typing indicator (after a short delay, so instant replies skip it)."""
        self._pacer.streaming(id(self), time.monotonic())
        self._typing = asyncio.create_task(self._keep_typing())

    async def status(self, text: str) -> None:
        """Say where the reply stands (queued, model loading) until its text comes."""
        if not self._latest and self._pacer.edit_allowed(time.monotonic()):
            await self._show_optional(Part(text))

    async def update(self, text: str) -> None:
        """Show the reply so far, when the chat's budget allows and the text changed."""
        self._latest = text
        now = time.monotonic()
        self._pacer.streaming(id(self), now)
        if not self._first_text_at:
            self._first_text_at = now
        if now - self._first_text_at < self._limits.first_show_delay_s:
            return
        if self._pacer.edit_allowed(now):
            await self._show_optional(_preview(text), self._markup(STOP))

    async def _show_optional(
        self, part: Part, markup: Markup | None = None, again: bool = False
    ) -> None:
        """Show ``part`` if it is new (or ``again``); a lost preview or status is harmless
        (the final text follows), a 429 only pauses this chat."""
        if not again and (part, markup) == (self._shown, self._shown_markup):
            return
        if not await self._budget.try_take():
            return
        try:
            await self._show(part, markup)
        except RetryAfter as error:
            self._pacer.block(retry_seconds(error))
        except TelegramError as error:
            log.info("streaming edit skipped: %s", error)

    async def finish(self, text: str, *, reasoning: str = "") -> None:
        """Deliver the complete reply, formatted and split, every part in order; the
        reasoning, if any, folded atop the first part."""
        self._end_streaming()
        await self._deliver(with_reasoning(render(text), reasoning), self._markup(RETRY))

    async def fail(self, notice: str) -> None:
        """Keep the partial reply visible and add the notice (or send the notice alone)."""
        self._end_streaming()
        if self._latest.strip():
            await self._deliver(render(f"{self._latest}{_ELLIPSIS}\n\n⚠️ {notice}"))
        else:
            await self._deliver([Part(notice)])

    async def _deliver(self, parts: list[Part], last_markup: Markup | None = None) -> None:
        """Deliver the parts not delivered yet; the first one replaces the streamed message
        (and its Stop button), the last one carries ``last_markup``."""
        try:
            for index in range(self._parts_done, len(parts)):
                markup = last_markup if index == len(parts) - 1 else None
                await self._formatted_or_plain(parts[index], index == 0, markup)
                self._parts_done = index + 1
        except RetryAfter as error:
            seconds = retry_seconds(error)
            self._pacer.block(seconds)
            raise DeliveryDeferred(f"Telegram asked to wait {seconds:.0f}s", seconds) from error
        except NetworkError as error:  # includes TimedOut; BadRequest was raised above
            if isinstance(error, BadRequest):
                raise DeliveryRefused(str(error)) from error
            raise DeliveryDeferred(f"Telegram not reachable: {error}") from error
        except TelegramError as error:  # Forbidden (bot blocked), chat not found...
            raise DeliveryRefused(str(error)) from error

    async def _formatted_or_plain(self, part: Part, editing: bool, markup: Markup | None) -> None:
        try:
            await self._required(part, editing, markup)
        except BadRequest as error:
            if not _is_format_error(error):
                raise
            log.warning("Telegram rejected the formatting, sending plain text: %s", error)
            await self._required(part.plain(), editing, markup)

    async def _required(self, part: Part, editing: bool, markup: Markup | None) -> None:
        for _ in range(ATTEMPTS):
            await self._pacer.wait_turn()
            try:
                if editing and self._message_id is not None:
                    if (part, markup) != (self._shown, self._shown_markup):
                        await self._budget.take()
                        await self._edit(part, markup)
                else:
                    await self._budget.take()
                    await self._send(part, keep_first=not editing, markup=markup)
                return
            except ChatMigrated as error:  # the group became a supergroup
                self._chat_id = int(error.new_chat_id)
            except BadRequest as error:
                if not (editing and "message to edit not found" in error.message.lower()):
                    raise
                self._message_id = None  # the streamed message was deleted: send anew
        raise DeliveryRefused("Telegram kept moving or losing the chat")

    async def _show(self, part: Part, markup: Markup | None) -> None:
        if self._message_id is None and await self._drafted(part, markup):
            return
        if self._message_id is None:
            await self._send(part, markup=markup)
        else:
            await self._edit(part, markup)

    async def _drafted(self, part: Part, markup: Markup | None) -> bool:
        """Show ``part`` as the chat's draft, where drafts may be used; False where not.

        A draft cannot carry buttons (``markup`` is only noted, so that the same preview is
        not drafted twice): in a private chat a reply is stopped with /stop."""
        drafts = self._drafts
        if drafts is None or self._group or not drafts.allowed(self._chat_id):
            return False
        draft_id = self._draft_id or secrets.randbelow(2**31 - 1) + 1
        try:
            await self._api.call(
                "sendMessageDraft",
                chat_id=self._chat_id,
                message_thread_id=self._thread_id,
                draft_id=draft_id,
                text=part.text,
                entities=list(part.entities) or None,
            )
        except (BadRequest, InvalidToken) as error:
            if isinstance(error, BadRequest) and _is_format_error(error):
                raise
            drafts.refused(self._chat_id, error)
            return False
        self._pacer.sent()
        self._draft_id, self._shown, self._shown_markup = draft_id, part, markup
        self._drafted_at = time.monotonic()
        return True

    async def _send(
        self, part: Part, keep_first: bool = False, markup: Markup | None = None
    ) -> None:
        message = await self._api.call(
            "sendMessage",
            chat_id=self._chat_id,
            text=part.text,
            entities=list(part.entities) or None,
            message_thread_id=self._thread_id,
            reply_parameters=self._reply_parameters(),
            reply_markup=markup,
        )
        self._pacer.sent()
        if not (keep_first and self._message_id is not None):
            self._message_id = int(message["message_id"])
            self._shown, self._shown_markup = part, markup

    async def _edit(self, part: Part, markup: Markup | None) -> None:
        """Replace the message's text; its buttons become ``markup`` (none when None)."""
        try:
            await self._api.call(
                "editMessageText",
                chat_id=self._chat_id,
                message_id=self._message_id,
                text=part.text,
                entities=list(part.entities) or None,
                reply_markup=markup,
            )
        except BadRequest as error:
            if "not modified" not in error.message.lower():
                raise
        self._pacer.sent()
        self._shown, self._shown_markup = part, markup

    def _markup(self, verb: str) -> Markup | None:
        return None if self._controls is None else self._controls.markup(verb)

    def _reply_parameters(self) -> dict[str, object] | None:
        if self._quote is None or self._message_id is not None:
            return None
        return {"message_id": self._quote, "allow_sending_without_reply": True}

    async def _keep_typing(self) -> None:
        """Until the first text shows, then keep a draft from fading while the reply waits
        (a queue, a slow model); ends on its own if the reply was abandoned."""
        await asyncio.sleep(self._limits.typing_delay_s)
        deadline = time.monotonic() + TYPING_AT_MOST_S
        while self._message_id is None and time.monotonic() < deadline:
            if self._draft_id:  # a typing action now would take the draft's place
                await self._keep_draft()
            elif time.monotonic() >= self._pacer.blocked_until and await self._budget.try_take():
                try:
                    await self._api.call(
                        "sendChatAction",
                        chat_id=self._chat_id,
                        action="typing",
                        message_thread_id=self._thread_id,
                    )
                except RetryAfter as error:
                    self._pacer.block(retry_seconds(error))
                except TelegramError:
                    return
            await asyncio.sleep(self._limits.typing_every_s)

    async def _keep_draft(self) -> None:
        now = time.monotonic()
        due = now - self._drafted_at >= self._limits.draft_keep_s
        if due and self._shown is not None and self._pacer.edit_allowed(now):
            await self._show_optional(self._shown, self._shown_markup, again=True)

    def _end_streaming(self) -> None:
        if self._typing is not None:
            self._typing.cancel()
            self._typing = None
        self._pacer.done(id(self))


def _preview(text: str) -> Part:
    """The first part of the reply so far; an ellipsis says that more is coming."""
    parts = render(text)
    if not parts:
        return Part(_ELLIPSIS.strip())
    first = parts[0]
    return Part(first.text + _ELLIPSIS, first.entities)


def _is_format_error(error: BadRequest) -> bool:
    text = error.message.lower()
    return "parse entities" in text or "entit" in text
