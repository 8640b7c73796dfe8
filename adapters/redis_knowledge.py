"""The knowledge store in Redis: documents, passages and their vectors, searched by the
server's vector index when it has one, else exactly with numpy in this process.

Key layout under ``prefix`` (built in ``KnowledgeKeys`` only), no TTL, like channel settings;
``{pN}`` is the hash tag of the channel's partition, the one its conversations' keys carry
(``adapters.redis_keys``), so all of a channel's keys live in one Redis Cluster slot:

    kb:docs:{pN}:CHANNEL                hash: document id -> JSON {id, name, passages, ...}
    kb:passage:{pN}:CHANNEL:DOC:N       hash: channel (TAG), doc, n, source, text, dim,
                                        embedding (FLOAT32 bytes)
    kb:version:{pN}:CHANNEL             counter, raised by every add and forget
    kb:index:DIM                        the FT index of the passages of that dimension

Two ways to search the same data. With the query engine (Redis 8, or Redis Stack's search
module; ``FT._LIST`` answers) an index per vector dimension (``FT.CREATE ... VECTOR FLAT``,
cosine) is made on the passage hashes and a question is a KNN query filtered by channel.
Without it every passage vector of the channel is read once into a matrix, kept until the
channel's version counter moves, and searched by exact cosine (``adapters.vectors``).
On a Redis Cluster searches always take the second way: an index there covers only the
passages of the primary it was made on (open-source Redis has no coordinator to ask them all).

A document and all its passages are written, and forgotten, in one MULTI/EXEC: a reader sees
all of it or none of it (a cluster runs it too, on the primary of the channel's slot). With
an HNSW index Redis inserts every passage into the graph inside that transaction, which takes
seconds for a large document on a busy server; so writes go through a client of their own
with a longer socket timeout (``write_timeout_s``), while searches keep the short one and
fail fast when Redis is gone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from redis.asyncio.sentinel import Sentinel
from redis.exceptions import RedisClusterException, RedisError, ResponseError
from redis.typing import EncodableT

from adapters.redis_connect import (
    RedisClient,
    clients_from_cluster,
    clients_from_sentinels,
    clients_from_url,
)
from adapters.redis_keys import DEFAULT_PARTITIONS, RedisKeys
from adapters.redis_store import is_out_of_memory
from adapters.vectors import Matrix, as_float32, top_cosine, unit_rows
from core.errors import StoreFull, StoreUnavailable
from core.knowledge import Document, Hit, Passage

log = logging.getLogger("ollabot.knowledge")

PASSAGE_FIELDS = ("doc", "n", "source", "text", "embedding")
READ_PAGE = 500
CACHED_CHANNELS = 64  # channels whose vectors one process keeps for the numpy search
_TAG_SPECIAL = re.compile(r"([^A-Za-z0-9_])")


class KnowledgeKeys:
    """Every key of a channel's knowledge, from the channel and its partition's hash tag."""

    def __init__(self, prefix: str, partitions: int = DEFAULT_PARTITIONS) -> None:
        self.prefix = prefix
        self._tags = RedisKeys("", partitions)  # only the tag: the prefix leads the key here

    def slot(self, channel: str) -> str:
        """The channel as it appears in its keys, after its partition's hash tag (the same
        as the conversation store's keys of the channel carry)."""
        return f"{self._tags.tagged(self._tags.partition(channel))}{channel}"

    def documents(self, channel: str) -> str:
        return f"{self.prefix}kb:docs:{self.slot(channel)}"

    def version(self, channel: str) -> str:
        return f"{self.prefix}kb:version:{self.slot(channel)}"

    def passage(self, channel: str, document: str, number: int) -> str:
        return f"{self.prefix}kb:passage:{self.slot(channel)}:{document}:{number}"

    @property
    def passages(self) -> str:
        """What every passage key starts with (the FT index's PREFIX)."""
        return f"{self.prefix}kb:passage:"

    def index(self, dim: int) -> str:
        return f"{self.prefix}kb:index:{dim}"


@dataclass
class _Loaded:
    """A channel's passages and unit vectors by dimension, as read for the numpy search;
    valid while the channel's ``version`` holds."""

    version: int
    by_dim: dict[int, tuple[list[Passage], Matrix]]


class RedisKnowledge:
    """Implements ``KnowledgeStore`` on a client whose replies are bytes (one server, or a
    Redis Cluster, whose ``partitions`` must be the conversation store's).

    ``use_index``: True or False forces a way to search; None (the default) uses the index
    when the server answers ``FT._LIST``. ``algorithm``: ``FLAT`` (exact, cheap to write) or
    ``HNSW`` (approximate, faster searches on very large sets, slow to write).
    ``ef_runtime``: how many candidates an HNSW search keeps (Redis's default, 10, found under
    half of the exact top 8 among 100,000 random vectors in ``bench.knowledge_search``).
    """

    def __init__(
        self,
        client: RedisClient,
        prefix: str = "ollabot:",
        *,
        partitions: int = DEFAULT_PARTITIONS,
        writer: RedisClient | None = None,
        sentinels: Sequence[Sentinel] = (),
        use_index: bool | None = None,
        algorithm: str = "FLAT",
        ef_runtime: int = 100,
    ) -> None:
        self._redis = client
        self._writer = writer or client
        self._sentinels = tuple(sentinels)
        self.keys = KnowledgeKeys(prefix, partitions)
        self._use_index = use_index
        self._algorithm = algorithm
        self._ef_runtime = ef_runtime
        self._indexed_dims: set[int] = set()
        self._loaded: OrderedDict[str, _Loaded] = OrderedDict()  # least recently used first

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        socket_timeout_s: float = 2.0,
        write_timeout_s: float = 60.0,
        **kwargs: Any,
    ) -> RedisKnowledge:
        """Clients connecting lazily to ``url`` (the ones not used hold no connection)."""
        client, _ = clients_from_url(url, socket_timeout_s, 0, decode=False)
        writer, _ = clients_from_url(url, write_timeout_s, 0, decode=False)
        return cls(client, writer=writer, **kwargs)

    @classmethod
    def from_sentinels(
        cls,
        sentinels: Sequence[tuple[str, int]],
        service: str,
        url: str,
        *,
        socket_timeout_s: float = 2.0,
        write_timeout_s: float = 60.0,
        **kwargs: Any,
    ) -> RedisKnowledge:
        client, _, sentinel = clients_from_sentinels(
            sentinels, service, url, socket_timeout_s, 0, decode=False
        )
        writer, _, writer_sentinel = clients_from_sentinels(
            sentinels, service, url, write_timeout_s, 0, decode=False
        )
        return cls(client, writer=writer, sentinels=(sentinel, writer_sentinel), **kwargs)

    @classmethod
    def from_cluster(
        cls,
        url: str,
        *,
        socket_timeout_s: float = 2.0,
        write_timeout_s: float = 60.0,
        **kwargs: Any,
    ) -> RedisKnowledge:
        """Clients of the Redis Cluster that the node at ``url`` belongs to, searching with
        numpy (see the module's notes)."""
        client, _ = clients_from_cluster(url, socket_timeout_s, 0, decode=False)
        writer, _ = clients_from_cluster(url, write_timeout_s, 0, decode=False)
        return cls(client, writer=writer, use_index=False, **kwargs)

    async def close(self) -> None:
        await self._redis.aclose()
        if self._writer is not self._redis:
            await self._writer.aclose()
        for sentinel in self._sentinels:
            await sentinel.aclose()

    async def uses_index(self) -> bool:
        """Whether searches go to the server's vector index (asked once)."""
        if self._use_index is None:
            async with _translated():
                self._use_index = await _has_query_engine(self._redis)
            log.info("knowledge search: %s", "Redis index" if self._use_index else "numpy")
        return self._use_index

    # -- KnowledgeStore -----------------------------------------------------------------------

    async def add(
        self,
        channel: str,
        document: Document,
        passages: Sequence[Passage],
        vectors: Sequence[Sequence[float]],
    ) -> None:
        if len(passages) != len(vectors):
            raise ValueError("one vector per passage")
        blobs = [as_float32(v).tobytes() for v in vectors]
        dims = {len(v) for v in vectors}
        if await self.uses_index():
            for dim in dims:
                await self._ensure_index(dim)
        async with _translated(), self._writer.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.documents(channel), document.id, _encode_document(document))
            for passage, blob, vector in zip(passages, blobs, vectors, strict=True):
                key = self.keys.passage(channel, document.id, passage.number)
                pipe.hset(key, mapping=_passage_fields(channel, passage, blob, len(vector)))
            pipe.incr(self.keys.version(channel))
            await pipe.execute()

    async def documents(self, channel: str) -> list[Document]:
        async with _translated():
            raw: dict[Any, Any] = await self._redis.hgetall(self.keys.documents(channel))
        documents = [d for d in map(_decode_document, raw.values()) if d is not None]
        return sorted(documents, key=lambda d: (d.added_at, d.id))

    async def forget(self, channel: str, document_id: str) -> Document | None:
        async with _translated():
            raw = await self._redis.hget(self.keys.documents(channel), document_id)
            document = _decode_document(raw) if raw else None
            if document is None:
                return None
            async with self._writer.pipeline(transaction=True) as pipe:
                for number in range(1, document.passages + 1):
                    pipe.delete(self.keys.passage(channel, document_id, number))
                pipe.hdel(self.keys.documents(channel), document_id)
                pipe.incr(self.keys.version(channel))
                await pipe.execute()
        return document

    async def search(self, channel: str, vector: Sequence[float], count: int) -> list[Hit]:
        if count <= 0:
            return []
        if await self.uses_index():
            return await self._index_search(channel, vector, count)
        loaded = await self._load(channel)
        passages, matrix = loaded.by_dim.get(len(vector), ([], np.zeros((0, 0), np.float32)))
        return [Hit(passages[row], score) for row, score in top_cosine(matrix, vector, count)]

    # -- the server's index -------------------------------------------------------------------

    async def _ensure_index(self, dim: int) -> None:
        if dim in self._indexed_dims:
            return
        vector = ["TYPE", "FLOAT32", "DIM", str(dim), "DISTANCE_METRIC", "COSINE"]
        if self._algorithm == "HNSW":
            vector += ["EF_RUNTIME", str(self._ef_runtime)]
        command = [
            *("FT.CREATE", self.keys.index(dim), "ON", "HASH"),
            *("PREFIX", "1", self.keys.passages, "FILTER", f"@dim=={dim}"),
            *("SCHEMA", "channel", "TAG", "dim", "NUMERIC", "embedding", "VECTOR"),
            *(self._algorithm, str(len(vector)), *vector),
        ]
        async with _translated():
            try:
                await self._writer.execute_command(*command)
            except ResponseError as error:
                if "already exists" not in str(error).lower():
                    raise
        self._indexed_dims.add(dim)

    async def _index_search(self, channel: str, vector: Sequence[float], count: int) -> list[Hit]:
        dim = len(vector)
        await self._ensure_index(dim)
        query = f"(@channel:{{{tag_value(channel)}}})=>[KNN {count} @embedding $vector AS score]"
        async with _translated():
            reply = await self._redis.execute_command(
                *("FT.SEARCH", self.keys.index(dim), query),
                *("PARAMS", "2", "vector", as_float32(vector).tobytes()),
                *("SORTBY", "score", "RETURN", "5", "doc", "n", "source", "text", "score"),
                *("LIMIT", "0", str(count), "DIALECT", "2"),
            )
        return [_hit(fields) for fields in _documents_of(reply)]

    # -- numpy --------------------------------------------------------------------------------

    async def _load(self, channel: str) -> _Loaded:
        """The channel's passages and unit vectors, read again only after a change."""
        async with _translated():
            version = int(await self._redis.get(self.keys.version(channel)) or 0)
            cached = self._loaded.get(channel)
            if cached is not None and cached.version == version:
                self._loaded.move_to_end(channel)
                return cached
            grouped: dict[int, tuple[list[Passage], list[Matrix]]] = {}
            async for fields in self._passage_fields(channel):
                if fields[4] is None:
                    continue
                row = np.frombuffer(fields[4], dtype=np.float32)
                passages, rows = grouped.setdefault(len(row), ([], []))
                passages.append(_passage_of(fields))
                rows.append(row)
        by_dim = {dim: (p, unit_rows(np.stack(rows))) for dim, (p, rows) in grouped.items()}
        loaded = self._loaded[channel] = _Loaded(version, by_dim)
        self._loaded.move_to_end(channel)
        while len(self._loaded) > CACHED_CHANNELS:
            self._loaded.popitem(last=False)
        return loaded

    async def _passage_fields(self, channel: str) -> AsyncIterator[list[Any]]:
        keys = [
            self.keys.passage(channel, d.id, n)
            for d in await self.documents(channel)
            for n in range(1, d.passages + 1)
        ]
        for start in range(0, len(keys), READ_PAGE):
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys[start : start + READ_PAGE]:
                    pipe.hmget(key, PASSAGE_FIELDS)
                for fields in await pipe.execute():
                    yield fields


async def _has_query_engine(client: RedisClient) -> bool:
    try:
        await client.execute_command("FT._LIST")
    except ResponseError:
        return False
    return True


@contextlib.asynccontextmanager
async def _translated() -> AsyncIterator[None]:
    try:
        yield
    except (RedisError, RedisClusterException, OSError) as error:
        if is_out_of_memory(error):
            raise StoreFull() from error
        raise StoreUnavailable() from error


def tag_value(value: str) -> str:
    """``value`` for a TAG query: every character but letters, digits and _ escaped."""
    return _TAG_SPECIAL.sub(r"\\\1", value)


def _passage_fields(
    channel: str, passage: Passage, blob: bytes, dim: int
) -> dict[EncodableT, EncodableT]:
    return {
        "channel": channel,
        "doc": passage.document,
        "n": passage.number,
        "source": passage.source,
        "text": passage.text,
        "dim": dim,
        "embedding": blob,
    }


def _passage_of(fields: Sequence[Any]) -> Passage:
    doc, number, source, text = (bytes(f or b"").decode() for f in fields[:4])
    return Passage(doc, source, int(number or 0), text)


def _documents_of(reply: Any) -> list[dict[str, Any]]:
    """The field maps of an ``FT.SEARCH`` reply (RESP2: count, key, fields, key, fields…)."""
    if isinstance(reply, dict):  # RESP3
        return [
            {_text(k): v for k, v in r.get(b"extra_attributes", {}).items()}
            for r in reply.get(b"results", [])
        ]
    flat = reply[2::2]
    return [{_text(k): v for k, v in zip(f[::2], f[1::2], strict=True)} for f in flat]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _hit(fields: dict[str, Any]) -> Hit:
    passage = _passage_of([fields.get(name) for name in ("doc", "n", "source", "text")])
    return Hit(passage, 1.0 - float(_text(fields.get("score", b"1"))))


def _encode_document(document: Document) -> str:
    return json.dumps(asdict(document), ensure_ascii=False)


def _decode_document(raw: bytes | str) -> Document | None:
    try:
        data = json.loads(raw)
        known = Document.__dataclass_fields__
        return Document(**{k: v for k, v in data.items() if k in known})
    except (ValueError, TypeError):
        log.warning("unreadable knowledge document entry")
        return None
