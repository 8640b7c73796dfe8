"""The ``Embedder`` port on Ollama's ``/api/embed`` (the official client's ``embed``).

Errors are the chat client's (``adapters.ollama_llm.translate``), except a missing model,
whose notice names the embedding model and how to install it. Texts go in batches, so one
large document does not become one huge request.

Some embedding models are trained with a task prefix on each text; ``nomic-embed-text``
wants ``search_document:`` on what is stored and ``search_query:`` on the question.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx
import ollama

from adapters.aiohttp_transport import AiohttpTransport
from adapters.ollama_llm import LIBRARY_ERRORS, keep_alive_value, translate
from core.errors import LLMError, ModelNotFound
from core.i18n import N_

MISSING_MODEL = N_(
    "The embedding model {model} is not installed on the server, so I cannot read documents; "
    "an operator can install it with `ollama pull {model}`."
)
# model name (without tag) -> (document prefix, query prefix)
TASK_PREFIXES = {"nomic-embed-text": ("search_document: ", "search_query: ")}


class OllamaEmbedder:
    """Embeds with one model on one Ollama server."""

    def __init__(
        self,
        host: str,
        model: str,
        *,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 120.0,
        keep_alive: str | int = "30m",
        batch: int = 32,
    ) -> None:
        timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s)
        self._client = ollama.AsyncClient(host=host, timeout=timeout, transport=AiohttpTransport(2))
        self.model = model
        self._keep_alive = keep_alive_value(keep_alive)
        self._batch = max(1, batch)
        self._document_prefix, self._query_prefix = TASK_PREFIXES.get(
            model.split(":", 1)[0], ("", "")
        )

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self._batch):
            batch = [self._document_prefix + t for t in texts[start : start + self._batch]]
            vectors += await self._embed(batch)
        return vectors

    async def embed_query(self, text: str) -> list[float]:
        return (await self._embed([self._query_prefix + text]))[0]

    async def _embed(self, texts: list[str]) -> list[list[float]]:
        try:
            response = await self._client.embed(
                self.model, texts, truncate=True, keep_alive=self._keep_alive
            )
        except LIBRARY_ERRORS as error:
            raise self._translated(error) from error
        vectors = [list(map(float, v)) for v in response.embeddings]
        if len(vectors) != len(texts):
            raise LLMError(N_("The embedding model answered with the wrong number of vectors."))
        return vectors

    def _translated(self, error: Exception) -> LLMError:
        if isinstance(error, ollama.ResponseError) and error.status_code == 404:
            return ModelNotFound(MISSING_MODEL, model=self.model)
        return translate(error, self.model)

    async def close(self) -> None:
        await self._client.close()  # type: ignore[no-untyped-call]
