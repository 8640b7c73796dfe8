"""Whose turn it is: messages of a conversation are answered in order, by one lease holder,
and an answer is stored once and found again by whoever delivers it."""

from __future__ import annotations

from core.models import InboxEntry, Outcome, StoredReply, Turn, TurnState
from tests.contract import LEASE_MS, arrive, incoming
from tests.fixtures.store import LetTimePass, Store


def exchange(question: str, answer: str) -> Outcome:
    return Outcome((Turn("user", question, 0, "Ana"), Turn("assistant", answer, 1)), 0, answer)


async def state(store: Store, entry: InboxEntry, owner: str, skip_order: bool = False) -> TurnState:
    context = await store.load_context(entry, 10, owner, LEASE_MS, skip_order)
    return context.state


async def history(store: Store, entry: InboxEntry, owner: str) -> list[str]:
    context = await store.load_context(entry, 10, owner, LEASE_MS)
    assert context.state is TurnState.READY
    return [turn.content for turn in context.history]


async def test_a_message_waits_until_the_one_before_it_is_delivered(store: Store) -> None:
    first, second = await arrive(store, incoming("1", "hi"), incoming("2", "and?"))

    assert await state(store, second, "worker-b") == TurnState.WAITING
    assert await state(store, first, "worker-a") == TurnState.READY
    await store.complete(first, exchange("hi", "Hello!"), StoredReply("Hello!"), "worker-a")
    assert await state(store, second, "worker-b") == TurnState.WAITING

    await store.acknowledge(first)

    assert await history(store, second, "worker-b") == ["hi", "Hello!"]


async def test_skip_order_answers_a_message_whose_predecessor_is_stuck(store: Store) -> None:
    _, second = await arrive(store, incoming("1"), incoming("2"))

    assert await state(store, second, "worker-b", skip_order=True) == TurnState.READY
    assert await store.complete(second, None, StoredReply("ok"), "worker-b") == StoredReply("ok")


async def test_a_lease_left_by_a_dead_worker_lapses_and_its_late_answer_is_refused(
    store: Store, let_time_pass: LetTimePass
) -> None:
    [entry] = await arrive(store, incoming("1", "hi"))
    await store.load_context(entry, 10, "worker-a", 1_000)
    assert await state(store, entry, "worker-b") == TurnState.BUSY

    await let_time_pass(2)

    assert await state(store, entry, "worker-b") == TurnState.READY
    late = await store.complete(entry, exchange("hi", "late"), StoredReply("late"), "worker-a")
    fresh = await store.complete(entry, exchange("hi", "fresh"), StoredReply("fresh"), "worker-b")
    assert late is None
    assert fresh == StoredReply("fresh")
    await store.acknowledge(entry)
    [following] = await arrive(store, incoming("2"))
    assert await history(store, following, "worker-c") == ["hi", "fresh"]


async def test_a_worker_without_the_lease_cannot_complete_and_writes_nothing(
    store: Store,
) -> None:
    [entry] = await arrive(store, incoming("1", "hi"))
    await store.load_context(entry, 10, "worker-a", LEASE_MS)

    intruder = StoredReply("intruder")
    assert await store.complete(entry, exchange("hi", "intruder"), intruder, "worker-b") is None

    context = await store.load_context(entry, 10, "worker-a", LEASE_MS)
    assert context.state is TurnState.READY
    assert context.answered is None
    assert context.history == ()
    assert await store.complete(entry, None, StoredReply("mine"), "worker-a") == StoredReply("mine")


async def test_completing_twice_returns_the_first_reply_and_appends_the_turns_once(
    store: Store,
) -> None:
    [entry] = await arrive(store, incoming("1", "hi"))
    await store.load_context(entry, 10, "worker-a", LEASE_MS)

    first = await store.complete(entry, exchange("hi", "Hello!"), StoredReply("Hello!"), "worker-a")
    again = await store.complete(
        entry, exchange("hi", "Hello again?"), StoredReply("Hello again?"), "worker-a"
    )

    assert first == again == StoredReply("Hello!")
    await store.acknowledge(entry)
    [following] = await arrive(store, incoming("2"))
    assert await history(store, following, "worker-a") == ["hi", "Hello!"]


async def test_an_answered_message_gets_its_stored_reply_and_preview_without_the_lease(
    store: Store,
) -> None:
    [entry] = await arrive(store, incoming("1", "hi"))
    await store.load_context(entry, 10, "worker-a", LEASE_MS)
    await store.save_handle(entry.message, {"message_id": "99", "delivered": "1"})
    notice = StoredReply("The model failed; please try again.", True, 1_900_000_000.5)
    await store.complete(entry, None, notice, "worker-a")

    # worker-a died before delivering: worker-b finds the reply, and the lease stays free
    found = await store.load_context(entry, 10, "worker-b", LEASE_MS)
    assert found.answered == notice
    assert found.handle == {"message_id": "99", "delivered": "1"}
    assert found.state is TurnState.READY
    assert await store.acquire_lock("tg:42", "tg:42", "worker-c", LEASE_MS)
    # nor does another holder of the lease keep it from being delivered
    assert (await store.load_context(entry, 10, "worker-b", LEASE_MS)).answered == notice


async def test_a_successor_finds_where_the_unfinished_reply_is_shown(
    store: Store, let_time_pass: LetTimePass
) -> None:
    [entry] = await arrive(store, incoming("1"))
    await store.load_context(entry, 10, "worker-a", 1_000)
    await store.save_handle(entry.message, {"message_id": "98"})
    await store.save_handle(entry.message, {"message_id": "99", "delivered": "1"})

    await let_time_pass(2)  # worker-a died in the middle of streaming
    context = await store.load_context(entry, 10, "worker-b", LEASE_MS)

    assert context.state is TurnState.READY
    assert context.answered is None
    assert context.handle == {"message_id": "99", "delivered": "1"}
