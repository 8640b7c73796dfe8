"""A channel's knowledge: documents split into passages, the passages a question finds, and
how they join the prompt and the answer's list of sources.

Pure: splitting, choosing within a token budget and formatting. Storing, embedding and
searching are ports (``Embedder``, ``KnowledgeStore``); ``core.knowledge_base`` drives them.

Budget priority, highest first: the system prompt, the few-shot examples and the new message
(never dropped); then the retrieved passages, best first, up to a share of what is left; then
the history, trimmed as before in whole pairs from the oldest.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.i18n import _
from core.models import ChatMessage

# Said to the model, like the default system prompt: not a user-facing text.
CONTEXT_INTRO = (
    "Passages from this chat's documents follow. Use them when they answer the question, "
    "and cite each one you use by its number in brackets, like [1]. "
    "If they do not answer it, say so rather than guess."
)
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+\S")
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
_CITED = re.compile(r"\[(\d{1,3})\]")


@dataclass(frozen=True, slots=True)
class Passage:
    """One piece of a document: ``number`` counts from 1 within it (the "#" of a citation)."""

    document: str
    source: str
    number: int
    text: str


@dataclass(frozen=True, slots=True)
class Document:
    """What ``kb list`` shows: ``name`` is the file name or the message link."""

    id: str
    name: str
    passages: int
    added_by: str = ""
    added_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Hit:
    """A passage found for a question; ``score`` is the cosine similarity (higher: closer)."""

    passage: Passage
    score: float


@dataclass(frozen=True, slots=True)
class Splitting:
    """Passage size and overlap, in characters (about four per token in English)."""

    max_chars: int = 1000
    overlap_chars: int = 150


def document_id(channel: str, text: str) -> str:
    """A short id from the channel and the content: the same text added twice is one document."""
    return hashlib.sha256(f"{channel}\0{text}".encode()).hexdigest()[:8]


def split(text: str, splitting: Splitting = Splitting()) -> list[str]:
    """The text as passages: paragraphs gathered up to ``max_chars``, a heading always opening
    a new passage, an oversized paragraph cut at sentence (else word) boundaries; each passage
    after the first of a section repeats the end of the one before (``overlap_chars``)."""
    passages: list[str] = []
    # Pieces leave room for the overlap, so that every passage can start with one.
    piece_chars = max(1, splitting.max_chars - splitting.overlap_chars - 2)
    for section in _sections(text):
        pieces = [p for block in section for p in _pieces(block, piece_chars)]
        passages += _packed(pieces, splitting)
    return passages


def _sections(text: str) -> list[list[str]]:
    """Paragraphs grouped by heading (a heading starts a section and stays with its text)."""
    sections: list[list[str]] = [[]]
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        block = block.strip()
        if not block:
            continue
        if _HEADING.match(block) and sections[-1]:
            sections.append([])
        sections[-1].append(block)
    return [s for s in sections if s]


def _pieces(block: str, max_chars: int) -> list[str]:
    """A paragraph no longer than ``max_chars``, or its sentences (or words) in such runs."""
    if len(block) <= max_chars:
        return [block]
    units = _SENTENCE_END.split(block)
    if any(len(u) > max_chars for u in units):
        units = block.split()
    runs: list[str] = []
    for unit in units:
        for part in _hard_cut(unit, max_chars):
            if runs and len(runs[-1]) + 1 + len(part) <= max_chars:
                runs[-1] += " " + part
            else:
                runs.append(part)
    return runs


def _hard_cut(unit: str, max_chars: int) -> list[str]:
    return [unit[i : i + max_chars] for i in range(0, len(unit), max_chars)] or [unit]


def _packed(pieces: Sequence[str], splitting: Splitting) -> list[str]:
    passages: list[str] = []
    current = ""
    for piece in pieces:
        if current and len(current) + 2 + len(piece) > splitting.max_chars:
            passages.append(current)
            current = _tail(current, splitting.overlap_chars)
            if current and len(current) + 2 + len(piece) > splitting.max_chars:
                current = ""
        current = f"{current}\n\n{piece}" if current else piece
    if current:
        passages.append(current)
    return passages


def _tail(text: str, chars: int) -> str:
    """The last ``chars`` characters of ``text``, starting at a word."""
    if chars <= 0 or len(text) <= chars:
        return "" if chars <= 0 else text
    tail = text[-chars:]
    space = tail.find(" ")
    return tail[space + 1 :] if 0 <= space < len(tail) - 1 else tail


def citation(passage: Passage) -> str:
    """How a passage is named to the model and to the reader: ``manual.pdf #3``."""
    return f"{passage.source} #{passage.number}"


def context_message(passages: Sequence[Passage]) -> ChatMessage:
    """The block of retrieved passages, numbered as the answer cites them."""
    parts = [CONTEXT_INTRO]
    parts += [f"[{n}] {citation(p)}:\n{p.text}" for n, p in enumerate(passages, 1)]
    return ChatMessage("system", "\n\n".join(parts))


def choose(
    hits: Sequence[Hit],
    budget_tokens: int,
    cost: Callable[[Sequence[Passage]], int],
    most: int,
) -> tuple[Passage, ...]:
    """The best passages whose block costs at most ``budget_tokens`` (at most ``most`` of
    them): best first, a passage too large for what is left skipped for a smaller next one."""
    chosen: list[Passage] = []
    for hit in sorted(hits, key=lambda h: h.score, reverse=True):
        if len(chosen) >= most:
            break
        if hit.passage in chosen:
            continue
        if cost([*chosen, hit.passage]) <= budget_tokens:
            chosen.append(hit.passage)
    return tuple(chosen)


def sources_line(passages: Sequence[Passage], answer: str) -> str:
    """The answer's sources: those it cites as [n], or all it was given when it cites none."""
    if not passages:
        return ""
    cited = sorted({int(n) for n in _CITED.findall(answer) if 1 <= int(n) <= len(passages)})
    numbers = cited or list(range(1, len(passages) + 1))
    listed = "; ".join(f"[{n}] {citation(passages[n - 1])}" for n in numbers)
    return _("Sources:") + " " + listed


def share(available_tokens: int, fraction: float) -> int:
    """The tokens passages may take of ``available_tokens``."""
    return max(0, math.floor(available_tokens * fraction))
