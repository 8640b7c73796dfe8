"""systemd's watchdog is fed while every inbox worker runs, and starves once one has stopped.

A stopped worker leaves its platform's messages unanswered while the process looks alive;
letting the watchdog fire makes systemd restart the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from bots.app import runtime
from bots.serve import watchdog
from bots.settings import Settings
from core.models import IncomingMessage
from core.ports import ReplySink

INTERVAL_S = 0.05  # WATCHDOG_USEC=100000: a ping every 50 ms


@pytest.fixture
def systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """The datagram socket systemd listens on, with the watchdog enabled for this process."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        monkeypatch.setenv("WATCHDOG_USEC", str(int(INTERVAL_S * 2 * 1_000_000)))
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
        yield sock


async def next_ping(sock: socket.socket, within_s: float) -> bytes:
    async with asyncio.timeout(within_s):
        return await asyncio.get_running_loop().sock_recv(sock, 64)


def unread(sock: socket.socket) -> list[bytes]:
    """The datagrams already waiting on the socket."""
    seen = []
    with contextlib.suppress(BlockingIOError):
        while True:
            seen.append(sock.recv(64))
    return seen


def no_sink(message: IncomingMessage) -> ReplySink:
    raise AssertionError(f"no message was sent, yet {message.message_id} is being answered")


async def test_the_watchdog_starves_once_a_worker_has_stopped(systemd: socket.socket) -> None:
    settings = Settings(_env_file=None, redis={"url": "memory://"}, ollama={"model": "llama3.1:8b"})
    async with runtime(settings) as rt:
        rt.start_worker("telegram", no_sink)
        rt.start_worker("slack", no_sink)
        async with watchdog(rt):
            for _ in range(3):
                assert await next_ping(systemd, within_s=5) == b"WATCHDOG=1"

            _, slack = rt.workers[1]
            slack.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await slack
            unread(systemd)  # pings sent before the worker stopped

            with pytest.raises(TimeoutError):
                await next_ping(systemd, within_s=6 * INTERVAL_S)
            _, telegram = rt.workers[0]
            assert not telegram.done(), "one stopped worker is enough to starve the watchdog"
