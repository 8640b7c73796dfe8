"""An aiohttp session opened at first use, so that building an adapter needs no event loop."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp


class LazySession:
    """``session()`` is the open session (opened again after ``close``)."""

    def __init__(self, make: Callable[[], aiohttp.ClientSession] = aiohttp.ClientSession) -> None:
        self._make = make
        self._session: aiohttp.ClientSession | None = None

    def __call__(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = self._make()
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
