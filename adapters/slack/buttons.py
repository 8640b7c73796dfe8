"""A press of Stop or Retry under a reply, checked and turned into a command.

A press becomes the same ``stop`` or ``retry`` command ``/ollabot`` would give, from the
presser, for the conversation the pressed message is in, so it takes the inbox path of
every other command (``stop`` is acted on at once; ``retry`` replaces the last answer).
A Stop stops only the reply it was shown with: pressed late, while a newer reply is written,
it stops nothing.
Only the person who asked or an admin may press: anyone else is told so, privately, and
nothing changes. Slack hears back at once; the check and the inbox write follow.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from adapters.slack.admins import AdminDirectory
from adapters.slack.blocks import COMMAND_OF_ACTION
from adapters.slack.sink import EPHEMERAL, THREAD, SlackAddress, SlackSinks
from core.errors import DeliveryError, OllabotError, RateLimited
from core.i18n import N_, Translations, _, speaking
from core.models import Admission, IncomingMessage
from core.ports import Inbox

log = logging.getLogger("ollabot.slack.buttons")

PLATFORM = "slack"
NOT_YOURS = N_("Only the person who asked, or an admin, can use these buttons.")


@dataclass(frozen=True, slots=True)
class Press:
    """One press of one of our buttons, as read from a ``block_actions`` payload."""

    command: str
    team: str
    channel: str
    thread_ts: str
    author: str
    presser: str
    presser_name: str
    trigger_id: str
    reply: str = ""  # Stop's: the tag of the reply it stops (none on buttons of old)


def read_press(body: dict[str, Any], default_team: str) -> Press:
    """The press in a ``block_actions`` body; ``KeyError``/``ValueError`` when unreadable."""
    action = body["actions"][0]
    value = json.loads(action["value"])
    user = body["user"]
    channel = (body.get("container") or {}).get("channel_id") or body["channel"]["id"]
    return Press(
        command=COMMAND_OF_ACTION[action["action_id"]],
        team=str((body.get("team") or {}).get("id") or default_team),
        channel=str(channel),
        thread_ts=str(value["thread"]),
        author=str(value["author"]),
        presser=str(user["id"]),
        presser_name=str(user.get("username") or user.get("name") or user["id"]),
        trigger_id=str(body["trigger_id"]),
        reply=str(value.get("reply") or ""),
    )


def message_from_press(press: Press, prefix: str, is_admin: bool) -> IncomingMessage:
    """The command the press stands for, in the conversation of the pressed message.

    Stop is answered to the presser alone; Retry writes the new answer into the thread,
    for the asker, like the first one.
    """
    if press.command == "stop":
        reply_to = SlackAddress(press.channel, press.thread_ts, press.presser, EPHEMERAL)
    else:
        reply_to = SlackAddress(press.channel, press.thread_ts, press.author, THREAD)
    return replace(
        _from_presser(press),
        text=press.command,
        is_admin=is_admin,
        is_command=True,
        command_prefix=f"{prefix} ",
        reply_to=reply_to.to_reply_to(),
        stops=press.reply if press.command == "stop" else "",
    )


def _from_presser(press: Press) -> IncomingMessage:
    base = f"{PLATFORM}:{press.team}:{press.channel}"
    address = SlackAddress(press.channel, press.thread_ts, press.presser, EPHEMERAL)
    return IncomingMessage(
        platform=PLATFORM,
        message_id=f"action:{press.trigger_id}",
        conversation=base + (f":{press.thread_ts}" if press.thread_ts else ""),
        channel=base,
        author_id=press.presser,
        author_name=press.presser_name,
        text="",
        in_group=not press.channel.startswith("D"),
        reply_to=address.to_reply_to(),
    )


class ButtonPresses:
    """Handles presses after Slack was acknowledged; each in a task of its own."""

    def __init__(
        self,
        inbox: Inbox,
        admins: AdminDirectory,
        sinks: SlackSinks,
        translations: Translations,
        language: Callable[[str], Awaitable[str]],
        prefix: str,
    ) -> None:
        self._inbox = inbox
        self._admins = admins
        self._sinks = sinks
        self._translations = translations
        self._language = language
        self._prefix = prefix
        self._tasks: set[asyncio.Task[None]] = set()

    def press(self, body: dict[str, Any], team: str) -> None:
        task = asyncio.create_task(self._handle_logged(body, team))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle_logged(self, body: dict[str, Any], team: str) -> None:
        try:
            await self._handle(body, team)
        except Exception:
            log.exception("a button press could not be handled")

    async def _handle(self, body: dict[str, Any], team: str) -> None:
        try:
            press = read_press(body, team)
        except (KeyError, ValueError, TypeError) as error:
            log.warning("a button press could not be read: %r", error)
            return
        language = await self._language(press.presser)
        presser = replace(_from_presser(press), language=language)
        with speaking(self._translations(language)):
            if press.presser == press.author:
                admin = self._admins.is_configured(press.presser)
            elif not (admin := await self._admins.is_admin(press.presser, team)):
                await self._tell(presser, _(NOT_YOURS))
                return
            message = replace(message_from_press(press, self._prefix, admin), language=language)
            try:
                admission = await self._inbox.enqueue(message)
            except OllabotError as error:
                await self._tell(presser, error.localized())
                return
            if admission in (Admission.LIMITED, Admission.LIMITED_QUIETLY):
                await self._tell(presser, RateLimited().localized())

    async def _tell(self, presser: IncomingMessage, notice: str) -> None:
        """A notice to the presser alone (best effort)."""
        with contextlib.suppress(DeliveryError):
            await self._sinks(presser).fail(notice)

    async def aclose(self) -> None:
        """Wait for presses being handled (they are short)."""
        await asyncio.gather(*self._tasks, return_exceptions=True)
