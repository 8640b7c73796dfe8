"""The store's key names, and which keys each script or transaction touches.

Redis Cluster runs a script or transaction only when all its keys hash to one slot, so every
key of a channel carries the hash tag of the channel's partition, ``{pN}`` (N = a stable hash
of the channel modulo ``partitions``): its inbox stream, dedupe markers, conversations,
lease, order, settings, audit log and usage. The number of partitions is fixed when the data
is first written (recorded under ``partitions``), so a channel never moves. Keys that a
script touches alone (the author's token bucket, instance leases, the layout record, the
dead letters of received payloads) carry no tag; an author's token bucket and the marker
that they were told of a refusal share a tag of their own, ``{u:platform:author}``.

Under ``prefix``, with ``P`` = ``{pN}`` of the message's channel:

    P:inbox:{platform}               stream of incoming messages (fields ``message``, ``seq``)
    P:seen:{platform}:{message_id}   dedupe marker, SET NX EX
    P:answered:{platform}:{id}       the reply stored for that message: {text, failed,
                                     deliver_by, reasoning}
    P:handle:{platform}:{id}         where that message's reply is shown
    P:conv:{conversation}            list of turns [role, content, seq, author]
    P:convmeta:{conversation}        hash: window_start
    P:order:{conversation}           hash: arrived (last seq given), done (last seq answered)
    P:lock:{conversation}            the lease: owner (the worker instance), SET PX
    P:stop:{conversation}            a stop asked of the lease holder: the tag of the reply
                                     to stop, or ``*`` for whatever it writes
    P:writing:{conversation}         the tag of the reply the lease holder writes
    P:backlog:{platform}:{channel}:{author}
                                     how many of the author's messages in the channel wait
    P:channel:{channel}              channel settings (no TTL)
    P:audit:{channel}                stream of the channel's settings changes (no TTL)
    P:usage:{day}:{channel}          GPU seconds of the channel on that day; ``:user:{id}``
                                     per author, ``:top`` a sorted set of authors
    {u:platform:author}:bucket       the author's token bucket: tokens, at
    {u:platform:author}:told         the author was told they are over the limit, SET NX EX
    deadletter                       capped stream of what was received but could not be
                                     read, stored or answered (platform, source, reason,
                                     payload)
    instance:{name}                  the lease on a worker instance name
    partitions                       the number of partitions the data was written with
"""

from __future__ import annotations

import zlib

from core.models import IncomingMessage

DEFAULT_PARTITIONS = 16


class RedisKeys:
    """Key names under ``prefix`` with ``partitions`` partitions."""

    def __init__(self, prefix: str, partitions: int = DEFAULT_PARTITIONS) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"the Redis key prefix may not contain braces: {prefix!r}")
        if partitions < 1:
            raise ValueError("there must be at least one partition")
        self.prefix = prefix
        self.partitions = partitions

    def partition(self, channel: str) -> int:
        """The channel's partition: the same in every process and release."""
        return zlib.crc32(channel.encode("utf-8", "surrogatepass")) % self.partitions

    def tagged(self, partition: int) -> str:
        """The start of every key of ``partition``."""
        return f"{self.prefix}{{p{partition}}}:"

    def _of(self, channel: str) -> str:
        return self.tagged(self.partition(channel))

    # Single keys

    def inbox(self, platform: str, partition: int) -> str:
        return f"{self.tagged(partition)}inbox:{platform}"

    def inboxes(self, platform: str) -> list[str]:
        return [self.inbox(platform, n) for n in range(self.partitions)]

    def seen(self, message: IncomingMessage) -> str:
        return f"{self._of(message.channel)}seen:{message.platform}:{message.message_id}"

    def answered(self, message: IncomingMessage) -> str:
        return f"{self._of(message.channel)}answered:{message.platform}:{message.message_id}"

    def handle(self, message: IncomingMessage) -> str:
        return f"{self._of(message.channel)}handle:{message.platform}:{message.message_id}"

    def backlog(self, message: IncomingMessage) -> str:
        m = message
        return f"{self._of(m.channel)}backlog:{m.platform}:{m.channel}:{m.author_id}"

    def _author(self, message: IncomingMessage) -> str:
        return f"{self.prefix}{{u:{message.platform}:{message.author_id}}}:"

    def bucket(self, message: IncomingMessage) -> str:
        return f"{self._author(message)}bucket"

    def told(self, message: IncomingMessage) -> str:
        return f"{self._author(message)}told"

    def conv(self, channel: str, conversation: str) -> str:
        return f"{self._of(channel)}conv:{conversation}"

    def meta(self, channel: str, conversation: str) -> str:
        return f"{self._of(channel)}convmeta:{conversation}"

    def order(self, channel: str, conversation: str) -> str:
        return f"{self._of(channel)}order:{conversation}"

    def lock(self, channel: str, conversation: str) -> str:
        return f"{self._of(channel)}lock:{conversation}"

    def stop(self, channel: str, conversation: str) -> str:
        return f"{self._of(channel)}stop:{conversation}"

    def writing(self, channel: str, conversation: str) -> str:
        return f"{self._of(channel)}writing:{conversation}"

    def settings(self, channel: str) -> str:
        return f"{self._of(channel)}channel:{channel}"

    def audit(self, channel: str) -> str:
        return f"{self._of(channel)}audit:{channel}"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}deadletter"

    def instance(self, name: str) -> str:
        return f"{self.prefix}instance:{name}"

    @property
    def layout(self) -> str:
        return f"{self.prefix}partitions"

    # What each script or transaction touches (in the order its KEYS expect)

    def admission(self, message: IncomingMessage) -> list[str]:
        """ARRIVE's keys: ENQUEUE's of the channel's partition."""
        c = message.channel
        return [
            self.seen(message),
            self.inbox(message.platform, self.partition(c)),
            self.order(c, message.conversation),
            self.backlog(message),
        ]

    def rate(self, message: IncomingMessage) -> list[str]:
        """REFUSE's keys (ADMIT's is the first): the author's."""
        return [self.bucket(message), self.told(message)]

    def enqueue(self, message: IncomingMessage) -> list[str]:
        """ENQUEUE's keys: the partition's and the author's (one server only)."""
        seen, inbox, order, backlog = self.admission(message)
        return [seen, inbox, order, self.bucket(message), backlog, self.told(message)]

    def acknowledge(self, message: IncomingMessage) -> list[str]:
        c = message.channel
        return [
            self.inbox(message.platform, self.partition(c)),
            self.backlog(message),
            self.order(c, message.conversation),
        ]

    def load_context(self, message: IncomingMessage) -> list[str]:
        c, conversation = message.channel, message.conversation
        return [
            self.settings(c),
            self.conv(c, conversation),
            self.meta(c, conversation),
            self.answered(message),
            self.lock(c, conversation),
            self.order(c, conversation),
            self.handle(message),
            self.writing(c, conversation),
        ]

    def complete(self, message: IncomingMessage) -> list[str]:
        c, conversation = message.channel, message.conversation
        return [
            self.conv(c, conversation),
            self.meta(c, conversation),
            self.answered(message),
            self.lock(c, conversation),
        ]

    def lease(self, channel: str, conversation: str) -> list[str]:
        """REQUEST_STOP's and KEEP_LEASE's keys."""
        return [
            self.lock(channel, conversation),
            self.stop(channel, conversation),
            self.writing(channel, conversation),
        ]

    def usage(self, message: IncomingMessage, day: str) -> list[str]:
        """The author's, the channel's and the top authors' use on ``day``."""
        base = f"{self._of(message.channel)}usage:{day}:{message.channel}"
        return [f"{base}:user:{message.author_id}", base, f"{base}:top"]

    def channel(self, channel: str) -> list[str]:
        """The settings and the audit log, written together."""
        return [self.settings(channel), self.audit(channel)]

    def conversation(self, channel: str, conversation: str) -> list[str]:
        """What forgetting a conversation deletes."""
        return [self.conv(channel, conversation), self.meta(channel, conversation)]

    def bury(self, platform: str, partition: int) -> list[str]:
        """BURY's keys (one server only; a cluster moves the entry in two steps)."""
        return [self.inbox(platform, partition), self.dead_letters]


def entry_id(partition: int, stream_id: str) -> str:
    """An inbox entry's id outside the store: the partition and the stream's id."""
    return f"{partition}/{stream_id}"


def split_entry_id(value: str) -> tuple[int, str] | None:
    """The partition and stream id of an id made by ``entry_id``; None for any other."""
    partition, slash, stream_id = value.partition("/")
    if not slash or not partition.isdigit():
        return None
    return int(partition), stream_id
