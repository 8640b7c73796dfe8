"""/healthz against a real Redis and the fake Ollama; /metrics after a few replies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import ollama
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from adapters.ops_http import CheckResults, OpsServer
from adapters.prometheus_metrics import PrometheusMetrics
from tests.fakes.ollama import FakeOllama
from tests.fixtures.redis import RedisServer

MODEL = "llama3.1:8b-instruct-q8_0"


class BackendChecks:
    """What the lead wires in: Redis answers, Ollama answers, the model is loaded."""

    def __init__(self, redis_url: str, ollama_url: str) -> None:
        self.store = aioredis.Redis.from_url(
            redis_url, socket_timeout=5, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
        )
        self.ollama_url = ollama_url
        self.client = ollama.AsyncClient(host=ollama_url, timeout=2)

    async def __call__(self) -> CheckResults:
        return {**await self.redis(), **await self.ollama()}

    async def redis(self) -> CheckResults:
        try:
            await self.store.ping()
        except RedisError as error:
            return {"redis": (False, type(error).__name__)}
        return {"redis": (True, "PONG")}

    async def ollama(self) -> CheckResults:
        try:
            loaded = [model.model for model in (await self.client.ps()).models]
        except (ConnectionError, httpx.HTTPError, ollama.ResponseError) as error:
            return {
                "ollama": (False, type(error).__name__),
                "model": (False, "unknown: Ollama does not answer"),
            }
        names = ", ".join(map(str, loaded)) or "none"
        return {"ollama": (True, self.ollama_url), "model": (MODEL in loaded, f"loaded: {names}")}

    async def aclose(self) -> None:
        await self.store.aclose()
        await self.client.close()


@pytest.fixture
async def ops(redis_server: RedisServer, fake_ollama: FakeOllama) -> AsyncIterator[OpsServer]:
    checks = BackendChecks(redis_server.url, fake_ollama.url)
    server = OpsServer("127.0.0.1:0", checks, CollectorRegistry(), check_timeout_s=1.0)
    await server.start()
    yield server
    await server.stop()
    await checks.aclose()


async def get(url: str) -> tuple[int, str, Any]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        body = await response.json() if response.content_type == "application/json" else None
        return response.status, response.headers["Content-Type"], body


def failing(body: dict[str, Any]) -> set[str]:
    return {name for name, check in body["checks"].items() if not check["ok"]}


async def test_healthz_is_green_when_redis_ollama_and_the_model_are_up(
    ops: OpsServer, fake_ollama: FakeOllama
) -> None:
    fake_ollama.load(MODEL)

    status, _, body = await get(f"{ops.url}/healthz")

    assert (status, body["status"], failing(body)) == (200, "ok", set())
    assert set(body["checks"]) == {"redis", "ollama", "model"}


async def test_healthz_is_red_while_redis_is_stopped(
    ops: OpsServer, fake_ollama: FakeOllama, redis_server: RedisServer
) -> None:
    fake_ollama.load(MODEL)
    redis_server.stop()

    status, _, body = await get(f"{ops.url}/healthz")
    assert (status, body["status"], failing(body)) == (503, "fail", {"redis"})

    redis_server.start()
    status, _, body = await get(f"{ops.url}/healthz")
    assert status == 200


async def test_healthz_is_red_when_ollama_is_down(ops: OpsServer, fake_ollama: FakeOllama) -> None:
    await fake_ollama.stop()

    status, _, body = await get(f"{ops.url}/healthz")

    assert (status, failing(body)) == (503, {"ollama", "model"})


async def test_healthz_is_red_until_the_model_is_loaded(
    ops: OpsServer, fake_ollama: FakeOllama
) -> None:
    status, _, body = await get(f"{ops.url}/healthz")
    assert (status, failing(body)) == (503, {"model"})
    assert body["checks"]["model"]["detail"] == "loaded: none"

    fake_ollama.load(MODEL)
    status, _, body = await get(f"{ops.url}/healthz")
    assert status == 200


async def test_healthz_answers_red_in_time_when_redis_hangs(
    ops: OpsServer, fake_ollama: FakeOllama, redis_server: RedisServer
) -> None:
    fake_ollama.load(MODEL)
    redis_server.pause()

    status, _, body = await get(f"{ops.url}/healthz")

    redis_server.resume()
    assert status == 503
    assert "no answer within 1 s" in body["checks"]["checks"]["detail"]


async def test_metrics_count_replies_time_them_and_count_backend_errors() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    for platform, outcome, first_token in [
        ("telegram", "ok", 0.4),
        ("telegram", "ok", 0.6),
        ("slack", "LLMUnavailable", None),
        ("telegram", "StoreUnavailable", None),
    ]:
        metrics.reply_started(platform)
        metrics.reply_finished(platform, outcome, first_token, total_s=2.0)
    metrics.tokens_per_second(42.0)
    metrics.reply_started("slack")
    checks = BackendChecks("redis://127.0.0.1:1", "http://127.0.0.1:1")
    server = OpsServer("127.0.0.1:0", checks, registry)
    await server.start()
    try:
        async with aiohttp.ClientSession() as session, session.get(f"{server.url}/metrics") as r:
            content_type, text = r.headers["Content-Type"], await r.text()
    finally:
        await server.stop()
        await checks.aclose()

    def value(name: str, **labels: str) -> float:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return sample.value
        raise AssertionError(f"{name}{labels} not in /metrics")

    assert content_type.startswith("text/plain; version=0.0.4")
    assert value("ollabot_messages_total", platform="telegram", outcome="ok") == 2
    assert value("ollabot_messages_total", platform="slack", outcome="LLMUnavailable") == 1
    assert value("ollabot_ollama_errors_total", kind="LLMUnavailable") == 1
    assert value("ollabot_redis_errors_total", kind="StoreUnavailable") == 1
    assert value("ollabot_first_token_seconds_count", platform="telegram") == 2
    assert value("ollabot_first_token_seconds_sum", platform="telegram") == pytest.approx(1.0)
    assert value("ollabot_reply_seconds_count", platform="telegram") == 3
    assert value("ollabot_tokens_per_second_sum") == 42.0
    assert value("ollabot_replies_in_progress", platform="slack") == 1
    assert value("ollabot_replies_in_progress", platform="telegram") == 0
