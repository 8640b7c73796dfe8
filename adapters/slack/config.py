"""What the Slack platform needs to run; the entry point builds it from its own settings."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr

DEFAULT_API_BASE_URL = "https://slack.com/api/"


@dataclass(frozen=True, slots=True)
class SocketMode:
    """Receive over Slack's WebSocket, opened with the app-level token (``xapp-``)."""

    app_token: SecretStr


@dataclass(frozen=True, slots=True)
class HttpMode:
    """Receive Slack's signed HTTP requests at ``path`` on ``host:port`` (port 0: any free)."""

    signing_secret: SecretStr
    host: str
    port: int
    path: str = "/slack/events"


@dataclass(frozen=True, slots=True)
class SlackConfig:
    """The bot token, where the Web API is, who is an admin, and how events arrive."""

    bot_token: SecretStr
    receive: SocketMode | HttpMode
    api_base_url: str = DEFAULT_API_BASE_URL
    admin_ids: tuple[str, ...] = ()
