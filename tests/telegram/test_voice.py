"""Voice notes: transcribed by the speech-to-text server, the transcript shown and answered."""

from __future__ import annotations

from tests.fakes.ollama import FakeOllama, unused_port
from tests.fakes.stt import FakeSpeechToText
from tests.fakes.stt import fake_stt as fake_stt  # the fixture
from tests.fakes.telegram_api import (
    ALICE,
    FakeTelegram,
    media_message,
    message,
    private_chat,
    voice_note,
)
from tests.telegram.conftest import StartBot

ALICE_CHAT = private_chat(ALICE)
OGG = b"OggS\x00\x02" + bytes(300)  # an Ogg page header, as Telegram's voice notes start


def texts(fake: FakeTelegram) -> list[str]:
    return [m["text"] for m in fake.sent(ALICE["id"])]


def voice(fake: FakeTelegram, data: bytes = OGG) -> dict[str, object]:
    file_id = fake.add_file(data, "voice", "oga")
    return media_message(ALICE_CHAT, ALICE, voice=voice_note(file_id, len(data)))


async def test_a_voice_note_is_transcribed_shown_and_answered(
    start_bot: StartBot,
    fake_telegram: FakeTelegram,
    fake_ollama: FakeOllama,
    fake_stt: FakeSpeechToText,
) -> None:
    await start_bot(stt_url=fake_stt.url)
    fake_telegram.push(voice(fake_telegram))

    heard = "🎤 what is the capital of France"
    answer = f"{heard}\n\necho: what is the capital of France"
    await fake_telegram.wait_until(lambda: texts(fake_telegram) == [answer])
    [received] = fake_stt.received
    assert (received.audio, received.filename, received.content_type) == (
        OGG,
        "voice.ogg",
        "audio/ogg",
    )
    assert received.model == "whisper-1"
    request = fake_ollama.chat_requests[0]
    assert request["messages"][-1]["content"] == "what is the capital of France"
    quote = fake_telegram.sent(ALICE["id"])[0]["entities"][0]
    assert quote["type"] == "blockquote" and quote["offset"] == 0


async def test_without_a_speech_to_text_server_voice_notes_get_a_notice(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    await start_bot()
    fake_telegram.push(voice(fake_telegram))

    await fake_telegram.wait_until(lambda: bool(texts(fake_telegram)))
    assert texts(fake_telegram) == [
        "I cannot listen to voice notes here: no speech-to-text server is configured; please "
        "type your message."
    ]
    assert fake_telegram.calls_to("getFile") == []
    fake_telegram.push(message(ALICE_CHAT, ALICE, "hello"))
    await fake_telegram.wait_until(lambda: texts(fake_telegram)[-1:] == ["echo: hello"])


async def test_audio_the_server_cannot_decode_and_silence_get_one_line_each(
    start_bot: StartBot,
    fake_telegram: FakeTelegram,
    fake_ollama: FakeOllama,
    fake_stt: FakeSpeechToText,
) -> None:
    await start_bot(stt_url=fake_stt.url)
    fake_telegram.push(voice(fake_telegram, fake_stt.undecodable))
    await fake_telegram.wait_until(lambda: bool(texts(fake_telegram)))
    fake_stt.said = "   "
    fake_telegram.push(voice(fake_telegram))
    await fake_telegram.wait_until(lambda: len(texts(fake_telegram)) == 2)

    assert texts(fake_telegram) == [
        "I could not make out the voice note; please try again or type your message.",
        "I heard no words in that voice note; please try again or type your message.",
    ]
    assert fake_ollama.chat_requests == []


async def test_a_speech_to_text_server_that_is_down_is_said_so(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    await start_bot(stt_url=f"http://127.0.0.1:{unused_port()}")
    fake_telegram.push(voice(fake_telegram))

    await fake_telegram.wait_until(lambda: bool(texts(fake_telegram)))
    assert texts(fake_telegram) == [
        "The speech-to-text server is not reachable right now; please try again shortly."
    ]
    fake_telegram.push(message(ALICE_CHAT, ALICE, "hello"))
    await fake_telegram.wait_until(lambda: texts(fake_telegram)[-1:] == ["echo: hello"])
    assert [m["content"] for m in fake_ollama.chat_requests[0]["messages"][1:]] == ["hello"]
