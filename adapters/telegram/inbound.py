"""Telegram updates to neutral ``IncomingMessage``s: who is addressed, which conversation.

Private chats: every message (non-text ones arrive with empty text, which the core answers
with a short "text only" notice). Groups: only @mentions, replies to the bot and commands;
one conversation per chat, one per forum topic. Edited messages, channel posts and messages
from bots are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from telegram import Message, MessageEntity, Update

from core.models import IncomingMessage

PLATFORM = "telegram"
PUBLIC_COMMANDS = ("start", "help", "reset", "stop", "retry", "undo")
# Commands whose answer depends on the author being an admin (usage: the top users too).
ADMIN_COMMANDS = ("preset", "system", "fewshot", "model", "audit", "quota", "usage", "kb")
KNOWN_COMMANDS = (*PUBLIC_COMMANDS, *ADMIN_COMMANDS, "ask")


@dataclass(frozen=True, slots=True)
class BotIdentity:
    """The bot's own user id and @username (from getMe)."""

    user_id: int
    username: str


def translate(update: Update, me: BotIdentity) -> IncomingMessage | None:
    """The message to enqueue for ``update``, or None when the bot should stay silent.

    ``is_admin`` is left False; the receiver decides it (it may have to ask Telegram).
    """
    message = update.message
    if message is None or message.from_user is None or message.from_user.is_bot:
        return None
    private = message.chat.type == "private"
    text = message.text or ""
    command = _command(message, me)
    if command is not None:
        verb, rest = command
        if verb not in KNOWN_COMMANDS:  # in a group, maybe another bot's command
            return _build(update, message, f"{verb} {rest}".strip(), True) if private else None
        if verb == "ask":
            return _build(update, message, rest, False)
        return _build(update, message, f"{verb} {rest}".strip(), True)
    if private:
        return _build(update, message, text, False)
    if message.text is None or not _addressed(message, me):
        return None
    return _build(update, message, strip_mention(text, me.username), False)


def is_admin_command(incoming: IncomingMessage) -> bool:
    """Whether the command may need the author's admin rights."""
    return incoming.is_command and incoming.text.split(" ", 1)[0] in ADMIN_COMMANDS


def strip_mention(text: str, username: str) -> str:
    """The text without ``@username`` (any case), tidied."""
    cleaned = re.sub(rf"@{re.escape(username)}\b", " ", text, flags=re.IGNORECASE)
    return re.sub(r"[ \t]{2,}", " ", cleaned).strip()


def _command(message: Message, me: BotIdentity) -> tuple[str, str] | None:
    """``(verb, rest)`` for ``/verb@bot rest`` addressed to us (in a text, or in the caption
    of a file: ``/kb add``), None otherwise."""
    text = message.text or message.caption or ""
    entities = message.entities or message.caption_entities or ()
    if not text.startswith("/") or not any(
        e.type == MessageEntity.BOT_COMMAND and e.offset == 0 for e in entities
    ):
        return None
    head, _, rest = text[1:].partition(" ")
    verb, _, target = head.partition("@")
    if target and target.lower() != me.username.lower():
        return None
    return verb.lower(), rest.strip()


def _addressed(message: Message, me: BotIdentity) -> bool:
    if any(_names_bot(message, entity, me) for entity in message.entities or ()):
        return True
    replied = message.reply_to_message
    # A forum topic's messages carry an implicit reply to the topic's creation message.
    return (
        replied is not None
        and replied.forum_topic_created is None
        and replied.from_user is not None
        and replied.from_user.id == me.user_id
    )


def _names_bot(message: Message, entity: MessageEntity, me: BotIdentity) -> bool:
    if entity.type == MessageEntity.MENTION:
        return message.parse_entity(entity)[1:].lower() == me.username.lower()
    if entity.type == MessageEntity.TEXT_MENTION and entity.user is not None:
        return entity.user.id == me.user_id
    return False


def _build(update: Update, message: Message, text: str, is_command: bool) -> IncomingMessage:
    chat_id = message.chat.id
    group = message.chat.type != "private"
    topic = message.message_thread_id if message.is_topic_message else None
    conversation = f"tg:{chat_id}:{topic}" if topic else f"tg:{chat_id}"
    author = message.from_user
    assert author is not None
    reply_to = {"chat_id": str(chat_id), "group": "1" if group else ""}
    if topic:
        reply_to["thread_id"] = str(topic)
    if group:
        reply_to["message_id"] = str(message.message_id)
    replied_text, replied_link = _replied(message) if is_command else ("", "")
    return IncomingMessage(
        platform=PLATFORM,
        message_id=str(update.update_id),
        conversation=conversation,
        channel=f"tg:{chat_id}",
        author_id=str(author.id),
        author_name=author.full_name,
        text=text,
        in_group=group,
        is_command=is_command,
        command_prefix="/",
        reply_to=reply_to,
        language=author.language_code or "",
        replied_text=replied_text,
        replied_link=replied_link,
    )


def _replied(message: Message) -> tuple[str, str]:
    """The text of the message a command replies to (``/kb add``) and its link (only
    supergroups and channels have links). A forum topic's implicit reply is no reply."""
    replied = message.reply_to_message
    if replied is None or replied.forum_topic_created is not None:
        return "", ""
    return replied.text or replied.caption or "", replied.link or ""
