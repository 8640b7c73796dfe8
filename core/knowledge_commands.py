"""The ``kb`` commands: add a document (sent with the command, or the message replied to),
list, forget; ``kb on|off`` is an ordinary channel setting (``core.commands``).

Adding and forgetting are audited like settings changes. In a group only admins may change
the knowledge; in a private chat the chat is the author's own, so anyone may.
"""

from __future__ import annotations

from core.errors import FileRefused, InvalidCommand
from core.i18n import N_, _
from core.knowledge import Document
from core.knowledge_base import KnowledgeBase
from core.models import AuditEntry, ChannelSettings, IncomingMessage
from core.ports import ConversationStore

NOT_SET_UP = N_("Documents are not enabled on this deployment.")
HOW_TO_ADD = N_(
    "Send kb add as the caption of a text, Markdown or PDF file, or as a reply to a message."
)
ONLY_DOCUMENTS = N_("Only documents (text, Markdown, PDF) can be added, not photos or audio.")
REPLIED_MESSAGE = N_("a replied message")


def may_change_in_private(message: IncomingMessage, verb: str) -> bool:
    """Whether a ``kb`` change needs no admin: in a private chat the author owns the chat."""
    return verb == "kb" and not message.in_group


async def run(
    knowledge: KnowledgeBase | None,
    store: ConversationStore,
    message: IncomingMessage,
    action: str,
    args: tuple[str, ...],
    settings: ChannelSettings,
) -> str:
    """The answer to ``kb add``, ``kb list`` (``kb``) or ``kb forget ID``."""
    if knowledge is None:
        raise InvalidCommand(NOT_SET_UP)
    if action == "add":
        return await _add(knowledge, store, message, settings)
    if action == "forget":
        return await _forget(knowledge, store, message, args[0])
    return listing(await knowledge.documents(message.channel), settings)


async def _add(
    knowledge: KnowledgeBase,
    store: ConversationStore,
    message: IncomingMessage,
    settings: ChannelSettings,
) -> str:
    documents = [a for a in message.attachments if a.kind == "document"]
    if message.attachments and not documents:
        raise FileRefused(ONLY_DOCUMENTS)
    if documents:
        results = [await knowledge.add_file(message, a) for a in documents]
    elif message.replied_text.strip():
        name = message.replied_link or _(REPLIED_MESSAGE)
        results = [await knowledge.add_text(message, name, message.replied_text)]
    else:
        raise InvalidCommand(HOW_TO_ADD)
    lines = []
    for document, added in results:
        if added:
            await store.append_audit(_audit(message, "", f"add {document.id} {document.name}"))
            lines.append(
                _("Added {name} as {id}: {count} passages.").format(
                    name=document.name, id=document.id, count=document.passages
                )
            )
        else:
            lines.append(
                _("{name} is already here as {id}.").format(name=document.name, id=document.id)
            )
    if not settings.knowledge:
        lines.append(_("Answers do not use documents in this chat now; kb on turns that on."))
    return "\n".join(lines)


async def _forget(
    knowledge: KnowledgeBase, store: ConversationStore, message: IncomingMessage, doc_id: str
) -> str:
    document = await knowledge.forget(message.channel, doc_id.lower())
    if document is None:
        raise InvalidCommand(
            N_("There is no document {id} in this chat; kb list shows them."), id=doc_id
        )
    await store.append_audit(_audit(message, f"{document.id} {document.name}", ""))
    return _("Forgot {name} ({id}).").format(name=document.name, id=document.id)


def listing(documents: list[Document], settings: ChannelSettings) -> str:
    state = _("on") if settings.knowledge else _("off")
    if not documents:
        return (
            _("No documents in this chat yet (answers from documents: {state}).").format(
                state=state
            )
            + "\n"
            + _(HOW_TO_ADD)
        )
    lines = [_("Documents of this chat (answers from documents: {state}):").format(state=state)]
    lines += [
        _("{id} {name}: {count} passages").format(id=d.id, name=d.name, count=d.passages)
        for d in documents
    ]
    return "\n".join(lines)


def _audit(message: IncomingMessage, old: str, new: str) -> AuditEntry:
    return AuditEntry(message.channel, message.author_id, "kb", old, new)
