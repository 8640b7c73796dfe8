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
    ├── PromptTooLong           even system prompt + examples + the new turn do not fit
    ├── MessageRejected         empty, oversize or rate-limited input
    ├── InvalidCommand          unknown command or bad value
    └── NotAuthorized           an admin-only command from someone else
"""

from __future__ import annotations


class OllabotError(Exception):
    """Base of every error ollabot raises on purpose."""

    notice = "Something went wrong; please try again."

    def __init__(self, notice: str | None = None) -> None:
        if notice is not None:
            self.notice = notice
        super().__init__(self.notice)


class LLMError(OllabotError):
    """The language model could not produce a reply."""


class LLMUnavailable(LLMError):
    notice = "The model server (Ollama) is not reachable right now; please try again shortly."


class ModelNotFound(LLMError):
    notice = (
        "The model is not installed on the server; an operator needs to run `ollabot model pull`."
    )


class LLMBusy(LLMError):
    notice = "The model server is busy with other requests; please try again in a moment."


class LLMFailed(LLMError):
    notice = "The model failed while answering; please try again."


class StoreUnavailable(OllabotError):
    notice = "The conversation store (Redis) is not reachable right now; please try again shortly."


class PromptTooLong(OllabotError):
    notice = "Your message is too long for the model's context window; please shorten it."


class MessageRejected(OllabotError):
    """Input refused before it reaches the model (the notice says why)."""


class InvalidCommand(OllabotError):
    """A command that does not parse or carries a bad value (the notice says why)."""


class NotAuthorized(OllabotError):
    notice = "Sorry, only admins of this chat can change its settings."
