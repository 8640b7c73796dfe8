"""Knowledge fixtures: the same store tests on the in-memory twin, on Redis searched with
numpy (a plain redis-server), on Redis Stack's vector index, and on a 3-primary Redis Cluster
and Valkey cluster (numpy)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from adapters.document_text import DocumentText
from adapters.memory_knowledge import MemoryKnowledge
from adapters.memory_store import MemoryStore
from adapters.ollama_embed import OllamaEmbedder
from adapters.ollama_llm import OllamaLLM
from adapters.redis_knowledge import RedisKnowledge
from bots.app import Services, build_services
from core.chat import ChatConfig
from core.errors import FileRefused
from core.i18n import N_
from core.knowledge import Splitting
from core.knowledge_base import KnowledgeBase, KnowledgeConfig
from core.models import Admission, Attachment, IncomingMessage
from core.ports import NullSink
from tests.fakes.ollama import FakeOllama
from tests.fixtures.store import REDIS_URLS

KnowledgeStore = MemoryKnowledge | RedisKnowledge


def open_redis_knowledge(kind: str, url: str, prefix: str, **options: Any) -> RedisKnowledge:
    """A knowledge store on the backend ``kind`` (a key of ``REDIS_URLS``) at ``url``."""
    opener = RedisKnowledge.from_cluster if kind.endswith("cluster") else RedisKnowledge.from_url
    return opener(url, prefix=prefix, **options)


@pytest.fixture(params=["memory", "numpy", "index", "cluster", "valkey-cluster"])
async def knowledge_store(
    request: pytest.FixtureRequest, key_prefix: str
) -> AsyncIterator[KnowledgeStore]:
    if request.param == "memory":
        yield MemoryKnowledge()
        return
    if request.param in REDIS_URLS:
        url = request.getfixturevalue(REDIS_URLS[request.param])
        store = open_redis_knowledge(request.param, url, key_prefix)
        assert not await store.uses_index()  # a cluster searches with numpy
    elif request.param == "numpy":
        url = request.getfixturevalue("redis_url")
        store = RedisKnowledge.from_url(url, prefix=key_prefix)
        assert not await store.uses_index()  # a plain redis-server has no query engine
    else:
        url = request.getfixturevalue("redis_stack_url")
        store = RedisKnowledge.from_url(url, prefix=key_prefix)
        assert await store.uses_index()
    yield store
    await store.close()


# -- the whole pipeline on the fake Ollama ---------------------------------------------------


@dataclass
class MemoryFiles:
    """A ``FileSource`` holding files by reference, refusing those over the size asked."""

    files: dict[str, bytes] = field(default_factory=dict)
    fetched: list[str] = field(default_factory=list)

    async def fetch(self, attachment: Attachment, max_bytes: int) -> bytes:
        self.fetched.append(attachment.ref)
        data = self.files.get(attachment.ref)
        if data is None:
            raise FileRefused(N_("I could not read the file you sent; please try another one."))
        if len(data) > max_bytes:
            raise FileRefused(N_("I could not read the file you sent; please try another one."))
        return data


@dataclass
class KnowledgeHarness:
    """ollabot's core (``build_services``) on the memory store, with documents, talking to
    the fake Ollama for answers and embeddings."""

    services: Services
    store: MemoryStore
    knowledge: MemoryKnowledge
    files: MemoryFiles
    ollama: FakeOllama
    count: int = 0

    def attach(self, name: str, data: bytes, mime: str = "", size: int | None = None) -> Attachment:
        """A document as a platform would describe it, its bytes held by the file source."""
        ref = f"file-{len(self.files.files)}"
        self.files.files[ref] = data
        return Attachment("document", ref, name, mime, len(data) if size is None else size)

    async def say(
        self,
        text: str,
        *,
        command: bool = False,
        admin: bool = True,
        group: bool = True,
        attachments: tuple[Attachment, ...] = (),
        replied_text: str = "",
        replied_link: str = "",
        channel: str = "tg:-1001",
    ) -> str:
        """Send a message (or command) through the inbox; the text the user is shown."""
        self.count += 1
        message = IncomingMessage(
            "test",
            str(self.count),
            channel,
            channel,
            "u1",
            "Ana",
            text,
            is_admin=admin,
            in_group=group,
            is_command=command,
            attachments=attachments,
            replied_text=replied_text,
            replied_link=replied_link,
        )
        assert await self.store.enqueue(message) is Admission.ACCEPTED
        (entry,) = await self.store.take("test", "w", 1)
        handled = await self.services.service.handle(entry, NullSink())
        assert handled.reply is not None
        await self.store.acknowledge(entry)
        return handled.reply.text

    async def command(self, text: str, **kwargs: Any) -> str:
        return await self.say(text, command=True, **kwargs)

    def last_prompt(self) -> list[dict[str, str]]:
        messages: list[dict[str, str]] = self.ollama.chat_requests[-1]["messages"]
        return messages


@pytest.fixture
async def harness(fake_ollama: FakeOllama) -> AsyncIterator[KnowledgeHarness]:
    store = MemoryStore(block_ms=10, rate_per_minute=1000, max_backlog=1000)
    knowledge_store = MemoryKnowledge()
    files = MemoryFiles()
    llm = OllamaLLM(fake_ollama.url, retries=0)
    embedder = OllamaEmbedder(fake_ollama.url, "nomic-embed-text", batch=4)
    base = KnowledgeBase(
        knowledge_store,
        embedder,
        DocumentText(),
        {"test": files},
        KnowledgeConfig(max_file_bytes=20_000, splitting=Splitting(300, 50)),
    )
    config = ChatConfig(default_model="llama3.1:8b", num_ctx=4096)
    services = build_services(store, llm, config, "w", knowledge=base)
    yield KnowledgeHarness(services, store, knowledge_store, files, fake_ollama)
    await llm.close()
    await embedder.close()
