"""A fake speech-to-text server with OpenAI's transcription API, on loopback.

``POST /v1/audio/transcriptions`` takes a multipart form with ``file`` and ``model`` (as
whisper.cpp's server and the faster-whisper servers do) and answers ``{"text": ...}``. A form
without them is a 400 in OpenAI's error shape (``{"error": {"message", "type", ...}}``);
``undecodable`` audio (bytes a test marks) is a 400 too, as a server whose decoder fails. The
transcript is ``said`` (settable per test); each request is kept in ``received``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

PATH = "/v1/audio/transcriptions"


@dataclass
class Received:
    filename: str
    content_type: str
    model: str
    audio: bytes


@dataclass
class FakeSpeechToText:
    said: str = "what is the capital of France"
    undecodable: bytes = b"not audio"
    received: list[Received] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        self._runner: web.AppRunner | None = None

    async def start(self) -> FakeSpeechToText:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post(PATH, self._transcribe)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _transcribe(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload, model = form.get("file"), form.get("model")
        if not isinstance(upload, web.FileField) or not isinstance(model, str):
            return _error("you must provide a file and a model")
        audio = upload.file.read()
        self.received.append(Received(upload.filename, upload.content_type, model, audio))
        if audio == self.undecodable:
            return _error("Invalid file format: could not decode audio")
        return web.json_response({"text": self.said})


def _error(message: str) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None}}
    return web.json_response(body, status=400)


@pytest.fixture
async def fake_stt() -> AsyncIterator[FakeSpeechToText]:
    fake = await FakeSpeechToText().start()
    try:
        yield fake
    finally:
        await fake.stop()
