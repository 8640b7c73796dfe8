"""Small helpers on user-visible text."""

from __future__ import annotations

ELLIPSIS = "…"


def shortened(text: str, most: int) -> str:
    """``text`` if it has at most ``most`` characters, else its start and an ellipsis, ``most``
    characters in all."""
    if len(text) <= most:
        return text
    return text[: most - len(ELLIPSIS)].rstrip() + ELLIPSIS
