"""The platforms' configuration, built from the settings; what is unusable names its setting.

Adapters know nothing of environment variables: a missing token or a malformed address is
found here, before anything starts, and raised as ``ConfigurationError`` (exit status 2, on
which the systemd unit stops restarting).
"""

from __future__ import annotations

from pydantic import SecretStr

from adapters.slack.config import HttpMode, SlackConfig, SocketMode
from adapters.telegram.config import TelegramConfig, Webhook
from bots.app import ConfigurationError
from bots.settings import SlackSettings, TelegramSettings


def telegram_config(settings: TelegramSettings) -> TelegramConfig:
    """The Telegram platform's configuration; ``OLLABOT_TELEGRAM__TOKEN`` is required."""
    token = _required(settings.token, "OLLABOT_TELEGRAM__TOKEN")
    webhook = None
    if settings.webhook_url:
        host, port = listen_address(settings.webhook_listen, "OLLABOT_TELEGRAM__WEBHOOK_LISTEN")
        webhook = Webhook(settings.webhook_url, host or "127.0.0.1", port, settings.webhook_secret)
    return TelegramConfig(
        token,
        settings.api_base_url,
        tuple(settings.admin_ids),
        webhook,
        settings.drafts,
        settings.bot_rate_per_s,
    )


def slack_config(settings: SlackSettings) -> SlackConfig:
    """The Slack platform's configuration: HTTP mode when a signing secret and a listen
    address are set, else Socket Mode, which needs the app-level token."""
    token = _required(settings.bot_token, "OLLABOT_SLACK__BOT_TOKEN")
    receive: SocketMode | HttpMode
    if settings.signing_secret is not None and settings.http_listen:
        host, port = listen_address(settings.http_listen, "OLLABOT_SLACK__HTTP_LISTEN")
        receive = HttpMode(settings.signing_secret, host, port, settings.events_path)
    elif settings.app_token is not None:
        receive = SocketMode(settings.app_token)
    else:
        raise ConfigurationError(
            "Slack needs OLLABOT_SLACK__APP_TOKEN (Socket Mode) or "
            "OLLABOT_SLACK__SIGNING_SECRET with OLLABOT_SLACK__HTTP_LISTEN (HTTP mode)"
        )
    return SlackConfig(token, receive, settings.api_base_url, tuple(settings.admin_ids))


def listen_address(value: str, setting: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` for IPv6; an empty host is every interface)."""
    host, _, port = value.rpartition(":")
    if not port.isdigit() or int(port) > 65535:
        raise ConfigurationError(f"{setting}={value}: expected host:port, e.g. 127.0.0.1:8443")
    return host.strip("[]"), int(port)


def _required(value: SecretStr | None, setting: str) -> SecretStr:
    if value is None:
        raise ConfigurationError(f"{setting} is not set")
    return value
