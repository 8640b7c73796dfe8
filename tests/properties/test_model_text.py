"""Property tests over hostile text: random Markdown full of control tokens, raw HTML and
Slack mention syntax, as a user might type it or a model might write it.

Whatever the mix: the model gets no control token from user text, Slack gets nothing that
mentions anyone, and no word of the text is lost on its way to Slack or Telegram.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.slack.formatting import to_mrkdwn
from adapters.telegram.render import render
from core.prompting import neutralise

ZWSP = "\u200b"
CONTROL_TOKENS = [
    *("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    *("<|im_start|>", "<|im_end|>", "<|endoftext|>"),  # ChatML / Qwen
    *("<start_of_turn>", "<end_of_turn>"),  # Gemma
    *("[INST]", "[/INST]", "<<SYS>>", "<</SYS>>", "</s>"),  # Mistral, Llama 2
    *("<|user|>", "<|assistant|>", "<|end|>"),  # Phi
    "<\uff5cUser\uff5c>",  # DeepSeek
]
HTML = ["<div>", "</div>", "<b>", "</b>", "<br>", "<!-- note -->", '<span class="x">', "</span>"]
SLACK_SYNTAX = ["<!here>", "<!channel>", "<@U0123ABC>", "<#C0123ABC|general>", "<!subteam^S01>"]
LINK_TARGETS = ["!here", "!channel", "@U0123ABC", "#C0123ABC", "!subteam^S01", "https://ex.org/a"]
# Slack's <…> syntax for anything but a web or mail link mentions someone or something.
MENTION = re.compile(r"<(?!(?:https?://|mailto:)[^\s|>]+[|>])[^>]*>")

words = st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,7}", fullmatch=True)
inline = st.one_of(
    words,
    words.map(lambda w: f"**{w}**"),
    words.map(lambda w: f"*{w}*"),
    words.map(lambda w: f"`{w}`"),
    st.tuples(words, st.sampled_from(LINK_TARGETS)).map(lambda p: f"[{p[0]}]({p[1]})"),
    words.map(lambda w: f"![{w}](https://ex.org/{w}.png)"),
    st.sampled_from(CONTROL_TOKENS),
    st.sampled_from(HTML),
    st.sampled_from(SLACK_SYNTAX),
)
line = st.lists(inline, min_size=1, max_size=8).map(" ".join)
block = st.one_of(
    line,
    line.map(lambda text: f"# {text}"),
    line.map(lambda text: f"- {text}"),
    line.map(lambda text: f"> {text}"),
    st.lists(line, min_size=1, max_size=3).map(lambda lines: "```\n" + "\n".join(lines) + "\n```"),
)
documents = st.lists(block, min_size=1, max_size=6).map("\n\n".join)


def words_of(text: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9]+", text)


@settings(max_examples=200, deadline=None)
@given(documents)
def test_user_text_reaches_the_model_without_control_tokens_and_otherwise_whole(
    text: str,
) -> None:
    cleaned = neutralise(text, ["<ctrl7>"])

    assert [t for t in CONTROL_TOKENS if t in cleaned] == []
    assert cleaned.replace(ZWSP, "") == text


@settings(max_examples=200, deadline=None)
@given(documents)
def test_nothing_the_model_writes_pings_on_slack_and_no_word_is_lost(markdown: str) -> None:
    shown = to_mrkdwn(markdown)

    assert MENTION.findall(shown) == []
    missing = [w for w in words_of(markdown) if w not in shown]
    assert missing == []


@settings(max_examples=200, deadline=None)
@given(documents)
def test_no_word_the_model_writes_is_lost_on_telegram(markdown: str) -> None:
    parts = render(markdown)
    shown = "\n".join(part.text for part in parts)
    urls = " ".join(str(e.get("url", "")) for part in parts for e in part.entities)

    missing = [w for w in words_of(markdown) if w not in shown and w not in urls]
    assert missing == []
