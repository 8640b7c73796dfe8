"""Telegram media messages read into attachments: which photo size, captions as text."""

from __future__ import annotations

from typing import Any

from telegram import Bot, Update

from adapters.telegram.inbound import DOWNLOAD_LIMIT, BotIdentity, translate
from core.models import Attachment
from tests.fakes.telegram_api import (
    ALICE,
    TOKEN,
    document,
    media_message,
    photo_sizes,
    private_chat,
    supergroup,
    voice_note,
)

ME = BotIdentity(7012345678, "ollabot_bot")


def read(update: dict[str, Any]) -> Any:
    return translate(Update.de_json({"update_id": 1, **update}, Bot(TOKEN)), ME)


def test_the_largest_photo_size_the_bot_api_hands_over_is_taken() -> None:
    sizes = photo_sizes("AgACphoto", 400_000)
    sizes.append(
        {**sizes[-1], "file_id": "AgAChuge", "width": 4000, "file_size": DOWNLOAD_LIMIT + 1}
    )
    incoming = read(media_message(private_chat(ALICE), ALICE, "look", photo=sizes))

    assert incoming.text == "look"
    assert incoming.attachments == (
        Attachment("image", "AgACphoto", "photo.jpg", "image/jpeg", 400_000),
    )


def test_a_voice_note_and_a_document_become_audio_and_document() -> None:
    chat = private_chat(ALICE)
    voice = read(media_message(chat, ALICE, voice=voice_note("AwACvoice", 5000)))
    pdf = read(
        media_message(chat, ALICE, document=document("BQACdoc", 9, "a.pdf", "application/pdf"))
    )

    assert voice.text == "" and voice.attachments == (
        Attachment("audio", "AwACvoice", "voice.ogg", "audio/ogg", 5000),
    )
    assert pdf.attachments == (Attachment("document", "BQACdoc", "a.pdf", "application/pdf", 9),)


def test_a_caption_can_be_a_command_that_keeps_its_file() -> None:
    sent = document("BQACdoc", 9, "handbook.pdf", "application/pdf")
    incoming = read(media_message(private_chat(ALICE), ALICE, "/kb add", document=sent))

    assert (incoming.is_command, incoming.text) == (True, "kb add")
    assert [a.name for a in incoming.attachments] == ["handbook.pdf"]


def test_in_groups_a_media_message_needs_a_mention_in_its_caption() -> None:
    group, photo = supergroup(), photo_sizes("AgACphoto", 1000)
    assert read(media_message(group, ALICE, "nice view", photo=photo)) is None
    asked = read(media_message(group, ALICE, "@ollabot_bot where is this?", photo=photo))
    assert asked.text == "where is this?" and len(asked.attachments) == 1


def test_a_gif_is_not_taken_for_a_document() -> None:
    gif = document("CgACgif", 9000, "dance.mp4", "video/mp4")
    animation = {**gif, "width": 320, "height": 240, "duration": 2}
    incoming = read(media_message(private_chat(ALICE), ALICE, document=gif, animation=animation))
    assert (incoming.text, incoming.attachments) == ("", ())
