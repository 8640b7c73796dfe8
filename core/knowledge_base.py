"""A channel's knowledge base: documents in (``kb add``), passages out for a question.

A document is read, split and embedded whole before anything is stored, and then stored in
one step, so a failure at any point (a file too large, of a kind not read, damaged, an
embedding model that is missing) leaves nothing behind.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from core.errors import FileRefused
from core.i18n import N_
from core.knowledge import Document, Hit, Passage, Splitting, document_id, split
from core.media import MB
from core.models import Attachment, IncomingMessage
from core.ports import DocumentReader, Embedder, FileSource, KnowledgeStore

NO_FILES_HERE = N_("I cannot fetch files on this platform yet.")


@dataclass(frozen=True, slots=True)
class KnowledgeConfig:
    """Limits of what a document may be, and how many passages a question looks at."""

    max_file_bytes: int = 10 * MB
    max_passages: int = 2000  # of one document
    splitting: Splitting = field(default_factory=Splitting)
    search_count: int = 8  # passages fetched per question; the prompt keeps those that fit
    share: float = 0.4  # of the prompt left after system prompt, examples and new message
    most: int = 4  # passages in one prompt


class KnowledgeBase:
    """Adds, lists, forgets and searches the documents of each channel."""

    def __init__(
        self,
        store: KnowledgeStore,
        embedder: Embedder,
        reader: DocumentReader,
        files: Mapping[str, FileSource] | None = None,
        config: KnowledgeConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._reader = reader
        self._files = dict(files or {})
        self.config = config or KnowledgeConfig()
        self._clock = clock

    def add_file_source(self, platform: str, source: FileSource) -> None:
        """Let documents sent on ``platform`` be fetched through ``source``."""
        self._files[platform] = source

    async def add_file(
        self, message: IncomingMessage, attachment: Attachment
    ) -> tuple[Document, bool]:
        """Read, split, embed and store an attached document; ``(document, added)``, where
        ``added`` is False when the channel already had exactly this text."""
        name = attachment.name or attachment.ref
        limit = self.config.max_file_bytes
        if attachment.size > limit:
            raise _too_large(name, attachment.size, limit)
        source = self._files.get(message.platform)
        if source is None:
            raise FileRefused(NO_FILES_HERE)
        data = await source.fetch(attachment, limit)
        if len(data) > limit:
            raise _too_large(name, len(data), limit)
        text = await self._reader.text(data, name, attachment.mime)
        return await self.add_text(message, name, text)

    async def add_text(
        self, message: IncomingMessage, name: str, text: str
    ) -> tuple[Document, bool]:
        """Split, embed and store ``text`` under ``name`` (a file name, a message link)."""
        channel = message.channel
        texts = split(text, self.config.splitting)
        if not texts:
            raise FileRefused(N_("{name} has no text I can read."), name=name)
        if len(texts) > self.config.max_passages:
            raise FileRefused(
                N_("{name} is too long: {count:,} passages, the limit is {most:,}."),
                name=name,
                count=len(texts),
                most=self.config.max_passages,
            )
        doc_id = document_id(channel, text)
        for known in await self._store.documents(channel):
            if known.id == doc_id:
                return known, False
        vectors = await self._embedder.embed_documents(texts)
        document = Document(doc_id, name, len(texts), message.author_id, self._clock())
        passages = [_passage(document, n, t) for n, t in enumerate(texts, 1)]
        await self._store.add(channel, document, passages, vectors)
        return document, True

    async def documents(self, channel: str) -> list[Document]:
        return await self._store.documents(channel)

    async def forget(self, channel: str, document_id: str) -> Document | None:
        return await self._store.forget(channel, document_id)

    async def search(self, channel: str, question: str) -> list[Hit]:
        """The passages closest to ``question``; none (and no embedding) without documents."""
        if not question.strip() or not await self._store.documents(channel):
            return []
        vector = await self._embedder.embed_query(question)
        return await self._store.search(channel, vector, self.config.search_count)


def _passage(document: Document, number: int, text: str) -> Passage:
    return Passage(document.id, document.name, number, text)


def _too_large(name: str, size: int, limit: int) -> FileRefused:
    return FileRefused(
        N_("{name} is {size}; the limit is {limit}. Please send a smaller file."),
        name=name,
        size=file_size(size),
        limit=file_size(limit),
    )


def file_size(size: int) -> str:
    """``2.5 MB``, or ``20 KB`` below a megabyte (binary units, as the media limits)."""
    if size >= MB:
        return f"{size / MB:.1f} MB"
    return f"{math.ceil(size / 1024)} KB"
