"""``ollabot chat``: a conversation in the terminal through the same inbox, core and store."""

from __future__ import annotations

import asyncio
import sys

from adapters.console import PLATFORM, Console
from bots.app import runtime
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
        await recover(rt.store, rt.service, console, rt.consumer)
        rt.start_worker(PLATFORM, console.sinks)
        if interactive:
            print(BANNER.format(channel=channel, model=rt.model))
        while (line := await read_line("you> " if interactive else "")) is not None:
            try:
                await console.say(line.rstrip("\n"))
            except OllabotError as error:
                print(f"[{error.notice}]", flush=True)
    return 0


async def recover(store: object, service: object, console: Console, consumer: str) -> None:
    """Answer what a previous run of this console took but never finished."""
    from adapters.redis_store import RedisStore  # noqa: F401  (typing only)

    entries = await store.claim_abandoned(PLATFORM, consumer, 0)  # type: ignore[attr-defined]
    for entry in entries:
        if entry.message.conversation == console.conversation:
            await service.handle(entry, console.sinks(entry.message))  # type: ignore[attr-defined]


async def read_line(prompt: str) -> str | None:
    def blocking_read() -> str | None:
        if prompt:
            sys.stdout.write(prompt)
            sys.stdout.flush()
        line = sys.stdin.readline()
        return line or None

    return await asyncio.get_running_loop().run_in_executor(None, blocking_read)
