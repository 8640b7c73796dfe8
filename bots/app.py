"""The composition root: the one place that builds adapters and hands them to the core."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from adapters.memory_store import MemoryStore
from adapters.ollama_llm import OllamaLLM
from adapters.redis_store import RedisStore
from bots.settings import Settings
from core.chat import ChatConfig, ChatService
from core.fewshot import FewShotCatalog, parse_templates
from core.ports import Metrics, SinkFactory
from core.worker import InboxWorker, WorkerConfig

log = structlog.get_logger("ollabot")
Store = RedisStore | MemoryStore


def open_store(settings: Settings) -> Store:
    url = settings.redis.url.get_secret_value()
    options: dict[str, Any] = {
        "conversation_ttl_s": settings.redis.conversation_ttl_days * 86_400,
        "max_stored_turns": settings.redis.max_stored_turns,
    }
    if url.startswith("memory://"):
        log.warning("memory store in use: nothing persists after this process exits")
        return MemoryStore(**options)
    return RedisStore.from_url(
        url,
        socket_timeout_s=settings.redis.socket_timeout_s,
        prefix=settings.redis.prefix,
        **options,
    )


def open_llm(settings: Settings) -> OllamaLLM:
    o = settings.ollama
    return OllamaLLM(
        o.host,
        connect_timeout_s=o.connect_timeout_s,
        read_timeout_s=o.read_timeout_s,
        keep_alive=o.keep_alive,
    )


class ConfigurationError(Exception):
    """A setting that points at something unusable; the message says which and why."""


def load_catalog(settings: Settings) -> FewShotCatalog:
    path = settings.chat.fewshot_file
    if path is None:
        return FewShotCatalog()
    try:
        return FewShotCatalog(parse_templates(json.loads(path.read_text(encoding="utf-8"))))
    except (OSError, ValueError) as error:
        raise ConfigurationError(f"OLLABOT_CHAT__FEWSHOT_FILE={path}: {error}") from error


async def resolve_model(settings: Settings) -> str:
    """The configured tag, or for ``auto`` the quantisation that fits this host."""
    if settings.ollama.model != "auto":
        return settings.ollama.model
    from bots.model_cli import resolve_model_tag

    return await resolve_model_tag(settings)


def instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass
class Runtime:
    """What every command needs: the store, the model client and the chat service."""

    settings: Settings
    store: Store
    llm: OllamaLLM
    service: ChatService
    model: str
    consumer: str
    workers: list[tuple[InboxWorker, asyncio.Task[None]]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def start_worker(self, platform: str, sinks: SinkFactory) -> InboxWorker:
        chat = self.settings.chat
        config = WorkerConfig(
            platform,
            self.consumer,
            concurrency=chat.concurrency,
            claim_idle_ms=int(chat.claim_idle_s * 1000),
        )
        worker = InboxWorker(self.store, self.service, sinks, config)
        self.workers.append((worker, asyncio.create_task(worker.run(self.stop))))
        return worker

    async def drain(self) -> None:
        """Stop taking work and let replies in progress finish (bounded); safe to repeat."""
        self.stop.set()
        while self.workers:
            worker, task = self.workers.pop()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await worker.drain(self.settings.chat.stop_timeout_s)


@contextlib.asynccontextmanager
async def runtime(
    settings: Settings, metrics: Metrics | None = None, consumer: str | None = None
) -> AsyncIterator[Runtime]:
    catalog = load_catalog(settings)
    model = await resolve_model(settings)
    store, llm = open_store(settings), open_llm(settings)
    # A fixed consumer name (the console's) is also the lock owner, so that a restarted
    # console takes its crashed run's lock back at once instead of waiting for it to expire.
    owner = consumer or instance_id()
    config = ChatConfig(
        default_model=model,
        num_ctx=settings.ollama.num_ctx,
        max_message_chars=settings.chat.max_message_chars,
        history_turns=settings.chat.history_turns,
        rate_limit=settings.chat.rate_limit_per_minute,
    )
    if settings.chat.system_prompt:
        config = replace(config, default_system_prompt=settings.chat.system_prompt)
    service = ChatService(llm, store, store, catalog, config, owner, metrics=metrics)
    rt = Runtime(settings, store, llm, service, model, owner)
    try:
        yield rt
    finally:
        await rt.drain()
        await llm.close()
        await store.close()


def on_termination(handler: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, handler)
