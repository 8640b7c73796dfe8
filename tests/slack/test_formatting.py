"""Slack formatting: Markdown to mrkdwn, and long text cut where a reader expects it."""

from __future__ import annotations

from adapters.slack.events import BotIdentity, plain_text
from adapters.slack.formatting import preview, split_message, to_mrkdwn


def test_markdown_becomes_mrkdwn() -> None:
    text = "# Title\n**bold**, *italic* and [a link](https://example.com)\n- one\n- two"

    assert (
        to_mrkdwn(text)
        == "*Title*\n*bold*, _italic_ and <https://example.com|a link>\n• one\n• two"
    )


def test_long_text_is_cut_on_paragraphs_in_order() -> None:
    paragraphs = [f"paragraph {n} " + "y" * 900 for n in range(10)]

    parts = split_message("\n\n".join(paragraphs), limit=4000)

    assert all(len(part) <= 4000 for part in parts)
    assert "\n\n".join(parts).split("\n\n") == paragraphs


def test_a_code_block_cut_in_two_stays_a_code_block_on_both_sides() -> None:
    code = "```\n" + "\n".join(f"print({n})" for n in range(800)) + "\n```"

    parts = split_message(code, limit=4000)

    assert len(parts) >= 2
    assert all(part.startswith("```") and part.endswith("```") for part in parts)
    assert all(len(part) <= 4000 for part in parts)


def test_a_word_longer_than_a_message_is_cut_hard() -> None:
    assert [len(part) for part in split_message("z" * 9000, limit=4000)] == [3996, 3996, 1008]


def test_a_preview_never_exceeds_one_message() -> None:
    shown = preview("word " * 2000)

    assert len(shown) <= 4000 and shown.endswith("…")


def test_the_model_cannot_ping_the_channel_or_forge_links() -> None:
    text = "Done <!channel> see <https://evil.example|bank>\n> a quote\n1 < 2 & 3 > 2"

    assert to_mrkdwn(text) == (
        "Done &lt;!channel&gt; see &lt;https://evil.example|bank&gt;\n"
        "> a quote\n1 &lt; 2 &amp; 3 &gt; 2"
    )


def test_what_the_person_typed_reaches_the_model_unescaped() -> None:
    bot = BotIdentity("T07TEAM0001", "U07OLLABOT1", "B07OLLABOT1")
    raw = "<@U07OLLABOT1> is 1 &lt; 2 &amp;&amp; see <https://x.org/a|the docs> <https://x.org>"

    assert plain_text(raw, bot) == "is 1 < 2 && see the docs (https://x.org/a) https://x.org"


def test_links_to_anything_but_the_web_become_plain_text() -> None:
    text = "[x](!here) [y](!channel) [z](@U0123) [w](#C0123) [a](https://a.org) [m](mailto:m@a.org)"

    assert to_mrkdwn(text) == (
        "x (!here) y (!channel) z (@U0123) w (#C0123) <https://a.org|a> <mailto:m@a.org|m>"
    )
