"""Conversations: the tail of history, answers remembered once, rate counts, forgetting."""

from __future__ import annotations

from core.models import ChannelSettings, InboxEntry, IncomingMessage, Outcome, Turn
from tests.contract import incoming
from tests.fixtures.store import Store


async def answer(
    store: Store, message: IncomingMessage, reply: str, seq: int = 0, window_start: int = 0
) -> InboxEntry:
    """Take ``message`` from the inbox and complete it with ``reply``, as the chat service does."""
    await store.enqueue(message)
    [entry] = await store.take(message.platform, "worker-a", 1)
    assert await store.acquire_lock(message.conversation, "worker-a", 30_000)
    turns = (Turn("user", message.text, seq, "Ana"), Turn("assistant", reply, seq + 1))
    await store.complete(entry, Outcome(turns, window_start, reply), "worker-a")
    return entry


async def test_a_new_conversation_has_default_settings_and_no_history(store: Store) -> None:
    context = await store.load_context(incoming("1"), 10, 60)

    assert context.settings == ChannelSettings()
    assert context.history == ()
    assert context.window_start == 0
    assert context.answered is None


async def test_completed_turns_come_back_in_order_with_their_authors(store: Store) -> None:
    await answer(store, incoming("1", "hi"), "Hello Ana!", seq=0)
    await answer(store, incoming("2", "how are you?"), "Fine, thanks.", seq=2)

    context = await store.load_context(incoming("3"), 10, 60)

    assert context.history == (
        Turn("user", "hi", 0, "Ana"),
        Turn("assistant", "Hello Ana!", 1),
        Turn("user", "how are you?", 2, "Ana"),
        Turn("assistant", "Fine, thanks.", 3),
    )
    assert context.window_start == 0


async def test_only_the_window_is_read_once_the_start_has_moved(store: Store) -> None:
    await answer(store, incoming("1", "hi"), "Hello Ana!", seq=0)
    await answer(store, incoming("2", "how are you?"), "Fine, thanks.", seq=2, window_start=2)

    context = await store.load_context(incoming("3"), 10, 60)

    assert context.history == (
        Turn("user", "how are you?", 2, "Ana"),
        Turn("assistant", "Fine, thanks.", 3),
    )
    assert context.window_start == 2


async def test_only_the_newest_turns_are_loaded_from_a_long_conversation(store: Store) -> None:
    await store.enqueue(incoming("1"))
    [entry] = await store.take("telegram", "worker-a", 1)
    turns = tuple(
        Turn("user" if seq % 2 == 0 else "assistant", f"turn {seq}", seq) for seq in range(2000)
    )
    await store.complete(entry, Outcome(turns, 0, "turn 1999"), "worker-a")

    context = await store.load_context(incoming("next"), 10, 60)

    assert [turn.seq for turn in context.history] == list(range(1990, 2000))
    assert context.history[-1].content == "turn 1999"
    everything = await store.load_context(incoming("all"), 5000, 60)
    assert len(everything.history) == 1000  # the stored length is capped (max_stored_turns)


async def test_a_retried_message_gets_its_first_answer_back(store: Store) -> None:
    await answer(store, incoming("5", "what is 2+2?"), "4")

    context = await store.load_context(incoming("5", "what is 2+2?"), 10, 60)

    assert context.answered == "4"


async def test_completing_the_same_message_twice_appends_its_turns_once(store: Store) -> None:
    entry = await answer(store, incoming("5", "hi"), "Hello!")
    turns = (Turn("user", "hi", 0), Turn("assistant", "Hello again?", 1))

    await store.complete(entry, Outcome(turns, 0, "Hello again?"), "worker-a")

    context = await store.load_context(incoming("6"), 10, 60)
    assert [turn.content for turn in context.history] == ["hi", "Hello!"]
    assert (await store.load_context(incoming("5"), 10, 60)).answered == "Hello!"


async def test_complete_acknowledges_the_entry_and_releases_the_lock(store: Store) -> None:
    await answer(store, incoming("1"), "done")

    assert await store.claim_abandoned("telegram", "worker-b", 0) == []
    assert await store.acquire_lock("tg:42", "worker-b", 30_000)


async def test_the_rate_counter_counts_each_authors_messages_in_the_window(
    store: Store,
) -> None:
    counts = [(await store.load_context(incoming(str(n)), 10, 60)).recent_messages for n in "123"]
    other = await store.load_context(incoming("4", author_id="u2"), 10, 60)
    again = await store.load_context(incoming("3"), 10, 60)

    assert counts == [1, 2, 3]
    assert other.recent_messages == 1
    assert again.recent_messages == 3  # a message handled twice is counted once


async def test_reset_forgets_the_conversation_but_not_others(store: Store) -> None:
    await answer(store, incoming("1", "remember me"), "sure", window_start=0)
    await answer(store, incoming("2", "other chat", conversation="tg:7"), "ok")

    await store.clear_conversation("tg:42")
    await store.clear_conversation("tg:42")

    assert (await store.load_context(incoming("3"), 10, 60)).history == ()
    other = await store.load_context(incoming("4", conversation="tg:7"), 10, 60)
    assert [turn.content for turn in other.history] == ["other chat", "ok"]
