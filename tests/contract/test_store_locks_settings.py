"""Conversation leases, channel settings and the admin audit trail."""

from __future__ import annotations

from core.models import AuditEntry, ChannelSettings, TurnState
from tests.contract import LEASE_MS, arrive, incoming
from tests.fixtures.store import Store


async def test_a_conversation_lock_has_one_owner_at_a_time(store: Store) -> None:
    assert await store.acquire_lock("tg:42", "worker-a", 30_000)

    assert not await store.acquire_lock("tg:42", "worker-b", 30_000)
    assert await store.acquire_lock("tg:7", "worker-b", 30_000)


async def test_the_owner_renews_its_lock_by_acquiring_again(store: Store) -> None:
    assert await store.acquire_lock("tg:42", "worker-a", 30_000)

    assert await store.acquire_lock("tg:42", "worker-a", 30_000)


async def test_only_the_owner_releases_a_lock(store: Store) -> None:
    await store.acquire_lock("tg:42", "worker-a", 30_000)

    await store.release_lock("tg:42", "worker-b")
    assert not await store.acquire_lock("tg:42", "worker-b", 30_000)

    await store.release_lock("tg:42", "worker-a")
    assert await store.acquire_lock("tg:42", "worker-b", 30_000)


async def test_saved_settings_come_back_and_the_change_is_audited(store: Store) -> None:
    before = await store.get_settings("tg:42")
    changed = ChannelSettings(
        preset="precise", overrides={"temperature": 0.2}, system_prompt="Be brief.", model="m:8b"
    )
    audit = AuditEntry("tg:42", "u1", "preset", "balanced", "precise (temperature=0.2)")

    await store.save_settings("tg:42", changed, audit)

    assert before == ChannelSettings()
    assert await store.get_settings("tg:42") == changed
    assert await store.get_settings("tg:7") == ChannelSettings()
    assert await store.audit_log("tg:42", 10) == [audit]
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

    await store.release_lock("tg:42", "worker-a")
    free = await store.load_context(second, 10, "worker-b", LEASE_MS, skip_order=True)
    assert free.state is TurnState.READY
    assert not await store.acquire_lock("tg:42", "worker-a", LEASE_MS)
