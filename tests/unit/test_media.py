"""Attachments in the pure core: which model sees a picture, what an image costs the context,
what is refused before any download, and what the model and the history read."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core.errors import FileRefused, PromptTooLong, TranscriptionFailed
from core.media import MB, MediaConfig, MediaReader, image_format
from core.models import Attachment, IncomingMessage, Turn
from core.prompting import IMAGE_TOKENS, Budget, TokenEstimator, assemble

JPEG = b"\xff\xd8\xff\xe0" + bytes(64)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)
WEBP = b"RIFF\x00\x01\x00\x00WEBPVP8 " + bytes(64)


class Files:
    """An in-memory file source: bytes by reference, and what was fetched."""

    def __init__(self, **files: bytes) -> None:
        self.files = files
        self.fetched: list[str] = []

    async def fetch(self, attachment: Attachment, max_bytes: int) -> bytes:
        self.fetched.append(attachment.ref)
        return self.files[attachment.ref]


class Models:
    def __init__(self, **capabilities: list[str]) -> None:
        self.capabilities_of = capabilities

    async def capabilities(self, model: str) -> frozenset[str]:
        return frozenset(self.capabilities_of.get(model, []))


class Heard:
    def __init__(self, text: str) -> None:
        self.text = text
        self.got: list[tuple[bytes, str, str]] = []

    async def transcribe(self, audio: bytes, name: str, mime: str) -> str:
        self.got.append((audio, name, mime))
        return self.text


def incoming(text: str, *attachments: Attachment) -> IncomingMessage:
    return IncomingMessage("test", "1", "c", "c", "u", "Alice", text, attachments=attachments)


def reader(files: Files, **options: object) -> MediaReader:
    transcriber = options.pop("transcriber", None)
    models = options.pop("models", None)
    media = MediaReader(MediaConfig(**options), transcriber, models)  # type: ignore[arg-type]
    media.files["test"] = files
    return media


@pytest.mark.parametrize(("data", "kind"), [(JPEG, "jpeg"), (PNG, "png"), (WEBP, "webp")])
def test_images_are_known_by_their_first_bytes(data: bytes, kind: str) -> None:
    assert image_format(data) == kind


@pytest.mark.parametrize("data", [b"GIF89a" + bytes(9), b"<html>", b"", b"\xff\xd8"])
def test_anything_else_is_not_an_image_the_model_reads(data: bytes) -> None:
    assert image_format(data) is None


def test_an_image_costs_the_context_what_ollama_reckons() -> None:
    estimator = TokenEstimator()
    turn = Turn("user", "what is this?", 0)
    plain = assemble("s", None, [], 0, turn, Budget(8192, 500), estimator)
    seen = assemble("s", None, [], 0, turn, Budget(8192, 500), estimator, (JPEG, PNG))

    assert seen.messages[-1].images == (JPEG, PNG)
    assert estimator.messages(seen.messages) - estimator.messages(plain.messages) == (
        2 * IMAGE_TOKENS
    )


def test_history_makes_room_for_an_image_and_too_many_images_do_not_fit() -> None:
    history = [Turn("user" if i % 2 == 0 else "assistant", "word " * 60, i) for i in range(20)]
    budget = Budget(num_ctx=2048, max_tokens=256)
    new = Turn("user", "[image] and this?", 20)

    without = assemble("s", None, history, 0, new, budget, TokenEstimator())
    with_image = assemble("s", None, history, 0, new, budget, TokenEstimator(), (JPEG,))
    assert with_image.window_start > without.window_start  # older pairs dropped for the image
    assert all(not m.images for m in with_image.messages[:-1])
    with pytest.raises(PromptTooLong):
        assemble("s", None, history, 0, new, budget, TokenEstimator(), (JPEG, JPEG, JPEG))


async def test_the_model_reads_placeholders_and_the_caption_with_the_images() -> None:
    files = Files(a=JPEG, b=PNG)
    images = (Attachment("image", "a", "cat.jpg", "image/jpeg"), Attachment("image", "b"))
    read = await reader(files).read(incoming("  which is cuter? ", *images))

    assert read.message.text == "[image: cat.jpg] [image] which is cuter?"
    assert read.images == (JPEG, PNG)


async def test_refusals_that_need_no_download_come_first() -> None:
    files = Files(a=JPEG)
    gif = Attachment("image", "a", "x.gif", "image/gif")
    big = Attachment("image", "a", "x.jpg", "image/jpeg", size=3 * MB)
    many = [Attachment("image", "a")] * 5

    with pytest.raises(FileRefused, match="not image/gif"):
        await reader(files).read(incoming("", gif))
    with pytest.raises(FileRefused, match="larger than the 2 MB"):
        await reader(files, max_file_bytes=2 * MB).read(incoming("", big))
    with pytest.raises(FileRefused, match="at most 4 pictures"):
        await reader(files).read(incoming("", *many))
    assert files.fetched == []


async def test_a_file_larger_than_it_said_is_refused_after_the_download() -> None:
    files = Files(a=JPEG + bytes(2000))
    with pytest.raises(FileRefused, match="larger than the"):
        await reader(files, max_file_bytes=1000).read(incoming("", Attachment("image", "a")))


async def test_documents_alone_are_pointed_to_the_knowledge_base_command() -> None:
    pdf = Attachment("document", "a", "handbook.pdf", "application/pdf")
    slack = replace(incoming("", pdf), command_prefix="/ollabot ")
    with pytest.raises(FileRefused, match="caption /ollabot kb add"):
        await reader(Files()).read(slack)


async def test_a_voice_note_is_answered_as_its_transcript() -> None:
    heard = Heard("  what time\n is it ")
    voice = Attachment("audio", "v", "voice.ogg", "audio/ogg")
    read = await reader(Files(v=b"OggS"), transcriber=heard).read(incoming("", voice))

    assert (read.message.text, read.heard, read.images) == (
        "what time is it",
        "what time is it",
        (),
    )
    assert heard.got == [(b"OggS", "voice.ogg", "audio/ogg")]
    with pytest.raises(TranscriptionFailed, match="no speech-to-text server"):
        await reader(Files(v=b"OggS")).read(incoming("", voice))
    with pytest.raises(TranscriptionFailed, match="heard no words"):
        await reader(Files(v=b"OggS"), transcriber=Heard(" ")).read(incoming("", voice))


async def test_pictures_go_to_a_model_that_sees() -> None:
    models = Models(**{"gemma3:12b": ["completion", "vision"], "llama3.1:8b": ["completion"]})
    media = reader(Files(), models=models)
    assert await media.model_for_images("gemma3:12b") == "gemma3:12b"
    assert await media.model_for_images("llama3.1:8b") == "llama3.2-vision:11b"
    assert await reader(Files()).model_for_images("llama3.1:8b") == "llama3.2-vision:11b"

    with pytest.raises(FileRefused, match="no vision model is configured"):
        await reader(Files(), models=models, vision_model="").model_for_images("llama3.1:8b")
    blind = reader(Files(), models=models, vision_model="llama3.1:8b")
    with pytest.raises(FileRefused, match="cannot read images"):
        await blind.model_for_images("llama3.1:8b")
