"""Where replies may stream as native drafts (``sendMessageDraft``): private chats only.

A draft is ephemeral: Telegram shows it for about 30 seconds, or until the bot sends a real
message in the chat, so the final text is always one ``sendMessage``, and a successor that
takes a reply over after a crash has nothing to finish but that message. Where Telegram
refuses drafts (a Bot API server that does not know the method: for the whole bot; a 400 in
one chat: for that chat), replies stream by editing one message, as in groups.
"""

from __future__ import annotations

import logging

from telegram.error import InvalidToken, TelegramError

log = logging.getLogger("ollabot.telegram.drafts")

_REMEMBERED_CHATS = 100_000


class DraftSupport:
    """Shared by every sink of one bot."""

    def __init__(self, enabled: bool = True) -> None:
        self._enabled = enabled
        self._refused_in: set[int] = set()

    def allowed(self, chat_id: int) -> bool:
        return self._enabled and chat_id not in self._refused_in

    def refused(self, chat_id: int, error: TelegramError) -> None:
        """Telegram said no: stream by edits there (everywhere for an unknown method)."""
        if isinstance(error, InvalidToken):  # 404: this Bot API server has no such method
            log.warning("the Bot API refuses sendMessageDraft (%s); streaming by edits", error)
            self._enabled = False
            return
        log.info("drafts refused in chat %s (%s); streaming by edits there", chat_id, error)
        if len(self._refused_in) >= _REMEMBERED_CHATS:
            self._refused_in.clear()
        self._refused_in.add(chat_id)
