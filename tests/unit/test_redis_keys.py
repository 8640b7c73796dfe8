"""Every script and transaction of the Redis store and the knowledge base touches keys of
one Redis Cluster slot."""

from __future__ import annotations

import inspect

import pytest
from redis.crc import key_slot

from adapters.redis_keys import RedisKeys, entry_id, split_entry_id
from adapters.redis_knowledge import KnowledgeKeys
from core.models import IncomingMessage

# The builders of the keys one script or transaction touches, all in one slot.
ONE_SLOT = {
    "admission",
    "rate",
    "acknowledge",
    "load_context",
    "complete",
    "lease",
    "usage",
    "channel",
    "conversation",
}
# Used on a single server only (the cluster takes these steps apart), or no script's keys.
SINGLE_SERVER = {"enqueue", "bury", "inboxes"}

CHANNELS = ["tg:42", "tg:-100123", "slack:T1:C9", "console:local", "ñandú:🦙", ""]
AUTHORS = ["u1", "U0ABC", "7"]


def message(channel: str, author: str, n: int) -> IncomingMessage:
    return IncomingMessage(
        platform=channel.split(":", 1)[0] or "telegram",
        message_id=f"{n}",
        conversation=f"{channel}:thread:{n}",
        channel=channel,
        author_id=author,
        author_name="Ana",
        text="hi",
    )


def keys_of(keys: RedisKeys, builder: str, m: IncomingMessage) -> list[str]:
    build = getattr(keys, builder)
    names = list(inspect.signature(build).parameters)
    if names == ["message"]:
        result: list[str] = build(m)
    elif names == ["message", "day"]:
        result = build(m, "2026-12-01")
    elif names == ["channel"]:
        result = build(m.channel)
    else:
        assert names == ["channel", "conversation"], f"{builder}: unknown parameters {names}"
        result = build(m.channel, m.conversation)
    return result


def test_every_builder_of_a_scripts_keys_is_known() -> None:
    builders = {
        name
        for name, member in inspect.getmembers(RedisKeys, inspect.isfunction)
        if inspect.signature(member).return_annotation == "list[str]"
    }
    assert builders == ONE_SLOT | SINGLE_SERVER


@pytest.mark.parametrize("partitions", [1, 3, 16, 1024])
@pytest.mark.parametrize("builder", sorted(ONE_SLOT))
def test_each_script_call_touches_one_slot(builder: str, partitions: int) -> None:
    keys = RedisKeys("ollabot:", partitions)
    for n, (channel, author) in enumerate((c, a) for c in CHANNELS for a in AUTHORS):
        touched = keys_of(keys, builder, message(channel, author, n))
        assert len(touched) == len(set(touched)), f"{builder} names a key twice"
        slots = {key_slot(key.encode()) for key in touched}
        assert len(slots) == 1, f"{builder} for {channel!r} spans slots {slots}: {touched}"


def test_a_channel_keeps_its_partition_across_processes_and_releases() -> None:
    keys = RedisKeys("ollabot:", 16)
    # CRC-32 of the UTF-8 channel modulo 16, whatever the interpreter's hash seed: a change
    # here moves every channel away from its data
    assert [keys.partition(c) for c in ("tg:42", "slack:T1:C9")] == [9, 12]


def test_the_partitions_spread_channels_over_every_slot_group() -> None:
    keys = RedisKeys("ollabot:", 16)
    used = {keys.partition(f"tg:{n}") for n in range(1000)}
    assert used == set(range(16))


def test_keys_that_stand_alone_carry_no_hash_tag() -> None:
    keys = RedisKeys("ollabot:", 16)
    for key in (keys.instance("worker-1"), keys.layout, keys.dead_letters):
        assert "{" not in key


def test_a_channels_keys_are_in_its_partition_and_an_authors_rate_in_their_own_slot() -> None:
    keys = RedisKeys("ollabot:", 16)
    a, b = message("tg:42", "u1", 1), message("tg:7", "u1", 2)
    assert keys.seen(a).startswith(keys.tagged(keys.partition("tg:42")))
    assert keys.bucket(a) == keys.bucket(b) == "ollabot:{u:tg:u1}:bucket"


def test_an_entry_id_carries_its_partition() -> None:
    assert split_entry_id(entry_id(7, "1700000000000-3")) == (7, "1700000000000-3")
    assert split_entry_id("1700000000000-3") is None


def test_a_prefix_with_braces_is_refused() -> None:
    with pytest.raises(ValueError, match="braces"):
        RedisKeys("ollabot:{x}:")


@pytest.mark.parametrize("partitions", [1, 3, 16, 1024])
def test_a_channels_knowledge_is_in_the_slot_of_its_conversations(partitions: int) -> None:
    keys, knowledge = RedisKeys("ollabot:", partitions), KnowledgeKeys("ollabot:", partitions)
    for channel in CHANNELS:
        # what adding or forgetting a document writes, in one transaction
        written = [
            knowledge.documents(channel),
            knowledge.version(channel),
            *(knowledge.passage(channel, "doc{1}", n) for n in (1, 2, 300)),
        ]
        slots = {key_slot(key.encode()) for key in written}
        assert slots == {key_slot(keys.settings(channel).encode())}, written
        for passage in written[2:]:
            assert passage.startswith(knowledge.passages)  # the FT index's PREFIX
