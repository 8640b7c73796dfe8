"""Photos and voice notes: what the model is given for a message's attachments.

Images are fetched through the platform's ``FileSource``, checked (size, type, that the bytes
are an image the model server decodes) and sent with the turn that asks about them; history
keeps a text placeholder instead. Voice notes and audio clips are transcribed, and the
transcript is answered as the message's text. Documents belong to the knowledge base's
commands; sent with anything else they get a notice. Every refusal is one short notice
raised before anything is stored.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from core.errors import FileRefused, TranscriptionFailed
from core.i18n import N_
from core.models import Attachment, IncomingMessage
from core.ports import FileSource, ModelInfo, Transcriber

MB = 1024 * 1024
VISION = "vision"  # the capability Ollama's /api/show lists for models that read images
DEFAULT_VISION_MODEL = "llama3.2-vision:11b"
# What Ollama decodes (Go's image/jpeg, image/png and x/image/webp).
IMAGE_TYPES = frozenset({"image/jpeg", "image/jpg", "image/png", "image/webp"})

TOO_BIG = N_("That file is larger than the {limit} MB I can read; please send a smaller one.")
WITHHELD = N_("The chat platform would not hand that file over to me; please send it again.")
NO_FILES_HERE = N_("I cannot receive files here; please type your message.")
UNSUPPORTED_IMAGE = N_(
    "I can read JPEG, PNG and WebP pictures, not {kind}; please send it in one of those."
)
DAMAGED_IMAGE = N_("That picture looks damaged and I could not read it; please send it again.")
TOO_MANY_IMAGES = N_("Please send at most {limit} pictures at a time.")
DOCUMENTS = N_(
    "I read photos and voice notes. To add a document to the knowledge base, send it with "
    "the caption {prefix}kb add."
)
NO_VISION_MODEL = N_("I cannot look at pictures here: no vision model is configured.")
NOT_A_VISION_MODEL = N_(
    "The model {model} set for pictures cannot read images; an operator needs to set "
    "OLLABOT_OLLAMA__VISION_MODEL to a vision model."
)
VISION_MODEL_MISSING = N_(
    "To look at pictures I need the vision model {model}, which is not installed; an operator "
    "can install it with `ollabot model pull {model}`."
)
NO_SPEECH_TO_TEXT = N_(
    "I cannot listen to voice notes here: no speech-to-text server is configured; please type "
    "your message."
)
PICTURE_GONE = N_("I no longer have that picture; please send it again to ask about it anew.")
HEARD_NOTHING = N_("I heard no words in that voice note; please try again or type your message.")


def too_big(max_bytes: int) -> FileRefused:
    """The refusal of a file over ``max_bytes`` (for the sources too, which learn it first)."""
    return FileRefused(TOO_BIG, limit=f"{max_bytes / MB:g}")


def image_format(data: bytes) -> str | None:
    """``jpeg``, ``png`` or ``webp`` when the bytes begin like one, else None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def placeholder(image: Attachment) -> str:
    """What history keeps in place of an image the model saw once."""
    return f"[image: {image.name}]" if image.name else "[image]"


def shows_pictures(stored: str) -> bool:
    """Whether a stored user turn was about pictures (which are not stored)."""
    return stored.startswith("[image")


@dataclass(frozen=True, slots=True)
class MediaConfig:
    max_file_bytes: int = 20 * MB
    max_images: int = 4
    vision_model: str = DEFAULT_VISION_MODEL  # "": pictures only on a channel's vision model


@dataclass(frozen=True, slots=True)
class Read:
    """A message ready to answer: its text is what the model reads (placeholders for images,
    the transcript, the caption), ``images`` go with it, ``heard`` is the transcript."""

    message: IncomingMessage
    images: tuple[bytes, ...] = ()
    heard: str = ""


class MediaReader:
    """Turns a message's attachments into text and images; ``files`` by platform name."""

    def __init__(
        self,
        config: MediaConfig,
        transcriber: Transcriber | None = None,
        models: ModelInfo | None = None,
    ) -> None:
        self._config = config
        self._transcriber = transcriber
        self._models = models
        self.files: dict[str, FileSource] = {}

    async def read(self, message: IncomingMessage) -> Read:
        """The message with its attachments read; raises the notice of the first problem."""
        if not message.attachments:
            return Read(message)
        images = [a for a in message.attachments if a.kind == "image"]
        audio = [a for a in message.attachments if a.kind == "audio"]
        if not images and not audio:
            raise FileRefused(DOCUMENTS, prefix=message.command_prefix)
        self._check_images(images)
        source = self._source(message.platform)
        heard = await self._transcribe(source, audio[0]) if audio else ""
        pictures = tuple([await self._picture(source, image) for image in images])
        parts = (*map(placeholder, images), heard, message.text.strip())
        text = " ".join(part for part in parts if part)
        return Read(replace(message, text=text), pictures, heard)

    async def model_for_images(self, model: str) -> str:
        """``model`` when it reads images, else the configured vision model."""
        if VISION in await self._capabilities(model):
            return model
        vision = self._config.vision_model
        if not vision:
            raise FileRefused(NO_VISION_MODEL)
        known = await self._capabilities(vision)
        if known and VISION not in known:
            raise FileRefused(NOT_A_VISION_MODEL, model=vision)
        return vision

    def missing(self, model: str) -> FileRefused:
        """The refusal when the model chosen for pictures turns out not to be installed."""
        return FileRefused(VISION_MODEL_MISSING, model=model)

    def _check_images(self, images: list[Attachment]) -> None:
        """What can be refused before anything is downloaded."""
        if len(images) > self._config.max_images:
            raise FileRefused(TOO_MANY_IMAGES, limit=self._config.max_images)
        for image in images:
            if image.mime and image.mime.lower() not in IMAGE_TYPES:
                raise FileRefused(UNSUPPORTED_IMAGE, kind=image.mime)

    def _source(self, platform: str) -> FileSource:
        source = self.files.get(platform)
        if source is None:
            raise FileRefused(NO_FILES_HERE)
        return source

    async def _fetch(self, source: FileSource, attachment: Attachment) -> bytes:
        limit = self._config.max_file_bytes
        if attachment.size > limit:
            raise too_big(limit)
        data = await source.fetch(attachment, limit)
        if len(data) > limit:
            raise too_big(limit)
        return data

    async def _picture(self, source: FileSource, image: Attachment) -> bytes:
        data = await self._fetch(source, image)
        if image_format(data) is None:
            raise FileRefused(DAMAGED_IMAGE)
        return data

    async def _transcribe(self, source: FileSource, audio: Attachment) -> str:
        if self._transcriber is None:
            raise TranscriptionFailed(NO_SPEECH_TO_TEXT)
        data = await self._fetch(source, audio)
        heard = await self._transcriber.transcribe(data, audio.name or "audio", audio.mime)
        heard = " ".join(heard.split())
        if not heard:
            raise TranscriptionFailed(HEARD_NOTHING)
        return heard

    async def _capabilities(self, model: str) -> frozenset[str]:
        return await self._models.capabilities(model) if self._models else frozenset()
