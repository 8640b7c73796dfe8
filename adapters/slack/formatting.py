"""Model Markdown to Slack mrkdwn, and long replies cut into messages Slack accepts."""

from __future__ import annotations

import re

from markdown_to_mrkdwn import SlackMarkdownConverter

MESSAGE_LIMIT = 4000
FENCE = "```"
_converter = SlackMarkdownConverter()
_FENCE_LINE = re.compile(r"^```\w*\s*$")
_IMAGE = re.compile(r"!\[(?=[^\]\n]*\]\()")
# What the converter turns into Slack's <target|label> syntax; only web and mail links may
# stay links, every other target (!here, @U…, #C…, !subteam^…) would mention someone.
_ANGLED = re.compile(r"<([^<>]*)>")
_SAFE_TARGET = re.compile(r"(?:https?://|mailto:)[^\s|]+")


def to_mrkdwn(markdown: str) -> str:
    """Convert the model's Markdown to Slack's mrkdwn (bold, italics, links, lists, code).

    ``&``, ``<`` and ``>`` are escaped first, as Slack requires, so nothing the model typed
    is read as Slack syntax (leading ``>`` stay, so quotes still work). What the conversion
    itself builds from Markdown links is checked afterwards: only web and mail links stay
    links, anything else (``[x](!here)`` would be ``<!here|x>``) becomes plain text.
    """
    return _without_mentions(str(_converter.convert(escape(markdown))).strip())


def escape(text: str) -> str:
    """Slack's three control characters as entities, keeping each line's quote markers.

    Images become links outside code blocks, as the converter would drop their text.
    """
    lines, in_code = [], False
    for line in text.split("\n"):
        if _FENCE_LINE.match(line.strip()):
            in_code = not in_code
        elif not in_code:
            line = _IMAGE.sub("[", line)
        lines.append(_escape_line(line))
    return "\n".join(lines)


def _escape_line(line: str) -> str:
    body = line.lstrip("> ")
    quote = line[: len(line) - len(body)]
    return quote + body.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _without_mentions(mrkdwn: str) -> str:
    return _ANGLED.sub(_link_or_text, mrkdwn)


def _link_or_text(match: re.Match[str]) -> str:
    target, _, label = match.group(1).partition("|")
    if _SAFE_TARGET.fullmatch(target):
        return match.group(0)
    target = target.strip()
    return f"{label} ({target})" if label and target else label or target


def preview(markdown: str, limit: int = MESSAGE_LIMIT) -> str:
    """The reply so far as one message: converted, and cut with an ellipsis if too long."""
    text = to_mrkdwn(markdown)
    return text if len(text) <= limit else text[: limit - 2].rstrip() + " …"


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Cut ``text`` into parts of at most ``limit`` characters, in order.

    Cuts fall on a paragraph, line or word boundary where one exists; a code block that
    spans a cut is closed at the end of one part and reopened at the start of the next.
    """
    parts: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        cut = _cut_point(rest, limit - len(FENCE) - 1)
        head, rest = rest[:cut].rstrip(), rest[cut:].lstrip("\n")
        if head.count(FENCE) % 2 == 1:
            head, rest = f"{head}\n{FENCE}", f"{FENCE}\n{rest}"
        parts.append(head)
    if rest:
        parts.append(rest)
    return parts or [""]


def _cut_point(text: str, limit: int) -> int:
    """The last natural boundary within ``limit`` characters (or ``limit`` when none)."""
    for separator in ("\n\n", "\n", " "):
        at = text.rfind(separator, limit // 2, limit)
        if at > 0:
            return at + len(separator)
    return limit
