"""The knowledge store in process memory: the twin of the Redis one for core tests and the
``memory://`` store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from adapters.vectors import Matrix, as_float32, top_cosine, unit_rows
from core.knowledge import Document, Hit, Passage


@dataclass
class _Channel:
    documents: dict[str, Document] = field(default_factory=dict)
    passages: list[Passage] = field(default_factory=list)
    vectors: list[Matrix] = field(default_factory=list)


class MemoryKnowledge:
    """Implements ``KnowledgeStore`` with exact cosine search over every passage."""

    def __init__(self) -> None:
        self._channels: dict[str, _Channel] = {}

    async def add(
        self,
        channel: str,
        document: Document,
        passages: Sequence[Passage],
        vectors: Sequence[Sequence[float]],
    ) -> None:
        if len(passages) != len(vectors):
            raise ValueError("one vector per passage")
        rows = [unit_rows(as_float32(v)) for v in vectors]  # converted before anything changes
        kept = self._channels.setdefault(channel, _Channel())
        if document.id in kept.documents:
            return
        kept.documents[document.id] = document
        kept.passages += passages
        kept.vectors += rows

    async def documents(self, channel: str) -> list[Document]:
        kept = self._channels.get(channel)
        return list(kept.documents.values()) if kept else []

    async def forget(self, channel: str, document_id: str) -> Document | None:
        kept = self._channels.get(channel)
        if kept is None or document_id not in kept.documents:
            return None
        keep = [i for i, p in enumerate(kept.passages) if p.document != document_id]
        kept.passages = [kept.passages[i] for i in keep]
        kept.vectors = [kept.vectors[i] for i in keep]
        return kept.documents.pop(document_id)

    async def search(self, channel: str, vector: Sequence[float], count: int) -> list[Hit]:
        kept = self._channels.get(channel)
        if kept is None or not kept.vectors:
            return []
        same = [i for i, v in enumerate(kept.vectors) if len(v) == len(vector)]
        if not same:
            return []
        matrix = np.stack([kept.vectors[i] for i in same])
        found = top_cosine(matrix, vector, count)
        return [Hit(kept.passages[same[row]], score) for row, score in found]
