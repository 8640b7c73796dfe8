"""The ``FileSource`` of Telegram: ``getFile``, then a download from the Bot API's file URL.

The Bot API hands a bot files of up to 20 MB (larger ones: "file is too big"); the download
URL carries the token, so no URL is ever logged, and errors keep only Telegram's description.
"""

from __future__ import annotations

import logging

from telegram.error import BadRequest, TelegramError
from telegram.request import BaseRequest

from adapters.telegram.inbound import DOWNLOAD_LIMIT
from adapters.telegram.request import BotApi
from core.errors import FileRefused
from core.media import WITHHELD, too_big
from core.models import Attachment

log = logging.getLogger("ollabot.telegram")


def file_base_url(api_base_url: str) -> str:
    """Where files are downloaded from, for an API base URL (``…/bot`` -> ``…/file/bot``)."""
    base = api_base_url.rstrip("/")
    return base.removesuffix("/bot") + "/file/bot" if base.endswith("/bot") else base


class TelegramFiles:
    """Fetches attachments by ``file_id``; ``file_url`` is the bot's file URL (with token)."""

    def __init__(self, api: BotApi, request: BaseRequest, file_url: str) -> None:
        self._api = api
        self._request = request
        self._file_url = file_url

    async def fetch(self, attachment: Attachment, max_bytes: int) -> bytes:
        limit = min(max_bytes, DOWNLOAD_LIMIT)
        if attachment.size > limit:
            raise too_big(limit)
        try:
            found = await self._api.call("getFile", file_id=attachment.ref)
        except BadRequest as error:
            if "too big" in error.message.lower():
                raise too_big(limit) from None
            raise _withheld(error) from None
        except TelegramError as error:
            raise _withheld(error) from None
        size, path = int(found.get("file_size") or 0), str(found.get("file_path") or "")
        if size > limit:
            raise too_big(limit)
        if not path:
            raise _withheld(None)
        try:
            data = await self._request.retrieve(f"{self._file_url}/{path}")
        except TelegramError as error:
            raise _withheld(error) from None
        if len(data) > limit:
            raise too_big(limit)
        return data


def _withheld(error: TelegramError | None) -> FileRefused:
    log.warning("telegram file not handed over: %s", error.message if error else "no file_path")
    return FileRefused(WITHHELD)
