"""One live process per worker name: a lease in Redis, renewed while the process runs.

The name is the inbox consumer and the conversation-lease owner, so a process restarted under
the same name takes its own unfinished messages back at once. The lease's holder value is
``host:pid:nonce``: a holder on this host whose process is gone is replaced at once, one
elsewhere only when its lease lapses.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

import structlog

from core.errors import StoreUnavailable
from core.stopping import stopped_after

log = structlog.get_logger("ollabot.instance")

TTL_MS = 10_000


class InstanceStore(Protocol):
    async def claim_instance(
        self, name: str, holder: str, ttl_ms: int, dead_holder: str = ""
    ) -> str | None: ...

    async def release_instance(self, name: str, holder: str) -> None: ...


class InstanceTaken(Exception):
    """Another live process holds the name."""


def default_instance() -> str:
    """The host name: one ollabot process per host unless ``OLLABOT_INSTANCE`` says more."""
    return socket.gethostname()


@contextlib.asynccontextmanager
async def held_instance(
    store: InstanceStore, names: list[str], wait_s: float
) -> AsyncIterator[str]:
    """Hold the first of ``names`` that is free (waiting up to ``wait_s`` for the last one
    to lapse) for as long as the block runs; raise ``InstanceTaken`` if none comes free."""
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    name = await _claim_one(store, names, holder, wait_s)
    done = asyncio.Event()  # as well as cancelling: a Redis client may swallow that
    keeper = asyncio.create_task(_keep(store, name, holder, done))
    try:
        yield name
    finally:
        done.set()
        keeper.cancel()
        with contextlib.suppress(StoreUnavailable):
            await store.release_instance(name, holder)


async def _claim_one(store: InstanceStore, names: list[str], holder: str, wait_s: float) -> str:
    for index, name in enumerate(names):
        last = index == len(names) - 1
        if await _claim(store, name, holder, wait_s if last else 0.0):
            return name
    raise InstanceTaken(names[-1])


async def _claim(store: InstanceStore, name: str, holder: str, wait_s: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline, dead = loop.time() + wait_s, ""
    while True:
        current = await store.claim_instance(name, holder, TTL_MS, dead)
        if current is None:
            return True
        if _gone(current) and current != dead:
            dead = current
            continue
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.5)


async def _keep(store: InstanceStore, name: str, holder: str, done: asyncio.Event) -> None:
    while not await stopped_after(done, TTL_MS / 3000):
        try:
            current = await store.claim_instance(name, holder, TTL_MS)
        except StoreUnavailable:
            continue
        if current is not None:
            log.error("instance name taken over by another process", instance=name, by=current)


def _gone(holder: str) -> bool:
    """Whether ``holder`` was a process on this host that no longer runs."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")  # a zombie has exited already
