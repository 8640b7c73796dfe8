"""Property tests of splitting documents into passages: whatever the text, no passage is
longer than asked and no word is lost."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from core.knowledge import Splitting, split

WORDS = st.text(alphabet="abcdefghijñáé.,;:!?0123456789", min_size=1, max_size=40)
BLOCKS = st.lists(
    st.one_of(
        st.lists(WORDS, min_size=1, max_size=60).map(" ".join),
        WORDS.map(lambda w: f"# {w}"),
        st.just(""),
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(
    BLOCKS,
    st.integers(min_value=40, max_value=600),
    st.integers(min_value=0, max_value=200),
)
def test_passages_are_never_too_long_and_keep_every_word(
    blocks: list[str], max_chars: int, overlap: int
) -> None:
    text = "\n\n".join(blocks)
    passages = split(text, Splitting(max_chars, min(overlap, max_chars // 2)))

    assert all(0 < len(p) <= max_chars for p in passages)
    kept = "".join(passages)
    for word in text.split():
        if len(word) <= max_chars - min(overlap, max_chars // 2) - 2:
            assert word in kept
