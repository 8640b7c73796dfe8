"""Prompt assembly: system prompt, few-shot pairs, trimmed history, retrieved passages, the
new turn.

What must fit comes first: the system prompt, the examples and the new turn are never dropped
(``PromptTooLong`` when they alone overflow); then the retrieved passages take up to
``Knowledge.share`` of what is left, best first; the history gets the rest. The passages sit
just before the new turn, so the prefix the model server caches (system, examples, history)
does not change with each question's passages.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from core.errors import PromptTooLong
from core.fewshot import FewShotTemplate
from core.knowledge import Hit, Passage, choose, context_message, share
from core.models import ChatMessage, Turn

DEFAULT_SYSTEM_PROMPT = (
    "You are ollabot, a helpful assistant in a team chat. Answer clearly and concisely, "
    "use Markdown for code and lists, and say so when you are not sure."
)

# Ollama parses a model's control tokens wherever they appear in the text it is sent, so a user
# who types them opens turns of their own. Most families' tokens have one of two shapes:
# <|name|> (Llama 3, ChatML/Qwen, Phi, Granite, Command R) and DeepSeek's, with fullwidth bars.
_BAR = "\uff5c"
TOKEN_SHAPES = (r"<\|[^|<>\s]{1,64}\|>", f"<{_BAR}[^{_BAR}<>\\s]{{1,64}}{_BAR}>")
# The common families' other control tokens; the model's own come in as ``tokens``.
BUILTIN_CONTROL_TOKENS = (
    *("<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>"),  # Gemma
    *("[INST]", "[/INST]", "<<SYS>>", "<</SYS>>", "<s>", "</s>"),  # Mistral, Llama 2
    *("[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]"),
    *("[TOOL_CALLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[THINK]", "[/THINK]"),  # Mistral
)
# A zero-width space after the first character keeps the text readable but no longer a token.
_ZERO_WIDTH_SPACE = "\u200b"


def neutralise(text: str, tokens: Iterable[str] = ()) -> str:
    """Make control tokens in user-supplied text plain text: those of the common families
    and ``tokens`` (the model's own, which the caller may know)."""
    first_characters, pattern = _BUILTIN if not tokens else _control_tokens(frozenset(tokens))
    for character in first_characters:
        if character in text:
            break
    else:
        return text  # the common case, and much cheaper than the regular expression
    while (cleaned := pattern.sub(_broken, text)) != text:
        text = cleaned  # again, in case breaking one token uncovered an overlapping one
    return text


@functools.lru_cache(maxsize=64)
def _control_tokens(tokens: frozenset[str]) -> tuple[str, re.Pattern[str]]:
    """The characters tokens start with, and one expression matching any token."""
    shapes = re.compile("|".join(TOKEN_SHAPES))
    literals = {
        t for t in (*BUILTIN_CONTROL_TOKENS, *tokens) if len(t) > 1 and _ZERO_WIDTH_SPACE not in t
    }
    distinct = sorted((t for t in literals if not shapes.fullmatch(t)), key=len, reverse=True)
    first_characters = "".join(sorted({"<", *(t[0] for t in distinct)}))
    return first_characters, re.compile("|".join([*TOKEN_SHAPES, *map(re.escape, distinct)]))


_BUILTIN = _control_tokens(frozenset())


def _broken(match: re.Match[str]) -> str:
    token = match.group(0)
    return token[0] + _ZERO_WIDTH_SPACE + token[1:]


# What Ollama itself reckons an image costs when it fits a prompt into the context (one
# embedding per token); vision models differ (Gemma 3: 256, LLaVA: 576): this is the safe side.
IMAGE_TOKENS = 768


class TokenEstimator:
    """Conservative token counts from characters, calibrated by Ollama's prompt_eval_count."""

    PER_MESSAGE = 5
    REPLY_PRIMER = 4

    def __init__(self, chars_per_token: float = 3.0) -> None:
        self.chars_per_token = chars_per_token

    def text(self, text: str) -> int:
        return math.ceil(len(text) / self.chars_per_token) + self.PER_MESSAGE

    def messages(self, messages: Sequence[ChatMessage]) -> int:
        images = sum(len(m.images) for m in messages)
        return (
            sum(self.text(m.content) for m in messages) + IMAGE_TOKENS * images + self.REPLY_PRIMER
        )

    def observe(self, messages: Sequence[ChatMessage], prompt_eval_count: int) -> None:
        """Learn from a real count: only ever towards more tokens per character, with 10% spare."""
        content_tokens = prompt_eval_count - self.PER_MESSAGE * len(messages) - self.REPLY_PRIMER
        if content_tokens <= 0:
            return
        seen = sum(len(m.content) for m in messages) / content_tokens
        self.chars_per_token = min(self.chars_per_token, max(1.2, 0.9 * seen))


@dataclass(frozen=True, slots=True)
class Budget:
    num_ctx: int
    max_tokens: int
    margin: int = 64
    headroom: float = 0.7

    @property
    def prompt_tokens(self) -> int:
        return self.num_ctx - self.max_tokens - self.margin


@dataclass(frozen=True, slots=True)
class Knowledge:
    """Passages found for the new turn, and how much of the prompt they may take."""

    hits: tuple[Hit, ...] = ()
    share: float = 0.4  # of the tokens left after system prompt, examples and new turn
    most: int = 4


@dataclass(frozen=True, slots=True)
class Prompt:
    messages: tuple[ChatMessage, ...]
    window_start: int
    passages: tuple[Passage, ...] = ()


def render_turn(turn: Turn) -> ChatMessage:
    content = f"{turn.author}: {turn.content}" if turn.author else turn.content
    return ChatMessage(turn.role, neutralise(content))


def assemble(
    system_prompt: str,
    fewshot: FewShotTemplate | None,
    history: Sequence[Turn],
    window_start: int,
    new_turn: Turn,
    budget: Budget,
    estimator: TokenEstimator,
    images: tuple[bytes, ...] = (),
    knowledge: Knowledge = Knowledge(),
) -> Prompt:
    """Build the request; drop oldest whole pairs, with headroom so the prefix stays put.

    ``images`` go with the new turn only (history keeps its text)."""
    head = [ChatMessage("system", neutralise(system_prompt))]
    for user, assistant in fewshot.examples if fewshot else ():
        head += [
            ChatMessage("user", neutralise(user)),
            ChatMessage("assistant", neutralise(assistant)),
        ]
    tail = render_turn(new_turn)._replace(images=images)
    fixed = estimator.messages([*head, tail])
    if fixed > budget.prompt_tokens:
        raise PromptTooLong()
    available = budget.prompt_tokens - fixed
    passages, block = _passages(knowledge, available, estimator)
    available -= sum(estimator.text(m.content) for m in block)
    window = _pairs_from(history, window_start)
    rendered = [render_turn(t) for t in window]
    costs = [estimator.text(m.content) for m in rendered]
    first = 0
    if sum(costs) > available:
        first = _first_kept(window, costs, math.floor(available * budget.headroom))
    start = window[first].seq if first < len(window) else new_turn.seq
    return Prompt((*head, *rendered[first:], *block, tail), start, passages)


def _passages(
    knowledge: Knowledge, available: int, estimator: TokenEstimator
) -> tuple[tuple[Passage, ...], list[ChatMessage]]:
    """The passages that fit their share, and the message that carries them (if any)."""
    if not knowledge.hits:
        return (), []

    def cost(passages: Sequence[Passage]) -> int:
        return estimator.text(neutralise(context_message(passages).content))

    chosen = choose(knowledge.hits, share(available, knowledge.share), cost, knowledge.most)
    if not chosen:
        return (), []
    block = context_message(chosen)
    return chosen, [ChatMessage(block.role, neutralise(block.content))]


def _pairs_from(history: Sequence[Turn], window_start: int) -> list[Turn]:
    first = next((i for i, t in enumerate(history) if t.seq >= window_start), len(history))
    while first < len(history) and history[first].role != "user":
        first += 1
    return list(history[first:])


def _first_kept(turns: Sequence[Turn], costs: Sequence[int], target: int) -> int:
    """Index of the oldest turn kept when whole pairs are dropped until ``target`` is met."""
    total, first = sum(costs), 0
    while first < len(turns) and total > target:
        total -= costs[first]
        first += 1
        while first < len(turns) and turns[first].role != "user":
            total -= costs[first]
            first += 1
    return first
