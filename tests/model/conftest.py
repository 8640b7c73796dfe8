"""Fixtures of the model-fit tests: the shared fake Ollama, and a variant that drops a pull."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web

from tests.fakes.ollama import FakeOllama, go_json, start_ndjson, wire_ndjson


@dataclass
class DroppingPullOllama(FakeOllama):
    """The shared fake, except that ``/api/pull`` aborts the TCP connection after a few lines."""

    drop_after: int = 3

    async def _pull(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        response = await start_ndjson(request)
        for line in wire_ndjson("pull_stream.ndjson")[: self.drop_after]:
            await response.write(go_json(line) + b"\n")
        assert request.transport is not None
        request.transport.abort()
        return response


@pytest.fixture
async def dropping_ollama() -> AsyncIterator[DroppingPullOllama]:
    fake = await DroppingPullOllama(models=[]).start()
    try:
        yield fake
    finally:
        await fake.stop()
