"""The terminal as a platform: lines in, streamed replies out (``ollabot chat``)."""

from __future__ import annotations

import asyncio
import sys
import uuid
from typing import TextIO

from core.errors import RateLimited
from core.i18n import Translations, only_english
from core.models import Admission, IncomingMessage
from core.ports import Inbox, ReplySink

PLATFORM = "console"
BOT_PREFIX = "ollabot> "
REASONING_LABEL = "💭 "
DIM, PLAIN = "\x1b[2m", "\x1b[0m"


class ConsoleSink:
    """Prints the reply as it streams; resolves the waiting prompt when done."""

    def __init__(self, out: TextIO, done: asyncio.Future[None] | None) -> None:
        self._out = out
        self._done = done
        self._shown = ""

    @property
    def handle(self) -> dict[str, str]:
        return {}

    def resume(self, handle: dict[str, str]) -> None:
        pass

    async def begin(self) -> None:
        self._write(BOT_PREFIX)

    async def status(self, text: str) -> None:
        """Nothing: one line per reply keeps the console's output readable on a pipe."""

    async def update(self, text: str) -> None:
        if text.startswith(self._shown):
            self._write(text[len(self._shown) :])
            self._shown = text

    async def finish(self, text: str, *, reasoning: str = "") -> None:
        if not self._shown:
            self._write(BOT_PREFIX)
        self._write((text[len(self._shown) :] if text.startswith(self._shown) else text) + "\n")
        if reasoning:  # after the answer, which has streamed already
            self._write(self._dimmed(REASONING_LABEL + reasoning) + "\n")
        self._resolve()

    async def fail(self, notice: str) -> None:
        self._write(("\n" if self._shown else BOT_PREFIX) + f"[{notice}]\n")
        self._resolve()

    def _dimmed(self, text: str) -> str:
        """Dim on a terminal; plain on a pipe, where escape codes would be noise."""
        return f"{DIM}{text}{PLAIN}" if self._out.isatty() else text

    def _write(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()

    def _resolve(self) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(None)


class Console:
    """Sends typed lines through the inbox and waits for each reply before the next."""

    def __init__(
        self,
        inbox: Inbox,
        channel: str,
        user: str,
        out: TextIO = sys.stdout,
        inbox_name: str = PLATFORM,
        translations: Translations = only_english,
    ) -> None:
        self._inbox = inbox
        self._translations = translations
        self._inbox_name = inbox_name
        self._channel = f"{PLATFORM}:{channel}"
        self._user = user
        self._out = out
        self._waiting: dict[str, asyncio.Future[None]] = {}

    def sinks(self, message: IncomingMessage) -> ReplySink:
        # get, not pop: a message tried again (its turn had not come) needs the same future
        return ConsoleSink(self._out, self._waiting.get(message.message_id))

    async def say(self, line: str) -> None:
        """Queue one line and return once its reply (or notice) has been printed."""
        message = IncomingMessage(
            platform=self._inbox_name,
            message_id=uuid.uuid4().hex,
            conversation=self._channel,
            channel=self._channel,
            author_id=self._user,
            author_name=self._user,
            text=line.strip().lstrip("/") if line.startswith("/") else line,
            is_admin=True,
            is_command=line.startswith("/"),
        )
        done = asyncio.get_running_loop().create_future()
        self._waiting[message.message_id] = done
        try:
            admission = await self._inbox.enqueue(message)
            if admission is Admission.ACCEPTED:
                await done
                return
        finally:
            self._waiting.pop(message.message_id, None)
        limited = self._translations("").gettext(RateLimited.notice)  # the deployment's language
        self._out.write(f"{BOT_PREFIX}[{limited}]\n")
        self._out.flush()
