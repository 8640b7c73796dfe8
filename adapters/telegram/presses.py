"""A press of a Stop or Retry button, read from a ``callback_query`` update.

A press becomes the command it stands for, typed by the presser in the conversation of the
message the button is on, so it takes the same inbox path as ``/stop`` or ``/retry``. Whether
it is allowed (the presser's rights, a Stop on a reply already finished) is the receiver's
call. A Stop names the reply it stops, and only the store knows whether that reply is still
being written: the answer to the stop command goes onto the button (``PressAnswer``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from telegram import CallbackQuery, Message, Update
from telegram.error import TelegramError

from adapters.telegram.buttons import STOP, Press, shows
from adapters.telegram.inbound import PLATFORM
from adapters.telegram.request import BotApi
from core.models import IncomingMessage
from core.ports import NullSink

log = logging.getLogger("ollabot.telegram.presses")

# Marks a command that came from a button, with the id of the press (its callback query).
BUTTON = "button"


@dataclass(frozen=True, slots=True)
class ButtonPress:
    """One press: ``incoming`` is the command it becomes, once allowed."""

    query_id: str
    press: Press
    presser_id: int
    chat_id: int
    in_group: bool
    language: str
    own_conversation: bool  # the button's data names the conversation it is shown in
    stale: bool  # a Stop whose reply has finished (its message shows Retry now)
    incoming: IncomingMessage


def read_press(update: Update) -> ButtonPress | CallbackQuery | None:
    """The press in ``update``; the bare query when it is not a button of ours (it still
    needs an answer); None when ``update`` holds no callback query."""
    query = update.callback_query
    if query is None:
        return None
    press = Press.read(query.data)
    message = query.message
    if press is None or not isinstance(message, Message) or query.from_user.is_bot:
        return query
    chat = message.chat
    topic = message.message_thread_id if message.is_topic_message else None
    conversation = f"tg:{chat.id}:{topic}" if topic else f"tg:{chat.id}"
    group = chat.type != "private"
    reply_to = {"chat_id": str(chat.id), "group": "1" if group else "", BUTTON: query.id}
    reply_to["author_id"] = press.author_id  # the question's: a Retry's answer stays theirs
    if topic:
        reply_to["thread_id"] = str(topic)
    question = message.reply_to_message
    if group and question is not None and question.forum_topic_created is None:
        reply_to["message_id"] = str(question.message_id)
    presser = query.from_user
    incoming = IncomingMessage(
        platform=PLATFORM,
        message_id=str(update.update_id),
        conversation=press.conversation,
        channel=f"tg:{chat.id}",
        author_id=str(presser.id),
        author_name=presser.full_name,
        text=press.verb,
        in_group=group,
        is_command=True,
        command_prefix="/",
        reply_to=reply_to,
        language=presser.language_code or "",
        stops=press.reply if press.verb == STOP else "",
    )
    return ButtonPress(
        query_id=query.id,
        press=press,
        presser_id=presser.id,
        chat_id=chat.id,
        in_group=group,
        language=incoming.language,
        own_conversation=conversation == press.conversation,
        stale=press.verb == STOP and not shows(message.reply_markup, STOP),
        incoming=incoming,
    )


def from_button(message: IncomingMessage) -> bool:
    return bool(message.reply_to.get(BUTTON))


async def answer_press(api: BotApi, query_id: str, text: str | None) -> None:
    """End the press's spinner, showing ``text`` (already translated) if any."""
    try:
        await api.call("answerCallbackQuery", callback_query_id=query_id, text=text or None)
    except TelegramError as error:  # too late (a redelivered update): nothing to end
        log.info("could not answer a button press: %s", error)


class PressAnswer(NullSink):
    """The sink of a Stop press: the answer (stopping, or nothing to stop) is shown on the
    pressed button, not in the chat."""

    def __init__(self, api: BotApi, message: IncomingMessage) -> None:
        self._api = api
        self._query_id = message.reply_to[BUTTON]

    async def finish(self, text: str, *, reasoning: str = "") -> None:
        await answer_press(self._api, self._query_id, text)

    async def fail(self, notice: str) -> None:
        await answer_press(self._api, self._query_id, notice)
