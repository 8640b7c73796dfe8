"""Model Markdown to Telegram text + entities, split into parts Telegram accepts.

Entities (not MarkdownV2) cannot fail to parse on reserved characters. Telegram counts the
4,096-character limit in UTF-16 code units after entity parsing; parts are cut at a paragraph,
else a line, else a word boundary. An entity cut by a boundary (a code block, say) is clipped
into both parts, so each part closes and reopens it. Raw HTML in the Markdown (``use the <div>
tag``) is shown as the text it is: the converter would drop it, and the words with it.

A thinking model's reasoning, when shown, opens the first part as an expandable quote (folded
until tapped) and gets only the room the answer leaves there: the answer is never cut for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import cast

import pyromark
import telegramify_markdown
from telegramify_markdown import MessageEntity, utf16_len
from telegramify_markdown.converter import STANDARD_OPTIONS

TELEGRAM_LIMIT = 4096
PART_LIMIT = 4000  # conservative: leaves room for a notice or an ellipsis
_BREAKS = ("\n\n", "\n", " ")
REASONING_MARK = "💭 "
_QUOTE_GAP = "\n"
_MIN_QUOTE = 16  # less room than this and the quote would say nothing


@dataclass(frozen=True, slots=True)
class Part:
    """One Telegram message: text and its entities as Bot API dicts."""

    text: str
    entities: tuple[dict[str, object], ...] = ()

    def plain(self) -> Part:
        """The same text without formatting (the fallback when Telegram rejects entities)."""
        return Part(self.text)


def render(markdown: str, limit: int = PART_LIMIT) -> list[Part]:
    """Render Markdown into one or more parts of at most ``limit`` UTF-16 units, in order."""
    try:
        text, entities = telegramify_markdown.convert(literal_html(markdown))
    except Exception:  # a renderer bug must not lose the reply: send it unformatted
        text, entities = markdown, []
    if not text.strip():
        text, entities = markdown, []
    return [_part(text, entities, start, end) for start, end in split_ranges(text, limit)]


def with_reasoning(parts: list[Part], reasoning: str, limit: int = TELEGRAM_LIMIT) -> list[Part]:
    """``parts`` with ``reasoning`` as an expandable quote at the top of the first, cut short
    (with an ellipsis) to the room the first part leaves within ``limit`` UTF-16 units."""
    reasoning = reasoning.strip()
    if not parts or not reasoning:
        return parts
    first = parts[0]
    room = limit - utf16_len(first.text) - utf16_len(_QUOTE_GAP)
    quote = _clipped(REASONING_MARK + reasoning, room)
    if not quote:
        return parts
    folded = {"type": "expandable_blockquote", "offset": 0, "length": utf16_len(quote)}
    shift = utf16_len(quote + _QUOTE_GAP)
    moved = tuple(
        entity | {"offset": cast(int, entity["offset"]) + shift} for entity in first.entities
    )
    return [Part(quote + _QUOTE_GAP + first.text, (folded, *moved)), *parts[1:]]


def _clipped(text: str, room: int) -> str:
    """``text`` within ``room`` UTF-16 units, ending in an ellipsis when cut; "" if no room."""
    if utf16_len(text) <= room:
        return text
    if room < _MIN_QUOTE:
        return ""
    return text[: _fitting_end(text, 0, room - 1)].rstrip() + "…"


def literal_html(markdown: str) -> str:
    """``markdown`` with a backslash before each ``<`` that would start raw HTML.

    CommonMark reads ``\\<`` as a plain ``<``; code spans and blocks are left as they are.
    Escaping the start of an HTML block turns it into a paragraph that may hold inline HTML
    of its own, hence the loop (each round escapes at least one ``<``, so it ends).
    """
    if "<" not in markdown:
        return markdown
    while offsets := _html_starts(markdown):
        source = markdown.encode("utf-8")
        bounds = [0, *offsets, len(source)]
        markdown = b"\\".join(source[a:b] for a, b in pairwise(bounds)).decode("utf-8")
    return markdown


def _html_starts(markdown: str) -> list[int]:
    """UTF-8 offsets of the ``<`` opening each piece of raw HTML the parser finds."""
    source = markdown.encode("utf-8")
    starts: set[int] = set()
    for event, span in pyromark.events_with_range(markdown, options=STANDARD_OPTIONS):
        if isinstance(event, dict) and ("InlineHtml" in event or "Html" in event):
            at = source.find(b"<", span["start"], span["end"])
            if at >= 0:
                starts.add(at)
    return sorted(starts)


def split_ranges(text: str, limit: int) -> list[tuple[int, int]]:
    """Character ranges of the parts; whitespace at the cuts is dropped."""
    ranges: list[tuple[int, int]] = []
    start = _skip_space(text, 0)
    while start < len(text):
        end = _fitting_end(text, start, limit)
        if end < len(text):
            end = _best_break(text, start, end)
        trimmed = end
        while trimmed > start and text[trimmed - 1].isspace():
            trimmed -= 1
        if trimmed > start:
            ranges.append((start, trimmed))
        start = _skip_space(text, end)
    return ranges


def _fitting_end(text: str, start: int, limit: int) -> int:
    """The largest end such that ``text[start:end]`` has at most ``limit`` UTF-16 units."""
    end = min(len(text), start + limit)
    while utf16_len(text[start:end]) > limit:
        end -= max(1, (utf16_len(text[start:end]) - limit) // 2)
    return end


def _best_break(text: str, start: int, end: int) -> int:
    """Cut after the last paragraph break, else line break, else space, in the window."""
    floor = start + (end - start) // 4  # a break too early would make a tiny part
    for separator in _BREAKS:
        position = text.rfind(separator, floor, end)
        if position > start:
            return position + len(separator)
    return end


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position


def _part(text: str, entities: list[MessageEntity], start: int, end: int) -> Part:
    offset = utf16_len(text[:start])
    length = utf16_len(text[start:end])
    clipped: list[dict[str, object]] = []
    for entity in entities:
        first = max(entity.offset, offset)
        last = min(entity.offset + entity.length, offset + length)
        if last > first:
            clipped.append(entity.copy_with(offset=first - offset, length=last - first).to_dict())
    return Part(text[start:end], tuple(clipped))
