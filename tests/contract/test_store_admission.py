"""Admission on arrival: per-author rate and backlog limits told once per window, and each
accepted message's place in its conversation."""

from __future__ import annotations

from collections.abc import Awaitable

import pytest

from core.models import Admission
from tests.contract import arrive, incoming
from tests.fixtures.store import LetTimePass, Reopen, Store

ACCEPTED, DUPLICATE = Admission.ACCEPTED, Admission.DUPLICATE
LIMITED, QUIETLY = Admission.LIMITED, Admission.LIMITED_QUIETLY


async def admissions(store: Store, *message_ids: str, author_id: str = "u1") -> list[Admission]:
    return [await store.enqueue(incoming(n, author_id=author_id)) for n in message_ids]


@pytest.mark.parametrize("store_limits", [{"rate_per_minute": 3}])
async def test_an_author_over_the_rate_is_told_once_then_refused_quietly(store: Store) -> None:
    assert await admissions(store, "1", "2", "3", "4", "5", "6") == [
        *[ACCEPTED] * 3,
        LIMITED,
        QUIETLY,
        QUIETLY,
    ]
    assert await admissions(store, "1", "4") == [DUPLICATE, DUPLICATE]
    assert await admissions(store, "7", author_id="u2") == [ACCEPTED]

    taken = await store.take("telegram", "worker-a", 10)
    assert [entry.message.message_id for entry in taken] == ["1", "2", "3", "7"]


@pytest.mark.parametrize("store_limits", [{"rate_per_minute": 2}])
async def test_the_rate_and_its_notice_are_the_authors_whatever_the_channel(store: Store) -> None:
    def in_chat(n: int) -> Awaitable[Admission]:
        chat = f"tg:{n}"  # chats whose data lies in different partitions
        return store.enqueue(incoming(str(n), conversation=chat, channel=chat))

    assert [await in_chat(1), await in_chat(1)] == [ACCEPTED, DUPLICATE]
    assert [await in_chat(n) for n in range(2, 12)] == [ACCEPTED, LIMITED, *[QUIETLY] * 8]
    assert await in_chat(2) is DUPLICATE, "a duplicate is no refusal"

    taken = await store.take("telegram", "worker-a", 10)
    while len(taken) < 2:  # one read per partition, where the store has several
        taken += await store.take("telegram", "worker-a", 10)
    assert sorted(entry.message.message_id for entry in taken) == ["1", "2"]


@pytest.mark.parametrize("store_limits", [{"max_backlog": 1}])
async def test_an_authors_backlog_is_counted_per_chat(store: Store) -> None:
    def in_chat(n: str, chat: str) -> Awaitable[Admission]:
        return store.enqueue(incoming(n, conversation=chat, channel=chat))

    assert await in_chat("1", "tg:42") is ACCEPTED
    assert await in_chat("2", "tg:42") is LIMITED
    assert await in_chat("3", "tg:7") is ACCEPTED, "another chat's queue has room"


@pytest.mark.parametrize("store_limits", [{"rate_per_minute": 3, "notice_window_s": 60}])
async def test_the_rate_allows_more_as_time_passes_and_a_new_window_tells_again(
    store: Store, let_time_pass: LetTimePass
) -> None:
    assert await admissions(store, "1", "2", "3", "4") == [*[ACCEPTED] * 3, LIMITED]

    await let_time_pass(21)  # 3 a minute: a message may follow every 20 s
    assert await admissions(store, "5", "6") == [ACCEPTED, QUIETLY]

    await let_time_pass(40)  # the notice window has passed too
    assert await admissions(store, "7", "8", "9") == [ACCEPTED, ACCEPTED, LIMITED]


@pytest.mark.parametrize("store_limits", [{"max_backlog": 2}])
async def test_an_author_with_too_many_messages_waiting_may_send_again_once_one_is_delivered(
    store: Store,
) -> None:
    first, _ = await arrive(store, incoming("1"), incoming("2"))
    assert await admissions(store, "3") == [LIMITED]
    assert await admissions(store, "4", author_id="u2") == [ACCEPTED]

    await store.acknowledge(first)
    await store.acknowledge(first)  # repeated: still one message delivered

    assert await admissions(store, "5", "6") == [ACCEPTED, QUIETLY]


async def test_each_conversation_numbers_its_messages_in_arrival_order(store: Store) -> None:
    await store.enqueue(incoming("1"))
    await store.enqueue(incoming("2", conversation="tg:7"))
    await store.enqueue(incoming("3"))
    await store.enqueue(incoming("4", conversation="tg:7", platform="slack"))

    taken = await store.take("telegram", "worker-a", 10)
    [on_slack] = await store.take("slack", "worker-a", 10)

    assert [(entry.message.message_id, entry.seq) for entry in taken] == [
        ("1", 1),
        ("2", 1),
        ("3", 2),
    ]
    assert on_slack.seq == 2  # the number belongs to the conversation, whatever the platform


@pytest.mark.parametrize("store_limits", [{"rate_per_minute": 2}])
async def test_refused_and_duplicate_messages_take_no_number(store: Store) -> None:
    assert await admissions(store, "1", "1", "2", "3") == [ACCEPTED, DUPLICATE, ACCEPTED, LIMITED]
    assert await admissions(store, "4", author_id="u2") == [ACCEPTED]

    taken = await store.take("telegram", "worker-a", 10)

    assert [entry.seq for entry in taken] == [1, 2, 3]


async def test_an_entry_claimed_after_a_crash_keeps_its_number(
    store: Store, reopen_store: Reopen
) -> None:
    await arrive(store, incoming("1"), incoming("2"))

    restarted = await reopen_store()
    claimed = await restarted.claim_abandoned("telegram", "worker-b", 0)

    assert [(entry.message.message_id, entry.seq) for entry in claimed] == [("1", 1), ("2", 2)]
