"""Opening Redis: one server by URL, the primary that Redis Sentinel names, or a Redis
Cluster found from one seed node; and riding out a failover.

Either way there are two clients with bounded socket timeouts: one for ordinary commands,
with a small retry on lost connections, and one for the blocking inbox read, whose socket
timeout outlasts the longest block. Timeouts are never retried: a command that timed out may
have run, and retrying would multiply the wait for a silent server.

The ordinary client of one server (directly or through Sentinel) holds at most
``max_connections`` connections; a command finding them all busy (a flood of events) waits
for one to be released instead of failing, for at most the socket timeout, so that a silent
server still fails within a bounded time.

Through Sentinel every new connection asks the Sentinels where the primary is. A connection
that meets a primary which cannot take writes any more is dropped and the call is run again
after a short, growing pause (``after_failover``), a bounded number of times: every write of
the store is safe to repeat. Such a primary answers READONLY (it was demoted to a replica),
NOREPLICAS (``min-replicas-to-write``: its replicas left it, as they do when another node is
promoted), or UNBLOCKED (a blocking read it ended when it was demoted).

A cluster client follows the cluster's own redirections (MOVED, ASK) and, when a primary
fails, retries on the replica the cluster promotes; it holds connections to every primary.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import BlockingConnectionPool, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import EqualJitterBackoff, ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, RedisClusterException, ResponseError

log = logging.getLogger("ollabot.store")

R = TypeVar("R")

# A single server (directly or through Sentinel) or a cluster: the same commands.
RedisClient = aioredis.Redis | RedisCluster

# About 2 to 4.5 s in all: long enough for the Sentinels to name the promoted replica after
# the old primary refused a write, short enough that users hear of an outage within seconds.
FAILOVER_RETRIES = 7
FAILOVER_BACKOFF = EqualJitterBackoff(cap=1.0, base=0.05)
FAILOVER_CODES = ("NOREPLICAS", "UNBLOCKED")

# Connections of one ordinary client at most (redis-py's own default size).
MAX_CONNECTIONS = 100


class SentinelBlockingConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
    """The primary's pool as the Sentinels name it, waiting for a free connection when all
    are busy (redis-py offers the two behaviours separately)."""


def waiting_pool(max_connections: int, socket_timeout_s: float) -> dict[str, Any]:
    """Options of a pool that lends at most ``max_connections`` connections and waits up to
    the socket timeout for one to come back."""
    return {"max_connections": max_connections, "timeout": socket_timeout_s}


def client_options(
    socket_timeout_s: float, block_ms: int, decode: bool = True
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Connection options of the ordinary and of the blocking client; without ``decode``
    replies stay bytes (vectors)."""
    ordinary = {
        "decode_responses": decode,
        "socket_timeout": socket_timeout_s,
        "socket_connect_timeout": socket_timeout_s,
        "retry": Retry(
            ExponentialWithJitterBackoff(cap=0.5, base=0.05),
            retries=2,
            supported_errors=(RedisConnectionError,),
        ),
    }
    blocking = {
        "decode_responses": True,
        "socket_timeout": block_ms / 1000 + socket_timeout_s,
        "socket_connect_timeout": socket_timeout_s,
        "retry": Retry(NoBackoff(), retries=0),
    }
    return ordinary, blocking


def clients_from_url(
    url: str,
    socket_timeout_s: float,
    block_ms: int,
    decode: bool = True,
    max_connections: int = MAX_CONNECTIONS,
) -> tuple[aioredis.Redis, aioredis.Redis]:
    """The ordinary and the blocking client of the server at ``url`` (connecting lazily)."""
    ordinary, blocking = client_options(socket_timeout_s, block_ms, decode)
    pool = BlockingConnectionPool.from_url(
        url, **waiting_pool(max_connections, socket_timeout_s), **ordinary
    )
    return aioredis.Redis.from_pool(pool), aioredis.Redis.from_url(url, **blocking)


class StreamCluster(RedisCluster):
    """A cluster client that finds the stream of an XREADGROUP itself: redis-py asks the
    server (COMMAND GETKEYS) on every read otherwise, doubling an idle worker's commands."""

    async def _determine_slot(self, command: str, *args: Any) -> int:
        if str(command).upper() != "XREADGROUP":
            return await super()._determine_slot(command, *args)
        words = [a.decode() if isinstance(a, bytes) else str(a) for a in args]
        streams = [word.upper() for word in words].index("STREAMS") + 1
        keys = words[streams:][: (len(words) - streams) // 2]
        slots = {self.keyslot(key) for key in keys}
        if len(slots) != 1:
            raise RedisClusterException(f"{command} - all keys must map to the same key slot")
        return slots.pop()


def clients_from_cluster(
    url: str,
    socket_timeout_s: float,
    block_ms: int,
    decode: bool = True,
    max_connections: int = MAX_CONNECTIONS,
) -> tuple[RedisCluster, RedisCluster]:
    """The ordinary and the blocking client of the cluster that ``url``'s node belongs to;
    the ordinary one holds at most ``max_connections`` to each node (redis-py's cluster
    client cannot wait for a free one: a command finding all busy fails)."""
    ordinary, blocking = client_options(socket_timeout_s, block_ms, decode)
    ordinary["retry"] = Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.05), retries=3)
    ordinary["max_connections"] = max_connections
    return RedisCluster.from_url(url, **ordinary), StreamCluster.from_url(url, **blocking)


def clients_from_sentinels(
    sentinels: Sequence[tuple[str, int]],
    service: str,
    url: str,
    socket_timeout_s: float,
    block_ms: int,
    decode: bool = True,
    max_connections: int = MAX_CONNECTIONS,
) -> tuple[aioredis.Redis, aioredis.Redis, Sentinel]:
    """The ordinary and the blocking client of ``service``'s primary as the Sentinels name it,
    and the Sentinel client (to close). Of ``url`` only the database, user name and password
    apply."""
    given: dict[str, Any] = dict(parse_url(url))
    auth = {name: given[name] for name in ("db", "username", "password") if name in given}
    ordinary, blocking = client_options(socket_timeout_s, block_ms, decode)
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        sentinels,
        sentinel_kwargs={
            "socket_timeout": socket_timeout_s,
            "socket_connect_timeout": socket_timeout_s,
            "retry": Retry(NoBackoff(), retries=0),
        },
    )
    return (
        sentinel.master_for(
            service,
            connection_pool_class=SentinelBlockingConnectionPool,
            **waiting_pool(max_connections, socket_timeout_s),
            **auth,
            **ordinary,
        ),
        sentinel.master_for(service, **auth, **blocking),
        sentinel,
    )


def is_failover(error: BaseException) -> bool:
    """Whether ``error`` comes from a primary that can no longer take writes.

    A pipeline's error names the command that failed before the server's reply, hence the
    search instead of a prefix match.
    """
    if isinstance(error, ReadOnlyError):
        return True
    return isinstance(error, ResponseError) and any(code in str(error) for code in FAILOVER_CODES)


async def after_failover(
    call: Callable[[], Awaitable[R]], reconnect: Callable[[], Awaitable[None]]
) -> R:
    """Run ``call`` (safe to repeat); while it meets a primary that cannot take writes, drop
    the idle connections and run it again after a pause, up to ``FAILOVER_RETRIES`` times."""
    for failures in range(1, FAILOVER_RETRIES + 1):
        try:
            return await call()
        except ResponseError as error:
            if not is_failover(error):
                raise
            log.warning("Redis primary refuses writes (%s); retry %d", error, failures)
        await reconnect()
        await asyncio.sleep(FAILOVER_BACKOFF.compute(failures))
    return await call()


async def drop_idle_connections(*clients: RedisClient) -> None:
    """Close the pools' idle connections; new ones (through Sentinel) find the primary anew.
    A cluster client finds the new primaries itself."""
    for client in clients:
        if isinstance(client, aioredis.Redis):
            await client.connection_pool.disconnect(inuse_connections=False)
