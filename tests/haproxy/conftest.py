"""Three fake Ollama hosts behind a real HAProxy sidecar, and ollabot's client in front of it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from adapters.ollama_llm import OllamaLLM
from core.affinity import Affinity, affinity_of
from core.models import ChatMessage, ChatRequest, IncomingMessage, StreamEvent
from tests.fakes.ollama import FakeOllama
from tests.fixtures.haproxy import HAProxy, Host


def affinity(conversation: str) -> str:
    """The header value ollabot sends for a conversation."""
    message = IncomingMessage("tg", "1", conversation, conversation, "u", "U", "")
    return affinity_of(message, Affinity.CONVERSATION)


def turn(conversation: str, n: int) -> ChatRequest:
    """The ``n``-th request of a conversation, as the chat service builds it."""
    history = [ChatMessage("user" if i % 2 == 0 else "assistant", f"turn {i}") for i in range(n)]
    messages = (ChatMessage("system", "You are ollabot."), *history, ChatMessage("user", "go on"))
    return ChatRequest("llama3.1:8b", messages, {"num_ctx": 8192}, affinity(conversation))


async def reply(llm: OllamaLLM, request: ChatRequest) -> str:
    """The whole streamed reply."""
    events: list[StreamEvent] = []
    async with asyncio.timeout(10):
        async for event in llm.stream(request):
            events.append(event)
    assert events and events[-1].done, "the reply ended with Ollama's done chunk"
    return "".join(e.delta for e in events)


@dataclass
class Farm:
    """Fake Ollama hosts (``None`` while stopped), their `server` lines and the proxies."""

    workdir: Path
    hosts: list[Host]
    fakes: list[FakeOllama | None]
    proxies: list[HAProxy] = field(default_factory=list)
    clients: list[OllamaLLM] = field(default_factory=list)

    async def proxy(self, balance: str | None = None, hosts: list[Host] | None = None) -> HAProxy:
        """A sidecar over the hosts (by default all, in order), started and ready."""
        workdir = Path(tempfile.mkdtemp(prefix="haproxy", dir=self.workdir))
        hosts = hosts or self.hosts
        proxy = HAProxy(workdir, hosts, balance)
        self.proxies.append(proxy)
        running = {h.port for h, f in zip(self.hosts, self.fakes, strict=True) if f is not None}
        await proxy.start(up={h.name for h in hosts if h.port in running})
        return proxy

    def client(self, proxy: HAProxy) -> OllamaLLM:
        llm = OllamaLLM(proxy.url, connect_timeout_s=2.0, backoff_s=0.01)
        self.clients.append(llm)
        return llm

    async def stop_host(self, index: int) -> None:
        fake = self.fakes[index]
        assert fake is not None
        await fake.stop()
        self.fakes[index] = None

    async def start_host(self, index: int) -> FakeOllama:
        """Start (again) the fake behind ``hosts[index]``, on that server line's port."""
        fake = await FakeOllama(instant=True).start(self.hosts[index].port)
        self.fakes[index] = fake
        return fake

    def counts(self) -> list[int]:
        """Chat requests each host has received so far (0 for a stopped one)."""
        return [len(f.affinities) if f else 0 for f in self.fakes]

    def served_since(self, marks: list[int]) -> dict[str, str]:
        """Which host served each affinity since ``marks`` (from ``counts``)."""
        placed: dict[str, str] = {}
        for host, fake, mark in zip(self.hosts, self.fakes, marks, strict=True):
            for key in fake.affinities[mark:] if fake else []:
                assert key is not None
                placed[key] = host.name
        return placed


MakeFarm = Callable[..., Awaitable[Farm]]


@pytest.fixture
async def make_farm(tmp_path: Path) -> AsyncIterator[MakeFarm]:
    """``make_farm(running=3, spare=0)``: running hosts plus spare server lines not started."""
    farms: list[Farm] = []

    async def make(running: int = 3, spare: int = 0) -> Farm:
        fakes: list[FakeOllama | None] = [
            await FakeOllama(instant=True).start() for _ in range(running)
        ]
        ports = [int(f.url.rsplit(":", 1)[1]) for f in fakes if f] + _free_ports(spare)
        hosts = [Host(f"gpu{i + 1}", port, i + 1) for i, port in enumerate(ports)]
        farm = Farm(tmp_path, hosts, fakes + [None] * spare)
        farms.append(farm)
        return farm

    yield make
    for farm in farms:
        for proxy in farm.proxies:
            await proxy.stop()
        for llm in farm.clients:
            await llm.close()
        for fake in farm.fakes:
            if fake is not None:
                await fake.stop()


def _free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports with nothing listening on them."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(_bound()) for _ in range(n)]
        return [s.getsockname()[1] for s in sockets]


@contextlib.contextmanager
def _bound() -> Iterator[socket.socket]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock
