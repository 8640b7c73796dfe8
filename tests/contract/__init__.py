"""Contract tests: every store implementation (Redis, in-memory) behaves the same."""

from __future__ import annotations

from core.models import Admission, InboxEntry, IncomingMessage
from tests.fixtures.store import Store

LEASE_MS = 30_000


def incoming(
    message_id: str = "1",
    text: str = "hello",
    *,
    platform: str = "telegram",
    conversation: str = "tg:42",
    author_id: str = "u1",
    channel: str = "tg:42",
) -> IncomingMessage:
    """A message from Ana in chat 42, as an adapter would enqueue it."""
    return IncomingMessage(
        platform=platform,
        message_id=message_id,
        conversation=conversation,
        channel=channel,
        author_id=author_id,
        author_name="Ana",
        text=text,
        in_group=True,
        reply_to={"chat_id": "42", "message_id": message_id},
    )


async def arrive(store: Store, *messages: IncomingMessage) -> list[InboxEntry]:
    """Enqueue ``messages`` (each must be accepted) and take them, as a worker would."""
    for message in messages:
        assert await store.enqueue(message) is Admission.ACCEPTED
    return await store.take(messages[0].platform, "worker-a", len(messages))
