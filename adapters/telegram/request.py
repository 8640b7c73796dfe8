"""A lean python-telegram-bot request class on one aiohttp session.

PTB's default ``HTTPXRequest`` spends most of its CPU in httpx's connection-pool bookkeeping
(about 3/4 of ~23 ms per message measured here). One keep-alive aiohttp session sending JSON
bodies costs a fraction of that. No URL is ever logged, because URLs carry the bot token.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

# Not re-exported by telegram.request, but how PTB itself fills a RequestData.
from telegram.request._requestparameter import RequestParameter

# httpx (used by other PTB parts) logs request URLs, which contain the token, at INFO.
logging.getLogger("httpx").setLevel(logging.WARNING)

_JSON = {"Content-Type": "application/json", "User-Agent": BaseRequest.USER_AGENT}


class AiohttpRequest(BaseRequest):
    """Sends Bot API calls as JSON POSTs over one pooled aiohttp session."""

    __slots__ = ("_closed", "_connect_timeout", "_connections", "_read_timeout", "_session")

    def __init__(
        self, connections: int = 256, read_timeout: float = 10.0, connect_timeout: float = 5.0
    ) -> None:
        self._connections = connections
        self._read_timeout = read_timeout
        self._connect_timeout = connect_timeout
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    @property
    def read_timeout(self) -> float | None:
        """The default read timeout (PTB adds the long-poll timeout to it for getUpdates)."""
        return self._read_timeout

    async def initialize(self) -> None:
        """Open the session (once)."""
        self._closed = False
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._connections, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, headers=_JSON)

    async def shutdown(self) -> None:
        """Close the session and its connections."""
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: object = BaseRequest.DEFAULT_NONE,
        write_timeout: object = BaseRequest.DEFAULT_NONE,
        connect_timeout: object = BaseRequest.DEFAULT_NONE,
        pool_timeout: object = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """Send one call; translate transport failures into PTB's ``TimedOut``/``NetworkError``."""
        if request_data is not None and request_data.contains_files:
            raise NetworkError("file uploads are not supported by AiohttpRequest")
        if self._session is None:
            if self._closed:  # a late call (a reply abandoned at shutdown) opens nothing
                raise NetworkError("the Bot API session is closed")
            await self.initialize()
        assert self._session is not None
        body = json.dumps(request_data.parameters if request_data else {}).encode()
        timeout = aiohttp.ClientTimeout(
            sock_read=_seconds(read_timeout, self._read_timeout),
            sock_connect=_seconds(connect_timeout, self._connect_timeout),
        )
        try:
            data = body if method == "POST" else None  # a file download is a bare GET
            async with self._session.request(method, url, data=data, timeout=timeout) as response:
                return response.status, await response.read()
        except TimeoutError as error:
            raise TimedOut("Bot API request timed out") from error
        except aiohttp.ClientError as error:
            # The error text may contain the URL, hence the token: keep only its class name.
            raise NetworkError(f"Bot API request failed: {type(error).__name__}") from None


def _seconds(value: object, default: float) -> float | None:
    """A timeout argument as seconds: ``None`` means no limit, PTB's default marker ours."""
    if isinstance(value, int | float):
        return float(value)
    return None if value is None else default


class BotApi:
    """Bot API calls of the reply path (send, edit, typing): JSON in, JSON out, failures as
    PTB's exceptions (``RetryAfter``, ``BadRequest``…). It skips building PTB objects
    that nobody reads, which is most of PTB's CPU per reply."""

    def __init__(self, request: BaseRequest, base_url: str) -> None:
        self._request = request
        self._base_url = base_url

    async def call(self, method: str, **params: Any) -> Any:
        """Call ``method``; parameters that are None are left out."""
        data = RequestData(
            [RequestParameter.from_input(k, v) for k, v in params.items() if v is not None]
        )
        return await self._request.post(f"{self._base_url}/{method}", data)
