"""What the Telegram platform needs to run; the entry point builds it from its own settings."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

DEFAULT_API_BASE_URL = "https://api.telegram.org/bot"


@dataclass(frozen=True, slots=True)
class Webhook:
    """Receive by webhook: Telegram posts to ``url``; we listen on ``host:port``."""

    url: str
    host: str
    port: int
    secret: SecretStr | None = None  # checked on every request; None: a fresh random one


@dataclass(frozen=True, slots=True)
class TelegramConfig:
    """The bot token, where the Bot API is, who is an admin, and how updates arrive."""

    token: SecretStr
    api_base_url: str = DEFAULT_API_BASE_URL
    admin_ids: tuple[int, ...] = ()
    webhook: Webhook | None = None  # None: long polling
    drafts: bool = True  # private chats stream as native drafts (no Stop button on them)
    bot_rate_per_s: float = 30.0  # messages a second for the whole bot, every process together
