"""Scale benchmark: what Redis Cluster costs per message, on the servers and in the client.

Run: ``.venv/bin/python -m bench.scale [--messages 2000] [--channels 64] [--rounds 3]``.
Needs ``redis-server`` and ``redis-cli`` on the PATH. Starts a single Redis and a 3-primary
Redis Cluster on loopback and sends the same messages through the store's steps of one
message (enqueue, take, load the context, complete, acknowledge; no model, no platform) on
each, then leaves a worker's reading loop idle. Prints, the median of ``--rounds`` runs:

1. Redis CPU per message (user + system, summed over the cluster's primaries, less what the
   servers spend idle in as long), Cluster against a single server (target: Cluster adds
   none);
2. client CPU per message (this process), ``RedisCluster`` against ``Redis`` (target 1.2);
3. the idle cost of the partition readers: commands per second a waiting worker sends, and
   the client's and the servers' CPU per second, on each.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis

from adapters.redis_store import RedisStore
from core.models import IncomingMessage, Outcome, StoredReply, Turn, TurnState
from tests.fixtures.cluster import LocalCluster, redis_binary
from tests.fixtures.redis import RedisServer

PLATFORM = "bench"
WORKER = "bench-worker"
BATCH = 50
IDLE_S = 3.0


def message(n: int, channels: int, round_: int) -> IncomingMessage:
    channel = f"chan{n % channels}"
    return IncomingMessage(
        platform=PLATFORM,
        message_id=f"r{round_}m{n}",
        conversation=channel,
        channel=channel,
        author_id=f"u{n % 7}",
        author_name="Alice",
        text="hello there, how are you today?",
    )


@dataclass
class Servers:
    """The ports of the servers behind a store, to read their CPU and command counts."""

    ports: list[int]

    async def totals(self) -> tuple[float, int]:
        """CPU seconds (user + system) and commands processed, summed over the servers."""
        cpu, commands = 0.0, 0
        for port in self.ports:
            client = aioredis.Redis(port=port, decode_responses=True)
            try:
                info = await client.info("all")
            finally:
                await client.aclose()
            cpu += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
            commands += int(info["total_commands_processed"])
        return cpu, commands


@dataclass
class Cost:
    """What one measured stretch cost: server and client CPU seconds, server commands."""

    server_s: float
    client_s: float
    commands: int
    wall_s: float


async def measured(servers: Servers, work: Callable[[], Awaitable[None]]) -> Cost:
    cpu, commands = await servers.totals()
    client, wall = time.process_time(), time.perf_counter()
    await work()
    client, wall = time.process_time() - client, time.perf_counter() - wall
    cpu_after, commands_after = await servers.totals()
    return Cost(cpu_after - cpu, client, commands_after - commands, wall)


async def one_by_one(store: RedisStore, messages: list[IncomingMessage]) -> None:
    """Each message through the store's steps, as receiver and worker take them."""
    for incoming in messages:
        await store.enqueue(incoming)
    done = 0
    while done < len(messages):
        for entry in await store.take(PLATFORM, WORKER, BATCH):
            context = await store.load_context(entry, 20, WORKER, 30_000)
            assert context.state is TurnState.READY, context.state
            turns = (Turn("user", entry.message.text, entry.seq), Turn("assistant", "hi", 0))
            outcome = Outcome(turns, context.window_start, "hi")
            await store.complete(entry, outcome, StoredReply("hi"), WORKER)
            await store.acknowledge(entry)
            done += 1


async def idle_reader(store: RedisStore) -> None:
    """A worker waiting for messages that do not come, for ``IDLE_S``."""
    deadline = time.monotonic() + IDLE_S
    while time.monotonic() < deadline:
        assert await store.take(PLATFORM, WORKER, BATCH) == []


async def idle(_: float = IDLE_S) -> None:
    await asyncio.sleep(IDLE_S)


@dataclass
class Figures:
    commands_per_message: float
    server_per_message_us: float
    client_per_message_us: float
    idle_commands_per_s: float
    idle_client_ms_per_s: float
    idle_server_ms_per_s: float


async def figures(
    store: RedisStore, servers: Servers, messages: int, channels: int, round_: int
) -> Figures:
    await store.ensure_layout()
    warm = [message(n, channels, -1 - round_) for n in range(channels)]
    await one_by_one(store, warm)  # groups created, scripts cached, connections open
    quiet = await measured(servers, idle)
    batch = [message(n, channels, round_) for n in range(messages)]
    busy = await measured(servers, lambda: one_by_one(store, batch))
    waiting = await measured(servers, lambda: idle_reader(store))
    background = quiet.server_s / quiet.wall_s  # what the servers spend with no client
    return Figures(
        busy.commands / messages,
        (busy.server_s - background * busy.wall_s) / messages * 1e6,
        busy.client_s / messages * 1e6,
        waiting.commands / waiting.wall_s,
        waiting.client_s / waiting.wall_s * 1e3,
        max(waiting.server_s - background * waiting.wall_s, 0.0) / waiting.wall_s * 1e3,
    )


def options() -> dict[str, int]:
    return {"rate_per_minute": 10**9, "max_backlog": 10**9}


async def run(args: argparse.Namespace, single: RedisServer, cluster: LocalCluster) -> None:
    results: dict[str, list[Figures]] = {"single": [], "cluster": []}
    for round_ in range(args.rounds):
        prefix = f"scale-{round_}:"
        stores = {
            "single": (RedisStore.from_url(single.url, prefix=prefix, **options()), [single.port]),
            "cluster": (
                RedisStore.from_cluster(cluster.url, prefix=prefix, **options()),
                [node.port for node in cluster.nodes],
            ),
        }
        for name, (store, ports) in stores.items():
            try:
                found = await figures(store, Servers(ports), args.messages, args.channels, round_)
                results[name].append(found)
            finally:
                await store.close()
    report(results, args)


def median(found: list[Figures], field: str) -> float:
    return float(statistics.median(float(getattr(f, field)) for f in found))


def ratios(results: dict[str, list[Figures]], field: str) -> str:
    """Cluster over single: of the best rounds (other work on the machine only ever adds
    CPU time), and per round (each runs both, one after the other): the median and range."""
    single = [float(getattr(f, field)) for f in results["single"]]
    cluster = [float(getattr(f, field)) for f in results["cluster"]]
    found = [c / s for s, c in zip(single, cluster, strict=True)]
    return (
        f"ratio {min(cluster) / min(single):.2f} of the best rounds; per round median "
        f"{statistics.median(found):.2f}, {min(found):.2f}-{max(found):.2f}"
    )


def report(results: dict[str, list[Figures]], args: argparse.Namespace) -> None:
    single, cluster = results["single"], results["cluster"]
    print(
        f"{args.messages} messages over {args.channels} channels, {args.rounds} rounds "
        "(medians); Cluster: 3 primaries, 16 partitions"
    )
    s, c = median(single, "server_per_message_us"), median(cluster, "server_per_message_us")
    print(
        f"1. Redis CPU per message: single {s:.1f} us, Cluster {c:.1f} us (all primaries): "
        f"{ratios(results, 'server_per_message_us')}, target 1.00"
    )
    s, c = median(single, "commands_per_message"), median(cluster, "commands_per_message")
    print(f"   commands Redis ran per message, in scripts too: single {s:.1f}, Cluster {c:.1f}")
    s, c = median(single, "client_per_message_us"), median(cluster, "client_per_message_us")
    print(
        f"2. client CPU per message: Redis {s:.1f} us, RedisCluster {c:.1f} us: "
        f"{ratios(results, 'client_per_message_us')}, target <= 1.2"
    )
    print("3. idle partition readers (one waiting worker):")
    for name, found in results.items():
        print(
            f"   {name:8s}{median(found, 'idle_commands_per_s'):6.1f} commands/s, client "
            f"{median(found, 'idle_client_ms_per_s'):5.2f} ms CPU/s, Redis "
            f"{median(found, 'idle_server_ms_per_s'):5.2f} ms CPU/s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        single = RedisServer(Path(tmp) / "single")
        cluster = LocalCluster(Path(tmp) / "cluster", redis_binary())
        for directory in (single.workdir, Path(tmp) / "cluster"):
            directory.mkdir()
        single.start()
        try:
            cluster.start()
            try:
                asyncio.run(run(args, single, cluster))
            finally:
                cluster.stop()
        finally:
            single.stop()


if __name__ == "__main__":
    main()
