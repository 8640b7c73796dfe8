"""Retrieval quality on the bilingual corpus in ``tests/data/knowledge``: recall@k, the share
of questions whose expected passage is among the ``k`` found."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.memory_knowledge import MemoryKnowledge
from core.knowledge import Document, Passage
from core.ports import Embedder

CORPUS = Path(__file__).resolve().parents[1] / "data" / "knowledge" / "corpus.json"


@dataclass(frozen=True)
class Recall:
    k: int
    found: int
    asked: int
    misses: tuple[str, ...]

    @property
    def value(self) -> float:
        return self.found / self.asked

    def report(self, name: str) -> str:
        line = f"recall@{self.k} with {name}: {self.value:.2f} ({self.found}/{self.asked})"
        return line + (f"; missed: {', '.join(self.misses)}" if self.misses else "")


def corpus() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(CORPUS.read_text(encoding="utf-8"))
    return data


async def recall_at(embedder: Embedder, k: int = 3) -> Recall:
    """Embed every passage (one document each), ask every question, count the hits."""
    data = corpus()
    store = MemoryKnowledge()
    passages = data["passages"]
    vectors = await embedder.embed_documents([p["text"] for p in passages])
    for p, vector in zip(passages, vectors, strict=True):
        passage = Passage(p["id"], f"{p['id']}.md", 1, p["text"])
        await store.add("corpus", Document(p["id"], passage.source, 1), [passage], [vector])
    found, misses = 0, []
    for question in data["questions"]:
        hits = await store.search("corpus", await embedder.embed_query(question["q"]), k)
        if question["expected"] in [h.passage.document for h in hits]:
            found += 1
        else:
            misses.append(question["q"])
    return Recall(k, found, len(data["questions"]), tuple(misses))
