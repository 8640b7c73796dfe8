"""Knowledge fixtures: the same store tests on the in-memory twin, on Redis searched with
numpy (a plain redis-server) and on Redis Stack's vector index."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from adapters.memory_knowledge import MemoryKnowledge
from adapters.redis_knowledge import RedisKnowledge

KnowledgeStore = MemoryKnowledge | RedisKnowledge


@pytest.fixture(params=["memory", "numpy", "index"])
async def knowledge_store(
    request: pytest.FixtureRequest, key_prefix: str
) -> AsyncIterator[KnowledgeStore]:
    if request.param == "memory":
        yield MemoryKnowledge()
        return
    if request.param == "numpy":
        url = request.getfixturevalue("redis_url")
        store = RedisKnowledge.from_url(url, prefix=key_prefix)
        assert not await store.uses_index()  # a plain redis-server has no query engine
    else:
        url = request.getfixturevalue("redis_stack_url")
        store = RedisKnowledge.from_url(url, prefix=key_prefix)
        assert await store.uses_index()
    yield store
    await store.close()
