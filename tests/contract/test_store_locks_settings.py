"""Conversation leases, channel settings and the admin audit trail."""

from __future__ import annotations

import time
from dataclasses import replace

from core.models import AuditEntry, ChannelSettings, TurnState
from tests.contract import LEASE_MS, arrive, incoming
from tests.fixtures.store import Store


async def test_a_conversation_lock_has_one_owner_at_a_time(store: Store) -> None:
    assert await store.acquire_lock("tg:42", "tg:42", "worker-a", 30_000)

    assert not await store.acquire_lock("tg:42", "tg:42", "worker-b", 30_000)
    assert await store.acquire_lock("tg:7", "tg:7", "worker-b", 30_000)


async def test_the_owner_renews_its_lock_by_acquiring_again(store: Store) -> None:
    assert await store.acquire_lock("tg:42", "tg:42", "worker-a", 30_000)

    assert await store.acquire_lock("tg:42", "tg:42", "worker-a", 30_000)


async def test_only_the_owner_releases_a_lock(store: Store) -> None:
    await store.acquire_lock("tg:42", "tg:42", "worker-a", 30_000)

    await store.release_lock("tg:42", "tg:42", "worker-b")
    assert not await store.acquire_lock("tg:42", "tg:42", "worker-b", 30_000)

    await store.release_lock("tg:42", "tg:42", "worker-a")
    assert await store.acquire_lock("tg:42", "tg:42", "worker-b", 30_000)


async def test_saved_settings_come_back_and_the_change_is_audited(store: Store) -> None:
    before = await store.get_settings("tg:42")
    changed = ChannelSettings(
        preset="precise",
        overrides={"temperature": 0.2},
        system_prompt="Be brief.",
        model="m:8b",
        think="show",
    )
    audit = AuditEntry("tg:42", "u1", "preset", "balanced", "precise (temperature=0.2)")

    await store.save_settings("tg:42", changed, audit)

    assert before == ChannelSettings()
    assert await store.get_settings("tg:42") == changed
    assert await store.get_settings("tg:7") == ChannelSettings()
    [logged] = await store.audit_log("tg:42", 10)
    assert replace(logged, at=0.0) == audit
    assert time.time() - 60 < logged.at <= time.time()
    assert await store.audit_log("tg:7", 10) == []


async def test_the_audit_log_returns_the_newest_changes_of_the_channel_last(
    store: Store,
) -> None:
    for n in range(5):
        audit = AuditEntry("tg:42", "u1", "model", f"m{n}", f"m{n + 1}")
        await store.save_settings("tg:42", ChannelSettings(model=f"m{n + 1}"), audit)
        await store.save_settings(
            "tg:7", ChannelSettings(), AuditEntry("tg:7", "u2", "system", "", str(n))
        )

    log = await store.audit_log("tg:42", 2)

    assert [(entry.old, entry.new) for entry in log] == [("m3", "m4"), ("m4", "m5")]


async def test_refused_attempts_are_logged_with_the_channels_changes(store: Store) -> None:
    change = AuditEntry("tg:42", "u1", "model", "", "m:8b")
    refusal = AuditEntry("tg:42", "u9", "preset", "", "set top_k 500", "refused: not an admin")

    await store.save_settings("tg:42", ChannelSettings(model="m:8b"), change)
    await store.append_audit(refusal)

    log = await store.audit_log("tg:42", 10)
    assert [(e.actor, e.outcome) for e in log] == [("u1", "changed"), ("u9", refusal.outcome)]
    assert (await store.get_settings("tg:42")).model == "m:8b"


async def test_a_flood_in_other_channels_never_pushes_a_channels_changes_out(
    store: Store,
) -> None:
    await store.save_settings(
        "tg:42", ChannelSettings(preset="precise"), AuditEntry("tg:42", "u1", "preset", "", "p")
    )

    for n in range(1200):  # an outsider's throwaway groups, each its own channel
        await store.append_audit(AuditEntry(f"tg:-{n % 40}", "u666", "preset", "", "x"))

    assert [e.actor for e in await store.audit_log("tg:42", 10)] == ["u1"]


async def test_settings_handed_out_are_copies(store: Store) -> None:
    settings = await store.get_settings("tg:42")
    settings.overrides["temperature"] = 1.9

    assert (await store.get_settings("tg:42")).overrides == {}


async def test_loading_a_context_takes_the_lease_or_says_the_conversation_is_busy(
    store: Store,
) -> None:
    first, second = await arrive(store, incoming("1"), incoming("2"))

    assert (await store.load_context(first, 10, "worker-a", LEASE_MS)).state is TurnState.READY
    busy = await store.load_context(second, 10, "worker-b", LEASE_MS, skip_order=True)
    assert busy.state is TurnState.BUSY
    again = await store.load_context(first, 10, "worker-a", LEASE_MS)
    assert again.state is TurnState.READY, "the owner re-enters (and renews) its own lease"

    await store.release_lock("tg:42", "tg:42", "worker-a")
    free = await store.load_context(second, 10, "worker-b", LEASE_MS, skip_order=True)
    assert free.state is TurnState.READY
    assert not await store.acquire_lock("tg:42", "tg:42", "worker-a", LEASE_MS)
