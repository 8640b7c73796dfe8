"""Ollama's model endpoints (pull, show, ps, tags, load) with errors translated into the tree.

pull     POST /api/pull   NDJSON progress; errors arrive as ``{"error": ...}`` lines
show     POST /api/show   ``details.quantization_level`` and ``model_info`` of a local model
ps       GET  /api/ps     loaded models: ``size``, ``size_vram``, ``context_length``
tags     GET  /api/tags   local models and their size on disk
load     POST /api/chat   with no messages: Ollama loads the model and answers ``load``

None of these carries the conversation affinity header: no conversation is known here, so an
HAProxy sidecar in front of several hosts sends them round-robin.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import ollama

from core.errors import LLMFailed, LLMUnavailable, ModelNotFound

UNKNOWN_TAG_MARKERS = ("file does not exist", "not found", "invalid model name")


@dataclass(frozen=True, slots=True)
class PullUpdate:
    """One line of the pull stream: a status, and for layers the digest and byte counts."""

    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A model Ollama holds in memory, and how much of it sits in GPU memory."""

    name: str
    size: int
    size_vram: int
    context_length: int | None
    expires_at: datetime | None
    quantization: str | None

    @property
    def gpu_share(self) -> float:
        return self.size_vram / self.size if self.size else 0.0


@dataclass(frozen=True, slots=True)
class ShownModel:
    """What ``/api/show`` says of a model's shape: ``model_info``, quantisation, capabilities."""

    model_info: dict[str, Any]
    quantization: str
    capabilities: frozenset[str]


class OllamaModels:
    """The model-management half of Ollama's API, for the CLI and start-up."""

    def __init__(self, host: str, connect_timeout_s: float = 5.0, read_timeout_s: float = 300.0):
        timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s)
        self._client = ollama.AsyncClient(host=host, timeout=timeout)
        self.host = host

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        await self._client.close()  # type: ignore[no-untyped-call]  # ollama leaves it untyped

    async def pull(self, tag: str) -> AsyncIterator[PullUpdate]:
        """Stream the pull of ``tag``; raises unless Ollama ends the stream with ``success``."""
        last = ""
        try:
            async for part in await self._client.pull(tag, stream=True):
                last = part.status or ""
                yield PullUpdate(last, part.digest, part.total, part.completed)
        except ollama.ResponseError as error:
            raise _pull_error(tag, error) from error
        except (httpx.TransportError, ConnectionError, ValueError) as error:
            raise _unreachable_or_cut(self.host, last, error) from error
        if last != "success":
            raise LLMFailed(
                f"The pull of {tag} was interrupted (last status: {last or 'none'}); "
                "run it again, Ollama resumes the download."
            )

    async def quantization(self, tag: str) -> str:
        """``details.quantization_level`` of a local model (``/api/show``)."""
        response = await self._call(self._client.show(tag), tag)
        return str(response.details.quantization_level or "") if response.details else ""

    async def shape(self, tag: str) -> ShownModel:
        """Architecture keys, quantisation and capabilities of a local model (``/api/show``)."""
        response = await self._call(self._client.show(tag), tag)
        quantization = response.details.quantization_level if response.details else None
        return ShownModel(
            dict(response.modelinfo or {}),
            str(quantization or ""),
            frozenset(str(c) for c in response.capabilities or ()),
        )

    async def sizes(self) -> dict[str, int]:
        """Bytes on disk of each local model (``/api/tags``), by name."""
        response = await self._call(self._client.list(), "")
        return {m.model: int(m.size or 0) for m in response.models if m.model}

    async def installed(self) -> set[str]:
        """Names of the local models (``/api/tags``)."""
        response = await self._call(self._client.list(), "")
        return {m.model for m in response.models if m.model}

    async def loaded(self) -> list[LoadedModel]:
        """The models Ollama holds in memory now (``/api/ps``)."""
        response = await self._call(self._client.ps(), "")
        return [_loaded(m) for m in response.models]

    async def load(self, tag: str, num_ctx: int, keep_alive: str) -> None:
        """Load ``tag`` with the deployment's ``num_ctx`` so the first user finds it warm."""
        request = self._client.chat(
            tag, messages=[], options={"num_ctx": num_ctx}, keep_alive=keep_alive
        )
        await self._call(request, tag)

    async def _call(self, request: Any, tag: str) -> Any:
        try:
            return await request
        except ollama.ResponseError as error:
            if error.status_code == 404:
                raise ModelNotFound(
                    f"Ollama has no model {tag}; run `ollabot model pull {tag}`."
                ) from error
            raise LLMFailed(f"Ollama answered: {error.error}") from error
        except (httpx.TransportError, ConnectionError) as error:
            raise _unreachable_or_cut(self.host, "", error) from error


def _pull_error(tag: str, error: ollama.ResponseError) -> Exception:
    text = str(error.error)
    if any(marker in text for marker in UNKNOWN_TAG_MARKERS):
        return ModelNotFound(
            f"Ollama's library has no model {tag} ({text}); check the tag, "
            "e.g. llama3.1:8b-instruct-q8_0."
        )
    return LLMFailed(f"The pull of {tag} failed: {text}. Run it again to resume.")


def _unreachable_or_cut(host: str, last: str, error: Exception) -> Exception:
    if last:
        return LLMFailed(f"The connection to Ollama broke during the pull ({last}); run it again.")
    return LLMUnavailable(f"Ollama is not reachable at {host} ({type(error).__name__}).")


def _loaded(model: Any) -> LoadedModel:
    details = model.details
    return LoadedModel(
        name=str(model.model or model.name or "?"),
        size=int(model.size or 0),
        size_vram=int(model.size_vram or 0),
        context_length=model.context_length,
        expires_at=model.expires_at,
        quantization=details.quantization_level if details else None,
    )
