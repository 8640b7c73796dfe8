"""The ``FileSource`` of Slack: a file's ``url_private`` fetched with the bot token.

Slack answers a download without a valid token (or without the ``files:read`` scope) with its
HTML sign-in page and status 200, so an HTML answer counts as withheld. The token goes only
to Slack's file host (or the configured API host, for tests and proxies), never in a log.
The size is checked before reading (``Content-Length``) and while reading.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import aiohttp
from pydantic import SecretStr

from core.errors import FileRefused
from core.media import WITHHELD, too_big
from core.models import Attachment

log = logging.getLogger("ollabot.slack")

FILE_HOST = "files.slack.com"
CHUNK = 64 * 1024


class SlackFiles:
    """Downloads attachments by their ``url_private`` on one aiohttp session."""

    def __init__(self, token: SecretStr, api_base_url: str, timeout_s: float = 60.0) -> None:
        self._token = token
        self._hosts = frozenset({FILE_HOST, urlsplit(api_base_url).hostname or FILE_HOST})
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=5.0)
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self, attachment: Attachment, max_bytes: int) -> bytes:
        if not attachment.ref:
            log.warning("slack shared no download link for file %s", attachment.name)
            raise FileRefused(WITHHELD)
        if urlsplit(attachment.ref).hostname not in self._hosts:
            log.warning("slack file %s not at Slack's file host: not fetched", attachment.name)
            raise FileRefused(WITHHELD)
        headers = {"Authorization": f"Bearer {self._token.get_secret_value()}"}
        try:
            async with self._open().get(
                attachment.ref, headers=headers, timeout=self._timeout
            ) as response:
                _check(response, attachment, max_bytes)
                return await _read(response, max_bytes)
        except (aiohttp.ClientError, TimeoutError) as error:
            log.warning("slack file %s not fetched: %s", attachment.name, type(error).__name__)
            raise FileRefused(WITHHELD) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session


def _check(response: aiohttp.ClientResponse, attachment: Attachment, max_bytes: int) -> None:
    if response.status != 200 or response.content_type == "text/html":
        log.warning("slack withheld file %s: HTTP %s", attachment.name, response.status)
        raise FileRefused(WITHHELD)
    if (response.content_length or 0) > max_bytes:
        raise too_big(max_bytes)


async def _read(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    data = bytearray()
    async for chunk in response.content.iter_chunked(CHUNK):
        data += chunk
        if len(data) > max_bytes:
            raise too_big(max_bytes)
    return bytes(data)
