"""The deployment's default language: English unless OLLABOT_CHAT__LANGUAGE says Spanish; it
answers users whose language is unknown or one ollabot does not speak."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from adapters.i18n import Catalogues
from bots.app import chat_config
from bots.settings import Settings
from core.commands import help_text
from core.i18n import speaking

HELP_ES = "Escríbeme y te respondo con el modelo Llama local."
HELP_EN = "Talk to me and I answer with the local Llama model."


def first_help_line(catalogues: Catalogues, language: str) -> str:
    with speaking(catalogues(language)):
        return help_text("/").splitlines()[0]


def test_the_default_language_is_english(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLLABOT_CHAT__LANGUAGE", raising=False)
    language = Settings(_env_file=None).chat.language
    assert language == "en"
    catalogues = Catalogues(language)
    assert first_help_line(catalogues, "") == HELP_EN
    assert first_help_line(catalogues, "pt-BR") == HELP_EN
    assert first_help_line(catalogues, "es-419") == HELP_ES


def test_spanish_as_default_answers_unknown_languages_in_spanish(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OLLABOT_CHAT__LANGUAGE", "es")
    settings = Settings(_env_file=None)
    assert chat_config(settings, "llama3.1:8b").language == "es"
    catalogues = Catalogues(settings.chat.language)
    assert first_help_line(catalogues, "") == HELP_ES
    assert first_help_line(catalogues, "fr") == HELP_ES
    assert first_help_line(catalogues, "en-GB") == HELP_EN


def test_an_unsupported_default_language_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OLLABOT_CHAT__LANGUAGE", "fr")
    with pytest.raises(ValidationError, match="language"):
        Settings(_env_file=None)
    with pytest.raises(ValueError, match="no catalogue"):
        Catalogues("fr")
