"""Telegram updates to neutral ``IncomingMessage``s: who is addressed, which conversation.

Private chats: every message (other kinds, stickers say, arrive with empty text, which the
core answers with a short "text only" notice). Groups: only @mentions, replies to the bot and
commands; one conversation per chat, one per forum topic. Edited messages, channel posts and
messages from bots are ignored.

Photos, image files, voice notes, audio files and other documents travel as ``Attachment``s by
``file_id``; their caption is the text (a caption can mention the bot or be a command, as text
can). Of a photo's sizes the largest the Bot API lets a bot download is taken.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from telegram import Message, MessageEntity, Update

from core.models import Attachment, AttachmentKind, IncomingMessage

PLATFORM = "telegram"
PUBLIC_COMMANDS = ("start", "help", "reset", "stop", "retry", "undo")
# Commands whose answer depends on the author being an admin (usage: the top users too).
ADMIN_COMMANDS = ("preset", "system", "fewshot", "model", "think", "audit", "quota", "usage", "kb")
KNOWN_COMMANDS = (*PUBLIC_COMMANDS, *ADMIN_COMMANDS, "ask")
DOWNLOAD_LIMIT = 20 * 1024 * 1024  # the largest file the Bot API hands a bot (getFile)


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
    text = _body(message).text
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
    if (message.text is None and not attachments(message)) or not _addressed(message, me):
        return None
    return _build(update, message, strip_mention(text, me.username), False)


def is_admin_command(incoming: IncomingMessage) -> bool:
    """Whether the command may need the author's admin rights."""
    return incoming.is_command and incoming.text.split(" ", 1)[0] in ADMIN_COMMANDS


def strip_mention(text: str, username: str) -> str:
    """The text without ``@username`` (any case), tidied."""
    cleaned = re.sub(rf"@{re.escape(username)}\b", " ", text, flags=re.IGNORECASE)
    return re.sub(r"[ \t]{2,}", " ", cleaned).strip()


@dataclass(frozen=True, slots=True)
class _Body:
    """A message's text or a media message's caption, with its entities."""

    text: str
    entities: Sequence[MessageEntity]
    parse: Callable[[MessageEntity], str]


def _body(message: Message) -> _Body:
    if message.text is None and message.caption is not None:
        return _Body(message.caption, message.caption_entities, message.parse_caption_entity)
    return _Body(message.text or "", message.entities, message.parse_entity)


def attachments(message: Message) -> tuple[Attachment, ...]:
    """The files of a message: a photo, an image file, a voice note or audio, a document."""
    if message.animation:  # a GIF; Telegram also lists it as a document, for old clients
        return ()
    if message.photo:
        fitting = [p for p in message.photo if (p.file_size or 0) <= DOWNLOAD_LIMIT]
        if not fitting:
            fitting = [min(message.photo, key=lambda p: p.file_size or 0)]
        photo = max(fitting, key=lambda p: (p.width * p.height, p.file_size or 0))
        return (
            Attachment("image", photo.file_id, "photo.jpg", "image/jpeg", photo.file_size or 0),
        )
    if message.voice:
        voice = message.voice
        mime = voice.mime_type or "audio/ogg"
        return (Attachment("audio", voice.file_id, "voice.ogg", mime, voice.file_size or 0),)
    if message.audio:
        audio = message.audio
        name, mime = audio.file_name or "audio", audio.mime_type or ""
        return (Attachment("audio", audio.file_id, name, mime, audio.file_size or 0),)
    if message.document:
        document = message.document
        mime = document.mime_type or ""
        kind: AttachmentKind = "image" if mime.startswith("image/") else "document"
        name = document.file_name or ""
        return (Attachment(kind, document.file_id, name, mime, document.file_size or 0),)
    return ()


def _command(message: Message, me: BotIdentity) -> tuple[str, str] | None:
    """``(verb, rest)`` for ``/verb@bot rest`` addressed to us, None otherwise."""
    body = _body(message)
    text, entities = body.text, body.entities
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
    body = _body(message)
    if any(_names_bot(body, entity, me) for entity in body.entities):
        return True
    replied = message.reply_to_message
    # A forum topic's messages carry an implicit reply to the topic's creation message.
    return (
        replied is not None
        and replied.forum_topic_created is None
        and replied.from_user is not None
        and replied.from_user.id == me.user_id
    )


def _names_bot(body: _Body, entity: MessageEntity, me: BotIdentity) -> bool:
    if entity.type == MessageEntity.MENTION:
        return body.parse(entity)[1:].lower() == me.username.lower()
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
        attachments=attachments(message),
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
