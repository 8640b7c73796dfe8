"""Contract tests: every store implementation (Redis, in-memory) behaves the same."""

from __future__ import annotations

from core.models import IncomingMessage


def incoming(
    message_id: str = "1",
    text: str = "hello",
    *,
    platform: str = "telegram",
    conversation: str = "tg:42",
    author_id: str = "u1",
) -> IncomingMessage:
    """A message from Ana in chat 42, as an adapter would enqueue it."""
    return IncomingMessage(
        platform=platform,
        message_id=message_id,
        conversation=conversation,
        channel="tg:42",
        author_id=author_id,
        author_name="Ana",
        text=text,
        in_group=True,
        reply_to={"chat_id": "42", "message_id": message_id},
    )
