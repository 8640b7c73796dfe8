"""The inline Stop and Retry buttons: what they carry, and what a press of one means.

A button's ``callback_data`` names its command, the author of the question and the
conversation (``retry 123456789 tg:-1001987654321:77``, within Telegram's 64 bytes), so a
press can be checked without asking the store: it must come from the message's own
conversation, and from the author of the question or an admin of the chat. Stop's also names
the reply it stops (its question's ``reply_tag``: ``stop 123456789 tg:-100198:77 x2Kq_A``),
so that a press on an older reply stops no newer one.
"""

from __future__ import annotations

from dataclasses import dataclass

from telegram import InlineKeyboardMarkup

from core.i18n import N_, _
from core.models import IncomingMessage

STOP = "stop"
RETRY = "retry"
VERBS = (STOP, RETRY)
LABELS = {STOP: N_("Stop"), RETRY: N_("Retry")}
NOT_YOURS = N_("Only the person who asked, or an admin, can use these buttons.")
DATA_LIMIT = 64  # bytes of callback_data Telegram accepts

Markup = dict[str, object]


@dataclass(frozen=True, slots=True)
class Press:
    """What a button asks for: ``verb`` on behalf of ``author_id`` in ``conversation`` (for
    Stop, of the ``reply`` with that tag; empty on buttons drawn before Stop named it)."""

    verb: str
    author_id: str
    conversation: str
    reply: str = ""

    @property
    def data(self) -> str:
        return " ".join(filter(None, (self.verb, self.author_id, self.conversation, self.reply)))

    @classmethod
    def read(cls, data: str | None) -> Press | None:
        """The press a button's data describes; None for data we did not write."""
        words = (data or "").split(" ")
        if len(words) not in (3, 4) or words[0] not in VERBS or not words[1].isdigit():
            return None
        return cls(*words)


@dataclass(frozen=True, slots=True)
class Controls:
    """The buttons of one question's reply (labels in the language spoken when shown)."""

    author_id: str
    conversation: str
    reply: str  # the reply's tag, which Stop names

    def markup(self, verb: str) -> Markup:
        press = Press(verb, self.author_id, self.conversation, self.reply if verb == STOP else "")
        button = {"text": _(LABELS[verb]), "callback_data": press.data}
        return {"inline_keyboard": [[button]]}


def shows(markup: InlineKeyboardMarkup | None, verb: str) -> bool:
    """Whether a message's buttons (as Telegram gives them with a press) include ``verb``'s."""
    rows = markup.inline_keyboard if markup is not None else ()
    return any(
        str(button.callback_data or "").startswith(f"{verb} ") for row in rows for button in row
    )


def controls_for(message: IncomingMessage) -> Controls | None:
    """The buttons of an answer (to a question, or a retry); other commands' replies get none.

    The question's author owns them, also when an admin pressed Retry for them."""
    if message.is_command and message.text.split(" ", 1)[0] != RETRY:
        return None
    author = message.reply_to.get("author_id") or message.author_id
    return Controls(author, message.conversation, message.reply_tag)
