"""Plain value types shared by the core and the adapters."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, NamedTuple

Role = Literal["system", "user", "assistant"]
ThinkMode = Literal["show", "hide"]


class Turn(NamedTuple):
    """One stored message of a conversation; ``seq`` increases by one per turn.

    A NamedTuple rather than a dataclass: a reply builds hundreds of these, and tuples are
    several times cheaper to create.
    """

    role: Role
    content: str
    seq: int = 0
    author: str = ""


AttachmentKind = Literal["image", "audio", "document"]


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file sent with a message, by reference: the worker fetches its bytes through the
    platform's ``FileSource`` when it answers, so the inbox never holds file contents.

    ``ref`` is what that source needs (a Telegram ``file_id``, a Slack ``url_private``);
    ``size`` is the platform's figure in bytes (0: unknown).
    """

    kind: AttachmentKind
    ref: str
    name: str = ""
    mime: str = ""
    size: int = 0


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A platform message in neutral form, as written to the inbox.

    ``message_id`` is the platform's delivery id (dedupe key); ``reply_to`` is an opaque
    address only the platform's sink understands.
    """

    platform: str
    message_id: str
    conversation: str
    channel: str
    author_id: str
    author_name: str
    text: str
    is_admin: bool = False
    in_group: bool = False
    is_command: bool = False
    command_prefix: str = "/"
    reply_to: dict[str, str] = field(default_factory=dict)
    language: str = ""  # the author's language code as the platform gives it ("es", "en-US")
    attachments: tuple[Attachment, ...] = ()
    # The message this one replies to, where a command uses it (``kb add``): its text and a
    # link to it (empty where the platform has none, as in private chats). A ``kb`` command
    # replying to a document carries the document in ``attachments``.
    replied_text: str = ""
    replied_link: str = ""
    # A press of the Stop button under a reply: that reply's ``reply_tag``, so a late press
    # stops nothing else. Empty for a typed ``stop``: whatever is being written stops.
    stops: str = ""

    @property
    def reply_tag(self) -> str:
        """A short name (six characters) of the reply to this message, which its Stop
        button carries (Telegram allows a button 64 bytes of data)."""
        digest = hashlib.blake2b(f"{self.platform}:{self.message_id}".encode(), digest_size=4)
        return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """An inbox record: the stream entry id, the message it holds and the message's place in
    its conversation (``seq``, counted from 1 on arrival; 0 when unknown: no order is kept)."""

    entry_id: str
    message: IncomingMessage
    seq: int = 0


class Admission(StrEnum):
    """What the inbox did with an arriving message."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # seen before: already queued or answered
    LIMITED = "limited"  # refused (too fast or too many queued); tell the author
    LIMITED_QUIETLY = "limited_quietly"  # refused, and the author was told in this window


class TurnState(StrEnum):
    """Whether a message may be answered now."""

    READY = "ready"  # the lease is ours and every earlier message is done
    BUSY = "busy"  # another worker holds the conversation's lease
    WAITING = "waiting"  # an earlier message of the conversation is not done yet


@dataclass(frozen=True, slots=True)
class StoredReply:
    """What a message was answered with, kept until the platform confirms delivery.

    ``failed``: a notice rather than an answer. ``deliver_by``: epoch seconds after which the
    delivery is given up.
    """

    text: str
    failed: bool = False
    deliver_by: float = 0.0
    reasoning: str = ""  # a thinking model's reasoning, shown folded; never in the history


@dataclass(frozen=True, slots=True)
class GenerationParams:
    """Sampling parameters of one request (a preset with overrides applied)."""

    temperature: float
    top_p: float
    top_k: int
    max_tokens: int
    repeat_penalty: float


@dataclass(slots=True)
class ChannelSettings:
    """What admins set for one channel; ``None`` means the deployment default."""

    preset: str = "balanced"
    overrides: dict[str, float] = field(default_factory=dict)
    system_prompt: str | None = None
    fewshot: str | None = None
    model: str | None = None
    user_quota_s: dict[str, float] = field(default_factory=dict)  # author id -> a day's
    channel_quota_s: float | None = None  # GPU seconds a day for the whole channel
    knowledge: bool = True  # answers draw on the channel's documents (``kb on|off``)
    think: ThinkMode = "hide"  # whether a thinking model's reasoning is shown with the answer


class ChatMessage(NamedTuple):
    """One message of a request to the model; ``images`` (encoded files: JPEG, PNG…) go with
    the turn that asks about them and are never stored."""

    role: Role
    content: str
    images: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """Everything the LLM port needs for one streamed reply; ``affinity`` names the
    conversation for a proxy in front of several model hosts (empty: no preference)."""

    model: str
    messages: tuple[ChatMessage, ...]
    options: dict[str, float | int]
    affinity: str = ""


class DoneReason(StrEnum):
    STOP = "stop"
    LENGTH = "length"
    STOPPED = "stopped"  # by the user (/stop), not by the model
    UNKNOWN = ""


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """A piece of a streamed reply; the last one has ``done`` and the counts.

    ``thinking``: a piece of a thinking model's reasoning, which comes before the answer.
    """

    delta: str = ""
    thinking: str = ""
    done: bool = False
    done_reason: DoneReason = DoneReason.UNKNOWN
    prompt_eval_count: int = 0
    eval_count: int = 0
    eval_duration_ns: int = 0
    prompt_eval_duration_ns: int = 0


@dataclass(frozen=True, slots=True)
class ConversationContext:
    """What the store returns before a reply: settings, the history window and its state.

    Unless ``state`` is READY nothing else is set. ``answered``: the reply already stored for
    this message (to be delivered, not generated again); ``handle``: where an earlier attempt
    left its streamed preview, for the sink to finish it.
    """

    settings: ChannelSettings
    history: tuple[Turn, ...]
    window_start: int
    answered: StoredReply | None = None
    handle: dict[str, str] = field(default_factory=dict)
    state: TurnState = TurnState.READY
    replaces_from: int = -1  # a retry: the answer replaces the stored turns from this seq on


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """Who changed, or tried to change, what in which channel, with the old and new value.

    ``outcome`` is ``changed`` or ``refused: <why>``; ``at`` (Unix seconds) is set by the store.
    """

    channel: str
    actor: str
    field: str
    old: str
    new: str
    outcome: str = "changed"
    at: float = 0.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """A finished reply: the two turns to append, the new window start, the reply text.

    ``replaces_from``: stored turns from this ``seq`` on are dropped first (a regenerated
    answer replaces the old exchange; an undo drops it); -1 keeps them all.
    """

    turns: tuple[Turn, ...]
    window_start: int
    reply: str
    replaces_from: int = -1


@dataclass(frozen=True, slots=True)
class Usage:
    """GPU seconds spent today (UTC): by one user in a channel, by the whole channel, and the
    channel's top users (author id, seconds), most first."""

    user_s: float = 0.0
    channel_s: float = 0.0
    top: tuple[tuple[str, float], ...] = ()
