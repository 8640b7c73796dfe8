"""sd_notify against a datagram socket standing in for systemd's NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.systemd_notify import notify, watchdog_interval


@pytest.fixture
def systemd_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket, as systemd listens on, and its NOTIFY_SOCKET value."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        yield sock, str(path)


def test_ready_watchdog_and_stopping_reach_systemd(
    systemd_socket: tuple[socket.socket, str],
) -> None:
    sock, address = systemd_socket
    environ = {"NOTIFY_SOCKET": address}

    sent = [notify(message, environ) for message in ("READY=1", "WATCHDOG=1", "STOPPING=1")]

    assert sent == [True, True, True]
    assert [sock.recv(256) for _ in sent] == [b"READY=1", b"WATCHDOG=1", b"STOPPING=1"]


def test_an_abstract_socket_name_is_supported() -> None:
    name = f"ollabot-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)

        assert notify("READY=1", {"NOTIFY_SOCKET": f"@{name}"})
        assert sock.recv(256) == b"READY=1"


def test_without_systemd_or_with_its_socket_gone_nothing_breaks(tmp_path: Path) -> None:
    assert notify("READY=1", {}) is False
    assert notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "gone")}) is False
    assert notify("READY=1", {"NOTIFY_SOCKET": "relative/path"}) is False


def test_the_watchdog_is_pinged_at_half_its_timeout() -> None:
    me = str(os.getpid())

    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": me}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "20000000"}) == 10.0
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "nonsense"}) is None
    assert watchdog_interval({}) is None
