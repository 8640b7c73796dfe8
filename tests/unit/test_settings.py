"""Settings: every name is documented in .env.example and parses from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from adapters.redis_keys import RedisKeys
from adapters.redis_knowledge import RedisKnowledge
from bots.app import ConfigurationError, open_knowledge_store
from bots.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def setting_names() -> set[str]:
    names = set()
    for section, field in Settings.model_fields.items():
        model = field.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            names.add(f"OLLABOT_{section}".upper())  # a top-level setting
            continue
        for name, sub in model.model_fields.items():
            names.add(f"OLLABOT_{section}__{sub.alias or name}".upper())
    return names


def test_env_example_documents_every_setting_and_nothing_else() -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    documented = {line.split("=", 1)[0] for line in lines if line.startswith("OLLABOT_")}
    assert documented == setting_names()


def test_env_example_parses_as_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    settings = Settings(_env_file=ROOT / ".env.example")
    assert settings == Settings(_env_file=None)
    assert settings.telegram.token is None and settings.ops.listen == "127.0.0.1:9464"


def test_lists_and_secrets_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLABOT_TELEGRAM__ADMIN_IDS", "123456789, 987654321")
    monkeypatch.setenv("OLLABOT_SLACK__BOT_TOKEN", "xoxb-test")
    monkeypatch.setenv("OLLABOT_OPS__LISTEN", "off")
    settings = Settings(_env_file=None)
    assert settings.telegram.admin_ids == [123456789, 987654321]
    assert "xoxb-test" not in repr(settings) and settings.ops.listen is None


def test_every_secret_setting_is_handed_to_the_log_redactor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bots.cli import secrets_of

    secret_names = [
        f"OLLABOT_{section}__{name}".upper()
        for section, field in Settings.model_fields.items()
        if isinstance(model := field.annotation, type) and issubclass(model, BaseModel)
        for name, sub in model.model_fields.items()
        if "SecretStr" in str(sub.annotation)
    ]
    for n, name in enumerate(secret_names):
        monkeypatch.setenv(name, f"s{n}")

    assert len(secret_names) >= 6
    assert sorted(secrets_of(Settings(_env_file=None))) == sorted(
        f"s{n}" for n in range(len(secret_names))
    )


def test_sentinels_come_as_a_json_list_of_host_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLABOT_REDIS__SENTINELS", '["10.0.0.1:26379", "[::1]:26380"]')
    settings = Settings(_env_file=None)
    assert settings.redis.sentinel_addresses() == [("10.0.0.1", 26379), ("::1", 26380)]
    assert settings.redis.service == "ollabot"

    monkeypatch.setenv("OLLABOT_REDIS__SENTINELS", '["10.0.0.1"]')
    with pytest.raises(ValidationError, match=r"host:port, not '10\.0\.0\.1'"):
        Settings(_env_file=None)


@pytest.mark.parametrize("off", ["off", "none", "OFF", " Off "])
def test_the_vision_and_embedding_models_turn_off_alike(
    monkeypatch: pytest.MonkeyPatch, off: str
) -> None:
    monkeypatch.setenv("OLLABOT_OLLAMA__VISION_MODEL", off)
    monkeypatch.setenv("OLLABOT_OLLAMA__EMBED_MODEL", off)
    settings = Settings(_env_file=None)
    assert (settings.ollama.vision_model, settings.ollama.embed_model) == ("", "")


def test_an_empty_model_variable_keeps_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLABOT_OLLAMA__VISION_MODEL", "")
    monkeypatch.setenv("OLLABOT_OLLAMA__EMBED_MODEL", "")
    settings = Settings(_env_file=None)
    assert settings.ollama.vision_model == "llama3.2-vision:11b"
    assert settings.ollama.embed_model == "nomic-embed-text"


def test_redis_is_a_cluster_or_behind_sentinels_and_its_prefix_has_no_hash_tag(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OLLABOT_REDIS__CLUSTER", "true")
    assert Settings(_env_file=None).redis.cluster

    monkeypatch.setenv("OLLABOT_REDIS__SENTINELS", '["10.0.0.1:26379"]')
    with pytest.raises(ValidationError, match="either a cluster or behind Sentinels"):
        Settings(_env_file=None)

    monkeypatch.delenv("OLLABOT_REDIS__SENTINELS")
    monkeypatch.setenv("OLLABOT_REDIS__PREFIX", "bot{1}:")
    with pytest.raises(ValidationError, match="may not contain braces"):
        Settings(_env_file=None)


async def test_the_knowledge_base_opens_on_a_cluster_in_the_stores_partitions_with_numpy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OLLABOT_REDIS__CLUSTER", "true")
    monkeypatch.setenv("OLLABOT_REDIS__PARTITIONS", "64")
    store = open_knowledge_store(Settings(_env_file=None))
    try:
        assert isinstance(store, RedisKnowledge)
        tag = RedisKeys("", 64).tagged(RedisKeys("", 64).partition("tg:42"))
        assert store.keys.documents("tg:42") == f"ollabot:kb:docs:{tag}tg:42"
        assert not await store.uses_index()  # asked of no server: a cluster's index sees one
    finally:
        await store.close()

    monkeypatch.setenv("OLLABOT_KNOWLEDGE__INDEX", "on")
    with pytest.raises(ConfigurationError, match="OLLABOT_KNOWLEDGE__INDEX=on"):
        open_knowledge_store(Settings(_env_file=None))
