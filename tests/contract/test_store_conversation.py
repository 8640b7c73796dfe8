"""Conversations: the tail of history, the window, forgetting, and what a finished reply
leaves behind until its delivery is confirmed."""

from __future__ import annotations

from core.models import (
    ChannelSettings,
    ConversationContext,
    InboxEntry,
    IncomingMessage,
    Outcome,
    StoredReply,
    Turn,
    TurnState,
)
from tests.contract import LEASE_MS, arrive, incoming
from tests.fixtures.store import Store

OWNER = "worker-a"


async def answer(
    store: Store, message: IncomingMessage, reply: str, turn_seq: int = 0, window_start: int = 0
) -> InboxEntry:
    """Take ``message`` from the inbox, answer it with ``reply`` and confirm the delivery, as
    the chat service and the outbox do."""
    [entry] = await arrive(store, message)
    assert (await store.load_context(entry, 10, OWNER, LEASE_MS)).state is TurnState.READY
    turns = (Turn("user", message.text, turn_seq, "Ana"), Turn("assistant", reply, turn_seq + 1))
    outcome = Outcome(turns, window_start, reply)
    assert await store.complete(entry, outcome, StoredReply(reply), OWNER) == StoredReply(reply)
    await store.acknowledge(entry)
    return entry


async def context_for(
    store: Store, message: IncomingMessage, max_turns: int = 10
) -> ConversationContext:
    """What a worker loads for a newly arrived ``message``."""
    [entry] = await arrive(store, message)
    context = await store.load_context(entry, max_turns, OWNER, LEASE_MS)
    assert context.state is TurnState.READY
    return context


async def test_a_new_conversation_has_default_settings_and_no_history(store: Store) -> None:
    context = await context_for(store, incoming("1"))

    assert context.settings == ChannelSettings()
    assert context.history == ()
    assert context.window_start == 0
    assert context.answered is None
    assert context.handle == {}


async def test_completed_turns_come_back_in_order_with_their_authors(store: Store) -> None:
    await answer(store, incoming("1", "hi"), "Hello Ana!", turn_seq=0)
    await answer(store, incoming("2", "how are you?"), "Fine, thanks.", turn_seq=2)

    context = await context_for(store, incoming("3"))

    assert context.history == (
        Turn("user", "hi", 0, "Ana"),
        Turn("assistant", "Hello Ana!", 1),
        Turn("user", "how are you?", 2, "Ana"),
        Turn("assistant", "Fine, thanks.", 3),
    )
    assert context.window_start == 0


async def test_only_the_window_is_read_once_the_start_has_moved(store: Store) -> None:
    await answer(store, incoming("1", "hi"), "Hello Ana!", turn_seq=0)
    await answer(store, incoming("2", "how are you?"), "Fine, thanks.", turn_seq=2, window_start=2)

    context = await context_for(store, incoming("3"))

    assert context.history == (
        Turn("user", "how are you?", 2, "Ana"),
        Turn("assistant", "Fine, thanks.", 3),
    )
    assert context.window_start == 2


async def test_only_the_newest_turns_are_loaded_from_a_long_conversation(store: Store) -> None:
    [entry] = await arrive(store, incoming("1"))
    await store.load_context(entry, 10, OWNER, LEASE_MS)
    turns = tuple(
        Turn("user" if seq % 2 == 0 else "assistant", f"turn {seq}", seq) for seq in range(2000)
    )
    await store.complete(entry, Outcome(turns, 0, "turn 1999"), StoredReply("turn 1999"), OWNER)
    await store.acknowledge(entry)

    [following] = await arrive(store, incoming("next"))
    context = await store.load_context(following, 10, OWNER, LEASE_MS)
    everything = await store.load_context(following, 5000, OWNER, LEASE_MS)

    assert [turn.seq for turn in context.history] == list(range(1990, 2000))
    assert context.history[-1].content == "turn 1999"
    assert len(everything.history) == 1000  # the stored length is capped (max_stored_turns)


async def test_complete_releases_the_lease_but_keeps_the_entry_until_delivery_is_confirmed(
    store: Store,
) -> None:
    [entry] = await arrive(store, incoming("1", "are you there?"))
    await store.load_context(entry, 10, OWNER, LEASE_MS)
    await store.complete(entry, None, StoredReply("yes"), OWNER)

    assert await store.acquire_lock("tg:42", "tg:42", "worker-b", LEASE_MS)
    claimed = await store.claim_abandoned("telegram", "worker-b", 0)
    assert [e.message.text for e in claimed] == ["are you there?"]

    await store.acknowledge(entry)
    assert await store.claim_abandoned("telegram", "worker-b", 0) == []


async def test_reset_forgets_the_conversation_but_not_others(store: Store) -> None:
    await answer(store, incoming("1", "remember me"), "sure", window_start=0)
    await answer(store, incoming("2", "other chat", conversation="tg:7"), "ok")

    await store.clear_conversation("tg:42", "tg:42")
    await store.clear_conversation("tg:42", "tg:42")

    assert (await context_for(store, incoming("3"))).history == ()
    other = await context_for(store, incoming("4", conversation="tg:7"))
    assert [turn.content for turn in other.history] == ["other chat", "ok"]


async def test_a_stored_reply_keeps_its_reasoning_for_the_delivery_and_not_the_history(
    store: Store,
) -> None:
    message = incoming("1", "2+2?")
    [entry] = await arrive(store, message)
    await store.load_context(entry, 10, OWNER, LEASE_MS)
    turns = (Turn("user", "2+2?", 0), Turn("assistant", "4", 1))
    reply = StoredReply("4", deliver_by=9e9, reasoning="two and two")
    await store.complete(entry, Outcome(turns, 0, "4"), reply, OWNER)

    again = await store.load_context(entry, 10, "worker-b", LEASE_MS)  # a successor's view
    await store.acknowledge(entry)

    assert again.answered == reply
    history = (await context_for(store, incoming("2"))).history
    assert [turn.content for turn in history] == ["2+2?", "4"]


async def test_a_stop_naming_a_reply_stops_only_that_reply_while_a_bare_one_stops_any(
    store: Store,
) -> None:
    first, second = incoming("1", "say one thing"), incoming("2", "say another")
    await answer(store, first, "one thing")
    [entry] = await arrive(store, second)
    await store.load_context(entry, 10, OWNER, LEASE_MS)
    lease = ("tg:42", "tg:42", OWNER, LEASE_MS)

    assert not await store.request_stop("tg:42", "tg:42", first.reply_tag), "that one ended"
    assert not await store.keep_lease(*lease)
    assert await store.request_stop("tg:42", "tg:42", second.reply_tag)
    assert await store.keep_lease(*lease)
    assert not await store.keep_lease(*lease), "a stop is seen once"
    assert await store.request_stop("tg:42", "tg:42")
    assert await store.keep_lease(*lease)


async def test_a_stop_asked_of_a_reply_that_ended_meanwhile_does_not_stop_the_next(
    store: Store,
) -> None:
    first, second = incoming("1", "say one thing"), incoming("2", "say another")
    [entry] = await arrive(store, first)
    await store.load_context(entry, 10, OWNER, LEASE_MS)
    assert await store.request_stop("tg:42", "tg:42", first.reply_tag)
    await store.complete(entry, None, StoredReply("one thing"), OWNER)
    await store.acknowledge(entry)

    [entry] = await arrive(store, second)
    await store.load_context(entry, 10, OWNER, LEASE_MS)
    assert not await store.keep_lease("tg:42", "tg:42", OWNER, LEASE_MS)
