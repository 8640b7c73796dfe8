"""HTTP mode: an aiohttp server that checks Slack's signature before anything else."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier

log = logging.getLogger("ollabot.slack.http")


def is_signed(verifier: SignatureVerifier, body: bytes, headers: Mapping[str, str]) -> bool:
    """True when the HMAC matches and the timestamp is within Slack's 5-minute window."""
    try:
        return verifier.is_valid(
            body, headers.get("X-Slack-Request-Timestamp"), headers.get("X-Slack-Signature")
        )
    except ValueError:
        return False


class SlackHttpServer:
    """Serves Bolt's events, commands and URL verification at ``path`` on ``host:port``.

    An empty ``host`` listens on every interface; port 0 takes a free one (see ``port``).
    """

    def __init__(self, app: AsyncApp, signing_secret: str, host: str, port: int, path: str) -> None:
        self._app = app
        self._verifier = SignatureVerifier(signing_secret)
        self._host = host
        self._port = port
        self._path = path
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://{self._host or '127.0.0.1'}:{self.port}{self._path}"

    async def start(self) -> None:
        web_app = web.Application()
        web_app.router.add_post(self._path, self._handle)
        self._runner = web.AppRunner(web_app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host or None, self._port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self._port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not is_signed(self._verifier, body, request.headers):
            log.warning("refused a request with a bad or stale signature")
            return web.json_response({"error": "invalid signature"}, status=401)
        bolt_request = AsyncBoltRequest(
            body=body.decode("utf-8"),
            query=request.query_string,
            headers={k.lower(): v for k, v in request.headers.items()},
        )
        return await to_aiohttp_response(await self._app.async_dispatch(bolt_request))
