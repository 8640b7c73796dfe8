"""Who may change a channel's settings: configured ids plus workspace admins and owners;
and each user's language (their Slack locale), from the same ``users.info`` answer.

Only admins and owners of the workspace the bot is installed in count: in a Slack Connect
channel, an admin of the other organisation is a plain member here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import ClientError
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger("ollabot.slack.admins")


class AdminDirectory:
    """Answers "is this user an admin?" from the configuration or ``users.info``.

    Answers from Slack are cached for ``ttl_s``. A lookup happens while a slash command
    waits for its acknowledgement, so it is bounded by ``lookup_timeout_s`` and never
    retried: a slow or rate-limited Slack makes the user a non-admin (and of unknown
    language, answered in the deployment's) for this command.
    """

    def __init__(
        self,
        client: AsyncWebClient,
        configured: list[str],
        ttl_s: float = 300.0,
        lookup_timeout_s: float = 1.0,
    ) -> None:
        self._client = client
        self._configured = frozenset(configured)
        self._ttl = ttl_s
        self._timeout = lookup_timeout_s
        self._cache: dict[str, tuple[dict[str, Any], float]] = {}

    def is_configured(self, user_id: str) -> bool:
        return user_id in self._configured

    async def is_admin(self, user_id: str, team_id: str) -> bool:
        """Configured, or an admin or owner whose home workspace is ``team_id``."""
        if self.is_configured(user_id):
            return True
        user = await self._user(user_id)
        home = user.get("team_id") == team_id
        return home and any(
            bool(user.get(flag)) for flag in ("is_admin", "is_owner", "is_primary_owner")
        )

    async def locale(self, user_id: str) -> str:
        """The user's Slack locale (``es-ES``, ``en-US``); empty when Slack did not say."""
        return str((await self._user(user_id)).get("locale") or "")

    async def _user(self, user_id: str) -> dict[str, Any]:
        cached = self._cache.get(user_id)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        try:
            response = await asyncio.wait_for(
                self._client.users_info(user=user_id, include_locale=True), self._timeout
            )
        except (SlackApiError, ClientError, TimeoutError) as error:
            log.warning("users.info for %s failed, treating as non-admin: %s", user_id, error)
            return {}
        user: dict[str, Any] = response.get("user") or {}
        self._cache[user_id] = (user, time.monotonic() + self._ttl)
        return user
