"""The Redis store: the inbox (Streams with a consumer group) and the conversation store.

The keys (see ``adapters.redis_keys``) put everything of a channel in one partition, whose
keys share a Redis Cluster hash slot, so that every script and transaction of a channel's
message runs on one node. Each platform has one inbox stream per partition; a worker reads
them all (one blocking read on a single server, one per partition in a cluster).

Every write is safe to repeat, because a timed-out or retried call may have run already;
so is every call as a whole, which is what lets a call that met a primary unable to take
writes (a Sentinel failover) run again on the new one. Every Redis error leaves this module
as ``StoreUnavailable`` (``StoreFull`` when Redis is out of memory).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    OutOfMemoryError,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.typing import EncodableT, FieldT

from adapters.redis_connect import (
    MAX_CONNECTIONS,
    RedisClient,
    after_failover,
    clients_from_cluster,
    clients_from_sentinels,
    clients_from_url,
    drop_idle_connections,
)
from adapters.redis_keys import DEFAULT_PARTITIONS, RedisKeys, entry_id, split_entry_id
from adapters.redis_scripts import (
    ACKNOWLEDGE,
    ACQUIRE_LOCK,
    ADMIT,
    ARRIVE,
    BURY,
    CLAIM_INSTANCE,
    COMPLETE,
    ENQUEUE,
    FORGET,
    KEEP_LEASE,
    LOAD_CONTEXT,
    REFUSE,
    RELEASE_LOCK,
    REQUEST_STOP,
)
from core.commands import is_urgent
from core.errors import StoreFull, StoreUnavailable
from core.models import (
    Admission,
    Attachment,
    AuditEntry,
    ChannelSettings,
    ConversationContext,
    InboxEntry,
    IncomingMessage,
    Outcome,
    StoredReply,
    Turn,
    TurnState,
    Usage,
)
from core.presets import DEFAULT_PRESET

log = logging.getLogger("ollabot.store")

P = ParamSpec("P")
R = TypeVar("R")

GROUP = "ollabot"
CLAIM_PAGE = 100
CLAIM_PAGES = 10
ADMISSIONS = {
    0: Admission.DUPLICATE,
    1: Admission.ACCEPTED,
    2: Admission.LIMITED,
    3: Admission.LIMITED_QUIETLY,
}
OOM_LOG_EVERY_S = 60.0
STOP_TTL_MS = 30_000
USAGE_TTL_S = 2 * 86400
TOP_USERS = 5
_oom_logged_at = -OOM_LOG_EVERY_S
DEAD_LETTER_CHARS = 16_384
DeadLetterHook = Callable[[str], None]
# What the first keys of an older release, without partitions, began with (after the prefix).
UNPARTITIONED = ("inbox:", "conv:", "channel:", "order:", "seen:", "answered:")
Records = list[tuple[int, list[Any]]]  # stream records by partition
ReadKey = tuple[str, str, int]  # platform, consumer, read group
# A read's records waited this long at most for a call to collect them (no other worker
# can claim them that soon), unless this store handed out abandoned entries meanwhile.
TRUSTED_READ_S = 5.0


@dataclass
class Read:
    """A blocking inbox read in flight, and when (and after which claim) it started."""

    task: asyncio.Task[Records]
    started: float
    claims: int


# What makes a call sent straight to a cluster node go through the client's routing instead.
REROUTED = (
    AskError,
    ClusterDownError,
    MovedError,
    RedisConnectionError,
    SlotNotCoveredError,
    TryAgainError,
)


class StoreLayoutError(Exception):
    """The data in Redis was written with another layout; the message says what to do."""


def translated(
    method: Callable[Concatenate[RedisStore, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[RedisStore, P], Coroutine[Any, Any, R]]:
    """Run ``method`` again on a new primary after a failover, and turn any Redis or socket
    error into ``StoreUnavailable``."""

    @functools.wraps(method)
    async def wrapper(store: RedisStore, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await after_failover(lambda: method(store, *args, **kwargs), store.reconnect)
        except (RedisError, OSError) as error:
            if is_out_of_memory(error):
                _log_out_of_memory(error)
                raise StoreFull() from error
            raise StoreUnavailable() from error
        except AttributeError as error:
            if not raised_inside_redis_py(error):
                raise
            raise StoreUnavailable() from error

    return wrapper


def raised_inside_redis_py(error: BaseException) -> bool:
    """Whether ``error`` was raised by redis-py's own code. Its async cluster client can drop a
    connection's socket while another command is still sending on it (a primary killed under
    load: ``'NoneType' object has no attribute 'writelines'``): a lost connection like any
    other, not a bug of ours."""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and f"{os.sep}redis{os.sep}" in frames[-1].filename


def is_out_of_memory(error: BaseException) -> bool:
    """Redis refusing writes at ``maxmemory`` (with ``noeviction``, as recommended)."""
    return isinstance(error, OutOfMemoryError)


def _log_out_of_memory(error: BaseException) -> None:
    global _oom_logged_at
    now = time.monotonic()
    if now - _oom_logged_at >= OOM_LOG_EVERY_S:
        _oom_logged_at = now
        log.error(
            "Redis is out of memory (maxmemory reached) and refuses writes; raise maxmemory "
            "or free memory: %s",
            error,
        )


class RedisStore:
    """Implements the ``Inbox`` and ``ConversationStore`` ports on one Redis server or a
    Redis Cluster.

    ``client`` serves ordinary commands; ``blocking_client`` only the blocking inbox read,
    and needs a socket timeout longer than ``block_ms``. ``sentinel``, when the clients come
    from one, is closed with them.
    """

    def __init__(
        self,
        client: RedisClient,
        blocking_client: RedisClient,
        *,
        sentinel: Sentinel | None = None,
        prefix: str = "ollabot:",
        partitions: int = DEFAULT_PARTITIONS,
        conversation_ttl_s: int = 30 * 86400,
        max_stored_turns: int = 1000,
        dedupe_ttl_s: int = 86400,
        audit_maxlen: int = 1000,
        block_ms: int = 1000,
        rate_per_minute: int = 20,
        max_backlog: int = 10,
        default_preset: str = DEFAULT_PRESET,
        notice_window_s: int = 60,
        max_deliveries: int = 5,
        dead_letters_maxlen: int = 10_000,
        on_dead_letter: DeadLetterHook | None = None,
    ) -> None:
        self._redis = client
        self._blocking = blocking_client
        self._sentinel = sentinel
        self._prefix = prefix
        self.keys = RedisKeys(prefix, partitions)
        self._cluster = isinstance(client, RedisCluster)
        # A single server reads every partition's stream in one call; a cluster one by one.
        every = list(range(partitions))
        self._read_groups = [[n] for n in every] if self._cluster else [every]
        self._reads: dict[ReadKey, Read] = {}
        self._claims = 0  # calls of claim_abandoned so far
        self._conversation_ttl_s = conversation_ttl_s
        self._max_stored_turns = max_stored_turns
        self._dedupe_ttl_s = dedupe_ttl_s
        self._audit_maxlen = audit_maxlen
        self._block_ms = block_ms
        self._default_preset = default_preset
        self._rate_per_minute = max(1, rate_per_minute)
        self._max_backlog = max(1, max_backlog)
        self._notice_window_s = max(1, notice_window_s)
        self._max_deliveries = max_deliveries
        self._dead_letters_maxlen = dead_letters_maxlen
        self._on_dead_letter = on_dead_letter

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        socket_timeout_s: float = 2.0,
        max_connections: int = MAX_CONNECTIONS,
        **kwargs: Any,
    ) -> RedisStore:
        """Connect lazily to ``url`` with bounded timeouts and a small retry on lost
        connections (never on timeouts); at most ``max_connections`` commands at a time, the
        others waiting their turn."""
        block_ms = int(kwargs.get("block_ms", 1000))
        client, blocking = clients_from_url(
            url, socket_timeout_s, block_ms, max_connections=max_connections
        )
        return cls(client, blocking, **kwargs)

    @classmethod
    def from_sentinels(
        cls,
        sentinels: Sequence[tuple[str, int]],
        service: str,
        url: str,
        *,
        socket_timeout_s: float = 2.0,
        max_connections: int = MAX_CONNECTIONS,
        **kwargs: Any,
    ) -> RedisStore:
        """Connect lazily to the primary of ``service`` that the ``sentinels`` name, with the
        database, user name and password of ``url`` (its host is not used)."""
        block_ms = int(kwargs.get("block_ms", 1000))
        client, blocking, sentinel = clients_from_sentinels(
            sentinels, service, url, socket_timeout_s, block_ms, max_connections=max_connections
        )
        return cls(client, blocking, sentinel=sentinel, **kwargs)

    @classmethod
    def from_cluster(
        cls,
        url: str,
        *,
        socket_timeout_s: float = 2.0,
        max_connections: int = MAX_CONNECTIONS,
        **kwargs: Any,
    ) -> RedisStore:
        """Connect lazily to the Redis Cluster that the node at ``url`` belongs to, with at
        most ``max_connections`` connections to each node."""
        block_ms = int(kwargs.get("block_ms", 1000))
        client, blocking = clients_from_cluster(
            url, socket_timeout_s, block_ms, max_connections=max_connections
        )
        return cls(client, blocking, **kwargs)

    @property
    def client(self) -> RedisClient:
        """The shared (non-blocking) client, for adapters keeping small keys of their own."""
        return self._redis

    @property
    def prefix(self) -> str:
        return self._prefix

    async def close(self) -> None:
        """Stop the reads in flight, close both connection pools (and the Sentinel
        connections)."""
        reads = [read.task for read in self._reads.values()]
        self._reads.clear()
        for read in reads:
            read.cancel()
        await asyncio.gather(*reads, return_exceptions=True)
        await self._redis.aclose()
        await self._blocking.aclose()
        if self._sentinel is not None:
            await self._sentinel.aclose()

    async def reconnect(self) -> None:
        """Drop the idle connections, so that the next ones find the primary anew."""
        await drop_idle_connections(self._redis, self._blocking)

    @translated
    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless Redis answers."""
        await self._redis.ping()

    @translated
    async def ensure_layout(self) -> None:
        """Record the number of partitions on first start and check it on every later one;
        raise ``StoreLayoutError`` when the data was written with another number, or by a
        release that did not partition it."""
        recorded: Any = await self._redis.get(self.keys.layout)
        if recorded is None:
            await self._refuse_unpartitioned()
            await self._redis.set(self.keys.layout, self.keys.partitions, nx=True)
            recorded = await self._redis.get(self.keys.layout)
        if str(recorded) != str(self.keys.partitions):
            raise StoreLayoutError(
                f"the data under the prefix {self._prefix!r} was written with {recorded} "
                f"partitions, not {self.keys.partitions}: set OLLABOT_REDIS__PARTITIONS="
                f"{recorded}, or use another OLLABOT_REDIS__PREFIX for a fresh start"
            )

    async def _refuse_unpartitioned(self) -> None:
        async for key in self._redis.scan_iter(match=f"{self._prefix}*", count=1000):
            if str(key).removeprefix(self._prefix).startswith(UNPARTITIONED):
                raise StoreLayoutError(
                    f"Redis holds data of an older ollabot under the prefix {self._prefix!r} "
                    f"(such as {key}), kept without partitions: run the older release until "
                    "its inbox is empty, then either delete those keys or set another "
                    "OLLABOT_REDIS__PREFIX (channel settings and conversations start afresh)"
                )

    @translated
    async def server_info(self) -> dict[str, str]:
        """Version, and the durability and replication settings ``ollabot doctor`` checks
        (of one primary, in a cluster)."""
        info = await self._on_one_primary("info")
        return {
            "redis_version": str(info.get("redis_version", "unknown")),
            "aof_enabled": str(info.get("aof_enabled", "unknown")),
            "appendfsync": await self._config_value("appendfsync"),
            "maxmemory_policy": str(info.get("maxmemory_policy", "unknown")),
            "used_memory": str(info.get("used_memory", "unknown")),
            "maxmemory": str(info.get("maxmemory", "unknown")),
            "connected_replicas": str(info.get("connected_slaves", "unknown")),
            "min_replicas_to_write": await self._config_value("min-replicas-to-write"),
        }

    async def _config_value(self, name: str) -> str:
        try:
            values = await self._on_one_primary("config_get", name)
        except ResponseError:  # CONFIG is often disabled or not permitted on managed servers
            return "unknown"
        return str(values.get(name, "unknown"))

    async def _on_one_primary(self, command: str, *args: Any) -> Any:
        if isinstance(self._redis, RedisCluster):
            await self._redis.initialize()
            node = self._redis.get_primaries()[0]
            return await getattr(self._redis, command)(*args, target_nodes=node)
        return await getattr(self._redis, command)(*args)

    async def _eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Any:
        """EVAL. In a cluster it goes straight to the node serving the first key (redis-py's
        routing costs about as much again as the rest of the call), and through the client's
        routing, which follows the cluster's redirections, only when that node sends it
        elsewhere or is gone. Every script is safe to run twice."""
        if isinstance(self._redis, RedisCluster):
            try:
                node = self._redis.get_node_from_key(str(keys_and_args[0]))
                if node is not None:
                    return await node.execute_command("EVAL", script, numkeys, *keys_and_args)
            except REROUTED:
                pass
        return await self._redis.eval(script, numkeys, *keys_and_args)

    # Inbox

    @translated
    async def enqueue(self, message: IncomingMessage) -> Admission:
        """Store the message unless its id was seen or its author is over the limits (a token
        bucket of ``rate_per_minute``, at most ``max_backlog`` of theirs waiting in the
        channel); one round trip on a single server (two or three in a cluster), safe to
        repeat."""
        if self._cluster:
            return await self._enqueue_in_steps(message)
        keys = self.keys.enqueue(message)
        args: list[str | int | float] = [
            self._dedupe_ttl_s,
            json.dumps(asdict(message), ensure_ascii=False),
            self._rate_per_minute,
            self._rate_per_minute / 60,
            self._max_backlog,
            self._notice_window_s,
            self._conversation_ttl_s,
            int(is_urgent(message)),
        ]
        return ADMISSIONS[int(await self._eval(ENQUEUE, len(keys), *keys, *args))]

    async def _enqueue_in_steps(self, message: IncomingMessage) -> Admission:
        """ENQUEUE's work where the author's keys and the channel's partition are on
        different slots: take a token, store the message; when that refuses it or finds it
        a duplicate, give the token back (and tell the author once per window)."""
        bucket, told = self.keys.rate(message)
        admitted = int(
            await self._eval(ADMIT, 1, bucket, self._rate_per_minute, self._rate_per_minute / 60)
        )
        keys = self.keys.admission(message)
        args: list[str | int] = [
            self._dedupe_ttl_s,
            json.dumps(asdict(message), ensure_ascii=False),
            self._max_backlog,
            self._conversation_ttl_s,
            int(is_urgent(message)),
            admitted,
        ]
        arrived = int(await self._eval(ARRIVE, len(keys), *keys, *args))
        if arrived == 1 or (arrived == 0 and not admitted):
            return ADMISSIONS[arrived]
        refused = arrived != 0
        refusal = [self._rate_per_minute, admitted, self._notice_window_s, int(refused)]
        told_now = int(await self._eval(REFUSE, 2, bucket, told, *refusal))
        return ADMISSIONS[told_now if refused else 0]

    @translated
    async def take(self, platform: str, consumer: str, count: int) -> list[InboxEntry]:
        """Wait up to ``block_ms`` for new entries (at most ``count`` of each partition) and
        assign them to ``consumer``: until a read brings some, or every read came back empty.

        Each read runs until it returns, even past this call: a read still waiting when this
        call returns with entries stays in flight, and the next call collects it instead of
        starting another. What a read got while no call waited is checked to be still this
        consumer's when ``claim_abandoned`` ran since the read started (it may have handed
        the entries out, and they may be done) or the read is old (another worker may have
        claimed them)."""
        if isinstance(self._blocking, RedisCluster):
            await self._blocking.initialize()  # once, before the reads share its connections
        keys = [(platform, consumer, group) for group in range(len(self._read_groups))]
        late = {key for key in keys if key in self._reads and self._reads[key].task.done()}
        self._start_reads(keys, count)
        while True:
            if not late:
                reads = [self._reads[key].task for key in keys if key in self._reads]
                await asyncio.wait(reads, return_when=asyncio.FIRST_COMPLETED)
            fresh, old, errors = self._collect(keys, late)
            late = set()
            fresh += await self._still_pending(platform, consumer, old)
            entries: list[InboxEntry] = []
            for partition, records in fresh:
                entries += await self._decoded(platform, partition, records)
            if errors and not entries:
                raise errors[0]
            if entries or not any(key in self._reads for key in keys):
                return entries

    def _start_reads(self, keys: list[ReadKey], count: int) -> None:
        """A read for each of ``keys`` that has none in flight."""
        for key in keys:
            if key not in self._reads:
                platform, consumer, group = key
                read = self._read(platform, consumer, self._read_groups[group], count)
                self._reads[key] = Read(asyncio.create_task(read), time.monotonic(), self._claims)

    def _collect(
        self, keys: list[ReadKey], late: set[ReadKey]
    ) -> tuple[Records, Records, list[BaseException]]:
        """The finished reads' records, less those to check (see ``take``), those, and the
        errors; the reads are forgotten, so that the next call starts them anew."""
        fresh: Records = []
        old: Records = []
        errors: list[BaseException] = []
        now = time.monotonic()
        for key in keys:
            read = self._reads.get(key)
            if read is None or not read.task.done():
                continue
            del self._reads[key]
            if (error := read.task.exception()) is not None:
                errors.append(error)
                continue
            stale = read.claims != self._claims or now - read.started > TRUSTED_READ_S
            (old if key in late and stale else fresh).extend(read.task.result())
        return fresh, old, errors

    async def _read(
        self, platform: str, consumer: str, partitions: list[int], count: int
    ) -> Records:
        streams: dict[Any, Any] = {self.keys.inbox(platform, n): ">" for n in partitions}
        reply: Any = await self._in_group(
            platform,
            partitions,
            lambda: self._blocking.xreadgroup(GROUP, consumer, streams, count, self._block_ms),
        )
        of_stream = {self.keys.inbox(platform, n): n for n in partitions}
        return [(of_stream[str(stream)], records) for stream, records in reply or []]

    async def _still_pending(self, platform: str, consumer: str, found: Records) -> Records:
        kept: Records = []
        for partition, records in found:
            if not records:
                continue
            key = self.keys.inbox(platform, partition)
            first, last = records[0][0], records[-1][0]
            pending: Any = await self._redis.xpending_range(
                key, GROUP, first, last, len(records), consumername=consumer
            )
            mine = {entry["message_id"] for entry in pending}
            kept.append((partition, [record for record in records if record[0] in mine]))
        return kept

    @translated
    async def claim_abandoned(
        self, platform: str, consumer: str, min_idle_ms: int
    ) -> list[InboxEntry]:
        """Entries idle for ``min_idle_ms``, plus every entry ``consumer`` itself holds pending
        (after a restart nothing of this process is working on them; callers skip their own
        entries in progress). Entries handed out more than ``max_deliveries`` times become
        dead letters instead."""
        self._claims += 1
        entries: list[InboxEntry] = []
        for partition in range(self.keys.partitions):
            records = await self._abandoned(platform, partition, consumer, min_idle_ms)
            records = await self._without_poison(platform, partition, records)
            entries += await self._decoded(platform, partition, records)
        return entries

    async def _abandoned(
        self, platform: str, partition: int, consumer: str, min_idle_ms: int
    ) -> list[Any]:
        key = self.keys.inbox(platform, partition)
        own: list[Any] = await self._in_group(
            platform, [partition], lambda: self._own_pending(key, consumer)
        )
        idle: list[Any] = await self._in_group(
            platform, [partition], lambda: self._auto_claim(key, consumer, min_idle_ms)
        )
        seen = {entry_id for entry_id, _ in own}
        return own + [record for record in idle if record[0] not in seen]

    async def _own_pending(self, key: str, consumer: str) -> list[Any]:
        """Read without delivering again (XPENDING, XRANGE), so that the delivery count says
        how often an entry was really handed out, not how often its owner looked."""
        pending: Any = await self._redis.xpending_range(
            key, GROUP, "-", "+", CLAIM_PAGE, consumername=consumer
        )
        async with self._redis.pipeline(transaction=False) as pipe:
            for entry in pending:
                pipe.xrange(key, entry["message_id"], entry["message_id"])
            found = await pipe.execute()
        return [
            records[0] if records else (entry["message_id"], None)
            for entry, records in zip(pending, found, strict=True)
        ]

    async def _auto_claim(self, key: str, consumer: str, min_idle_ms: int) -> list[Any]:
        records: list[Any] = []
        cursor = "0-0"
        for _ in range(CLAIM_PAGES):
            reply: Any = await self._redis.xautoclaim(
                key, GROUP, consumer, min_idle_ms, cursor, CLAIM_PAGE
            )
            cursor = reply[0]
            records += reply[1]
            if cursor == "0-0":
                break
        return records

    @translated
    async def sweep_consumers(self, platform: str, min_idle_ms: int) -> int:
        """Forget consumers idle that long with nothing pending (processes gone for good,
        their entries already claimed); returns how many consumer entries of the
        partitions' groups were forgotten."""
        forgotten = 0
        for partition in range(self.keys.partitions):
            key = self.keys.inbox(platform, partition)
            consumers: Any = await self._in_group(
                platform, [partition], functools.partial(self._redis.xinfo_consumers, key, GROUP)
            )
            gone = [
                str(c["name"])
                for c in consumers
                if int(c["pending"]) == 0 and int(c["idle"]) >= min_idle_ms
            ]
            for name in gone:
                await self._redis.xgroup_delconsumer(key, GROUP, name)
            forgotten += len(gone)
        return forgotten

    @translated
    async def keep_alive(self, platform: str, consumer: str, entry_ids: list[str]) -> None:
        """Reset the idle time of entries still in progress (XCLAIM JUSTID)."""
        by_partition: dict[int, list[Any]] = {}
        for value in entry_ids:
            if (split := split_entry_id(value)) is not None:
                by_partition.setdefault(split[0], []).append(split[1])
        for partition, ids in by_partition.items():
            key = self.keys.inbox(platform, partition)
            await self._in_group(
                platform,
                [partition],
                functools.partial(self._redis.xclaim, key, GROUP, consumer, 0, ids, justid=True),
            )

    @translated
    async def acknowledge(self, entry: InboxEntry) -> None:
        """Mark the entry done, delete it from the stream, take it off its author's backlog
        and let the next message of its conversation start; safe to repeat."""
        keys = self.keys.acknowledge(entry.message)
        args: list[str | int] = [
            GROUP,
            _stream_id(entry.entry_id),
            entry.seq,
            self._conversation_ttl_s,
        ]
        await self._eval(ACKNOWLEDGE, len(keys), *keys, *args)

    async def _in_group(
        self, platform: str, partitions: list[int], call: Callable[[], Awaitable[Any]]
    ) -> Any:
        """Run a consumer-group command, creating the streams and groups on first use."""
        try:
            return await call()
        except ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
        for partition in partitions:
            try:
                key = self.keys.inbox(platform, partition)
                await self._redis.xgroup_create(key, GROUP, "0", mkstream=True)
            except ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise
        return await call()

    async def _decoded(
        self, platform: str, partition: int, records: Sequence[Any]
    ) -> list[InboxEntry]:
        """Entries whose message decodes; deleted ones are acknowledged, unreadable ones
        set aside as dead letters."""
        entries: list[InboxEntry] = []
        key = self.keys.inbox(platform, partition)
        for stream_id, fields in records:
            message = decode_message(fields)
            if not fields:  # deleted meanwhile: nothing left to answer
                await self._redis.xack(key, GROUP, stream_id)
                await self._redis.xdel(key, stream_id)
            elif message is None:
                await self._bury(platform, partition, stream_id, "unreadable inbox entry")
            else:
                entries.append(InboxEntry(entry_id(partition, stream_id), message, _seq(fields)))
        return entries

    # Dead letters

    @translated
    async def dead_letter(self, platform: str, payload: str, reason: str) -> None:
        """Keep what was received but cannot be read or stored, with the reason, for an
        operator. A repeated call may keep it twice; nothing else changes."""
        fields: dict[FieldT, EncodableT] = {
            "platform": platform,
            "source": "receive",
            "reason": storable(reason),
            "payload": storable(payload[:DEAD_LETTER_CHARS]),
        }
        await self._redis.xadd(
            self.keys.dead_letters,
            fields,
            maxlen=self._dead_letters_maxlen,
            approximate=True,
        )
        self._count_dead_letter(platform)

    @translated
    async def dead_letter_count(self) -> int:
        """How many dead letters are kept (``ollabot doctor`` shows it)."""
        return int(await self._redis.xlen(self.keys.dead_letters))

    async def _without_poison(self, platform: str, partition: int, records: list[Any]) -> list[Any]:
        """The records delivered at most ``max_deliveries`` times; the others, which no
        worker managed to answer, become dead letters instead of being retried forever."""
        if not records:
            return records
        key = self.keys.inbox(platform, partition)
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream_id, _ in records:
                pipe.xpending_range(key, GROUP, stream_id, stream_id, 1)
            pending = await pipe.execute()
        kept = []
        for record, found in zip(records, pending, strict=True):
            deliveries = int(found[0]["times_delivered"]) if found else 0
            if deliveries > self._max_deliveries:
                reason = f"delivered {deliveries} times without being answered"
                await self._bury(platform, partition, record[0], reason)
            else:
                kept.append(record)
        return kept

    async def _bury(self, platform: str, partition: int, stream_id: str, reason: str) -> None:
        if self._cluster:
            await self._bury_in_steps(platform, partition, stream_id, reason)
        else:
            keys = self.keys.bury(platform, partition)
            args: list[str | int] = [GROUP, stream_id, platform, reason, self._dead_letters_maxlen]
            await self._eval(BURY, len(keys), *keys, *args)
        log.warning(
            "inbox entry %s on %s set aside as a dead letter: %s", stream_id, platform, reason
        )
        self._count_dead_letter(platform)

    async def _bury_in_steps(
        self, platform: str, partition: int, stream_id: str, reason: str
    ) -> None:
        """BURY's work where the dead letters are not in the partition's slot: the letter
        first, then the entry goes. A crash between the two keeps the entry, which is set
        aside again later: a letter may be kept twice, but none is lost."""
        key = self.keys.inbox(platform, partition)
        found: Any = await self._redis.xrange(key, stream_id, stream_id)
        if found:
            fields = found[0][1]
            payload = fields.get("message") or json.dumps(
                [item for pair in fields.items() for item in pair], ensure_ascii=False
            )
            letter: dict[FieldT, EncodableT] = {
                "platform": platform,
                "source": "inbox",
                "reason": reason,
                "payload": storable(payload[:DEAD_LETTER_CHARS]),
            }
            await self._redis.xadd(
                self.keys.dead_letters, letter, maxlen=self._dead_letters_maxlen, approximate=True
            )
        await self._eval(FORGET, 1, key, GROUP, stream_id)

    def _count_dead_letter(self, platform: str) -> None:
        if self._on_dead_letter is not None:
            self._on_dead_letter(platform)

    # Conversations

    @translated
    async def load_context(
        self,
        entry: InboxEntry,
        max_turns: int,
        owner: str,
        lease_ms: int,
        skip_order: bool = False,
    ) -> ConversationContext:
        """The stored reply, or (when it is this message's turn) the lease, settings and
        history window: one round trip."""
        keys = self.keys.load_context(entry.message)
        args: list[str | int] = [
            max(max_turns, 0),
            owner,
            max(lease_ms, 1),
            entry.seq,
            int(skip_order),
            entry.message.reply_tag,
        ]
        reply = await self._eval(LOAD_CONTEXT, len(keys), *keys, *args)
        status = int(reply[0])
        if status == 2:
            return ConversationContext(
                ChannelSettings(), (), 0, decode_reply(reply[1]), decode_handle(reply[2])
            )
        if status != 1:
            state = TurnState.BUSY if status == 0 else TurnState.WAITING
            return ConversationContext(ChannelSettings(), (), 0, state=state)
        _, settings, turns, window_start, handle = reply
        return ConversationContext(
            settings=decode_settings(settings, self._default_preset),
            history=decode_turns(turns),
            window_start=int(window_start),
            handle=decode_handle(handle),
        )

    @translated
    async def complete(
        self, entry: InboxEntry, outcome: Outcome | None, reply: StoredReply, owner: str
    ) -> StoredReply | None:
        """Append the turns once per message, store the reply and release the lease, if
        ``owner`` still holds it: one round trip, safe to repeat."""
        keys = self.keys.complete(entry.message)
        args: list[str | int] = [
            owner,
            entry.seq,
            json.dumps(asdict(reply), ensure_ascii=False),
            max(1, self._max_stored_turns),
            self._conversation_ttl_s,
            self._dedupe_ttl_s,
        ]
        if outcome is not None:
            turns = (encode_turn(turn) for turn in outcome.turns)
            args += [outcome.replaces_from, outcome.window_start, *turns]
        result = await self._eval(COMPLETE, len(keys), *keys, *args)
        status = int(result[0])
        if status == 0:
            return None
        return reply if status == 1 else decode_reply(result[1])

    @translated
    async def save_handle(self, message: IncomingMessage, handle: dict[str, str]) -> None:
        """Remember where the reply to ``message`` is shown; safe to repeat."""
        body = json.dumps(handle, ensure_ascii=False)
        await self._redis.set(self.keys.handle(message), body, ex=self._dedupe_ttl_s)

    # Stopping a reply

    @translated
    async def request_stop(self, channel: str, conversation: str, reply: str = "") -> bool:
        """Ask the conversation's lease holder to stop (only if it writes ``reply``, when
        given); False when nobody holds the lease or it writes another reply."""
        keys = self.keys.lease(channel, conversation)
        return bool(await self._eval(REQUEST_STOP, len(keys), *keys, STOP_TTL_MS, reply))

    @translated
    async def keep_lease(self, channel: str, conversation: str, owner: str, ttl_ms: int) -> bool:
        """Renew ``owner``'s lease; True, once, when a stop of its reply was asked for
        meanwhile (a stop meant for a reply that has ended since is dropped)."""
        keys = self.keys.lease(channel, conversation)
        return bool(await self._eval(KEEP_LEASE, len(keys), *keys, owner, ttl_ms))

    # GPU time

    @translated
    async def charge(self, message: IncomingMessage, day: str, gpu_s: float) -> None:
        """Add a reply's GPU seconds to its author's and its channel's use on ``day``."""
        user, channel, top = self.keys.usage(message, day)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incrbyfloat(user, gpu_s)
            pipe.incrbyfloat(channel, gpu_s)
            pipe.zincrby(top, gpu_s, message.author_id)
            for key in (user, channel, top):
                pipe.expire(key, USAGE_TTL_S)
            await pipe.execute()

    @translated
    async def usage(self, message: IncomingMessage, day: str) -> Usage:
        """The author's and the channel's GPU seconds on ``day``, and its top users."""
        user, channel, top = self.keys.usage(message, day)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(user)
            pipe.get(channel)
            pipe.zrevrange(top, 0, TOP_USERS - 1, withscores=True)
            mine, total, leaders = await pipe.execute()
        return Usage(
            float(mine or 0), float(total or 0), tuple((str(w), float(s)) for w, s in leaders)
        )

    @translated
    async def clear_conversation(self, channel: str, conversation: str) -> None:
        """Forget the conversation's turns and window; safe to repeat."""
        await self._redis.delete(*self.keys.conversation(channel, conversation))

    # Locks

    @translated
    async def acquire_lock(self, channel: str, conversation: str, owner: str, ttl_ms: int) -> bool:
        """Take the conversation lock, or renew it when ``owner`` already holds it."""
        key = self.keys.lock(channel, conversation)
        return bool(await self._eval(ACQUIRE_LOCK, 1, key, owner, ttl_ms))

    @translated
    async def release_lock(self, channel: str, conversation: str, owner: str) -> None:
        """Release the lock only if ``owner`` holds it."""
        await self._eval(RELEASE_LOCK, 1, self.keys.lock(channel, conversation), owner)

    # Instances

    @translated
    async def claim_instance(
        self, name: str, holder: str, ttl_ms: int, dead_holder: str = ""
    ) -> str | None:
        """Hold the worker instance ``name`` for ``holder`` (or renew it); returns None when
        held, else the live holder's value. ``dead_holder`` may be replaced."""
        key = self.keys.instance(name)
        reply = await self._eval(CLAIM_INSTANCE, 1, key, holder, ttl_ms, dead_holder)
        return None if int(reply[0]) == 1 else str(reply[1])

    @translated
    async def release_instance(self, name: str, holder: str) -> None:
        """Give the instance name up, if ``holder`` has it."""
        await self._eval(RELEASE_LOCK, 1, self.keys.instance(name), holder)

    # Channel settings and audit

    @translated
    async def get_settings(self, channel: str) -> ChannelSettings:
        """The channel's settings, or the defaults when none were saved."""
        raw: Any = await self._redis.get(self.keys.settings(channel))
        return decode_settings(raw, self._default_preset)

    @translated
    async def save_settings(
        self, channel: str, settings: ChannelSettings, audit: AuditEntry
    ) -> None:
        """Write the settings and append the audit entry in one transaction."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.settings(channel), json.dumps(asdict(settings), ensure_ascii=False))
            self._add_audit(pipe, audit)
            await pipe.execute()

    @translated
    async def append_audit(self, audit: AuditEntry) -> None:
        """Record an attempt that changed nothing (a refused command) in its channel's log."""
        await self._add_audit(self._redis, audit)

    def _add_audit(self, target: Any, audit: AuditEntry) -> Any:
        """XADD to the channel's own stream: one channel's entries never push out another's."""
        fields = {k: v for k, v in asdict(audit).items() if k not in ("channel", "at")}
        key = self.keys.audit(audit.channel)
        return target.xadd(key, fields, maxlen=self._audit_maxlen, approximate=True)

    @translated
    async def audit_log(self, channel: str, count: int) -> list[AuditEntry]:
        """The newest ``count`` entries of ``channel``, oldest first (newest last), with the
        time each was recorded (from its stream id)."""
        if count <= 0:
            return []
        records: Any = await self._redis.xrevrange(self.keys.audit(channel), count=count)
        return [decode_audit(channel, entry_id, fields) for entry_id, fields in reversed(records)]


def _stream_id(value: str) -> str:
    """The stream id in an entry id of this store (any other id as it is)."""
    split = split_entry_id(value)
    return value if split is None else split[1]


def encode_turn(turn: Turn) -> str:
    """A turn as stored in the conversation list: ``[role, content, seq, author]``.

    An array, not an object: a reply decodes a whole window of these, arrays decode about
    three times faster, and the load script finds ``seq`` at a fixed place.
    """
    return json.dumps(list(turn), ensure_ascii=False)


def decode_turns(raw: str) -> tuple[Turn, ...]:
    """The stored turns, sent by the load script as one JSON array of arrays."""
    return tuple(map(Turn._make, json.loads(raw)))


def decode_message(fields: dict[str, str] | None) -> IncomingMessage | None:
    """The message of an inbox entry, or None when the entry is deleted or unreadable."""
    if not fields or "message" not in fields:
        return None
    try:
        data = json.loads(fields["message"])
        known = IncomingMessage.__dataclass_fields__
        fields_ = {k: v for k, v in data.items() if k in known}
        fields_["attachments"] = tuple(Attachment(**a) for a in data.get("attachments", ()))
        return IncomingMessage(**fields_)
    except (ValueError, TypeError, AttributeError):
        return None


def _seq(fields: dict[str, str]) -> int:
    try:
        return int(fields.get("seq", 0))
    except ValueError:
        return 0


def decode_reply(raw: str) -> StoredReply:
    """A stored reply; an unreadable one is delivered as text, as written."""
    try:
        data = json.loads(raw)
        reasoning = str(data.get("reasoning", ""))  # absent in replies stored before it
        return StoredReply(
            str(data["text"]), bool(data["failed"]), float(data["deliver_by"]), reasoning
        )
    except (ValueError, TypeError, KeyError):
        return StoredReply(raw)


def decode_handle(raw: str | None) -> dict[str, str]:
    """A sink's saved handle; empty when absent or unreadable."""
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def storable(text: str) -> str:
    """``text`` with what UTF-8 cannot encode (lone surrogates) written as escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def decode_audit(channel: str, entry_id: str, fields: dict[str, str]) -> AuditEntry:
    """An audit stream entry; its id's first part is the time Redis recorded it, in ms."""
    value = fields.get
    return AuditEntry(
        channel,
        value("actor", ""),
        value("field", ""),
        value("old", ""),
        value("new", ""),
        value("outcome", "changed"),
        int(entry_id.split("-", 1)[0]) / 1000,
    )


def decode_settings(raw: str | None, default_preset: str = DEFAULT_PRESET) -> ChannelSettings:
    """Saved channel settings; the defaults (with the deployment's preset) when absent or
    unreadable."""
    if raw is None:
        return ChannelSettings(preset=default_preset)
    try:
        data = json.loads(raw)
        known = ChannelSettings.__dataclass_fields__
        return ChannelSettings(**{k: v for k, v in data.items() if k in known})
    except (ValueError, TypeError, AttributeError):
        log.warning("unreadable channel settings; using defaults")
        return ChannelSettings(preset=default_preset)
