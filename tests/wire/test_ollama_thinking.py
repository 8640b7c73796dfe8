"""Thinking models: OllamaLLM asks a model to think only when ``/api/show`` says it can, and
keeps its reasoning apart from the answer; the fake refuses ``think`` like Ollama does."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import ollama
import pytest

from adapters.ollama_llm import OllamaLLM
from core.errors import LLMFailed
from core.models import StreamEvent
from tests.fakes.ollama import FakeOllama, Reply
from tests.wire.test_ollama_fake import chat_body, post
from tests.wire.test_ollama_llm import ask, collect, text_of

THINKER = "qwen3:8b"


@pytest.fixture
async def llm(fake_ollama: FakeOllama) -> AsyncIterator[OllamaLLM]:
    fake_ollama.add_thinking_model(THINKER)
    client = OllamaLLM(fake_ollama.url, backoff_s=0.01)
    yield client
    await client.close()


def reasoning_of(events: list[StreamEvent]) -> str:
    return "".join(event.thinking for event in events)


async def test_a_thinking_model_is_asked_to_think_and_its_reasoning_comes_apart(
    fake_ollama: FakeOllama, llm: OllamaLLM
) -> None:
    fake_ollama.script(Reply(text="It is 4.", thinking="Two plus two: count on.", chunks=3))
    events: list[StreamEvent] = []
    await collect(llm, ask("what is 2+2?", model=THINKER), events)

    assert (await fake_ollama.wait_for_chat(1))["think"] is True
    assert reasoning_of(events) == "Two plus two: count on."
    assert text_of(events) == "It is 4."
    first_answer = next(i for i, e in enumerate(events) if e.delta)
    assert all(e.thinking for e in events[:first_answer]), "the reasoning comes first"
    assert not any(e.thinking for e in events[first_answer:])
    assert events[-1].done


async def test_a_model_without_the_capability_is_never_sent_think(
    fake_ollama: FakeOllama, llm: OllamaLLM
) -> None:
    events: list[StreamEvent] = []
    await collect(llm, ask("hello"), events)  # the fake would answer 400 to think

    assert "think" not in await fake_ollama.wait_for_chat(1)
    assert text_of(events) == "echo: hello" and not reasoning_of(events)


async def test_when_show_fails_the_model_is_not_asked_to_think(
    fake_ollama: FakeOllama, llm: OllamaLLM
) -> None:
    fake_ollama.shows[THINKER]["error"] = "unable to load manifest"
    events: list[StreamEvent] = []
    await collect(llm, ask("hello", model=THINKER), events)

    assert "think" not in await fake_ollama.wait_for_chat(1)
    assert text_of(events) == "echo: hello"


async def test_fake_refuses_think_for_a_model_that_cannot_like_ollama(
    fake_ollama: FakeOllama,
) -> None:
    status, _, raw = await post(fake_ollama, "/api/chat", chat_body("hi") | {"think": True})

    assert status == 400
    assert json.loads(raw) == {"error": '"llama3.1:8b" does not support thinking'}
    with pytest.raises(ollama.ResponseError) as refused:
        await ollama.AsyncClient(fake_ollama.url).chat("llama3.1:8b", [], think=True)
    assert refused.value.status_code == 400


async def test_a_refused_think_is_a_failure_for_the_user(fake_ollama: FakeOllama) -> None:
    """Should a model lose the capability while its facts are cached, the 400 is a plain
    failure (not retried), never a crash."""
    fake_ollama.add_thinking_model(THINKER)
    llm = OllamaLLM(fake_ollama.url, backoff_s=0.01)
    await collect(llm, ask("hi", model=THINKER), [])
    fake_ollama.shows[THINKER]["capabilities"] = ["completion"]
    with pytest.raises(LLMFailed):
        await collect(llm, ask("hi", model=THINKER), [])
    await llm.close()
    assert len(fake_ollama.chat_requests) == 2


async def test_fake_streams_reasoning_chunks_the_official_client_reads(
    fake_ollama: FakeOllama,
) -> None:
    fake_ollama.add_thinking_model(THINKER)
    client = ollama.AsyncClient(fake_ollama.url)
    parts = await client.chat(THINKER, [{"role": "user", "content": "hi"}], think=True, stream=True)
    chunks = [part async for part in parts]

    thinking = "".join(c.message.thinking or "" for c in chunks)
    assert thinking == "Pondering: hi"
    assert "".join(c.message.content or "" for c in chunks) == "echo: hi"
    whole = await client.chat(THINKER, [{"role": "user", "content": "hi"}], think=True)
    assert (whole.message.thinking, whole.message.content) == ("Pondering: hi", "echo: hi")
    plain = await client.chat(THINKER, [{"role": "user", "content": "hi"}])
    assert not plain.message.thinking, "no think asked: no reasoning"
