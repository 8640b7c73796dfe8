"""The ``Transcriber`` port on a local speech-to-text server with OpenAI's transcription API.

``POST {url}/v1/audio/transcriptions`` as a multipart form with ``file`` and ``model`` (and
``response_format=json``) answers ``{"text": "..."}``; whisper.cpp's server (started with
``--inference-path /v1/audio/transcriptions --convert``) and the faster-whisper servers
speak it. Failures become ``TranscriptionFailed`` with the notice that fits:

    connection refused, timeout, 5xx    -> the server is not reachable / failed
    4xx (audio it cannot decode)        -> could not make out the voice note
"""

from __future__ import annotations

import aiohttp
import structlog

from core.errors import TranscriptionFailed
from core.i18n import N_

log = structlog.get_logger(__name__)

PATH = "/v1/audio/transcriptions"
STT_DOWN = N_("The speech-to-text server is not reachable right now; please try again shortly.")


def endpoint(url: str) -> str:
    """The transcription URL for a server's base URL (with or without ``/v1``)."""
    base = url.rstrip("/")
    if base.endswith(PATH):
        return base
    return base + PATH.removeprefix("/v1") if base.endswith("/v1") else base + PATH


class OpenAITranscriber:
    """Sends audio files to the transcription endpoint over one pooled aiohttp session."""

    def __init__(self, url: str, model: str = "whisper-1", timeout_s: float = 120.0) -> None:
        self._url = endpoint(url)
        self._model = model
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=5.0)
        self._session: aiohttp.ClientSession | None = None

    async def transcribe(self, audio: bytes, name: str, mime: str) -> str:
        form = aiohttp.FormData()
        form.add_field("file", audio, filename=name, content_type=mime or None)
        form.add_field("model", self._model)
        form.add_field("response_format", "json")
        try:
            async with self._open().post(self._url, data=form, timeout=self._timeout) as response:
                if response.status >= 500:
                    log.warning("stt_failed", status=response.status)
                    raise TranscriptionFailed(STT_DOWN)
                if response.status >= 400:
                    log.warning("stt_refused", status=response.status, body=await _short(response))
                    raise TranscriptionFailed()
                body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as error:
            log.warning("stt_unreachable", error=type(error).__name__)
            raise TranscriptionFailed(STT_DOWN) from error
        except ValueError as error:  # not JSON: not the API we expect
            log.warning("stt_answer_unreadable")
            raise TranscriptionFailed() from error
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str):
            log.warning("stt_answer_unreadable")
            raise TranscriptionFailed()
        return text

    async def reachable(self) -> bool:
        """Whether the server answers HTTP at all (any status), within a few seconds."""
        base = self._url.removesuffix(PATH) + "/"
        try:
            async with self._open().get(base, timeout=aiohttp.ClientTimeout(total=5.0)):
                return True
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session


async def _short(response: aiohttp.ClientResponse) -> str:
    return (await response.text(errors="replace"))[:200]
