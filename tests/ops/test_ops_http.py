"""/healthz as ``ollabot run`` serves it (real Redis, fake Ollama); /metrics by outcome."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from adapters.ops_http import CheckResults, OpsServer
from adapters.prometheus_metrics import PrometheusMetrics
from bots.app import runtime
from bots.serve import health_checks
from bots.settings import Settings
from tests.fakes.ollama import FakeOllama
from tests.fixtures.redis import RedisServer

MODEL = "llama3.1:8b-instruct-q8_0"


def settings_for(redis_url: str, ollama_url: str, key_prefix: str = "ops:") -> Settings:
    return Settings(
        _env_file=None,
        redis={"url": redis_url, "prefix": key_prefix},
        ollama={"host": ollama_url, "model": MODEL, "connect_timeout_s": 1.0},
    )


@pytest.fixture
async def ops(redis_server: RedisServer, fake_ollama: FakeOllama) -> AsyncIterator[OpsServer]:
    """The ops listener with the service's own checks, wired by the composition root."""
    async with runtime(settings_for(redis_server.url, fake_ollama.url)) as rt:
        server = OpsServer("127.0.0.1:0", health_checks(rt), CollectorRegistry(), 1.0)
        await server.start()
        yield server
        await server.stop()


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
    assert "Redis" in body["checks"]["redis"]["detail"]

    redis_server.start()
    status, _, body = await get(f"{ops.url}/healthz")
    assert status == 200


async def test_healthz_is_red_when_ollama_is_down(ops: OpsServer, fake_ollama: FakeOllama) -> None:
    await fake_ollama.stop()

    status, _, body = await get(f"{ops.url}/healthz")

    assert (status, failing(body)) == (503, {"ollama"})
    assert "not reachable" in body["checks"]["ollama"]["detail"]


async def test_healthz_is_red_until_the_model_is_loaded(
    ops: OpsServer, fake_ollama: FakeOllama
) -> None:
    status, _, body = await get(f"{ops.url}/healthz")
    assert (status, failing(body)) == (503, {"model"})
    assert body["checks"]["model"]["detail"] == f"{MODEL} not loaded (loaded: none)"

    fake_ollama.load("llama3.1:8b-instruct-q4_K_M")
    status, _, body = await get(f"{ops.url}/healthz")
    assert (status, failing(body)) == (503, {"model"}), "another model does not count"

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

    async def no_checks() -> CheckResults:
        return {}

    server = OpsServer("127.0.0.1:0", no_checks, registry)
    await server.start()
    try:
        async with aiohttp.ClientSession() as session, session.get(f"{server.url}/metrics") as r:
            content_type, text = r.headers["Content-Type"], await r.text()
    finally:
        await server.stop()

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
