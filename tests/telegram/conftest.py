"""The whole Telegram bot on real parts: PTB against the fake Bot API, Redis, fake Ollama."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
from pydantic import SecretStr

from adapters.document_text import DocumentText
from adapters.ollama_embed import OllamaEmbedder
from adapters.ollama_llm import OllamaLLM
from adapters.redis_knowledge import RedisKnowledge
from adapters.redis_store import RedisStore
from adapters.stt_client import OpenAITranscriber
from adapters.telegram.pacing import Limits
from adapters.telegram.platform import TelegramPlatform
from bots.app import build_services
from bots.platform_config import telegram_config
from bots.serve import telegram_sharing
from bots.settings import TelegramSettings
from core.chat import ChatConfig
from core.i18n import Translations, only_english
from core.knowledge_base import KnowledgeBase
from core.worker import InboxWorker
from tests.fakes.ollama import FakeOllama
from tests.fakes.telegram_api import ALICE, TOKEN, FakeTelegram
from tests.fakes.telegram_api import fake_telegram as fake_telegram  # the fixture

# Fast cadence so that streaming is visible within a test; Telegram's figures in production.
TEST_LIMITS = Limits(
    private_interval_s=0.05,
    group_per_minute=600,
    group_reserve=4,
    first_show_delay_s=0.0,
    typing_delay_s=0.0,
    typing_every_s=0.2,
)
# A killed poller's lease lapses within a second here (three in production).
TEST_LEASE_TTL_S = 1.0


@dataclass
class RunningBot:
    """One ollabot process's worth of Telegram objects."""

    platform: TelegramPlatform
    worker: InboxWorker
    store: RedisStore
    llm: OllamaLLM
    stop_event: asyncio.Event
    task: asyncio.Task[None]
    transcriber: OpenAITranscriber | None = None
    knowledge: tuple[RedisKnowledge, OllamaEmbedder] | None = None

    async def stop(self, drain_s: float = 5.0) -> None:
        """Stop receiving, finish replies in progress, close connections."""
        await self.platform.stop()
        self.stop_event.set()
        await self.task
        await self.worker.drain(drain_s)
        await self.platform.aclose()
        await self.llm.close()
        await self.store.close()
        if self.transcriber is not None:
            await self.transcriber.close()
        if self.knowledge is not None:
            await self.knowledge[0].close()
            await self.knowledge[1].close()

    async def kill(self) -> None:
        """Like ``kill -9`` as far as Telegram and Redis can tell: nothing is confirmed."""
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.worker.drain(0)
        assert self.platform._polling is not None
        self.platform._polling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.platform._polling
        await self.platform.aclose()
        await self.llm.close()
        await self.store.close()


StartBot = Callable[..., Awaitable[RunningBot]]


@pytest.fixture
async def start_bot(
    fake_telegram: FakeTelegram, fake_ollama: FakeOllama, redis_url: str, key_prefix: str
) -> AsyncIterator[StartBot]:
    """Starts bots (several, for restart tests) and stops whatever is left afterwards."""
    running: list[RunningBot] = []

    async def start(
        admin_ids: tuple[int, ...] = (ALICE["id"],),
        consumer: str = "worker-1",
        claim_idle_ms: int = 60_000,
        limits: Limits = TEST_LIMITS,
        ollama_url: str | None = None,
        redis: str | None = None,
        rate_per_minute: int = 1000,
        translations: Translations | None = None,
        config: ChatConfig | None = None,
        stt_url: str | None = None,
        bot_rate_per_s: float = 1000.0,
        documents: bool = False,
    ) -> RunningBot:
        """``translations``: English for everyone unless a test asks for the catalogues (the
        fake users' clients say "es" and "en", and most tests check the English texts).
        ``stt_url``: a speech-to-text server for voice notes. ``documents``: a knowledge base
        in the same Redis, embedding with the fake Ollama. Bots started together share the
        bot-wide budget and the polling lease, as processes do; the budget is Telegram's only
        where a test asks (``bot_rate_per_s=30``)."""
        settings = TelegramSettings(
            token=SecretStr(TOKEN),
            api_base_url=fake_telegram.url,
            admin_ids=list(admin_ids),
            bot_rate_per_s=bot_rate_per_s,
        )
        store = RedisStore.from_url(
            redis or redis_url, prefix=key_prefix, block_ms=100, rate_per_minute=rate_per_minute
        )
        llm = OllamaLLM(ollama_url or fake_ollama.url, retries=0, backoff_s=0.01)
        transcriber = OpenAITranscriber(stt_url) if stt_url else None
        knowledge = None
        if documents:
            knowledge_store = RedisKnowledge.from_url(redis or redis_url, prefix=key_prefix)
            embedder = OllamaEmbedder(ollama_url or fake_ollama.url, "nomic-embed-text")
            knowledge = (knowledge_store, embedder)
        services = build_services(
            store,
            llm,
            config or ChatConfig(default_model="llama3.1:8b"),
            consumer,
            translations=translations or only_english,
            transcriber=transcriber,
            knowledge=KnowledgeBase(*knowledge, DocumentText()) if knowledge else None,
        )
        telegram = telegram_config(settings)
        budget, lease = telegram_sharing(telegram, store, TEST_LEASE_TTL_S)
        platform = TelegramPlatform(
            telegram,
            store,
            limits=limits,
            poll_timeout_s=1,
            translations=translations,
            budget=budget,
            lease=lease,
        )
        await platform.start()
        worker = services.worker(
            "telegram", platform.sinks, slots=4, claim_idle_ms=claim_idle_ms, files=platform.files
        )
        stop_event = asyncio.Event()
        task = asyncio.create_task(worker.run(stop_event))
        bot = RunningBot(platform, worker, store, llm, stop_event, task, transcriber, knowledge)
        running.append(bot)
        return bot

    yield start
    for bot in running:
        if not bot.task.done():
            await bot.stop(drain_s=1.0)
