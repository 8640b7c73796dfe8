"""``ollabot chat``: a conversation in the terminal through the same inbox, core and store."""

from __future__ import annotations

import asyncio
import sys

from adapters.console import PLATFORM, Console
from bots.app import DEMO_NOTICE, EMBEDDED, runtime
from bots.settings import Settings
from core.errors import OllabotError

BANNER = (
    "ollabot chat: channel '{channel}', model {model}. Type /help for commands, Ctrl-D to quit."
)


async def chat(settings: Settings, channel: str, user: str) -> int:
    """Answer typed lines one by one; on a pipe, exit at the end of input.

    Each console has an inbox of its own (named after its worker instance), so two consoles
    on one Redis never see each other's messages; a console restarted after a crash takes its
    predecessor's name and answers what it left unfinished.
    """
    interactive = sys.stdin.isatty()
    base = f"{PLATFORM}-{channel}-{user}"
    names = [base, *(f"{base}-{n}" for n in range(2, 10))]
    async with runtime(settings, instances=names) as rt:
        console = Console(
            rt.store,
            channel,
            user,
            inbox_name=rt.consumer,
            translations=rt.services.service.translations,
        )
        worker = rt.start_worker(rt.consumer, console.sinks)
        await worker.caught_up()  # answer what a crashed run of this console left, first
        if interactive:
            print(BANNER.format(channel=channel, model=rt.model))
            if settings.ollama.host == EMBEDDED:
                print(f"Note: {DEMO_NOTICE}.")
        while (line := await read_line("you> " if interactive else "")) is not None:
            try:
                await console.say(line.rstrip("\n"))
            except OllabotError as error:
                print(f"[{error.localized()}]", flush=True)
    return 0


async def read_line(prompt: str) -> str | None:
    def blocking_read() -> str | None:
        if prompt:
            sys.stdout.write(prompt)
            sys.stdout.flush()
        line = sys.stdin.readline()
        return line or None

    return await asyncio.get_running_loop().run_in_executor(None, blocking_read)
