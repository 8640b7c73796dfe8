"""The operations listener: ``/healthz`` (JSON, 200 or 503) and ``/metrics`` (Prometheus)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

CheckResults = dict[str, tuple[bool, str]]
Checks = Callable[[], Awaitable[CheckResults]]


class OpsServer:
    """An aiohttp server on ``listen`` (``host:port``, port 0 picks a free one)."""

    def __init__(
        self,
        listen: str,
        checks: Checks,
        registry: CollectorRegistry,
        check_timeout_s: float = 5.0,
    ) -> None:
        self._host, self._port = parse_listen(listen)
        self._checks = checks
        self._registry = registry
        self._check_timeout_s = check_timeout_s
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The base URL it listens on (after ``start``)."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    async def start(self) -> None:
        """Bind and serve in the background."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self._port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Close the listener."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, _request: web.Request) -> web.Response:
        results = await self._run_checks()
        healthy = all(ok for ok, _ in results.values())
        body = {
            "status": "ok" if healthy else "fail",
            "checks": {name: {"ok": ok, "detail": text} for name, (ok, text) in results.items()},
        }
        return web.json_response(body, status=200 if healthy else 503)

    async def _run_checks(self) -> CheckResults:
        try:
            async with asyncio.timeout(self._check_timeout_s):
                return await self._checks()
        except TimeoutError:
            return {"checks": (False, f"no answer within {self._check_timeout_s:g} s")}
        except Exception as error:  # a broken check must turn the probe red, not crash it
            return {"checks": (False, f"{type(error).__name__}: {error}")}

    async def _metrics(self, request: web.Request) -> web.Response:
        # The format the scraper asks for (OpenMetrics or the classic text format).
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        response = web.Response(body=encode(self._registry))
        response.headers["Content-Type"] = content_type
        return response


def parse_listen(listen: str) -> tuple[str, int]:
    """Split ``host:port`` (``[::1]:9464`` for IPv6) into its parts."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected host:port, got {listen!r}")
    return host.strip("[]"), int(port)
