"""The vision and embedding models get their own, short keep-alive (so that a chat model they
evict from GPU memory comes back soon); the chat model keeps the configured one."""

from __future__ import annotations

import asyncio

from pydantic import SecretStr

from adapters.ollama_llm import OllamaLLM
from bots.app import knowledge_base, open_llm
from bots.settings import OllamaSettings, RedisSettings, Settings
from core.models import ChatMessage, ChatRequest, IncomingMessage
from tests.fakes.ollama import FakeOllama

CHAT, VISION = "llama3.1:8b", "llama3.2-vision:11b"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(100)


def settings_for(url: str, **ollama: object) -> Settings:
    return Settings(
        ollama=OllamaSettings(host=url, model=CHAT, **ollama),  # type: ignore[arg-type]
        redis=RedisSettings(url=SecretStr("memory://")),
        _env_file=None,  # type: ignore[call-arg]
    )


async def ask(llm: OllamaLLM, model: str, images: tuple[bytes, ...] = ()) -> None:
    request = ChatRequest(model, (ChatMessage("user", "what is this?", images),), {})
    async with asyncio.timeout(10):
        async for _ in llm.stream(request):
            pass


async def test_pictures_go_to_the_vision_model_with_the_companion_keep_alive(
    fake_ollama: FakeOllama,
) -> None:
    fake_ollama.vision_model(VISION)
    llm = open_llm(settings_for(fake_ollama.url), CHAT)
    try:
        await ask(llm, CHAT)
        await ask(llm, VISION, (PNG,))
    finally:
        await llm.close()

    sent = [(body["model"], body["keep_alive"]) for body in fake_ollama.chat_requests]
    assert sent == [(CHAT, "30m"), (VISION, "1m")]


async def test_a_chat_model_that_sees_keeps_the_chat_keep_alive_for_pictures(
    fake_ollama: FakeOllama,
) -> None:
    fake_ollama.vision_model("gemma3:12b")
    settings = settings_for(fake_ollama.url, vision_model="gemma3:12b", companion_keep_alive="2m")
    llm = open_llm(settings, "gemma3:12b")
    try:
        await ask(llm, "gemma3:12b", (PNG,))
    finally:
        await llm.close()

    assert fake_ollama.chat_requests[0]["keep_alive"] == "30m"


async def test_documents_are_embedded_with_the_companion_keep_alive(
    fake_ollama: FakeOllama,
) -> None:
    settings = settings_for(fake_ollama.url, companion_keep_alive="90s")
    message = IncomingMessage("telegram", "1", "tg:1", "tg:1", "7", "Ann", "kb add")
    async with knowledge_base(settings, CHAT) as knowledge:
        assert knowledge is not None
        await knowledge.add_text(message, "notes", "The release train leaves on Tuesdays.")

    assert [body["keep_alive"] for body in fake_ollama.embed_requests] == ["90s"]
