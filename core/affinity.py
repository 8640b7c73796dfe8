"""Which Ollama host should answer: a short, stable digest of the conversation.

Every model request carries it (as the ``X-Ollabot-Affinity`` header), so a proxy that hashes
on it sends every turn of a conversation to the host that already holds the conversation's
prompt in its cache, instead of evaluating the whole history again on another host. A digest
rather than the key itself: the proxy and its logs see no platform ids.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum

from core.models import IncomingMessage


class Affinity(StrEnum):
    """What keeps to one host: each conversation, each channel (its threads share the channel's
    system prompt and examples), or nothing."""

    CONVERSATION = "conversation"
    CHANNEL = "channel"
    OFF = "off"


def affinity_of(message: IncomingMessage, mode: Affinity) -> str:
    """16 hex digits naming the message's conversation (or channel); empty when ``OFF``."""
    if mode is Affinity.OFF:
        return ""
    key = message.conversation if mode is Affinity.CONVERSATION else message.channel
    return hashlib.blake2b(key.encode(), digest_size=8).hexdigest()
