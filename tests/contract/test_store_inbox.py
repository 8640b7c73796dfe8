"""The inbox: retried deliveries are stored once, and nothing taken is lost by a crash."""

from __future__ import annotations

import asyncio

from core.models import Admission
from tests.contract import incoming
from tests.fixtures.store import AgePending, Reopen, Store


async def test_a_retried_delivery_is_stored_once(store: Store) -> None:
    assert await store.enqueue(incoming("7", "first delivery")) is Admission.ACCEPTED
    assert await store.enqueue(incoming("7", "retried delivery")) is Admission.DUPLICATE

    taken = await store.take("telegram", "worker-a", 10)

    assert [entry.message.text for entry in taken] == ["first delivery"]


async def test_the_same_id_on_another_platform_is_a_different_message(store: Store) -> None:
    assert await store.enqueue(incoming("7", platform="telegram")) is Admission.ACCEPTED
    assert await store.enqueue(incoming("7", platform="slack")) is Admission.ACCEPTED

    assert len(await store.take("slack", "worker-a", 10)) == 1


async def test_take_returns_the_whole_message_in_order(store: Store) -> None:
    sent = [incoming(str(n), f"message {n}") for n in range(3)]
    for message in sent:
        await store.enqueue(message)

    taken = await store.take("telegram", "worker-a", 10)

    assert [entry.message for entry in taken] == sent


async def test_take_respects_count_and_gives_each_entry_to_one_consumer(store: Store) -> None:
    for n in range(3):
        await store.enqueue(incoming(str(n)))

    first = await store.take("telegram", "worker-a", 2)
    second = await store.take("telegram", "worker-b", 2)

    assert [e.message.message_id for e in first] == ["0", "1"]
    assert [e.message.message_id for e in second] == ["2"]


async def test_a_waiting_take_receives_a_message_that_arrives_meanwhile(store: Store) -> None:
    waiting = asyncio.create_task(store.take("telegram", "worker-a", 10))
    await store.enqueue(incoming("1", "just arrived"))

    taken = await waiting

    assert [entry.message.text for entry in taken] == ["just arrived"]


async def test_take_with_nothing_new_returns_empty_after_waiting(store: Store) -> None:
    assert await store.take("telegram", "worker-a", 10) == []


async def test_acknowledged_entries_are_not_claimed_again(store: Store) -> None:
    await store.enqueue(incoming("1"))
    [entry] = await store.take("telegram", "worker-a", 10)

    await store.acknowledge(entry)
    await store.acknowledge(entry)

    assert await store.claim_abandoned("telegram", "worker-b", 0) == []
    assert await store.claim_abandoned("telegram", "worker-a", 0) == []


async def test_an_entry_left_by_a_dead_worker_is_claimed_by_another(store: Store) -> None:
    await store.enqueue(incoming("1", "are you there?"))
    await store.take("telegram", "worker-a", 10)

    claimed = await store.claim_abandoned("telegram", "worker-b", 0)

    assert [entry.message.text for entry in claimed] == ["are you there?"]
    assert await store.take("telegram", "worker-c", 10) == []


async def test_a_restarted_worker_gets_back_its_own_pending_entries(
    store: Store, reopen_store: Reopen
) -> None:
    await store.enqueue(incoming("1", "asked before the crash"))
    await store.take("telegram", "worker-a", 10)

    restarted = await reopen_store()
    claimed = await restarted.claim_abandoned("telegram", "worker-a", 60_000)

    assert [entry.message.text for entry in claimed] == ["asked before the crash"]


async def test_a_fresh_entry_is_not_claimed_by_another_worker(store: Store) -> None:
    await store.enqueue(incoming("1"))
    await store.take("telegram", "worker-a", 10)

    assert await store.claim_abandoned("telegram", "worker-b", 60_000) == []


async def test_keep_alive_stops_others_from_claiming_an_entry_in_progress(
    store: Store, age_pending: AgePending
) -> None:
    await store.enqueue(incoming("1", "still being answered"))
    await store.enqueue(incoming("2", "really abandoned"))
    entries = await store.take("telegram", "worker-a", 10)
    await age_pending("telegram", "worker-a", [e.entry_id for e in entries], 120_000)

    await store.keep_alive("telegram", "worker-a", [entries[0].entry_id])
    claimed = await store.claim_abandoned("telegram", "worker-b", 60_000)

    assert [entry.message.text for entry in claimed] == ["really abandoned"]


async def test_claiming_an_empty_inbox_returns_nothing(store: Store) -> None:
    assert await store.claim_abandoned("slack", "worker-a", 0) == []
    await store.keep_alive("slack", "worker-a", [])
