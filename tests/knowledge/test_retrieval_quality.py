"""Retrieval quality on the Spanish and English corpus, with the fake Ollama's embeddings
(a hashed bag of words: the floor any real embedding model should clear)."""

from __future__ import annotations

import pytest

from adapters.ollama_embed import OllamaEmbedder
from tests.fakes.ollama import FakeOllama
from tests.knowledge.quality import corpus, recall_at


def test_the_corpus_has_both_languages_and_every_answer() -> None:
    data = corpus()
    ids = {p["id"] for p in data["passages"]}
    assert len(ids) == 12 and {p["lang"] for p in data["passages"]} == {"en", "es"}
    assert {q["expected"] for q in data["questions"]} <= ids
    assert len(data["questions"]) >= 12


async def test_recall_at_3_with_a_bag_of_words(
    fake_ollama: FakeOllama, capsys: pytest.CaptureFixture[str]
) -> None:
    embedder = OllamaEmbedder(fake_ollama.url, "nomic-embed-text")
    try:
        recall = await recall_at(embedder, k=3)
    finally:
        await embedder.close()
    with capsys.disabled():
        print("\n" + recall.report("the fake's hashed bag of words"))
    assert recall.value >= 0.75, recall.report("bag of words")
