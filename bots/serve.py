"""``ollabot run``: serve the configured platforms, with health, metrics and systemd notify."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Protocol

import structlog
from prometheus_client import CollectorRegistry

from adapters.ops_http import CheckResults, Checks, OpsServer
from adapters.prometheus_metrics import PrometheusMetrics
from adapters.systemd_notify import notify, watchdog_interval
from bots.app import Runtime, Store, on_termination, runtime
from bots.doctor import out_of_memory
from bots.model_cli import warm_up
from bots.settings import Settings
from core.errors import OllabotError
from core.ports import SinkFactory

log = structlog.get_logger("ollabot.serve")
PLATFORM_NAMES = ("telegram", "slack")


class Platform(Protocol):
    """What a chat platform offers the composition root."""

    sinks: SinkFactory

    async def start(self) -> None: ...

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


def build_platform(name: str, settings: Settings, rt: Runtime) -> Platform:
    if name == "telegram":
        from adapters.telegram.platform import TelegramPlatform

        return TelegramPlatform(settings.telegram, rt.store)
    from adapters.redis_store import RedisStore
    from adapters.slack.platform import SlackPlatform
    from adapters.slack.threads import MemoryThreadRegistry, RedisThreadRegistry

    store = rt.store
    threads = (
        RedisThreadRegistry(store.client, store.prefix)
        if isinstance(store, RedisStore)
        else MemoryThreadRegistry()
    )
    return SlackPlatform(settings.slack, store, threads)


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
    registry = CollectorRegistry()
    async with runtime(settings, PrometheusMetrics(registry)) as rt:
        stopping = asyncio.Event()
        on_termination(stopping.set)
        ops = (
            OpsServer(settings.ops.listen, health_checks(rt), registry)
            if settings.ops.listen
            else None
        )
        if ops is not None:
            await ops.start()
        o = settings.ollama
        # loading the model can take minutes or hang: receiving must not wait for it
        warming = asyncio.create_task(warm_up(o.host, rt.model, o.num_ctx, o.keep_alive))
        platforms = []
        try:
            for name in names:
                platform = build_platform(name, settings, rt)
                rt.start_worker(name, platform.sinks)
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
    return 0 if len(platforms) == len(names) else 1


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
