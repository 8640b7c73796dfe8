"""The knowledge store's contract, on memory, Redis with numpy, Redis with its index and
Redis Cluster and Valkey cluster with numpy."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from adapters.redis_knowledge import RedisKnowledge
from core.errors import StoreUnavailable
from core.knowledge import Document, Passage
from tests.fixtures.cluster import free_cluster_port
from tests.fixtures.redis import free_port
from tests.fixtures.store import REDIS_URLS
from tests.knowledge.conftest import KnowledgeStore, open_redis_knowledge

CHANNEL = "tg:-1001234"  # characters a TAG query must escape


def document(doc_id: str, name: str, *texts: str) -> tuple[Document, list[Passage]]:
    passages = [Passage(doc_id, name, n, t) for n, t in enumerate(texts, 1)]
    return Document(doc_id, name, len(texts), "u1", 1.0), passages


@pytest.fixture(params=["redis", "cluster"])
def redis_backend(request: pytest.FixtureRequest) -> tuple[str, str]:
    """A single Redis server or a Redis Cluster: its kind and URL."""
    kind = str(request.param)
    return kind, str(request.getfixturevalue(REDIS_URLS[kind]))


async def add(store: KnowledgeStore, channel: str, doc_id: str, vectors: list[list[float]]) -> None:
    doc, passages = document(
        doc_id, f"{doc_id}.md", *(f"{doc_id} p{i}" for i in range(len(vectors)))
    )
    await store.add(channel, doc, passages, vectors)


async def test_search_finds_the_closest_passages_best_first(
    knowledge_store: KnowledgeStore,
) -> None:
    await add(knowledge_store, CHANNEL, "cats", [[1, 0, 0, 0], [0, 1, 0, 0], [0.8, 0.6, 0, 0]])

    hits = await knowledge_store.search(CHANNEL, [1, 0.05, 0, 0], 2)

    assert [h.passage.text for h in hits] == ["cats p0", "cats p2"]
    assert hits[0].score == pytest.approx(0.9988, abs=1e-3)
    assert hits[0].passage == Passage("cats", "cats.md", 1, "cats p0")


async def test_a_channel_sees_only_its_own_passages(knowledge_store: KnowledgeStore) -> None:
    await add(knowledge_store, CHANNEL, "mine", [[0, 1, 0, 0]])
    await add(knowledge_store, "slack:T1:C9", "theirs", [[1, 0, 0, 0]])

    hits = await knowledge_store.search(CHANNEL, [1, 0, 0, 0], 5)

    assert [h.passage.document for h in hits] == ["mine"]
    assert await knowledge_store.search("nobody", [1, 0, 0, 0], 5) == []


async def test_documents_are_listed_and_forgotten_with_all_their_passages(
    knowledge_store: KnowledgeStore,
) -> None:
    await add(knowledge_store, CHANNEL, "first", [[1, 0, 0, 0], [0.9, 0.1, 0, 0]])
    await add(knowledge_store, CHANNEL, "second", [[0, 0, 1, 0]])
    assert [d.id for d in await knowledge_store.documents(CHANNEL)] == ["first", "second"]

    forgotten = await knowledge_store.forget(CHANNEL, "first")

    assert forgotten is not None and forgotten.passages == 2
    assert [d.id for d in await knowledge_store.documents(CHANNEL)] == ["second"]
    hits = await knowledge_store.search(CHANNEL, [1, 0, 0, 0], 5)
    assert [h.passage.document for h in hits] == ["second"]
    assert await knowledge_store.forget(CHANNEL, "first") is None


async def test_a_search_after_a_change_sees_the_change(knowledge_store: KnowledgeStore) -> None:
    await add(knowledge_store, CHANNEL, "old", [[0, 1, 0, 0]])
    assert [h.passage.document for h in await knowledge_store.search(CHANNEL, [1, 0, 0, 0], 1)] == [
        "old"
    ]
    await add(knowledge_store, CHANNEL, "new", [[1, 0, 0, 0]])

    hits = await knowledge_store.search(CHANNEL, [1, 0, 0, 0], 1)

    assert [h.passage.document for h in hits] == ["new"]


async def test_vectors_of_another_dimension_are_not_mixed(knowledge_store: KnowledgeStore) -> None:
    await add(knowledge_store, CHANNEL, "small", [[1, 0, 0, 0]])
    await add(knowledge_store, CHANNEL, "large", [[1, 0, 0, 0, 0, 0]])

    hits = await knowledge_store.search(CHANNEL, [1, 0, 0, 0, 0, 0], 5)

    assert [h.passage.document for h in hits] == ["large"]


async def test_text_survives_the_round_trip(knowledge_store: KnowledgeStore) -> None:
    doc, passages = document("es", "guía de uso.md", "El gato duerme 16 horas — ¿sí? {x} [1] @y")
    await knowledge_store.add(CHANNEL, doc, passages, [[0.3, 0.4, 0, 0]])

    (hit,) = await knowledge_store.search(CHANNEL, [0.3, 0.4, 0, 0], 3)

    assert hit.passage == passages[0]
    assert (await knowledge_store.documents(CHANNEL))[0] == doc


async def test_a_search_from_another_process_sees_what_this_one_added(
    redis_backend: tuple[str, str], key_prefix: str
) -> None:
    writer = open_redis_knowledge(*redis_backend, key_prefix)
    reader = open_redis_knowledge(*redis_backend, key_prefix)
    try:
        await add(writer, CHANNEL, "one", [[1, 0, 0, 0]])
        assert len(await reader.search(CHANNEL, [1, 0, 0, 0], 5)) == 1  # now cached
        await add(writer, CHANNEL, "two", [[0.9, 0.1, 0, 0]])
        await writer.forget(CHANNEL, "one")

        hits = await reader.search(CHANNEL, [1, 0, 0, 0], 5)

        assert [h.passage.document for h in hits] == ["two"]
    finally:
        await writer.close()
        await reader.close()


async def test_a_document_is_stored_all_at_once_or_not_at_all(
    redis_backend: tuple[str, str], key_prefix: str
) -> None:
    kind, url = redis_backend
    store = open_redis_knowledge(kind, url, key_prefix)
    raw = RedisCluster.from_url(url) if kind == "cluster" else aioredis.Redis.from_url(url)
    doc, passages = document("big", "big.md", *(f"p{i}" for i in range(300)))
    vectors = [[1.0, float(i), 0.0, 0.0] for i in range(300)]
    seen: list[int] = []

    # One script, so the two counts are taken at one moment (on the primary of the channel's
    # slot, which holds every passage of the channel).
    count = "return {#redis.call('KEYS', ARGV[1]), redis.call('HLEN', KEYS[1])}"
    docs_key = store.keys.documents(CHANNEL)

    async def watch() -> None:
        while not seen or seen[-1] < 300:
            reply = raw.eval(count, 1, docs_key, f"{store.keys.passages}*")
            passages, listed = await reply  # type: ignore[misc]
            seen.append(passages)
            assert (passages, listed) in ((0, 0), (300, 1))

    try:
        watcher = asyncio.create_task(watch())
        await store.add(CHANNEL, doc, passages, vectors)
        await asyncio.wait_for(watcher, 10)
        assert seen[-1] == 300
    finally:
        await store.close()
        await raw.aclose()


async def test_redis_down_is_store_unavailable() -> None:
    store = RedisKnowledge.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_timeout_s=0.3)
    try:
        with pytest.raises(StoreUnavailable):
            await store.documents(CHANNEL)
        with pytest.raises(StoreUnavailable):
            await store.search(CHANNEL, [1, 0], 3)
    finally:
        await store.close()


async def test_a_cluster_out_of_reach_is_store_unavailable() -> None:
    url = f"redis://127.0.0.1:{free_cluster_port()}/0"
    store = RedisKnowledge.from_cluster(url, socket_timeout_s=0.3)
    try:
        with pytest.raises(StoreUnavailable):
            await store.documents(CHANNEL)
        with pytest.raises(StoreUnavailable):
            await store.search(CHANNEL, [1, 0], 3)
    finally:
        await store.close()
