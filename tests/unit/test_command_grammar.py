"""The chat commands (preset, system, fewshot, model, reset, help), as a user types them."""

import pytest

from core.commands import help_text, parse
from core.errors import InvalidCommand


@pytest.mark.parametrize(
    ("text", "verb", "action", "args", "admin_only"),
    [
        ("/preset", "preset", "show", (), False),
        ("preset list", "preset", "list", (), False),
        ("/preset use precise", "preset", "use", ("precise",), True),
        ("/preset set temperature 0.2", "preset", "set", ("temperature", "0.2"), True),
        ("preset reset", "preset", "reset", (), True),
        (
            "system set You are a pirate. Speak like one.",
            "system",
            "set",
            ("You are a pirate. Speak like one.",),
            True,
        ),
        ("system", "system", "show", (), False),
        ("fewshot use sentiment", "fewshot", "use", ("sentiment",), True),
        ("fewshot clear", "fewshot", "clear", (), True),
        (
            "model use llama3.1:8b-instruct-q8_0",
            "model",
            "use",
            ("llama3.1:8b-instruct-q8_0",),
            True,
        ),
        ("/reset", "reset", "", (), False),
        ("help", "help", "", (), False),
    ],
)
def test_commands_parse(
    text: str, verb: str, action: str, args: tuple[str, ...], admin_only: bool
) -> None:
    command = parse(text)
    assert (command.verb, command.action, command.args, command.admin_only) == (
        verb,
        action,
        args,
        admin_only,
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("/frobnicate", "Unknown command 'frobnicate'"),
        ("/preset set temperature", "Usage: preset"),
        ("/preset explode", "Usage: preset"),
        ("/system set", "Usage: system"),
        ("/model use", "Usage: model"),
        ("", "Unknown command"),
    ],
)
def test_malformed_commands_get_the_usage(text: str, says: str) -> None:
    with pytest.raises(InvalidCommand, match=says):
        parse(text)


def test_help_uses_the_platforms_prefix() -> None:
    assert "/ollabot preset set PARAM VALUE" in help_text("/ollabot ")
    assert "/reset" in help_text("/")
