"""Two ``ollabot chat`` consoles at once on one Redis, one channel, one user."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from tests.e2e.conftest import Ollabot
from tests.fakes.ollama import FakeOllama, Reply

LIMIT_S = 30.0


async def outcome(process: asyncio.subprocess.Process) -> tuple[int | None, str, str]:
    """Exit code (None if it did not exit in time, then killed), stdout and stderr."""
    assert process.stdout is not None and process.stderr is not None
    out = asyncio.ensure_future(process.stdout.read())
    err = asyncio.ensure_future(process.stderr.read())
    try:
        code: int | None = await asyncio.wait_for(process.wait(), LIMIT_S)
    except TimeoutError:
        code = None
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
    return code, (await out).decode(), (await err).decode()


async def pending(redis_client: Any, prefix: str) -> int:
    """Messages the consoles' workers hold (taken from their inboxes, not yet done)."""
    total = 0
    async for key in redis_client.scan_iter(f"{prefix}*:inbox:*"):
        total += (await redis_client.xpending(key, "ollabot"))["pending"]
    return int(total)


async def test_two_consoles_at_once_each_print_only_their_own_reply(
    ollabot: Any, fake_ollama: FakeOllama, redis_client: Any, key_prefix: str
) -> None:
    held = asyncio.Event()
    fake_ollama.script(Reply(first_byte_gate=held))  # the first console's reply waits
    bot: Ollabot = ollabot()
    args = ("chat", "--channel", "default", "--user", "alice")
    first, second = await bot.start(*args), await bot.start(*args)
    try:
        assert first.stdin is not None and second.stdin is not None
        first.stdin.write(b"line from the first console\n")
        await first.stdin.drain()
        await fake_ollama.wait_for_chat(1, timeout=LIMIT_S)
        second.stdin.write(b"line from the second console\n")
        await second.stdin.drain()
        async with asyncio.timeout(LIMIT_S):  # the second line waits behind the first
            while await pending(redis_client, key_prefix) < 2:  # noqa: ASYNC110 - Redis has no event
                await asyncio.sleep(0.02)
        held.set()
        first.stdin.close()  # end of input: each exits once its reply is printed
        second.stdin.close()
        (code1, out1, err1), (code2, out2, err2) = await asyncio.gather(
            outcome(first), outcome(second)
        )
    finally:
        for process in (first, second):
            if process.returncode is None:
                process.kill()
                await process.wait()

    assert "echo: line from the first console" in out1
    assert "second console" not in out1
    assert "echo: line from the second console" in out2
    assert "first console" not in out2
    assert (code1, code2) == (0, 0), (
        f"a console hung: {out1=} {out2=} {err1[-800:]=} {err2[-800:]=}"
    )
    assert len(fake_ollama.chat_requests) == 2, "each line answered once"
