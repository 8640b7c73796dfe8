"""Real-model fixtures: SmolLM2 behind an Ollama-API server, and ollabot's own pipeline on it.

The pipeline is the production one (``build_services``: ``ChatService`` and ``Outbox``) with
``RedisStore`` (real Redis) and ``OllamaLLM`` (the official ``ollama`` client); messages go
through the inbox as the worker takes them, and replies land in a recording sink.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from adapters.ollama_llm import OllamaLLM
from adapters.redis_store import RedisStore
from bots.app import Services, build_services
from core.chat import ChatConfig
from core.models import Admission, IncomingMessage
from tests.fakes.llama_server import MODEL_NAME, Exchange, LlamaOllamaServer, SmolLM2

PLATFORM = "test"
CONSUMER = "realmodel-worker"


@pytest.fixture(scope="session")
def smollm2() -> SmolLM2:
    """The model, loaded once per test session.

    One thread generates (one token at a time, many short steps), two evaluate prompts.
    """
    return SmolLM2(n_threads=1, n_threads_batch=2)


@pytest.fixture(scope="session")
async def llama_ollama_session(smollm2: SmolLM2) -> AsyncIterator[LlamaOllamaServer]:
    server = await LlamaOllamaServer(smollm2).start()
    yield server
    await server.stop()


@pytest.fixture
def llama_ollama(llama_ollama_session: LlamaOllamaServer) -> LlamaOllamaServer:
    """The session's server with an empty record of exchanges."""
    llama_ollama_session.exchanges.clear()
    return llama_ollama_session


@dataclass
class RecordingSink:
    """A ``ReplySink`` that keeps everything it was given."""

    begun: int = 0
    updates: list[str] = field(default_factory=list)
    finished: str | None = None
    failed: str | None = None

    async def status(self, text: str) -> None:
        pass

    async def begin(self) -> None:
        self.begun += 1

    async def update(self, text: str) -> None:
        self.updates.append(text)

    async def finish(self, text: str, *, reasoning: str = "") -> None:
        self.finished = text

    @property
    def handle(self) -> dict[str, str]:
        return {}

    def resume(self, handle: dict[str, str]) -> None:
        pass

    async def fail(self, notice: str) -> None:
        self.failed = notice


@dataclass
class Pipeline:
    """ollabot's pipeline on the real model; ``say`` and ``command`` go through the inbox."""

    services: Services
    store: RedisStore
    server: LlamaOllamaServer
    config: ChatConfig
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    async def say(
        self, text: str, conversation: str = "conv", channel: str = "chan"
    ) -> RecordingSink:
        """Send a user message and return the sink with its reply."""
        return await self._deliver(text, conversation, channel, is_command=False)

    async def command(self, text: str, channel: str = "chan") -> str:
        """Run an admin command (as an admin) and return its answer."""
        sink = await self._deliver(text, "admin", channel, is_command=True)
        assert sink.finished is not None, sink.failed
        return sink.finished

    async def _deliver(
        self, text: str, conversation: str, channel: str, is_command: bool
    ) -> RecordingSink:
        message = IncomingMessage(
            platform=PLATFORM,
            message_id=f"m{next(self._ids)}",
            conversation=conversation,
            channel=channel,
            author_id="u1",
            author_name="Alice",
            text=text,
            is_admin=True,
            is_command=is_command,
        )
        assert await self.store.enqueue(message) is Admission.ACCEPTED
        entries = await self.store.take(PLATFORM, CONSUMER, 10)
        assert [e.message.message_id for e in entries] == [message.message_id]
        sink = RecordingSink()
        handled = await self.services.service.handle(entries[0], sink)
        assert handled.reply is not None
        await self.services.outbox.deliver(entries[0], sink, handled.reply)
        return sink

    def last_exchange(self) -> Exchange:
        return self.server.exchanges[-1]


MakePipeline = Callable[..., Awaitable[Pipeline]]


@pytest.fixture
async def make_pipeline(
    llama_ollama: LlamaOllamaServer, redis_url: str, key_prefix: str
) -> AsyncIterator[MakePipeline]:
    """Build the pipeline for a deployment ``num_ctx`` (and other ``ChatConfig`` fields)."""
    opened: list[tuple[RedisStore, OllamaLLM]] = []

    async def make(num_ctx: int = 2048, **config: object) -> Pipeline:
        store = RedisStore.from_url(
            redis_url, prefix=key_prefix, block_ms=200, rate_per_minute=1000, max_backlog=1000
        )
        llm = OllamaLLM(llama_ollama.url, read_timeout_s=60.0, retries=0)
        opened.append((store, llm))
        chat_config = ChatConfig(default_model=MODEL_NAME, num_ctx=num_ctx, **config)  # type: ignore[arg-type]
        services = build_services(store, llm, chat_config, CONSUMER)
        return Pipeline(services, store, llama_ollama, chat_config)

    yield make
    for store, llm in opened:
        await llm.close()
        await store.close()
