"""Model Markdown to Slack mrkdwn, and long replies cut into messages Slack accepts."""

from __future__ import annotations

from markdown_to_mrkdwn import SlackMarkdownConverter

MESSAGE_LIMIT = 4000
FENCE = "```"
_converter = SlackMarkdownConverter()


def to_mrkdwn(markdown: str) -> str:
    """Convert the model's Markdown to Slack's mrkdwn (bold, italics, links, lists, code).

    ``&``, ``<`` and ``>`` are escaped first, as Slack requires: otherwise a model could
    write ``<!channel>`` and ping everyone. Leading ``>`` stay, so quotes still work.
    """
    return str(_converter.convert(escape(markdown))).strip()


def escape(text: str) -> str:
    """Slack's three control characters as entities, keeping each line's quote markers."""
    return "\n".join(_escape_line(line) for line in text.split("\n"))


def _escape_line(line: str) -> str:
    body = line.lstrip("> ")
    quote = line[: len(line) - len(body)]
    return quote + body.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


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
