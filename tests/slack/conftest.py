"""The whole Slack bot for one test: real Bolt, slack_sdk and Redis, fake Slack and Ollama.

``start_bot(...)`` wires a ``RedisStore`` (inbox and conversations), the ``OllamaLLM``
adapter on the fake Ollama, the ``ChatService`` and its ``InboxWorker``, and the
``SlackPlatform`` connected to the fake Slack (Socket Mode, or HTTP mode when given a
signing secret); Slack's streaming methods are refused unless ``streams=True``. Everything
is stopped after the test.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from adapters.document_text import DocumentText
from adapters.ollama_embed import OllamaEmbedder
from adapters.ollama_llm import OllamaLLM
from adapters.redis_knowledge import RedisKnowledge
from adapters.redis_store import RedisStore
from adapters.slack.platform import SlackPlatform
from adapters.slack.threads import RedisThreadRegistry
from adapters.stt_client import OpenAITranscriber
from bots.app import build_services
from bots.platform_config import slack_config
from bots.settings import SlackSettings
from core.chat import ChatConfig
from core.i18n import Translations, only_english
from core.knowledge_base import KnowledgeBase
from core.worker import InboxWorker
from tests.fakes.ollama import FakeOllama
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, FakeSlack, fake_slack  # noqa: F401

SIGNING_SECRET = "c0ffee00ba5eba11c0ffee00ba5eba11"


@dataclass
class SlackBot:
    """A running bot and the handles a test needs."""

    platform: SlackPlatform
    store: RedisStore
    llm: OllamaLLM
    worker: InboxWorker
    stop: asyncio.Event
    task: asyncio.Task[None]

    @property
    def events_url(self) -> str:
        assert self.platform.http is not None
        return self.platform.http.url


StartBot = Callable[..., Awaitable[SlackBot]]


@pytest.fixture
async def start_bot(
    fake_slack: FakeSlack,  # noqa: F811
    fake_ollama: FakeOllama,
    redis_url: str,
    key_prefix: str,
) -> AsyncIterator[StartBot]:
    """Start the bot; ``http=True`` for HTTP mode; ``ollama_url``/``redis`` point elsewhere;
    ``documents=True`` adds a knowledge base in the same Redis, embedding with the fake Ollama."""
    started: list[tuple[SlackBot, aioredis.Redis]] = []
    transcribers: list[OpenAITranscriber] = []
    knowledge_parts: list[tuple[RedisKnowledge, OllamaEmbedder]] = []

    async def start(
        *,
        http: bool = False,
        ollama_url: str | None = None,
        admin_ids: list[str] | None = None,
        redis: str | None = None,
        rate_per_minute: int = 1000,
        translations: Translations | None = None,
        stt_url: str | None = None,
        streams: bool = False,
        update_interval_s: float = 1.2,
        documents: bool = False,
    ) -> SlackBot:
        # Slack's own streaming only where a test asks for it: the workspaces most bots are
        # in refuse it, and the other tests are about the chat.update way.
        fake_slack.refuse_streams = "" if streams else "not_allowed"
        settings = SlackSettings(
            bot_token=SecretStr(BOT_TOKEN),
            app_token=None if http else SecretStr(APP_TOKEN),
            signing_secret=SecretStr(SIGNING_SECRET) if http else None,
            http_listen="127.0.0.1:0" if http else None,
            api_base_url=fake_slack.url,
            admin_ids=admin_ids or [],
        )
        store = RedisStore.from_url(
            redis or redis_url, prefix=key_prefix, block_ms=200, rate_per_minute=rate_per_minute
        )
        threads_client = aioredis.Redis.from_url(redis or redis_url, decode_responses=True)
        llm = OllamaLLM(ollama_url or fake_ollama.url, connect_timeout_s=1.0, retries=0)
        config = ChatConfig(default_model="llama3.1:8b")
        transcriber = OpenAITranscriber(stt_url) if stt_url else None
        if transcriber is not None:
            transcribers.append(transcriber)
        knowledge = None
        if documents:
            parts = (
                RedisKnowledge.from_url(redis or redis_url, prefix=key_prefix),
                OllamaEmbedder(ollama_url or fake_ollama.url, "nomic-embed-text"),
            )
            knowledge_parts.append(parts)
            knowledge = KnowledgeBase(*parts, DocumentText())
        services = build_services(
            store,
            llm,
            config,
            "test",
            translations=translations or only_english,
            transcriber=transcriber,
            knowledge=knowledge,
        )
        platform = SlackPlatform(
            slack_config(settings),
            store,
            RedisThreadRegistry(threads_client, key_prefix),
            translations=translations,
            update_interval_s=update_interval_s,
        )
        worker = services.worker("slack", platform.sinks, slots=4, files=platform.files)
        stop = asyncio.Event()
        await platform.start()
        task = asyncio.create_task(worker.run(stop))
        bot = SlackBot(platform, store, llm, worker, stop, task)
        started.append((bot, threads_client))
        return bot

    yield start
    for bot, threads_client in started:
        await bot.platform.stop()
        bot.stop.set()
        await bot.task
        await bot.worker.drain(5)
        await bot.platform.aclose()
        await bot.llm.close()
        await bot.store.close()
        await threads_client.aclose()
    for transcriber in transcribers:
        await transcriber.close()
    for knowledge_store, embedder in knowledge_parts:
        await knowledge_store.close()
        await embedder.close()
