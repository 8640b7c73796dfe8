"""The message catalogues (gettext ``.po`` files read with Babel) and the choice among them.

The ``.po`` files are read at start-up and compiled in memory, so a checkout or an editable
install needs no build step; ``tools/i18n`` extracts the texts and updates the files.
"""

from __future__ import annotations

import gettext
import io
from functools import cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from core.i18n import Translator

LOCALES = Path(__file__).resolve().parent / "locales"
DOMAIN = "ollabot"
SOURCE_LANGUAGE = "en"  # the texts in the code are English: no catalogue needed
LANGUAGES = ("en", "es")


@cache  # read once per process: every wiring of the core shares it
def load(language: str) -> gettext.GNUTranslations:
    """The compiled catalogue of ``language``; fuzzy (unreviewed) translations are left out."""
    path = LOCALES / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    with path.open("rb") as po:
        catalog = read_po(po, locale=language, domain=DOMAIN)
    mo = io.BytesIO()
    write_mo(mo, catalog)
    mo.seek(0)
    return gettext.GNUTranslations(mo)


def base_language(code: str) -> str:
    """``es-419``, ``es_ES``, ``ES`` → ``es``; empty when there is no code."""
    return code.replace("_", "-").split("-")[0].strip().lower()


class Catalogues:
    """The ``Translations`` of the core: a user's language code to its catalogue, or to the
    deployment's default language when ollabot does not speak it (or the platform said none)."""

    def __init__(self, default: str = SOURCE_LANGUAGE) -> None:
        if default not in LANGUAGES:
            raise ValueError(f"no catalogue for language {default!r}; have {LANGUAGES}")
        self.default = default
        self._loaded: dict[str, Translator] = {SOURCE_LANGUAGE: gettext.NullTranslations()}
        for language in LANGUAGES:
            if language != SOURCE_LANGUAGE:
                self._loaded[language] = load(language)

    def __call__(self, language: str) -> Translator:
        return self._loaded[self.pick(language)]

    def pick(self, language: str) -> str:
        base = base_language(language)
        return base if base in self._loaded else self.default
