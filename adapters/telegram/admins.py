"""Who is an admin of a Telegram chat: configured ids, plus the chat's administrators."""

from __future__ import annotations

import logging
import time

from telegram import Bot
from telegram.error import TelegramError

log = logging.getLogger("ollabot.telegram.admins")


class AdminDirectory:
    """Answers "may this user change this chat's settings?", asking Telegram at most once a
    ``ttl_s`` per group."""

    def __init__(self, bot: Bot, admin_ids: list[int], ttl_s: float = 60.0) -> None:
        self._bot = bot
        self._admin_ids = frozenset(admin_ids)
        self._ttl_s = ttl_s
        self._cache: dict[int, tuple[float, frozenset[int]]] = {}

    async def is_admin(self, user_id: int, chat_id: int, group: bool) -> bool:
        """Configured admins everywhere; in groups also the chat's administrators."""
        if user_id in self._admin_ids:
            return True
        return group and user_id in await self._chat_admins(chat_id)

    async def _chat_admins(self, chat_id: int) -> frozenset[int]:
        now = time.monotonic()
        cached = self._cache.get(chat_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            members = await self._bot.get_chat_administrators(chat_id)
        except TelegramError as error:
            log.warning("could not list the administrators of chat %s: %s", chat_id, error)
            return frozenset()
        admins = frozenset(member.user.id for member in members)
        self._cache[chat_id] = (now + self._ttl_s, admins)
        return admins
