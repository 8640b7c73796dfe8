"""OllamaLLM with the real ollama client against the fake Ollama server: replies and failures."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator

import httpx
import ollama
import pytest

from adapters.ollama_llm import CUT_OFF, DROPPED, TIMED_OUT, OllamaLLM, is_retryable, translate
from core import presets
from core.errors import LLMBusy, LLMError, LLMFailed, LLMUnavailable, ModelNotFound
from core.models import ChatMessage, ChatRequest, DoneReason, StreamEvent
from tests.fakes.ollama import FakeOllama, Reply, unused_port, wire_json


def ask(text: str, model: str = "llama3.1:8b") -> ChatRequest:
    """A request as the chat service builds it: system prompt, the user's turn, a preset."""
    messages = (ChatMessage("system", "You are ollabot."), ChatMessage("user", text))
    return ChatRequest(model, messages, presets.ollama_options(presets.PRESETS["balanced"], 8192))


async def collect(llm: OllamaLLM, request: ChatRequest, into: list[StreamEvent]) -> None:
    """Drain the stream into ``into`` (which keeps what arrived if the stream fails)."""
    async with asyncio.timeout(10):
        async for event in llm.stream(request):
            into.append(event)


def text_of(events: list[StreamEvent]) -> str:
    return "".join(event.delta for event in events)


@pytest.fixture
async def llm(fake_ollama: FakeOllama) -> AsyncIterator[OllamaLLM]:
    client = OllamaLLM(fake_ollama.url, backoff_s=0.01)
    yield client
    await client.close()


async def test_streamed_reply_arrives_in_order_and_ends_with_counts(
    fake_ollama: FakeOllama, llm: OllamaLLM
) -> None:
    events: list[StreamEvent] = []
    await collect(llm, ask("what is a KV cache?"), events)

    pieces, final = events[:-1], events[-1]
    assert [e.delta for e in pieces] == ["echo:", " what", " is", " a", " KV", " cache?"]
    assert not any(e.done for e in pieces)
    assert final.done and final.done_reason is DoneReason.STOP
    assert final.eval_count == len(pieces)
    assert final.prompt_eval_count >= len("You are ollabot.what is a KV cache?") // 4
    assert final.eval_duration_ns > 0


async def test_request_carries_options_as_a_dict_with_context_and_keep_alive(
    fake_ollama: FakeOllama,
) -> None:
    llm = OllamaLLM(fake_ollama.url, keep_alive="2h")
    await collect(llm, ask("hello"), [])
    await llm.close()

    body = await fake_ollama.wait_for_chat(1)
    assert body["model"] == "llama3.1:8b"
    assert body["stream"] is True
    assert body["keep_alive"] == "2h"
    assert body["options"] == {
        "temperature": 0.7,
        "top_p": 0.9,
        "top_k": 40,
        "num_predict": 500,
        "repeat_penalty": 1.1,
        "num_ctx": 8192,
    }
    assert body["messages"] == [
        {"role": "system", "content": "You are ollabot."},
        {"role": "user", "content": "hello"},
    ]


@pytest.mark.parametrize(("configured", "sent"), [("-1", -1), ("600", 600), ("1h", "1h")])
async def test_keep_alive_from_the_environment_travels_as_ollama_reads_it(
    fake_ollama: FakeOllama, configured: str, sent: str | int
) -> None:
    llm = OllamaLLM(fake_ollama.url, keep_alive=configured)
    await collect(llm, ask("hello"), [])
    await llm.close()

    assert (await fake_ollama.wait_for_chat(1))["keep_alive"] == sent


async def test_special_tokens_in_the_reply_arrive_as_literal_text(
    fake_ollama: FakeOllama, llm: OllamaLLM
) -> None:
    reply = "Llama 3 ends a turn with <|eot_id|> & starts one with <|start_header_id|>."
    fake_ollama.script(Reply(text=reply, chunks=4))
    events: list[StreamEvent] = []
    await collect(llm, ask("how does llama 3 mark turns?"), events)

    assert text_of(events) == reply


async def test_length_limit_is_reported_as_done_reason_length(
    fake_ollama: FakeOllama, llm: OllamaLLM
) -> None:
    fake_ollama.script(Reply(text="Once upon a time there", done_reason="length"))
    events: list[StreamEvent] = []
    await collect(llm, ask("tell me a long story"), events)

    assert events[-1].done_reason is DoneReason.LENGTH


async def test_error_mid_stream_fails_after_delivering_the_text_before_it(
    fake_ollama: FakeOllama, llm: OllamaLLM
) -> None:
    midway = "an error was encountered while running the model: unexpected EOF"
    fake_ollama.script(Reply(text="A KV cache", chunks=2, error_midway=midway))
    events: list[StreamEvent] = []
    with pytest.raises(LLMFailed) as failure:
        await collect(llm, ask("what is a KV cache?"), events)

    assert text_of(events) == "A KV cache"
    assert "middle of the reply" in failure.value.notice
    assert len(fake_ollama.chat_requests) == 1, "text was streamed: never retried"


@pytest.mark.parametrize("abort", [False, True], ids=["stream-ended", "connection-dropped"])
async def test_stream_without_done_chunk_is_a_cut_off_failure(
    fake_ollama: FakeOllama, llm: OllamaLLM, abort: bool
) -> None:
    fake_ollama.script(Reply(text="The answer is", done=False, abort=abort))
    events: list[StreamEvent] = []
    with pytest.raises(LLMFailed) as failure:
        await collect(llm, ask("what is the answer?"), events)

    assert text_of(events) == "The answer is"
    assert failure.value.notice == CUT_OFF
    assert len(fake_ollama.chat_requests) == 1


async def test_connection_dropped_before_any_text_is_retried_and_answered(
    fake_ollama: FakeOllama, llm: OllamaLLM
) -> None:
    fake_ollama.script(Reply(hang_up=True))
    events: list[StreamEvent] = []
    await collect(llm, ask("are you there?"), events)

    assert text_of(events) == "echo: are you there?"
    assert len(fake_ollama.chat_requests) == 2


async def test_a_proxy_without_an_answering_host_is_retried_and_answered(
    fake_ollama: FakeOllama, llm: OllamaLLM
) -> None:
    fake_ollama.script(Reply(status=502, error="<html><h1>502 Bad Gateway</h1></html>"))
    events: list[StreamEvent] = []
    await collect(llm, ask("anyone?"), events)

    assert text_of(events) == "echo: anyone?"
    assert len(fake_ollama.chat_requests) == 2


async def test_connection_that_keeps_dropping_before_any_text_is_unavailable(
    fake_ollama: FakeOllama, llm: OllamaLLM
) -> None:
    fake_ollama.script(*[Reply(hang_up=True)] * 3)
    with pytest.raises(LLMUnavailable) as failure:
        await collect(llm, ask("are you there?"), [])

    assert failure.value.notice == DROPPED
    assert len(fake_ollama.chat_requests) == 3, "one try and two retries"


async def test_every_request_names_its_conversation_for_a_proxy(
    fake_ollama: FakeOllama, llm: OllamaLLM
) -> None:
    request = ask("hello")
    await collect(llm, dataclasses.replace(request, affinity="9f86d081884c7d65"), [])
    await collect(llm, request, [])

    assert fake_ollama.affinities == ["9f86d081884c7d65", None], "no conversation, no header"


async def test_unknown_model_says_how_to_pull_it(fake_ollama: FakeOllama, llm: OllamaLLM) -> None:
    with pytest.raises(ModelNotFound) as failure:
        await collect(llm, ask("hi", model="llama3.1:70b"), [])

    assert "llama3.1:70b" in failure.value.notice
    assert "`ollabot model pull llama3.1:70b`" in failure.value.notice
    assert len(fake_ollama.chat_requests) == 1


async def test_runner_crash_is_a_failure_and_not_retried(
    fake_ollama: FakeOllama, llm: OllamaLLM
) -> None:
    fake_ollama.script(Reply.runner_crash())
    with pytest.raises(LLMFailed):
        await collect(llm, ask("hi"), [])

    assert len(fake_ollama.chat_requests) == 1


async def test_busy_server_is_retried_and_the_second_attempt_answers(
    fake_ollama: FakeOllama, llm: OllamaLLM
) -> None:
    fake_ollama.script(Reply.busy())
    events: list[StreamEvent] = []
    await collect(llm, ask("still there?"), events)

    assert text_of(events) == "echo: still there?"
    assert len(fake_ollama.chat_requests) == 2


async def test_busy_server_that_stays_busy_gives_up_after_the_retries(
    fake_ollama: FakeOllama, llm: OllamaLLM
) -> None:
    fake_ollama.script(Reply.busy(), Reply.busy(), Reply.busy(), Reply.busy())
    with pytest.raises(LLMBusy):
        await collect(llm, ask("still there?"), [])

    assert len(fake_ollama.chat_requests) == 3, "one try and two retries"


async def test_connection_refused_is_unavailable_within_the_timeout() -> None:
    llm = OllamaLLM(f"http://127.0.0.1:{unused_port()}", connect_timeout_s=1.0, backoff_s=0.01)
    started = time.monotonic()
    with pytest.raises(LLMUnavailable) as failure:
        await collect(llm, ask("hello?"), [])
    await llm.close()

    assert time.monotonic() - started < 3.0
    assert "not reachable" in failure.value.notice


async def test_slow_first_byte_is_waited_for(fake_ollama: FakeOllama, llm: OllamaLLM) -> None:
    cold_load = asyncio.Event()
    fake_ollama.script(Reply(first_byte_gate=cold_load))
    events: list[StreamEvent] = []
    reply = asyncio.create_task(collect(llm, ask("wake up"), events))

    await fake_ollama.wait_for_chat(1)
    assert not reply.done()
    cold_load.set()
    await reply

    assert text_of(events) == "echo: wake up"


async def test_read_timeout_shorter_than_the_first_byte_is_unavailable(
    fake_ollama: FakeOllama,
) -> None:
    never = asyncio.Event()
    fake_ollama.script(Reply(first_byte_gate=never))
    llm = OllamaLLM(fake_ollama.url, read_timeout_s=0.3, backoff_s=0.01)
    with pytest.raises(LLMUnavailable) as failure:
        await collect(llm, ask("hello?"), [])
    await llm.close()

    assert failure.value.notice == TIMED_OUT
    assert len(fake_ollama.chat_requests) == 1, "a slow model is not asked again"


async def test_closing_the_stream_early_closes_the_connection(
    fake_ollama: FakeOllama, llm: OllamaLLM
) -> None:
    still_generating = asyncio.Event()
    fake_ollama.script(Reply(text="one two three four", hold_gate=still_generating))
    stream = llm.stream(ask("count"))

    first = await anext(stream)
    await stream.aclose()

    assert first.delta == "one"
    async with asyncio.timeout(5):
        await fake_ollama.disconnected.wait()
    assert not still_generating.is_set()


async def test_doctor_questions_version_installed_and_loaded_models(
    fake_ollama: FakeOllama, llm: OllamaLLM
) -> None:
    fake_ollama.load("llama3.1:8b-instruct-q8_0", context_length=8192)

    assert await llm.version() == wire_json("version_response.json")["version"]
    assert await llm.installed_models() == ["llama3.1:8b-instruct-q8_0", "llama3.1:8b"]
    [loaded] = await llm.loaded_models()
    assert loaded["model"] == "llama3.1:8b-instruct-q8_0"
    assert loaded["context_length"] == 8192
    assert loaded["size_vram"] == loaded["size"]


async def test_doctor_questions_raise_unavailable_when_ollama_is_down() -> None:
    llm = OllamaLLM(f"http://127.0.0.1:{unused_port()}", connect_timeout_s=1.0)
    with pytest.raises(LLMUnavailable):
        await llm.version()
    with pytest.raises(LLMUnavailable):
        await llm.installed_models()
    await llm.close()


def mapped(error: Exception) -> LLMError:
    """The core error the adapter raises for a library error (chained as at the boundary)."""
    try:
        raise translate(error, "llama3.1:8b") from error
    except LLMError as core_error:
        return core_error


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (ConnectionError("Failed to connect to Ollama."), True),
        (httpx.ConnectError("connection refused"), True),
        (httpx.ConnectTimeout("timed out"), True),
        (ollama.ResponseError("server busy", 503), True),
        (ollama.ResponseError("<h1>502 Bad Gateway</h1>", 502), True),
        (httpx.RemoteProtocolError("Server disconnected"), True),
        (ollama.ResponseError("<h1>504 Gateway Time-out</h1>", 504), False),
        (httpx.ReadTimeout("timed out"), False),
        (ollama.ResponseError("llama runner process has terminated", 500), False),
        (ollama.ResponseError("unexpected EOF"), False),
    ],
    ids=[
        "refused",
        "httpx-refused",
        "connect-timeout",
        "503",
        "502",
        "dropped",
        "504",
        "read-timeout",
        "500",
        "midway",
    ],
)
def test_only_failures_before_the_first_byte_are_retried(error: Exception, retried: bool) -> None:
    assert is_retryable(mapped(error)) is retried


async def test_cancelling_a_reply_in_progress_closes_the_connection(
    fake_ollama: FakeOllama, llm: OllamaLLM
) -> None:
    still_generating, first_text = asyncio.Event(), asyncio.Event()
    fake_ollama.script(Reply(text="one two three four", hold_gate=still_generating))

    async def reply() -> None:
        async for _ in llm.stream(ask("count")):
            first_text.set()

    worker = asyncio.create_task(reply())
    await first_text.wait()
    worker.cancel()
    with pytest.raises(asyncio.CancelledError):
        await worker

    async with asyncio.timeout(5):
        await fake_ollama.disconnected.wait()
