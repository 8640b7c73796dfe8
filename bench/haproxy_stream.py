"""Streaming through the HAProxy sidecar: what each chunk of a reply waits in the proxy.

Run: ``.venv/bin/python -m bench.haproxy_stream [--chunks 20] [--replies 5]``. Needs
``haproxy`` on the PATH; takes about 25 s. A fake Ollama host streams each reply in lockstep
with ollabot's client (``OllamaLLM``): it writes the next chunk only once the client has
received the previous one, so nothing queues and every chunk's delay is the path's alone.
Prints the median and p95 time from the client's go-ahead to the next chunk's arrival:

1. straight to the host (the floor);
2. through HAProxy as deploy/haproxy/ollabot.cfg configures it;
3. through the same HAProxy without ``option http-no-delay``, which holds back each small
   write while it expects more to follow (target: 2 stays within 1 ms of 1, 3 does not).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from adapters.ollama_llm import OllamaLLM
from core.models import ChatMessage, ChatRequest
from tests.fakes.ollama import FakeOllama, Reply
from tests.fixtures.haproxy import HAProxy, Host


async def chunk_delays(url: str, fake: FakeOllama, chunks: int, replies: int) -> list[float]:
    """Seconds from the go-ahead for each chunk (after the first) to its arrival; one reply
    more than asked is sent first, to open the connection, and not counted."""
    llm = OllamaLLM(url, retries=0)
    request = ChatRequest("llama3.1:8b", (ChatMessage("user", "stream"),), {}, "0123456789abcdef")
    delays: list[float] = []
    try:
        for index in range(replies + 1):
            step = asyncio.Semaphore(0)
            fake.script(Reply(text="".join(f" w{n}" for n in range(chunks)), step=step))
            released = 0.0
            async for event in llm.stream(request):
                if not event.delta:
                    continue
                if released and index:
                    delays.append(time.perf_counter() - released)
                released = time.perf_counter()
                step.release()
    finally:
        await llm.close()
    return delays


async def through_proxy(
    fake: FakeOllama, without: tuple[str, ...], args: argparse.Namespace
) -> list[float]:
    port = int(fake.url.rsplit(":", 1)[1])
    with tempfile.TemporaryDirectory() as workdir:
        proxy = HAProxy(Path(workdir), [Host("gpu1", port, 1)], without=without)
        await proxy.start(up={"gpu1"})
        try:
            return await chunk_delays(proxy.url, fake, args.chunks, args.replies)
        finally:
            await proxy.stop()


def summary(label: str, delays: list[float]) -> str:
    ms = sorted(d * 1000 for d in delays)
    p95 = ms[int(len(ms) * 0.95) - 1]
    return f"{label:<40} median {statistics.median(ms):7.2f} ms   p95 {p95:7.2f} ms"


async def main(args: argparse.Namespace) -> None:
    fake = await FakeOllama().start()
    try:
        direct = await chunk_delays(fake.url, fake, args.chunks, args.replies)
        shipped = await through_proxy(fake, (), args)
        delayed = await through_proxy(fake, ("option http-no-delay",), args)
    finally:
        await fake.stop()
    print(f"per-chunk delay, {args.replies} replies x {args.chunks} chunks in lockstep:")
    print(summary("1. straight to the host", direct))
    print(summary("2. HAProxy, deploy/haproxy/ollabot.cfg", shipped))
    print(summary("3. HAProxy without option http-no-delay", delayed))
    added = statistics.median(shipped) - statistics.median(direct)
    print(f"the shipped sidecar adds {added * 1000:.2f} ms per chunk (target < 1 ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--replies", type=int, default=5)
    asyncio.run(main(parser.parse_args()))
