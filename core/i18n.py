"""The language user-facing text is written in, chosen per message.

Core code writes its texts in English inside ``_()`` (translated now, into the language of the
message being handled) or ``N_()`` (only marked, for a text kept as a constant and passed to
``_()`` where it is shown). Which language is "now" is set with ``speaking``, around the handling
of one message; the catalogues themselves are loaded by an adapter, which hands the core a
``Translations``: the translator for a language code such as ``es`` or ``en-US``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Protocol


class Translator(Protocol):
    """What the core needs of a gettext catalogue (``gettext.GNUTranslations`` is one)."""

    def gettext(self, message: str, /) -> str: ...


class English:
    """The texts as written: the language of the source code."""

    def gettext(self, message: str, /) -> str:
        return message


Translations = Callable[[str], Translator]
ENGLISH = English()

_active: ContextVar[Translator] = ContextVar("ollabot_language", default=ENGLISH)


def only_english(language: str) -> Translator:
    """The ``Translations`` used where no catalogue was given (tests, tools)."""
    return ENGLISH


def _(message: str) -> str:
    """``message`` in the language being spoken now."""
    return _active.get().gettext(message)


def N_(message: str) -> str:
    """Mark ``message`` for the catalogue without translating it yet."""
    return message


@contextmanager
def speaking(translator: Translator) -> Iterator[None]:
    """Texts passed to ``_()`` inside this block (and tasks started in it) use ``translator``."""
    token = _active.set(translator)
    try:
        yield
    finally:
        _active.reset(token)
