"""An httpx transport on aiohttp, for the official ollama client.

httpx's own pool (httpcore) scans every pooled connection on each request; with dozens of
replies streaming at once that bookkeeping was the largest share of ollabot's CPU per message.
The ollama client accepts any httpx transport, so requests go through aiohttp's pool instead,
and errors are raised as the httpx exceptions the client and our adapter expect.

The ollama client's methods take no per-request headers, so a caller that needs one (the
conversation's affinity, for a proxy in front of several Ollama hosts) sets it with
``extra_headers`` around the call that sends the request.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from contextvars import ContextVar

import aiohttp
import httpx

from adapters.http_session import LazySession

HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection"}
_EXTRA_HEADERS: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("extra_headers", default=())


@contextlib.contextmanager
def extra_headers(headers: Mapping[str, str]) -> Iterator[None]:
    """Add ``headers`` to the requests this task sends through the transport inside the block.

    The block must not span a ``yield`` of an async generator: the value lives in the context
    of whichever task steps the generator.
    """
    token = _EXTRA_HEADERS.set(tuple(headers.items()))
    try:
        yield
    finally:
        _EXTRA_HEADERS.reset(token)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests with one lazily created ``aiohttp.ClientSession``."""

    def __init__(self, max_connections: int = 8) -> None:
        self._max_connections = max_connections
        self._open = LazySession(self._new_session)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {})
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers.update(_EXTRA_HEADERS.get())
        try:
            response = await self._open().request(
                request.method,
                str(request.url),
                headers=headers,
                data=await request.aread(),
                timeout=aiohttp.ClientTimeout(
                    sock_connect=timeout.get("connect"), sock_read=timeout.get("read")
                ),
                allow_redirects=False,
            )
        except aiohttp.ClientConnectorError as error:
            raise httpx.ConnectError(str(error), request=request) from error
        except aiohttp.ServerDisconnectedError as error:
            # The request went out and may have run: no connect error; the caller decides
            # whether repeating it is safe.
            raise httpx.RemoteProtocolError(str(error), request=request) from error
        except aiohttp.ConnectionTimeoutError as error:
            raise httpx.ConnectTimeout(str(error), request=request) from error
        except (TimeoutError, aiohttp.SocketTimeoutError) as error:
            raise httpx.ReadTimeout(str(error), request=request) from error
        except aiohttp.ClientError as error:
            raise httpx.ReadError(str(error), request=request) from error
        return httpx.Response(
            status_code=response.status,
            headers=[(k.decode(), v.decode()) for k, v in response.raw_headers],
            stream=_Body(response, request),
            request=request,
        )

    def _new_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self._max_connections)
        return aiohttp.ClientSession(connector=connector, auto_decompress=True)

    async def aclose(self) -> None:
        await self._open.close()


class _Body(httpx.AsyncByteStream):
    """The response body, chunk by chunk as aiohttp receives it."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.SocketTimeoutError) as error:
            raise httpx.ReadTimeout(str(error), request=self._request) from error
        except aiohttp.ClientError as error:
            raise httpx.RemoteProtocolError(str(error), request=self._request) from error

    async def aclose(self) -> None:
        self._response.release()
