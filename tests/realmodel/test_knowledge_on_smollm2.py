"""Documents through ollabot's pipeline on a real model: SmolLM2 embeds the passages and the
question (``/api/embed`` on llama.cpp), Redis keeps and searches them, and the passage found
is in the prompt SmolLM2 answers from."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from adapters.document_text import DocumentText
from adapters.ollama_embed import OllamaEmbedder
from adapters.ollama_llm import OllamaLLM
from adapters.redis_knowledge import RedisKnowledge
from adapters.redis_store import RedisStore
from bots.app import build_services
from core.chat import ChatConfig
from core.knowledge import Splitting
from core.knowledge_base import KnowledgeBase, KnowledgeConfig
from tests.fakes.llama_server import MODEL_NAME, LlamaOllamaServer
from tests.knowledge.conftest import MemoryFiles
from tests.knowledge.quality import recall_at
from tests.realmodel.conftest import CONSUMER, Pipeline

pytestmark = pytest.mark.model

HANDBOOK = """# Coffee

The coffee machine on the third floor must be descaled every Friday with the white tablets.

# Parking

Visitors park in the blue zone behind the building.

# Holidays

Holidays are requested in the staff portal two weeks ahead.
"""


@pytest.fixture
async def embedder(llama_ollama: LlamaOllamaServer) -> AsyncIterator[OllamaEmbedder]:
    embedder = OllamaEmbedder(llama_ollama.url, MODEL_NAME, read_timeout_s=120)
    yield embedder
    await embedder.close()


async def test_recall_at_3_with_smollm2_embeddings(
    embedder: OllamaEmbedder, capsys: pytest.CaptureFixture[str]
) -> None:
    recall = await recall_at(embedder, k=3)
    with capsys.disabled():
        print("\n" + recall.report("SmolLM2-135M embeddings (mean-pooled)"))
    # A 135M chat model is no embedding model: the floor is what it measured, honestly low.
    assert recall.value >= 0.5, recall.report("SmolLM2")


async def test_the_passage_found_is_in_the_prompt_and_the_answer_cites_it(
    llama_ollama: LlamaOllamaServer,
    embedder: OllamaEmbedder,
    redis_url: str,
    key_prefix: str,
) -> None:
    store = RedisStore.from_url(redis_url, prefix=key_prefix, block_ms=200, rate_per_minute=1000)
    knowledge_store = RedisKnowledge.from_url(redis_url, prefix=key_prefix)
    llm = OllamaLLM(llama_ollama.url, read_timeout_s=60.0, retries=0)
    files = MemoryFiles({"f1": HANDBOOK.encode()})
    base = KnowledgeBase(
        knowledge_store,
        embedder,
        DocumentText(),
        {"test": files},
        KnowledgeConfig(splitting=Splitting(200, 0), most=1),
    )
    config = ChatConfig(default_model=MODEL_NAME, num_ctx=2048)
    services = build_services(store, llm, config, CONSUMER, knowledge=base)
    pipeline = Pipeline(services, store, llama_ollama, config)
    try:
        await pipeline.command("preset set temperature 0")
        await pipeline.command("preset set max_tokens 40")
        llama_ollama.embedded.clear()
        added = await _add_handbook(pipeline)
        assert added.startswith("Added handbook.md as ") and "3 passages" in added
        assert len(llama_ollama.embedded) == 3

        sink = await pipeline.say("When must the coffee machine be descaled?")

        prompt = pipeline.last_exchange().prompt
        assert "descaled every Friday" in prompt
        assert "blue zone" not in prompt  # only the best passage fits (most=1)
        assert prompt.index("descaled every Friday") < prompt.index("When must the coffee")
        assert llama_ollama.embedded[-1] == "When must the coffee machine be descaled?"
        assert sink.finished is not None and "Sources: [1] handbook.md #1" in sink.finished
    finally:
        await llm.close()
        await knowledge_store.close()
        await store.close()


async def _add_handbook(pipeline: Pipeline) -> str:
    """``kb add`` with the handbook attached, through the inbox like any command."""
    from dataclasses import replace

    from core.models import Admission, Attachment, IncomingMessage
    from tests.realmodel.conftest import PLATFORM, RecordingSink

    message = IncomingMessage(
        platform=PLATFORM,
        message_id="kb-add",
        conversation="admin",
        channel="chan",
        author_id="u1",
        author_name="Alice",
        text="kb add",
        is_admin=True,
        is_command=True,
    )
    document = Attachment("document", "f1", "handbook.md", "text/markdown", len(HANDBOOK))
    message = replace(message, attachments=(document,))
    assert await pipeline.store.enqueue(message) is Admission.ACCEPTED
    (entry,) = await pipeline.store.take(PLATFORM, CONSUMER, 10)
    sink = RecordingSink()
    handled = await pipeline.services.service.handle(entry, sink)
    assert handled.reply is not None
    await pipeline.services.outbox.deliver(entry, sink, handled.reply)
    assert sink.finished is not None
    return sink.finished
