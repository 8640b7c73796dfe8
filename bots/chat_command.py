"""``ollabot chat``: a conversation in the terminal through the same inbox, core and store."""

from __future__ import annotations

import asyncio
import sys

from adapters.console import PLATFORM, Console
from bots.app import Runtime, runtime
from bots.settings import Settings
from core.errors import OllabotError

BANNER = (
    "ollabot chat: channel '{channel}', model {model}. Type /help for commands, Ctrl-D to quit."
)


async def chat(settings: Settings, channel: str, user: str) -> int:
    """Answer typed lines one by one; on a pipe, exit at the end of input."""
    interactive = sys.stdin.isatty()
    async with runtime(settings, consumer=f"{PLATFORM}-{channel}") as rt:
        console = Console(rt.store, channel, user)
        await recover(rt, console)
        rt.start_worker(PLATFORM, console.sinks)
        if interactive:
            print(BANNER.format(channel=channel, model=rt.model))
        while (line := await read_line("you> " if interactive else "")) is not None:
            try:
                await console.say(line.rstrip("\n"))
            except OllabotError as error:
                print(f"[{error.notice}]", flush=True)
    return 0


async def recover(rt: Runtime, console: Console) -> None:
    """Answer what a previous run of this console took but never finished."""
    idle_ms = int(rt.settings.chat.claim_idle_s * 1000)
    try:
        entries = await rt.store.claim_abandoned(PLATFORM, rt.consumer, idle_ms)
        for entry in entries:
            await rt.service.handle(entry, console.sinks(entry.message))
    except OllabotError as error:
        print(f"[{error.notice}]", flush=True)


async def read_line(prompt: str) -> str | None:
    def blocking_read() -> str | None:
        if prompt:
            sys.stdout.write(prompt)
            sys.stdout.flush()
        line = sys.stdin.readline()
        return line or None

    return await asyncio.get_running_loop().run_in_executor(None, blocking_read)
