"""Photos: fetched through the Bot API's files, answered by a model that sees, and kept in
history only as a placeholder; every bad file gets one line and the conversation goes on."""

from __future__ import annotations

from core.chat import ChatConfig
from core.media import MB
from tests.fakes.ollama import FakeOllama
from tests.fakes.telegram_api import (
    ALICE,
    FakeTelegram,
    document,
    media_message,
    message,
    photo_sizes,
    private_chat,
    supergroup,
)
from tests.telegram.conftest import StartBot

ALICE_CHAT = private_chat(ALICE)
VISION = "llama3.2-vision:11b"
# A JPEG's markers (start, APP0/JFIF ... end of image): what ollabot and the fake Ollama check.
JFIF = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
JPEG = JFIF + bytes(200) + b"\xff\xd9"


def texts(fake: FakeTelegram) -> list[str]:
    return [m["text"] for m in fake.sent(ALICE["id"])]


def shown(fake: FakeTelegram, fragment: str) -> bool:
    return any(fragment in text for text in texts(fake))


def photo(fake: FakeTelegram, data: bytes, caption: str = "") -> dict[str, object]:
    file_id = fake.add_file(data)
    return media_message(ALICE_CHAT, ALICE, caption, photo=photo_sizes(file_id, len(data)))


async def test_a_photo_is_answered_by_the_vision_model_and_history_keeps_a_placeholder(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    fake_ollama.vision_model(VISION)
    await start_bot()
    fake_telegram.push(photo(fake_telegram, JPEG, "what breed is this dog?"))

    await fake_telegram.wait_until(lambda: shown(fake_telegram, "echo:"))
    first = fake_ollama.chat_requests[0]
    assert first["model"] == VISION  # llama3.1:8b lists no "vision" capability
    assert fake_ollama.images == [[JPEG]]  # the largest size, byte for byte
    assert first["messages"][-1]["content"] == "[image: photo.jpg] what breed is this dog?"

    fake_telegram.push(message(ALICE_CHAT, ALICE, "and what colour is it?"))
    second = await fake_ollama.wait_for_chat(2)
    assert second["model"] == "llama3.1:8b"
    assert fake_ollama.images[1] == []  # the image went with its own turn only
    user_turns = [m["content"] for m in second["messages"] if m["role"] == "user"]
    assert user_turns == ["[image: photo.jpg] what breed is this dog?", "and what colour is it?"]


async def test_retry_after_a_photo_asks_for_the_picture_again(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    fake_ollama.vision_model(VISION)
    await start_bot()
    fake_telegram.push(photo(fake_telegram, JPEG, "what breed?"))
    answer = "echo: [image: photo.jpg] what breed?"
    await fake_telegram.wait_until(lambda: texts(fake_telegram) == [answer])
    fake_telegram.push(message(ALICE_CHAT, ALICE, "/retry"))

    notice = "I no longer have that picture; please send it again to ask about it anew."
    await fake_telegram.wait_until(lambda: texts(fake_telegram) == [answer, notice])
    assert len(fake_ollama.chat_requests) == 1  # not asked blind, and the answer is kept


async def test_a_channel_model_that_sees_answers_photos_itself(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    fake_ollama.vision_model("gemma3:12b")
    await start_bot(config=ChatConfig(default_model="gemma3:12b", vision_model=""))
    fake_telegram.push(photo(fake_telegram, JPEG))

    await fake_telegram.wait_until(lambda: shown(fake_telegram, "echo: [image: photo.jpg]"))
    assert fake_ollama.chat_requests[0]["model"] == "gemma3:12b"
    assert fake_ollama.images == [[JPEG]]


async def test_a_group_photo_is_answered_when_its_caption_mentions_the_bot(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    fake_ollama.vision_model(VISION)
    group = supergroup()
    await start_bot()
    quiet = fake_telegram.add_file(JPEG)
    fake_telegram.push(media_message(group, ALICE, "", photo=photo_sizes(quiet, len(JPEG))))
    asked = fake_telegram.add_file(JPEG)
    caption = "@ollabot_bot what is on this slide?"
    fake_telegram.push(media_message(group, ALICE, caption, photo=photo_sizes(asked, len(JPEG))))

    request = await fake_ollama.wait_for_chat(1)
    assert request["messages"][-1]["content"] == (
        "Alice Moreno: [image: photo.jpg] what is on this slide?"
    )
    assert len(fake_ollama.chat_requests) == 1  # the photo without a mention was not for us


async def test_without_the_vision_model_installed_the_user_hears_how_to_get_it(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    await start_bot()
    fake_telegram.push(photo(fake_telegram, JPEG, "what is this?"))

    await fake_telegram.wait_until(lambda: shown(fake_telegram, "vision model"))
    assert texts(fake_telegram) == [
        "To look at pictures I need the vision model llama3.2-vision:11b, which is not "
        "installed; an operator can install it with `ollabot model pull llama3.2-vision:11b`."
    ]
    await _conversation_goes_on(fake_telegram, fake_ollama, requests_before=1)


async def test_with_no_vision_model_configured_photos_get_a_notice(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    await start_bot(config=ChatConfig(default_model="llama3.1:8b", vision_model=""))
    fake_telegram.push(photo(fake_telegram, JPEG, "what is this?"))

    await fake_telegram.wait_until(lambda: bool(texts(fake_telegram)))
    assert texts(fake_telegram) == [
        "I cannot look at pictures here: no vision model is configured."
    ]
    await _conversation_goes_on(fake_telegram, fake_ollama)


async def test_a_photo_over_the_size_limit_is_refused_before_downloading(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    fake_ollama.vision_model(VISION)
    await start_bot(config=ChatConfig(default_model="llama3.1:8b", max_file_bytes=MB))
    fake_telegram.push(photo(fake_telegram, JPEG + bytes(2 * MB), "look"))

    await fake_telegram.wait_until(lambda: bool(texts(fake_telegram)))
    assert texts(fake_telegram) == [
        "That file is larger than the 1 MB I can read; please send a smaller one."
    ]
    assert fake_telegram.calls_to("getFile") == []
    await _conversation_goes_on(fake_telegram, fake_ollama)


async def test_a_file_the_bot_api_will_not_hand_over_gets_one_line(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    fake_ollama.vision_model(VISION)
    fake_telegram.download_limit = 1000  # as the Bot API does above 20 MB
    await start_bot()
    fake_telegram.push(photo(fake_telegram, JPEG + bytes(2000)))
    lost = media_message(ALICE_CHAT, ALICE, "", photo=photo_sizes("AgACAgQAAxkBAAIgone", 900))
    fake_telegram.push(lost)

    await fake_telegram.wait_until(lambda: len(texts(fake_telegram)) == 2)
    assert texts(fake_telegram) == [
        "That file is larger than the 20 MB I can read; please send a smaller one.",
        "The chat platform would not hand that file over to me; please send it again.",
    ]
    assert fake_telegram.downloads == []
    await _conversation_goes_on(fake_telegram, fake_ollama)


async def test_a_damaged_picture_and_an_unsupported_type_get_one_line_each(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    fake_ollama.vision_model(VISION)
    await start_bot()
    fake_telegram.push(photo(fake_telegram, b"<html>not a picture</html>", "what is it?"))
    await fake_telegram.wait_until(lambda: len(texts(fake_telegram)) == 1)
    gif = fake_telegram.add_file(b"GIF89a" + bytes(50), "documents", "gif")
    sent = document(gif, 56, "dance.gif", "image/gif")
    fake_telegram.push(media_message(ALICE_CHAT, ALICE, "", document=sent))

    await fake_telegram.wait_until(lambda: len(texts(fake_telegram)) == 2)
    assert texts(fake_telegram) == [
        "That picture looks damaged and I could not read it; please send it again.",
        "I can read JPEG, PNG and WebP pictures, not image/gif; please send it in one of those.",
    ]
    assert fake_telegram.downloads == ["photos/file_0.jpg"]  # the GIF was not fetched
    await _conversation_goes_on(fake_telegram, fake_ollama)


async def test_a_picture_the_model_server_cannot_decode_is_said_to_look_damaged(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    fake_ollama.vision_model(VISION)
    await start_bot()
    fake_telegram.push(photo(fake_telegram, JFIF + bytes(200), "what is it?"))  # cut short

    await fake_telegram.wait_until(lambda: bool(texts(fake_telegram)))
    assert texts(fake_telegram) == [
        "That picture looks damaged and I could not read it; please send it again."
    ]
    await _conversation_goes_on(fake_telegram, fake_ollama, requests_before=1)


async def test_an_image_sent_as_a_file_is_read_like_a_photo(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    fake_ollama.vision_model(VISION)
    await start_bot()
    png = b"\x89PNG\r\n\x1a\n" + bytes(100)
    file_id = fake_telegram.add_file(png, "documents", "png")
    sent = document(file_id, len(png), "chart.png", "image/png")
    fake_telegram.push(media_message(ALICE_CHAT, ALICE, "summarise the chart", document=sent))

    answer = "echo: [image: chart.png] summarise the chart"
    await fake_telegram.wait_until(lambda: texts(fake_telegram) == [answer])
    assert fake_ollama.images == [[png]]


async def test_other_documents_are_pointed_to_the_knowledge_base(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    await start_bot()
    file_id = fake_telegram.add_file(b"%PDF-1.7", "documents", "pdf")
    sent = document(file_id, 8, "handbook.pdf", "application/pdf")
    fake_telegram.push(media_message(ALICE_CHAT, ALICE, "", document=sent))

    await fake_telegram.wait_until(lambda: bool(texts(fake_telegram)))
    assert texts(fake_telegram) == [
        "I read photos and voice notes. To add a document to the knowledge base, send it with "
        "the caption /kb add."
    ]
    assert fake_telegram.calls_to("getFile") == []
    await _conversation_goes_on(fake_telegram, fake_ollama)


async def _conversation_goes_on(
    fake_telegram: FakeTelegram, fake_ollama: FakeOllama, requests_before: int = 0
) -> None:
    """A text message after the refusal is answered, on a history without the refused turn."""
    fake_telegram.push(message(ALICE_CHAT, ALICE, "hello again"))
    await fake_telegram.wait_until(lambda: shown(fake_telegram, "echo: hello again"))
    request = fake_ollama.chat_requests[requests_before]
    assert [m["content"] for m in request["messages"] if m["role"] != "system"] == ["hello again"]
