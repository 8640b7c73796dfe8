"""The fake Ollama server is honest: the same framing, escaping and errors as the real one.

Raw HTTP checks the bytes; the official ``ollama`` client checks that its parsers accept them.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import aiohttp
import ollama
import pytest

from tests.fakes.ollama import FakeOllama, Reply, wire_json, wire_ndjson

CREATED_AT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


def chat_body(text: str, stream: bool = True, model: str = "llama3.1:8b") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}


async def post(fake: FakeOllama, path: str, body: dict[str, Any]) -> tuple[int, str, bytes]:
    """Status, content type and raw body of one request."""
    async with aiohttp.ClientSession() as http, http.post(fake.url + path, json=body) as response:
        return response.status, response.headers["Content-Type"], await response.read()


async def test_chat_stream_is_compact_ndjson_with_metrics_only_at_the_end(
    fake_ollama: FakeOllama,
) -> None:
    status, content_type, raw = await post(fake_ollama, "/api/chat", chat_body("hi there"))

    assert (status, content_type) == (200, "application/x-ndjson")
    lines = raw.decode().splitlines()
    parsed = [json.loads(line) for line in lines]
    assert all(
        line == json.dumps(p, separators=(",", ":")) for line, p in zip(lines, parsed, strict=True)
    )
    assert [p["done"] for p in parsed] == [False, False, False, True]
    assert all(CREATED_AT.match(p["created_at"]) for p in parsed)
    assert all("eval_count" not in p for p in parsed[:-1])
    reference = wire_ndjson("chat_stream.ndjson")[-1]
    assert parsed[-1].keys() == reference.keys()


async def test_angle_brackets_are_escaped_like_go_does(fake_ollama: FakeOllama) -> None:
    fake_ollama.script(Reply(text="<|eot_id|> & more", chunks=1))
    _, _, raw = await post(fake_ollama, "/api/chat", chat_body("say a special token"))

    assert b"\\u003c|eot_id|\\u003e \\u0026 more" in raw
    assert b"<" not in raw


async def test_non_stream_chat_is_one_json_object(fake_ollama: FakeOllama) -> None:
    body = chat_body("hello", stream=False)
    status, content_type, raw = await post(fake_ollama, "/api/chat", body)

    assert (status, content_type) == (200, "application/json; charset=utf-8")
    answer = json.loads(raw)
    assert answer["message"] == {"role": "assistant", "content": "echo: hello"}
    assert answer.keys() == wire_json("chat_nonstream_response.json").keys()


@pytest.mark.parametrize(
    ("reply", "status", "error"),
    [
        (Reply.not_found(), 404, "model 'llama3.1:8b' not found"),
        (Reply.runner_crash(), 500, wire_json("error_500_runner.json")["error"]),
        (Reply.busy(), 503, wire_json("error_503_busy.json")["error"]),
    ],
    ids=["404", "500", "503"],
)
async def test_http_errors_carry_the_real_sentences(
    fake_ollama: FakeOllama, reply: Reply, status: int, error: str
) -> None:
    fake_ollama.script(reply)
    answer = await post(fake_ollama, "/api/chat", chat_body("hi"))

    assert answer == (
        status,
        "application/json; charset=utf-8",
        json.dumps({"error": error}, separators=(",", ":")).encode(),
    )


async def test_a_model_that_is_not_installed_is_not_found(fake_ollama: FakeOllama) -> None:
    status, _, raw = await post(fake_ollama, "/api/chat", chat_body("hi", model="mistral"))

    assert status == 404
    assert json.loads(raw) == {"error": "model 'mistral' not found"}


async def test_root_says_ollama_is_running(fake_ollama: FakeOllama) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.head(fake_ollama.url + "/") as head:
            assert head.status == 200
        async with http.get(fake_ollama.url + "/") as get:
            assert await get.text() == "Ollama is running"


async def test_official_client_reads_tags_show_and_ps(fake_ollama: FakeOllama) -> None:
    fake_ollama.load("llama3.1:8b")
    client = ollama.AsyncClient(host=fake_ollama.url)

    tags = await client.list()
    shown = await client.show("llama3.1:8b-instruct-q8_0")
    running = await client.ps()
    with pytest.raises(ollama.ResponseError) as missing:
        await client.show("llama3.1:70b")
    await client.close()

    assert [m.model for m in tags.models] == ["llama3.1:8b-instruct-q8_0", "llama3.1:8b"]
    assert shown.modelinfo is not None and shown.modelinfo["llama.block_count"] == 32
    assert shown.details is not None and shown.details.quantization_level == "Q8_0"
    assert [(m.model, m.context_length) for m in running.models] == [("llama3.1:8b", 8192)]
    assert missing.value.status_code == 404


async def test_pull_streams_progress_and_installs_the_model(fake_ollama: FakeOllama) -> None:
    client = ollama.AsyncClient(host=fake_ollama.url)
    progress = [p async for p in await client.pull("llama3.1:8b-instruct-q4_K_M", stream=True)]
    installed = [m.model for m in (await client.list()).models]
    await client.close()

    assert [p.status for p in progress] == [p["status"] for p in wire_ndjson("pull_stream.ndjson")]
    assert progress[3].completed == 1180237824
    assert "llama3.1:8b-instruct-q4_K_M" in installed


async def test_a_scripted_pull_error_arrives_as_an_error_line(fake_ollama: FakeOllama) -> None:
    fake_ollama.script_pull(
        [{"status": "pulling manifest"}, {"error": "pull model manifest: file does not exist"}]
    )
    client = ollama.AsyncClient(host=fake_ollama.url)
    statuses: list[str | None] = []
    with pytest.raises(ollama.ResponseError) as failure:
        async for part in await client.pull("llama3.1:8b-nonexistent", stream=True):
            statuses.append(part.status)
    await client.close()

    assert statuses == ["pulling manifest"]
    assert failure.value.error == "pull model manifest: file does not exist"
    assert "llama3.1:8b-nonexistent" not in fake_ollama.models


async def test_requests_are_recorded_and_can_be_waited_for(fake_ollama: FakeOllama) -> None:
    sent = asyncio.create_task(post(fake_ollama, "/api/chat", chat_body("first")))

    body = await fake_ollama.wait_for_chat(1)
    await sent

    assert body["messages"][0]["content"] == "first"
    assert fake_ollama.requests == [("/api/chat", chat_body("first"))]
    with pytest.raises(TimeoutError):
        await fake_ollama.wait_for_chat(2, timeout=0.05)


async def test_instant_mode_sends_the_same_stream(fake_ollama: FakeOllama) -> None:
    fake_ollama.instant = True
    _, _, raw = await post(fake_ollama, "/api/chat", chat_body("quick"))

    parsed = [json.loads(line) for line in raw.decode().splitlines()]
    assert "".join(p["message"]["content"] for p in parsed) == "echo: quick"
    assert parsed[-1]["done"] is True


async def test_a_keep_alive_string_without_unit_is_refused_like_go_does(
    fake_ollama: FakeOllama,
) -> None:
    body = chat_body("hi") | {"keep_alive": "-1"}
    status, _, raw = await post(fake_ollama, "/api/chat", body)

    assert status == 400
    assert json.loads(raw) == {"error": 'time: missing unit in duration "-1"'}
