"""Three real llama.cpp hosts (SmolLM2) behind the sidecar: the prompt tokens they compute.

Each host keeps the KV cache of its last request, as an Ollama runner with one slot does, and
computes only what follows the longest common prefix. Three conversations, one per host, take
turns in a shuffled order: with the affinity header each turn finds its own conversation in
its host's cache; round-robin sends most turns to a host that last served another one.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.ollama_llm import OllamaLLM
from core.models import ChatMessage, ChatRequest
from tests.fakes.llama_server import MODEL_NAME, Exchange, LlamaOllamaServer, SmolLM2
from tests.fixtures.haproxy import HAProxy, Host
from tests.haproxy.conftest import MakeFarm, affinity, reply, turn

pytestmark = pytest.mark.model

TURNS = 6
TOPICS = ("the sea", "mountains", "bread")
SYSTEM = "You are a helpful assistant. Answer in one short sentence."
OPTIONS: dict[str, float | int] = {"temperature": 0.0, "num_predict": 16, "num_ctx": 2048}


@pytest.fixture(scope="module")
def models() -> list[SmolLM2]:
    """Three copies of the model, each with its own KV cache (one per host)."""
    return [SmolLM2(n_threads=1, n_threads_batch=2) for _ in range(3)]


@pytest.fixture
async def hosts(models: list[SmolLM2]) -> AsyncIterator[list[LlamaOllamaServer]]:
    servers = [await LlamaOllamaServer(model).start() for model in models]
    yield servers
    for server in servers:
        await server.stop()


async def one_per_host(make_farm: MakeFarm) -> list[str]:
    """Conversation keys that the sidecar sends to three different hosts.

    The ring is built from the server ids alone, so fake hosts with the same ids tell.
    """
    farm = await make_farm()
    llm = farm.client(await farm.proxy())
    chosen: dict[int, str] = {}
    for n in range(30):
        marks = farm.counts()
        await reply(llm, turn(f"tg:{n}", 0))
        [host] = [i for i, (a, b) in enumerate(zip(marks, farm.counts(), strict=True)) if a != b]
        chosen.setdefault(host, f"tg:{n}")
        if len(chosen) == 3:
            return list(chosen.values())
    raise AssertionError(f"30 conversations landed on hosts {sorted(chosen)} only")


async def evaluated(
    servers: list[LlamaOllamaServer], workdir: Path, keys: list[str], balance: str | None
) -> tuple[int, int]:
    """Prompt tokens computed and prompt tokens sent, over every turn after the first."""
    hosts = [Host(f"gpu{i}", int(s.url.rsplit(":", 1)[1]), i) for i, s in enumerate(servers, 1)]
    proxy = HAProxy(workdir, hosts, balance)
    await proxy.start(up={h.name for h in hosts})
    llm = OllamaLLM(proxy.url, read_timeout_s=60.0, retries=0)
    histories = {key: [ChatMessage("system", SYSTEM)] for key in keys}
    shuffled, computed, sent = random.Random(5), 0, 0
    try:
        for n in range(TURNS):
            for key in shuffled.sample(keys, len(keys)):
                text = f"Tell me fact {n + 1} about {TOPICS[keys.index(key)]}."
                exchange = await say(llm, servers, key, histories[key], text)
                computed += exchange.evaluated if n else 0
                sent += exchange.prompt_eval_count if n else 0
    finally:
        await llm.close()
        await proxy.stop()
    return computed, sent


async def say(
    llm: OllamaLLM,
    servers: list[LlamaOllamaServer],
    key: str,
    history: list[ChatMessage],
    text: str,
) -> Exchange:
    """One turn of conversation ``key``; what the host that answered it did."""
    history.append(ChatMessage("user", text))
    before = [len(server.exchanges) for server in servers]
    request = ChatRequest(MODEL_NAME, tuple(history), OPTIONS, affinity(key))
    history.append(ChatMessage("assistant", await reply(llm, request)))
    [exchange] = [e for s, b in zip(servers, before, strict=True) for e in s.exchanges[b:]]
    return exchange


async def test_affinity_halves_the_prompt_tokens_the_hosts_compute(
    make_farm: MakeFarm, hosts: list[LlamaOllamaServer], tmp_path: Path
) -> None:
    keys = await one_per_host(make_farm)
    (tmp_path / "hashed").mkdir()
    (tmp_path / "rr").mkdir()
    hashed, sent = await evaluated(hosts, tmp_path / "hashed", keys, None)
    round_robin, _ = await evaluated(hosts, tmp_path / "rr", keys, "roundrobin")
    print(
        f"\nprompt tokens computed over turns 2-{TURNS} of 3 conversations on 3 SmolLM2 "
        f"hosts ({sent} sent): affinity {hashed}, round-robin {round_robin}, "
        f"ratio {hashed / round_robin:.2f}"
    )
    assert hashed <= 0.5 * round_robin
