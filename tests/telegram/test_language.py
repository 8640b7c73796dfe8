"""Each user is answered in their Telegram app's language (Spanish or English); others get
the deployment's default language."""

from __future__ import annotations

from adapters.i18n import Catalogues
from core.commands import help_text
from core.errors import NotAuthorized
from tests.fakes.telegram_api import ALICE, BOB, FakeTelegram, message, private_chat
from tests.telegram.conftest import StartBot

CARLA = {"id": 555000222, "is_bot": False, "first_name": "Carla", "language_code": "pt-BR"}
NOT_AUTHORIZED_ES = (
    "Lo siento, solo los administradores de este chat pueden cambiar su configuración."
)


async def asked(fake_telegram: FakeTelegram, user: dict[str, object], *texts: str) -> list[str]:
    """Send ``texts`` in the user's private chat; the bot's answers, in order."""
    chat_id = user["id"]
    assert isinstance(chat_id, int)
    for n, text in enumerate(texts, start=1):
        fake_telegram.push(message(private_chat(user), user, text))
        await fake_telegram.wait_until(lambda n=n: len(fake_telegram.sent(chat_id)) == n)
    return [m["text"] for m in fake_telegram.sent(chat_id)]


async def test_spanish_user_gets_spanish_and_english_user_english(
    start_bot: StartBot, fake_telegram: FakeTelegram
) -> None:
    assert ALICE["language_code"] == "es" and BOB["language_code"] == "en"
    await start_bot(admin_ids=(), translations=Catalogues("en"))

    help_es, refused_es = await asked(fake_telegram, ALICE, "/help", "/preset set top_k 5")
    help_en, refused_en = await asked(fake_telegram, BOB, "/help", "/preset set top_k 5")

    assert help_es.startswith("Escríbeme y te respondo con el modelo Llama local.")
    assert "/undo — olvidar la última pregunta y su respuesta" in help_es
    assert NOT_AUTHORIZED_ES in refused_es
    assert help_en == help_text("/")
    assert NotAuthorized.notice in refused_en


async def test_the_command_menu_is_registered_in_spanish_too(
    start_bot: StartBot, fake_telegram: FakeTelegram
) -> None:
    await start_bot(translations=Catalogues("en"))

    menus = {
        c.params.get("language_code", ""): {
            cmd["command"]: cmd["description"] for cmd in c.params["commands"]
        }
        for c in fake_telegram.calls_to("setMyCommands", 200)
        if "scope" not in c.params or c.params["scope"]["type"] == "default"
    }
    assert menus["es"]["undo"] == "Olvidar la última pregunta y su respuesta"
    assert menus[""]["undo"] == "Forget the last question and answer"


async def test_a_language_ollabot_does_not_speak_gets_the_deployment_default(
    start_bot: StartBot, fake_telegram: FakeTelegram
) -> None:
    await start_bot(admin_ids=(), translations=Catalogues("es"))

    (refused,) = await asked(fake_telegram, CARLA, "/preset set top_k 5")

    assert NOT_AUTHORIZED_ES in refused
