"""The ``ollabot`` command line: run, chat, model, doctor."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Sequence

from pydantic import BaseModel, SecretStr, ValidationError

from bots import logging as bot_logging
from bots.app import EMBEDDED, ConfigurationError
from bots.instance import InstanceTaken
from bots.settings import Settings, load_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ollabot", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="serve the configured chat platforms")
    run.add_argument(
        "platforms",
        nargs="*",
        metavar="{telegram,slack}",
        help="platforms to serve (default: every one with a token)",
    )
    chat = commands.add_parser("chat", help="a console conversation through the same core")
    chat.add_argument("--channel", default="default", help="whose settings and history apply")
    chat.add_argument("--user", default=getpass.getuser(), help="your name in the conversation")
    commands.add_parser("doctor", help="check Ollama, the model, Redis, tokens and the GPU fit")
    from bots.model_cli import add_model_parser

    add_model_parser(commands)
    return parser


def secrets_of(settings: Settings) -> list[str]:
    """Every ``SecretStr`` setting's value, found by type so a new secret is never missed
    (but ``embedded``, a Redis URL that is a word, not a secret)."""
    fields = [getattr(settings, name) for name in type(settings).model_fields]
    sections = [field for field in fields if isinstance(field, BaseModel)]
    values = [getattr(section, name) for section in sections for name in type(section).model_fields]
    secrets = [v.get_secret_value() for v in [*fields, *values] if isinstance(v, SecretStr)]
    return [secret for secret in secrets if secret != EMBEDDED]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ValidationError as error:
        print(f"ollabot: invalid settings:\n{error}", file=sys.stderr)
        return 2
    bot_logging.configure(settings.log.json_logs, settings.log.level, secrets_of(settings))
    try:
        return asyncio.run(dispatch(args, settings))
    except InstanceTaken as error:
        print(
            f"ollabot: another ollabot process is running as instance '{error}' on this "
            "Redis; stop it, or give this one another name with OLLABOT_INSTANCE",
            file=sys.stderr,
        )
        return 2
    except ConfigurationError as error:
        print(f"ollabot: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


async def dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "chat":
        from bots.chat_command import chat

        return await chat(settings, args.channel, args.user)
    if args.command == "doctor":
        from bots.doctor import doctor

        return await doctor(settings)
    if args.command == "run":
        from bots.serve import serve

        return await serve(settings, args.platforms)
    from bots.model_cli import run_model_command

    return await run_model_command(args, settings)


if __name__ == "__main__":
    sys.exit(main())
