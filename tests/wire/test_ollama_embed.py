"""The embedder on the official client against the fake Ollama's ``/api/embed``."""

from __future__ import annotations

import pytest

from adapters.ollama_embed import OllamaEmbedder
from core.errors import LLMFailed, LLMUnavailable, ModelNotFound
from tests.fakes.ollama import FakeOllama, bag_of_words, unused_port


async def test_documents_go_in_batches_marked_for_the_model_and_come_back_in_order(
    fake_ollama: FakeOllama,
) -> None:
    embedder = OllamaEmbedder(fake_ollama.url, "nomic-embed-text", batch=2, keep_alive="5m")
    try:
        vectors = await embedder.embed_documents(["red apples", "green pears", "blue plums"])
        query = await embedder.embed_query("which apples?")
    finally:
        await embedder.close()

    bodies = fake_ollama.embed_requests
    assert [b["input"] for b in bodies] == [
        ["search_document: red apples", "search_document: green pears"],
        ["search_document: blue plums"],
        ["search_query: which apples?"],
    ]
    assert {b["model"] for b in bodies} == {"nomic-embed-text"}
    assert bodies[0]["truncate"] is True and bodies[0]["keep_alive"] == "5m"
    assert vectors == [
        bag_of_words(f"search_document: {t}") for t in ("red apples", "green pears", "blue plums")
    ]
    assert query == bag_of_words("search_query: which apples?")


async def test_other_models_get_the_text_as_it_is(fake_ollama: FakeOllama) -> None:
    fake_ollama.embed_models.append("mxbai-embed-large:latest")
    embedder = OllamaEmbedder(fake_ollama.url, "mxbai-embed-large")
    try:
        await embedder.embed_query("plain question")
    finally:
        await embedder.close()
    assert fake_ollama.embed_requests[-1]["input"] == ["plain question"]


async def test_a_missing_model_says_how_to_install_it(fake_ollama: FakeOllama) -> None:
    embedder = OllamaEmbedder(fake_ollama.url, "nomic-embed-text")
    fake_ollama.embed_models.clear()
    try:
        with pytest.raises(ModelNotFound) as raised:
            await embedder.embed_query("q")
    finally:
        await embedder.close()
    assert "`ollama pull nomic-embed-text`" in raised.value.notice


async def test_a_crashed_runner_and_a_server_that_is_down(fake_ollama: FakeOllama) -> None:
    fake_ollama.embed_failing_after = 0
    embedder = OllamaEmbedder(fake_ollama.url, "nomic-embed-text")
    down = OllamaEmbedder(f"http://127.0.0.1:{unused_port()}", "nomic-embed-text")
    try:
        with pytest.raises(LLMFailed):
            await embedder.embed_query("q")
        with pytest.raises(LLMUnavailable):
            await down.embed_query("q")
    finally:
        await embedder.close()
        await down.close()
