"""Run the real ``ollabot`` console script as a subprocess against Redis and the fake Ollama."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes.ollama import FakeOllama

OLLABOT = Path(sys.executable).with_name("ollabot")


@dataclass
class Ollabot:
    """Environment for one ollabot installation: its Ollama, its Redis, its key prefix."""

    env: dict[str, str]
    cwd: Path

    async def start(self, *args: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            str(OLLABOT),
            *args,
            env=self.env,
            cwd=self.cwd,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def chat(
        self, *lines: str, channel: str = "default", limit_s: float = 30
    ) -> tuple[int, str, str]:
        """Pipe lines into ``ollabot chat``; return exit code, stdout, stderr."""
        process = await self.start("chat", "--channel", channel, "--user", "alice")
        stdin = "".join(f"{line}\n" for line in lines).encode()
        async with asyncio.timeout(limit_s):
            out, err = await process.communicate(stdin)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()


@pytest.fixture
def ollabot(
    fake_ollama: FakeOllama, redis_url: str, key_prefix: str, tmp_path: Path
) -> Callable[..., Ollabot]:
    def make(**overrides: str) -> Ollabot:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OLLABOT_")}
        env.update(
            {
                "OLLABOT_OLLAMA__HOST": fake_ollama.url,
                "OLLABOT_OLLAMA__MODEL": "llama3.1:8b",
                "OLLABOT_REDIS__URL": redis_url,
                "OLLABOT_REDIS__PREFIX": key_prefix,
                "OLLABOT_LOG__JSON": "true",
                "OLLABOT_CHAT__CLAIM_IDLE_S": "1",
            }
        )
        env.update(overrides)
        return Ollabot(env, tmp_path)

    return make


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[object]:
    import redis.asyncio as redis

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


class NotifySocket:
    """The datagram socket systemd listens on for sd_notify messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.seen: list[str] = []

    async def wait_for(self, message: str, within_s: float = 20) -> None:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(within_s):
            while message not in self.seen:
                data = await loop.sock_recv(self.sock, 4096)
                self.seen += data.decode().splitlines()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    notify = NotifySocket(tmp_path / "notify.sock")
    yield notify
    notify.sock.close()
