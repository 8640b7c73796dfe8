"""The one error tree of ollabot.

Every error carries the one short sentence the user sees (``notice``). Adapters raise
these ``from`` the library error at the boundary; the core maps each to that notice.

    OllabotError
    ├── LLMError
    │   ├── LLMUnavailable      Ollama cannot be reached or timed out
    │   ├── ModelNotFound       the model is not pulled
    │   ├── LLMBusy             Ollama's queue is full (503)
    │   └── LLMFailed           runner crash, bad option, error mid-stream
    ├── StoreUnavailable        Redis cannot be reached or did not answer in time
    │   └── StoreFull           Redis refuses writes: out of memory (maxmemory)
    ├── PromptTooLong           even system prompt + examples + the new turn do not fit
    ├── MessageRejected         empty or oversize input
    │   ├── RateLimited         over the per-user rate or queue limit, refused on arrival
    │   └── FileRefused         an attachment too large, of a kind not read, damaged, withheld
    ├── TranscriptionFailed     no speech-to-text server, or it could not make out the audio
    ├── InvalidCommand          unknown command or bad value
    ├── NotAuthorized           an admin-only command from someone else
    └── DeliveryError           the platform did not take a reply (never shown to users)
        ├── DeliveryDeferred    not now (rate limited, network): try again later
        └── DeliveryRefused     never (bot blocked, chat gone)
"""

from __future__ import annotations

from core.i18n import N_, _


class OllabotError(Exception):
    """Base of every error ollabot raises on purpose.

    ``notice`` is in English, with ``params`` filled in (for logs); ``localized()`` is the
    same notice in the language being spoken (for the user).
    """

    notice = N_("Something went wrong; please try again.")

    def __init__(self, notice: str | None = None, **params: object) -> None:
        self._template = notice if notice is not None else type(self).notice
        self.params = params
        self.notice = self._template.format(**params) if params else self._template
        super().__init__(self.notice)

    def localized(self) -> str:
        text = _(self._template)
        return text.format(**self.params) if self.params else text


class LLMError(OllabotError):
    """The language model could not produce a reply."""


class LLMUnavailable(LLMError):
    notice = N_("The model server (Ollama) is not reachable right now; please try again shortly.")


class ModelNotFound(LLMError):
    notice = N_(
        "The model is not installed on the server; an operator needs to run `ollabot model pull`."
    )


class LLMBusy(LLMError):
    notice = N_("The model server is busy with other requests; please try again in a moment.")


class LLMFailed(LLMError):
    notice = N_("The model failed while answering; please try again.")


class StoreUnavailable(OllabotError):
    notice = N_(
        "The conversation store (Redis) is not reachable right now; please try again shortly."
    )


class StoreFull(StoreUnavailable):
    notice = N_(
        "The conversation store (Redis) is full, so I cannot take messages right now; "
        "an operator has been alerted."
    )


class PromptTooLong(OllabotError):
    notice = N_("Your message is too long for the model's context window; please shorten it.")


class MessageRejected(OllabotError):
    """Input refused before it reaches the model (the notice says why)."""


class RateLimited(MessageRejected):
    notice = N_("You are sending messages faster than I can answer them; please wait a moment.")


class InvalidCommand(OllabotError):
    """A command that does not parse or carries a bad value (the notice says why)."""


class NotAuthorized(OllabotError):
    notice = N_("Sorry, only admins of this chat can change its settings.")


class FileRefused(MessageRejected):
    """An attached file that cannot be used: too large, of a kind we do not read, damaged, or
    withheld by the platform (the notice says which)."""

    notice = N_("I could not read the file you sent; please try another one.")


class TranscriptionFailed(OllabotError):
    """A voice note that could not be turned into text (the notice says why)."""

    notice = N_("I could not make out the voice note; please try again or type your message.")


class DeliveryError(OllabotError):
    """A sink could not hand a reply to its platform."""


class DeliveryDeferred(DeliveryError):
    """The platform asked to wait (429) or could not be reached; ``after_s`` is its hint."""

    def __init__(self, reason: str, after_s: float | None = None) -> None:
        super().__init__(reason)
        self.after_s = after_s


class DeliveryRefused(DeliveryError):
    """The platform will never take this reply (the bot was blocked, the chat is gone)."""
