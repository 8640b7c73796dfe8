"""Commands: menus per scope, admins change settings (audited), others are refused politely."""

from __future__ import annotations

from core.errors import NotAuthorized
from tests.fakes.ollama import FakeOllama
from tests.fakes.telegram_api import (
    ALICE,
    BOB,
    FakeTelegram,
    message,
    private_chat,
    supergroup,
)
from tests.telegram.conftest import StartBot

LAB = supergroup()
CAROL = {"id": 555000111, "is_bot": False, "first_name": "Carol"}


async def test_menus_show_admin_commands_only_to_admins(
    start_bot: StartBot, fake_telegram: FakeTelegram
) -> None:
    await start_bot(admin_ids=(ALICE["id"],))
    menus = {
        (c.params.get("scope") or {}).get("type", "default"): c.params
        for c in fake_telegram.calls_to("setMyCommands", 200)
    }
    names = {kind: {cmd["command"] for cmd in p["commands"]} for kind, p in menus.items()}
    assert {"help", "reset"} <= names["default"] and "preset" not in names["default"]
    assert {"preset", "system", "fewshot", "model", "audit"} <= names["all_chat_administrators"]
    assert menus["chat"]["scope"]["chat_id"] == ALICE["id"] and "preset" in names["chat"]


async def test_configured_admin_changes_preset_and_next_request_carries_it(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    bot = await start_bot(admin_ids=(ALICE["id"],))
    chat = private_chat(ALICE)
    fake_telegram.push(message(chat, ALICE, "/preset set temperature 0.2"))
    await fake_telegram.wait_until(lambda: len(fake_telegram.sent(ALICE["id"])) == 1)
    assert "temperature" in fake_telegram.sent(ALICE["id"])[0]["text"]
    fake_telegram.push(message(chat, ALICE, "hello"))

    request = await fake_ollama.wait_for_chat(1)
    assert request["options"]["temperature"] == 0.2
    audit = await bot.store.audit_log(f"tg:{ALICE['id']}", 10)
    assert [(a.actor, a.field) for a in audit] == [(str(ALICE["id"]), "preset")]


async def test_non_admin_is_refused_and_nothing_changes(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    bot = await start_bot(admin_ids=(ALICE["id"],))
    chat = private_chat(BOB)
    fake_telegram.push(message(chat, BOB, "/preset set temperature 1.5"))
    await fake_telegram.wait_until(lambda: len(fake_telegram.sent(BOB["id"])) == 1)
    assert fake_telegram.sent(BOB["id"])[0]["text"] == NotAuthorized.notice
    fake_telegram.push(message(chat, BOB, "hello"))

    request = await fake_ollama.wait_for_chat(1)
    assert request["options"]["temperature"] == 0.7  # balanced, unchanged
    [tried] = await bot.store.audit_log(f"tg:{BOB['id']}", 10)
    assert (tried.actor, tried.outcome) == (str(BOB["id"]), "refused: not an admin")


async def test_group_administrators_asked_of_telegram(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    fake_telegram.admins[LAB["id"]] = [CAROL, BOB]
    bot = await start_bot(admin_ids=())
    fake_telegram.push(message(LAB, ALICE, "/preset@ollabot_bot use creative"))
    fake_telegram.push(message(LAB, BOB, "/preset@ollabot_bot use precise"))
    fake_telegram.push(message(LAB, ALICE, "/system set You are a pirate."))
    await fake_telegram.wait_until(lambda: len(fake_telegram.sent(LAB["id"])) == 3)
    answers = [m["text"] for m in fake_telegram.sent(LAB["id"])]
    assert answers[0] == NotAuthorized.notice and answers[2] == NotAuthorized.notice
    assert "precise" in answers[1]
    fake_telegram.push(message(LAB, ALICE, "@ollabot_bot hi"))

    request = await fake_ollama.wait_for_chat(1)
    assert request["options"]["temperature"] == 0.1  # precise
    assert "pirate" not in request["messages"][0]["content"]
    assert len(fake_telegram.calls_to("getChatAdministrators")) == 1  # cached
    audit = await bot.store.audit_log(f"tg:{LAB['id']}", 10)
    assert [(a.actor, a.outcome) for a in audit] == [
        (str(ALICE["id"]), "refused: not an admin"),
        (str(BOB["id"]), "changed"),
        (str(ALICE["id"]), "refused: not an admin"),
    ]


async def test_help_and_reset_for_everyone(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama
) -> None:
    await start_bot(admin_ids=())
    chat = private_chat(BOB)
    fake_telegram.push(message(chat, BOB, "remember the word banana"))
    await fake_telegram.wait_until(lambda: len(fake_telegram.sent(BOB["id"])) == 1)
    for n, text in enumerate(("/help", "/reset", "what was the word?"), start=2):
        fake_telegram.push(message(chat, BOB, text))
        await fake_telegram.wait_until(lambda n=n: len(fake_telegram.sent(BOB["id"])) == n)

    help_text = fake_telegram.sent(BOB["id"])[1]["text"]
    assert "/reset" in help_text and "/preset" in help_text
    contents = [m["content"] for m in fake_ollama.chat_requests[-1]["messages"]]
    assert not any("banana" in c for c in contents), contents  # the conversation was forgotten
