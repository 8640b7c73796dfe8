"""``ollabot run``: serve the configured platforms, with health, metrics and systemd notify."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Protocol

import structlog
from prometheus_client import CollectorRegistry

from adapters.ops_http import CheckResults, Checks, OpsServer, parse_listen
from adapters.prometheus_metrics import PrometheusMetrics
from adapters.slack.config import SlackConfig
from adapters.systemd_notify import notify, watchdog_interval
from adapters.telegram.config import TelegramConfig
from bots.app import ConfigurationError, Runtime, Store, on_termination, runtime
from bots.doctor import out_of_memory
from bots.model_cli import warm_up
from bots.platform_config import slack_config, telegram_config
from bots.settings import Settings
from core.errors import OllabotError
from core.ports import FileSource, SinkFactory

if TYPE_CHECKING:  # python-telegram-bot is imported only when Telegram is served
    from adapters.telegram.pacing import BotBudget
    from adapters.telegram.receive import Lease

log = structlog.get_logger("ollabot.serve")
PLATFORM_NAMES = ("telegram", "slack")
PlatformConfig = TelegramConfig | SlackConfig


class Platform(Protocol):
    """What a chat platform offers the composition root."""

    @property
    def sinks(self) -> SinkFactory:
        """Builds the reply sink for a message taken from the inbox."""

    @property
    def files(self) -> FileSource:
        """Fetches the platform's attachments (photos, voice notes)."""

    async def start(self) -> None:
        """Start receiving; returns once the platform is connected."""

    async def stop(self) -> None:
        """Stop receiving; replies in progress still go out through the sinks."""

    async def aclose(self) -> None:
        """Release connections, after the workers have drained."""


def configured_platforms(settings: Settings) -> list[str]:
    names = []
    if settings.telegram.token is not None:
        names.append("telegram")
    if settings.slack.bot_token is not None:
        names.append("slack")
    return names


def platform_config(name: str, settings: Settings) -> PlatformConfig:
    """The named platform's configuration, or ``ConfigurationError`` naming the setting."""
    if name == "telegram":
        return telegram_config(settings.telegram)
    return slack_config(settings.slack)


def build_platform(config: PlatformConfig, rt: Runtime) -> Platform:
    if isinstance(config, TelegramConfig):
        from adapters.telegram.platform import TelegramPlatform

        budget, lease = telegram_sharing(config, rt.store)
        translations = rt.services.service.translations
        return TelegramPlatform(
            config, rt.store, translations=translations, budget=budget, lease=lease
        )
    from adapters.redis_store import RedisStore
    from adapters.slack.platform import SlackPlatform
    from adapters.slack.threads import MemoryThreadRegistry, RedisThreadRegistry

    store = rt.store
    threads = (
        RedisThreadRegistry(store.client, store.prefix)
        if isinstance(store, RedisStore)
        else MemoryThreadRegistry()
    )
    return SlackPlatform(config, store, threads, translations=rt.services.service.translations)


def telegram_sharing(
    config: TelegramConfig, store: Store, lease_ttl_s: float | None = None
) -> tuple[BotBudget | None, Lease | None]:
    """The bot-wide budget and the polling lease, in Redis for every process serving the
    bot; none with the memory store (one process: it counts alone and polls).
    ``lease_ttl_s``: how long a killed poller holds on (tests shorten it)."""
    from adapters.redis_store import RedisStore

    if not isinstance(store, RedisStore):
        return None, None
    from adapters.telegram.shared import LEASE_TTL_S, BotKeys, PollerLease, SharedBudget

    keys = BotKeys.of(store.prefix, config.token.get_secret_value())
    budget = SharedBudget(store.client, keys.budget, config.bot_rate_per_s)
    return budget, PollerLease(store.client, keys.poller, lease_ttl_s or LEASE_TTL_S)


async def serve(settings: Settings, requested: list[str]) -> int:
    names = requested or configured_platforms(settings)
    unknown = sorted(set(names) - set(PLATFORM_NAMES))
    if unknown or not names:
        log.error(
            "nothing to serve",
            unknown=unknown,
            hint="set OLLABOT_TELEGRAM__TOKEN or OLLABOT_SLACK__BOT_TOKEN, "
            "or name platforms: ollabot run telegram slack",
        )
        return 2
    configs = {name: platform_config(name, settings) for name in names}
    listen = ops_listen(settings)
    registry = CollectorRegistry()
    async with runtime(settings, PrometheusMetrics(registry)) as rt:
        stopping = asyncio.Event()
        on_termination(stopping.set)
        ops = OpsServer(listen, health_checks(rt), registry) if listen else None
        if ops is not None:
            await ops.start()
        o = settings.ollama
        # loading the model can take minutes or hang: receiving must not wait for it
        warming = asyncio.create_task(warm_up(o.host, rt.model, o.num_ctx, o.keep_alive))
        platforms = []
        try:
            for name, config in configs.items():
                platform = build_platform(config, rt)
                rt.start_worker(name, platform.sinks, platform.files)
                await platform.start()
                platforms.append(platform)
        except Exception:
            log.exception("a platform failed to start")
            stopping.set()
        else:
            notify("READY=1")
            log.info("serving", platforms=names, model=rt.model)
        async with watchdog(rt):
            await stopping.wait()
        notify("STOPPING=1")
        for platform in platforms:
            await platform.stop()
        await rt.drain()
        for platform in platforms:
            await platform.aclose()
        if ops is not None:
            await ops.stop()
        warming.cancel()
    return 0 if len(platforms) == len(configs) else 1


def ops_listen(settings: Settings) -> str | None:
    """The operations listener's address, checked (None: no listener)."""
    listen = settings.ops.listen
    if listen is not None:
        try:
            parse_listen(listen)
        except ValueError as error:
            raise ConfigurationError(f"OLLABOT_OPS__LISTEN={listen}: {error}") from error
    return listen


def health_checks(rt: Runtime) -> Checks:
    async def checks() -> CheckResults:
        results: CheckResults = {"redis": await redis_health(rt.store)}
        try:
            loaded = [m.get("name", m.get("model")) for m in await rt.llm.loaded_models()]
            results["ollama"] = (True, "reachable")
            results["model"] = (
                rt.model in loaded,
                f"{rt.model} loaded"
                if rt.model in loaded
                else f"{rt.model} not loaded (loaded: {loaded or 'none'})",
            )
        except OllabotError as error:
            results["ollama"] = (False, error.notice)
        return results

    return checks


async def redis_health(store: Store) -> tuple[bool, str]:
    """Reachable and accepting writes; out of memory is said as such."""
    try:
        info = await store.server_info()
    except OllabotError as error:
        return False, error.notice
    if out_of_memory(info):
        return False, "out of memory: used_memory has reached maxmemory, writes are refused"
    return True, "reachable"


@contextlib.asynccontextmanager
async def watchdog(rt: Runtime) -> AsyncIterator[None]:
    """Ping systemd's watchdog while the loop runs and every worker is alive.

    Redis or Ollama being down is not a reason: a restart would not bring them back.
    """
    interval = watchdog_interval()

    async def ping_while_healthy() -> None:
        assert interval is not None
        while all(not task.done() for _, task in rt.workers):
            notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    task = asyncio.create_task(ping_while_healthy()) if interval else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
