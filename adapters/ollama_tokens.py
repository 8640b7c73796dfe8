"""What ``/api/show`` tells about the model in use (its control tokens and its capabilities),
read once per model and cached.

Ollama parses a model's control tokens wherever they appear in the text it is sent: typed to a
Gemma model, ``<start_of_turn>system`` opens a system turn. The core knows the common
families' tokens; this module adds the model's own, from two places in ``/api/show``:

- the chat template (and its stop parameters): the tokens it writes around each turn;
- the tokenizer (``verbose``): the tokens GGUF marks as control (token type 3). User-defined
  tokens (type 4) are ordinary text that happens to be one token (Gemma has ``<table>``).

A failed look-up is logged, the core's families still apply, and it is tried again later.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from core.errors import OllabotError
from core.prompting import TOKEN_SHAPES

log = structlog.get_logger(__name__)

ShowModel = Callable[[str], Awaitable[Mapping[str, Any]]]

CONTROL_TOKEN_TYPE = 3
# What a template writes around turns: the core's shapes (<|name|>…), <name>, </name>, [NAME],
# [/NAME] and Llama 2's <<SYS>>; ordinary words and Go/Jinja syntax do not have these shapes.
_TEMPLATE_TOKEN = re.compile(
    "|".join(
        [*TOKEN_SHAPES, r"</?[A-Za-z][A-Za-z0-9_]{0,63}>", r"\[/?[A-Z][A-Z_]{1,63}\]", "<</?SYS>>"]
    )
)
_STOP = re.compile(r'^stop\s+"(.*)"\s*$', re.MULTILINE)


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """A model's control tokens and its capabilities as Ollama names them (``completion``,
    ``vision``, ``thinking``, ``embedding``, ``tools``); both empty when unknown."""

    control_tokens: frozenset[str] = frozenset()
    capabilities: frozenset[str] = frozenset()


def facts_from_show(shown: Mapping[str, Any]) -> ModelFacts:
    capabilities = shown.get("capabilities") or []
    return ModelFacts(tokens_from_show(shown), frozenset(str(c) for c in capabilities))


def tokens_from_show(shown: Mapping[str, Any]) -> frozenset[str]:
    """The control tokens an ``/api/show`` answer reveals (template, stops, tokenizer)."""
    template = str(shown.get("template") or "")
    stops = _STOP.findall(str(shown.get("parameters") or ""))
    found = set(_TEMPLATE_TOKEN.findall(template))
    found |= {stop for stop in stops if _TEMPLATE_TOKEN.fullmatch(stop)}
    found |= set(_control_vocabulary(shown.get("model_info") or {}))
    return frozenset(found)


def _control_vocabulary(model_info: Mapping[str, Any]) -> Iterable[str]:
    tokens = model_info.get("tokenizer.ggml.tokens") or []
    types = model_info.get("tokenizer.ggml.token_type") or []
    for token, kind in zip(tokens, types, strict=False):
        if kind == CONTROL_TOKEN_TYPE and isinstance(token, str) and len(token.strip()) > 1:
            yield token


class ModelFactsCache:
    """``await facts.of(model)``: what ``/api/show`` says of the model, asked once per model.

    Concurrent first requests share one look-up; a failed one is retried after ``retry_s``.
    """

    def __init__(
        self, show: ShowModel, retry_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._show = show
        self._retry_s = retry_s
        self._clock = clock
        self._known: dict[str, ModelFacts] = {}
        self._failed_at: dict[str, float] = {}
        self._asking: dict[str, asyncio.Task[ModelFacts]] = {}

    async def of(self, model: str) -> ModelFacts:
        known = self._known.get(model)
        if known is not None:
            return known
        failed_at = self._failed_at.get(model)
        if failed_at is not None and self._clock() - failed_at < self._retry_s:
            return ModelFacts()
        task = self._asking.get(model)
        if task is None:
            task = self._asking[model] = asyncio.create_task(self._ask(model))
            task.add_done_callback(lambda _: self._asking.pop(model, None))
        return await asyncio.shield(task)

    async def _ask(self, model: str) -> ModelFacts:
        try:
            facts = facts_from_show(await self._show(model))
        except (OllabotError, TimeoutError, ValueError, TypeError) as error:
            self._failed_at[model] = self._clock()
            log.warning("model_facts_unknown", model=model, error=type(error).__name__)
            return ModelFacts()
        self._known[model] = facts
        self._failed_at.pop(model, None)
        return facts
