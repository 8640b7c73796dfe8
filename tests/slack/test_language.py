"""Each Slack user is answered in their Slack locale's language (asked once of users.info)."""

from __future__ import annotations

from adapters.i18n import Catalogues
from core.commands import help_text
from core.errors import NotAuthorized
from tests.fakes.slack_api import BOB, FakeSlack
from tests.slack.conftest import StartBot
from tests.slack.test_commands import command

CARMEN = "U07CARMEN01"


async def test_a_spanish_locale_gets_spanish_and_an_english_one_english(
    start_bot: StartBot, fake_slack: FakeSlack
) -> None:
    fake_slack.users[CARMEN] = {
        "name": "carmen",
        "is_admin": False,
        "is_owner": False,
        "locale": "es-ES",
    }
    await start_bot(translations=Catalogues("en"))

    help_es = await command(fake_slack, "help", CARMEN)
    refused_es = await command(fake_slack, "preset set top_k 5", CARMEN)
    help_en = await command(fake_slack, "help", BOB)
    refused_en = await command(fake_slack, "preset set top_k 5", BOB)

    assert help_es.startswith("Escríbeme y te respondo con el modelo Llama local.")
    assert "/ollabot reset — olvidar esta conversación" in help_es
    assert refused_es == (
        ":warning: Lo siento, solo los administradores de este chat pueden cambiar su "
        "configuración."
    )
    assert help_en == help_text("/ollabot ")
    assert refused_en == f":warning: {NotAuthorized.notice}"
    asked = [call.args.get("user") for call in fake_slack.calls_to("users.info")]
    assert sorted(asked) == [BOB, CARMEN], "one lookup per user, cached"
