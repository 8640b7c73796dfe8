"""Dead letters: what cannot be read, stored or answered is set aside, and the inbox goes on."""

from __future__ import annotations

from tests.contract import incoming
from tests.fixtures.store import AgePending, Store

MAX_DELIVERIES = 5  # the stores' default


async def test_an_entry_no_worker_can_answer_is_set_aside_after_its_deliveries(
    store: Store, age_pending: AgePending
) -> None:
    await store.enqueue(incoming("1", "the poison one"))
    [entry] = await store.take("telegram", "worker-a", 1)
    owner = "worker-a"
    for n in range(2, MAX_DELIVERIES + 1):  # each worker fails and dies; another claims it
        await age_pending("telegram", owner, [entry.entry_id], 120_000)
        owner = f"worker-{n}"
        assert [e.entry_id for e in await store.claim_abandoned("telegram", owner, 60_000)] == [
            entry.entry_id
        ]

    await age_pending("telegram", owner, [entry.entry_id], 120_000)
    assert await store.claim_abandoned("telegram", "worker-last", 60_000) == []

    assert await store.dead_letter_count() == 1
    await store.enqueue(incoming("2", "the next one"))
    assert [e.message.text for e in await store.take("telegram", "worker-last", 10)] == [
        "the next one"
    ]
    assert await store.claim_abandoned("telegram", "worker-x", 0) != []  # only "the next one"


async def test_an_owner_looking_at_its_pending_entries_is_no_new_delivery(store: Store) -> None:
    await store.enqueue(incoming("1", "a long reply"))
    [entry] = await store.take("telegram", "worker-a", 1)

    for _ in range(3 * MAX_DELIVERIES):
        own = await store.claim_abandoned("telegram", "worker-a", 60_000)
        assert [e.entry_id for e in own] == [entry.entry_id]

    assert await store.dead_letter_count() == 0


async def test_what_cannot_be_stored_is_kept_as_a_dead_letter_even_with_bad_unicode(
    store: Store,
) -> None:
    await store.dead_letter("telegram", '{"text": "hi \ud800"}', "UnicodeEncodeError: '\ud800'")
    await store.dead_letter("slack", "{}", "KeyError: 'channel'")

    assert await store.dead_letter_count() == 2
