"""Settings from the environment, `.env` and credential files (prefix OLLABOT_, nested with __)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NestedSecretsSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)


def is_off(value: str) -> bool:
    """Whether a setting that names something says there is none: ``off``, ``none`` or ""."""
    return value.strip().lower() in ("off", "none", "")


class OllamaSettings(BaseModel):
    host: str = "http://127.0.0.1:11434"
    model: str = "auto"
    num_ctx: int = Field(8192, ge=512, le=131072)
    num_parallel: int = Field(1, ge=1, le=64)
    keep_alive: str = "30m"
    # Sent with requests to the vision and embedding models: short, so that a chat model they
    # push out of GPU memory comes back soon (the service cannot see the GPU to plan it).
    companion_keep_alive: str = "1m"
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(300.0, gt=0)
    first_token_timeout_s: float = Field(20.0, gt=0)
    auto_pull: bool = False
    # Answers photos when the channel's model cannot read images ("off": nothing else does).
    vision_model: str = "llama3.2-vision:11b"
    # Embeds documents and questions for the knowledge base ("off": no documents).
    embed_model: str = "nomic-embed-text"
    affinity: Literal["conversation", "channel", "off"] = "conversation"

    @field_validator("vision_model", "embed_model")
    @classmethod
    def _model_or_off(cls, value: str) -> str:
        """``off`` or ``none`` (any case) is "" (not configured); an empty variable cannot say
        it, since the settings take an empty variable for an unset one."""
        return "" if is_off(value) else value.strip()


class RedisSettings(BaseModel):
    url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    sentinels: list[str] = Field(default_factory=list)
    service: str = "ollabot"
    prefix: str = "ollabot:"
    cluster: bool = False
    partitions: int = Field(16, ge=1, le=1024)
    socket_timeout_s: float = Field(2.0, gt=0)
    max_connections: int = Field(100, ge=1)
    conversation_ttl_days: int = Field(30, ge=1)
    max_stored_turns: int = Field(1000, ge=10)

    @field_validator("sentinels")
    @classmethod
    def _host_and_port(cls, value: list[str]) -> list[str]:
        for address in value:
            host, _, port = address.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"a Sentinel is given as host:port, not {address!r}")
        return value

    @field_validator("prefix")
    @classmethod
    def _no_hash_tag(cls, value: str) -> str:
        if "{" in value or "}" in value:
            raise ValueError("the key prefix may not contain braces (they pick a cluster slot)")
        return value

    @model_validator(mode="after")
    def _cluster_or_sentinels(self) -> RedisSettings:
        if self.cluster and self.sentinels:
            raise ValueError("Redis is either a cluster or behind Sentinels, not both")
        return self

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """The Sentinels as (host, port); empty when Redis is one server at ``url``."""
        pairs = (address.rpartition(":") for address in self.sentinels)
        return [(host.strip("[]"), int(port)) for host, _, port in pairs]


class ChatSettings(BaseModel):
    preset: Literal["precise", "creative", "balanced"] = "balanced"
    language: Literal["en", "es"] = "en"
    system_prompt: str | None = None
    fewshot_file: Path | None = None
    max_message_chars: int = Field(16000, ge=100)
    history_turns: int = Field(200, ge=2)
    rate_limit_per_minute: int = Field(20, ge=1)
    max_queued_per_user: int = Field(10, ge=1)
    delivery_deadline_s: float = Field(3600.0, gt=0)
    claim_idle_s: float = Field(60.0, gt=0)
    stop_timeout_s: float = Field(60.0, gt=0)
    max_file_mb: float = Field(20.0, gt=0, le=1024)  # photos and voice notes
    max_images: int = Field(4, ge=1, le=16)  # pictures in one message


class SttSettings(BaseModel):
    """A local speech-to-text server with OpenAI's ``/v1/audio/transcriptions`` API."""

    url: str | None = None  # e.g. http://127.0.0.1:8178; unset: voice notes get a notice
    model: str = "whisper-1"
    timeout_s: float = Field(120.0, gt=0)


class KnowledgeSettings(BaseModel):
    """Documents a channel's answers draw on (``kb add``)."""

    enabled: bool = True
    max_file_mb: float = Field(10.0, gt=0)
    passage_chars: int = Field(1000, ge=200, le=8000)
    overlap_chars: int = Field(150, ge=0, le=2000)
    passages: int = Field(4, ge=1, le=20)  # at most this many in one prompt
    share: float = Field(0.4, gt=0, le=0.9)  # of the prompt left after the new message
    index: Literal["auto", "on", "off"] = "auto"  # Redis vector index: when the server has one
    algorithm: Literal["FLAT", "HNSW"] = "FLAT"


class TelegramSettings(BaseModel):
    token: SecretStr | None = None
    api_base_url: str = "https://api.telegram.org/bot"
    admin_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    webhook_url: str | None = None
    webhook_listen: str = "127.0.0.1:8443"
    webhook_secret: SecretStr | None = None
    drafts: bool = True
    bot_rate_per_s: float = Field(30.0, gt=0)

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: Any) -> Any:
        return _comma_list(value)


class SlackSettings(BaseModel):
    bot_token: SecretStr | None = None
    app_token: SecretStr | None = None
    signing_secret: SecretStr | None = None
    api_base_url: str = "https://slack.com/api/"
    admin_ids: Annotated[list[str], NoDecode] = Field(default_factory=list)
    http_listen: str | None = None
    events_path: str = "/slack/events"

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: Any) -> Any:
        return _comma_list(value)


class LogSettings(BaseModel):
    json_logs: bool | None = Field(None, alias="json")
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    model_config = {"populate_by_name": True}


class OpsSettings(BaseModel):
    listen: str | None = "127.0.0.1:9464"

    @field_validator("listen")
    @classmethod
    def _off(cls, value: str | None) -> str | None:
        return None if value is None or is_off(value) else value


def _comma_list(value: Any) -> Any:
    if isinstance(value, int):
        return [value]
    if isinstance(value, str):
        return [part.strip() for part in value.strip("[]").split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """All of ollabot's configuration, read once in the entry point and passed down."""

    model_config = SettingsConfigDict(
        env_prefix="OLLABOT_",
        env_nested_delimiter="__",
        env_file=".env",
        env_ignore_empty=True,
        extra="ignore",
    )

    instance: str | None = None
    # Where OLLABOT_REDIS__URL=embedded keeps its data (default: the user's state directory).
    data_dir: Path | None = None
    ollama: OllamaSettings = OllamaSettings()
    redis: RedisSettings = RedisSettings()
    chat: ChatSettings = ChatSettings()
    knowledge: KnowledgeSettings = KnowledgeSettings()
    telegram: TelegramSettings = TelegramSettings()
    slack: SlackSettings = SlackSettings()
    stt: SttSettings = SttSettings()
    log: LogSettings = LogSettings()
    ops: OpsSettings = OpsSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Credential files win over the environment, as systemd's LoadCredential= intends.
        secrets = NestedSecretsSettingsSource(file_secret_settings)
        return init_settings, secrets, env_settings, dotenv_settings

    def state_dir(self) -> Path:
        """``data_dir``, else ``$XDG_STATE_HOME/ollabot`` (``~/.local/state/ollabot``)."""
        if self.data_dir is not None:
            return self.data_dir
        state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
        return Path(state) / "ollabot"


def load_settings() -> Settings:
    """Read the settings once; secrets also from systemd's ``$CREDENTIALS_DIRECTORY``."""
    return Settings(_secrets_dir=os.environ.get("CREDENTIALS_DIRECTORY") or None)
