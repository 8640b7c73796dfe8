"""Slack events and slash commands translated into the core's ``IncomingMessage``.

Conversation keys: a DM is ``slack:{team}:{channel}`` and a thread inside a DM is
``slack:{team}:{channel}:{thread_ts}``; in channels every thread is one conversation,
``slack:{team}:{channel}:{thread_ts or ts}``. Settings apply per ``slack:{team}:{channel}``.

A message's ``files`` travel as ``Attachment``s by ``url_private``: images, audio (clips
recorded in Slack too) and, for anything else, documents. A file Slack does not share with
the app (``hidden_by_limit``, a Slack Connect file to look up first) keeps an empty
reference, and the file source says it was withheld.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from adapters.slack.sink import EPHEMERAL, SlackAddress
from core.models import Attachment, AttachmentKind, IncomingMessage

PLATFORM = "slack"
# Subtypes that are still a person writing to us; every other subtype (edits, deletions,
# joins, bot_message...) is ignored.
PERSON_SUBTYPES = frozenset({"thread_broadcast", "file_share"})
DIRECT_CHANNEL_TYPES = frozenset({"im"})


@dataclass(frozen=True, slots=True)
class BotIdentity:
    """Who we are in the workspace, from ``auth.test``."""

    team_id: str
    user_id: str
    bot_id: str


def is_from_person(event: dict[str, Any], bot: BotIdentity) -> bool:
    """True for a message a person wrote: not ours, not another bot's, no edit or join."""
    if event.get("bot_id") or event.get("subtype", "") not in PERSON_SUBTYPES | {""}:
        return False
    user = event.get("user")
    return bool(user) and user != bot.user_id


def is_direct(event: dict[str, Any]) -> bool:
    return event.get("channel_type") in DIRECT_CHANNEL_TYPES


def mentions(event: dict[str, Any], bot: BotIdentity) -> bool:
    return f"<@{bot.user_id}" in str(event.get("text", ""))


_LINK = re.compile(r"<((?:https?|mailto):[^|>]+)(?:\|([^>]*))?>")


def plain_text(text: str, bot: BotIdentity) -> str:
    """What the person typed: our mention removed, links and ``&lt;`` ``&gt;`` ``&amp;`` undone."""
    text = re.sub(rf"<@{re.escape(bot.user_id)}(\|[^>]*)?>", " ", text)
    text = _LINK.sub(lambda m: _link_text(m.group(1), m.group(2)), text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").strip()


def _link_text(url: str, label: str | None) -> str:
    plain = url.removeprefix("mailto:")
    return plain if not label or label == plain else f"{label} ({plain})"


def team_of(body: dict[str, Any], bot: BotIdentity) -> str:
    event = body.get("event", {})
    return str(body.get("team_id") or event.get("team") or bot.team_id)


def thread_of(event: dict[str, Any]) -> str:
    """The thread a channel message belongs to (a top-level message opens its own)."""
    return str(event.get("thread_ts") or event["ts"])


def message_from_event(body: dict[str, Any], bot: BotIdentity) -> IncomingMessage:
    """Build the inbox message for a DM, a mention or a thread reply in ``body``."""
    event = body["event"]
    team, channel = team_of(body, bot), str(event["channel"])
    direct = is_direct(event)
    thread = str(event.get("thread_ts") or "") if direct else thread_of(event)
    conversation = f"{PLATFORM}:{team}:{channel}" + (f":{thread}" if thread else "")
    user = str(event["user"])
    return IncomingMessage(
        platform=PLATFORM,
        message_id=str(body["event_id"]),
        conversation=conversation,
        channel=f"{PLATFORM}:{team}:{channel}",
        author_id=user,
        author_name=_display_name(event),
        text=plain_text(str(event.get("text", "")), bot),
        in_group=not direct,
        reply_to=SlackAddress(channel, thread, user).to_reply_to(),
        attachments=tuple(attachment(f) for f in event.get("files") or () if isinstance(f, dict)),
    )


_KB_ADD = re.compile(r"(?:/\S+\s+)?kb\s+add", re.IGNORECASE)


def shares_a_document(message: IncomingMessage) -> bool:
    """A file shared with the text ``kb add`` (or ``/ollabot kb add``): a slash command
    cannot carry a file, so this message stands for the command."""
    documents = any(a.kind == "document" for a in message.attachments)
    return documents and _KB_ADD.fullmatch(message.text.strip()) is not None


def attachment(file: dict[str, Any]) -> Attachment:
    """One of a message's ``files`` as an attachment."""
    mime = str(file.get("mimetype") or "")
    kind: AttachmentKind = "document"
    if mime.startswith("image/"):
        kind = "image"
    elif mime.startswith("audio/") or file.get("subtype") == "slack_audio":
        kind = "audio"
    ref = str(file.get("url_private_download") or file.get("url_private") or "")
    name = str(file.get("name") or file.get("title") or "")
    return Attachment(kind, ref, name, mime, int(file.get("size") or 0))


def message_from_command(
    payload: dict[str, Any], bot: BotIdentity, prefix: str, is_admin: bool
) -> IncomingMessage:
    """Build the inbox message for ``/ollabot …``; an empty command asks for help."""
    team = str(payload.get("team_id") or bot.team_id)
    channel, user = str(payload["channel_id"]), str(payload["user_id"])
    return IncomingMessage(
        platform=PLATFORM,
        message_id=f"command:{payload['trigger_id']}",
        conversation=f"{PLATFORM}:{team}:{channel}",
        channel=f"{PLATFORM}:{team}:{channel}",
        author_id=user,
        author_name=str(payload.get("user_name") or user),
        text=plain_text(str(payload.get("text", "")), bot) or "help",
        is_admin=is_admin,
        in_group=not channel.startswith("D"),
        is_command=True,
        command_prefix=f"{prefix} ",
        reply_to=SlackAddress(channel, "", user, EPHEMERAL).to_reply_to(),
    )


def _display_name(event: dict[str, Any]) -> str:
    profile = event.get("user_profile") or {}
    name = profile.get("display_name") or profile.get("real_name")
    return str(name or event.get("user", ""))
