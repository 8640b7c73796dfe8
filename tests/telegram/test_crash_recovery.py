"""A process killed mid-reply, restarted under its own name: it takes its messages back at once,
finishes the half-streamed reply (a draft: the successor sends the final message; nothing is left
half-written) and answers the queued one after it."""

from __future__ import annotations

import asyncio

import pytest

from tests.fakes.ollama import FakeOllama, Reply
from tests.fakes.telegram_api import ALICE, FakeTelegram, message, private_chat
from tests.telegram.conftest import StartBot

ALICE_CHAT = private_chat(ALICE)
pytestmark = pytest.mark.filterwarnings("ignore:.*retry_after.*:DeprecationWarning")


@pytest.mark.parametrize("drafts", [True, False], ids=["draft", "edited message"])
async def test_killed_mid_stream_with_a_message_queued_leaves_no_orphan_preview(
    start_bot: StartBot, fake_telegram: FakeTelegram, fake_ollama: FakeOllama, drafts: bool
) -> None:
    fake_telegram.drafts_enabled = drafts  # without drafts the reply streams into a message
    never = asyncio.Event()
    fake_ollama.script(Reply(text="a half written answer", chunks=4, hold_gate=never))
    first = await start_bot(consumer="host-a")
    fake_telegram.push(message(ALICE_CHAT, ALICE, "first question"))
    await fake_telegram.wait_until(
        lambda: "…" in str(fake_telegram.drafted if drafts else fake_telegram.sent(ALICE["id"]))
    )
    fake_telegram.push(message(ALICE_CHAT, ALICE, "second question"))
    await fake_telegram.wait_until(lambda: fake_telegram.pending_updates() == 0)
    await first.kill()

    await start_bot(consumer="host-a")  # the same name: no waiting for a claim timeout
    await fake_telegram.wait_until(
        lambda: (
            [m["text"] for m in fake_telegram.sent(ALICE["id"])]
            == ["echo: first question", "echo: second question"]
        ),
        timeout=10,
    )
    assert len(fake_ollama.chat_requests) == 3, "the queued message was answered once"
