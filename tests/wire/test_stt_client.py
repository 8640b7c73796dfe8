"""The speech-to-text client against a fake server with OpenAI's transcription API."""

from __future__ import annotations

import pytest

from adapters.stt_client import OpenAITranscriber, endpoint
from core.errors import TranscriptionFailed
from tests.fakes.ollama import unused_port
from tests.fakes.stt import FakeSpeechToText
from tests.fakes.stt import fake_stt as fake_stt  # the fixture


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8178",
        "http://127.0.0.1:8178/",
        "http://127.0.0.1:8178/v1",
        "http://127.0.0.1:8178/v1/audio/transcriptions",
    ],
)
def test_the_base_url_may_be_given_with_or_without_the_path(url: str) -> None:
    assert endpoint(url) == "http://127.0.0.1:8178/v1/audio/transcriptions"


async def test_a_file_and_a_model_go_as_a_form_and_the_text_comes_back(
    fake_stt: FakeSpeechToText,
) -> None:
    client = OpenAITranscriber(fake_stt.url, model="Systran/faster-whisper-small")
    try:
        assert await client.transcribe(b"OggS...", "voice.ogg", "audio/ogg") == fake_stt.said
        assert await client.reachable()
    finally:
        await client.close()
    [got] = fake_stt.received
    assert (got.filename, got.content_type, got.model) == (
        "voice.ogg",
        "audio/ogg",
        "Systran/faster-whisper-small",
    )


async def test_refused_audio_and_a_server_that_is_down_are_told_apart(
    fake_stt: FakeSpeechToText,
) -> None:
    up = OpenAITranscriber(fake_stt.url)
    down = OpenAITranscriber(f"http://127.0.0.1:{unused_port()}")
    try:
        with pytest.raises(TranscriptionFailed, match="could not make out"):
            await up.transcribe(fake_stt.undecodable, "voice.ogg", "audio/ogg")
        with pytest.raises(TranscriptionFailed, match="not reachable"):
            await down.transcribe(b"OggS", "voice.ogg", "audio/ogg")
        assert not await down.reachable()
    finally:
        await up.close()
        await down.close()
