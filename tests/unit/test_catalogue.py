"""Every text a user can see has a reviewed Spanish translation with the same placeholders."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from adapters.i18n import LOCALES

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = re.compile(r"\{[^{}]*\}")


def texts_in_the_code() -> set[str]:
    """What ``pybabel extract`` finds: the texts inside ``_()`` and ``N_()``."""
    found = set()
    for package in ("core", "adapters", "bots"):
        for _file, _line, text, _comments, _context in extract_from_dir(ROOT / package):
            assert isinstance(text, str), "no plural forms are used"
            found.add(text)
    return found


def spanish() -> dict[str, tuple[str, bool]]:
    with (LOCALES / "es" / "LC_MESSAGES" / "ollabot.po").open("rb") as po:
        catalog = read_po(po)
    return {m.id: (m.string, m.fuzzy) for m in catalog if m.id and isinstance(m.id, str)}


def test_every_user_facing_text_has_a_spanish_translation() -> None:
    texts, translated = texts_in_the_code(), spanish()
    assert len(texts) > 80
    missing = sorted(t for t in texts if not translated.get(t, ("", False))[0])
    fuzzy = sorted(t for t in texts if translated.get(t, ("", False))[1])
    assert missing == [], "run tools/i18n, then translate these in the .po"
    assert fuzzy == [], "review these translations and drop their fuzzy flag"


def test_translations_keep_the_placeholders() -> None:
    for text, (translation, _fuzzy) in spanish().items():
        assert sorted(PLACEHOLDER.findall(translation)) == sorted(PLACEHOLDER.findall(text)), text
