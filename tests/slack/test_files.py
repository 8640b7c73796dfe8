"""Slack files: images to the vision model, audio clips to speech-to-text, each downloaded
from ``url_private`` with the bot token; files Slack withholds get one line."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from adapters.slack.events import attachment
from adapters.slack.files import SlackFiles
from core.errors import FileRefused
from tests.fakes.ollama import FakeOllama
from tests.fakes.slack_api import ALICE, DM_CHANNEL, LAB_CHANNEL, FakeSlack
from tests.fakes.stt import FakeSpeechToText
from tests.fakes.stt import fake_stt as fake_stt  # the fixture
from tests.slack.conftest import StartBot

VISION = "llama3.2-vision:11b"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(300)
WEBM = b"\x1aE\xdf\xa3" + bytes(300)  # an EBML header, as Slack's audio clips start


def final_text(fake: FakeSlack, channel: str, thread_ts: str = "") -> str:
    return "\n".join(m.text for m in fake.bot_messages(channel, thread_ts))


async def test_an_image_in_a_dm_is_downloaded_with_the_token_and_answered(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    fake_ollama.vision_model(VISION)
    await start_bot()
    shared = fake_slack.add_file(PNG, "diagram.png", "image/png")
    event = fake_slack.user_message("what does this show?", files=[shared])
    await fake_slack.deliver("events_api", event)

    answer = "echo: [image: diagram.png] what does this show?"
    await fake_slack.wait_until(lambda: final_text(fake_slack, DM_CHANNEL) == answer)
    assert fake_slack.downloads == [(shared["id"], True)]
    assert fake_ollama.chat_requests[0]["model"] == VISION
    assert fake_ollama.images == [[PNG]]


async def test_an_image_with_a_mention_in_a_channel_is_answered_in_its_thread(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    fake_ollama.vision_model(VISION)
    await start_bot()
    shared = fake_slack.add_file(PNG, "graph.png", "image/png")
    event = fake_slack.user_message(
        "<@U07OLLABOT1> explain", channel=LAB_CHANNEL, kind="app_mention", files=[shared]
    )
    await fake_slack.deliver("events_api", event)

    thread = event["event"]["ts"]
    answer = f"echo: {ALICE}: [image: graph.png] explain"
    await fake_slack.wait_until(lambda: final_text(fake_slack, LAB_CHANNEL, thread) == answer)
    assert fake_ollama.images == [[PNG]]


async def test_an_audio_clip_is_transcribed_and_answered(
    start_bot: StartBot,
    fake_slack: FakeSlack,
    fake_ollama: FakeOllama,
    fake_stt: FakeSpeechToText,
) -> None:
    await start_bot(stt_url=fake_stt.url)
    shared = fake_slack.add_file(WEBM, "audio_message.webm", "audio/webm")
    await fake_slack.deliver("events_api", fake_slack.user_message("", files=[shared]))

    heard = "> 🎤 what is the capital of France\n\necho: what is the capital of France"
    await fake_slack.wait_until(lambda: final_text(fake_slack, DM_CHANNEL) == heard)
    assert [(r.audio, r.filename) for r in fake_stt.received] == [(WEBM, "audio_message.webm")]


async def test_a_file_slack_hides_gets_one_line_and_the_dm_goes_on(
    start_bot: StartBot, fake_slack: FakeSlack, fake_ollama: FakeOllama
) -> None:
    fake_ollama.vision_model(VISION)
    await start_bot()
    hidden = {"id": "F07HIDDEN01", "mode": "hidden_by_limit", "mimetype": "image/png"}
    await fake_slack.deliver("events_api", fake_slack.user_message("look", files=[hidden]))
    notice = "The chat platform would not hand that file over to me; please send it again."
    await fake_slack.wait_until(lambda: final_text(fake_slack, DM_CHANNEL) == f":warning: {notice}")

    await fake_slack.deliver("events_api", fake_slack.user_message("hello"))
    await fake_slack.wait_until(lambda: "echo: hello" in final_text(fake_slack, DM_CHANNEL))
    assert [m["content"] for m in fake_ollama.chat_requests[0]["messages"][1:]] == ["hello"]


async def test_without_the_token_slack_answers_its_sign_in_page_which_is_not_a_file(
    fake_slack: FakeSlack,
) -> None:
    shared = attachment(fake_slack.add_file(PNG, "diagram.png", "image/png"))
    wrong = SlackFiles(SecretStr("xoxb-not-ours"), fake_slack.url)
    right = SlackFiles(SecretStr("xoxb-fake"), fake_slack.url)
    try:
        with pytest.raises(FileRefused, match="would not hand that file over"):
            await wrong.fetch(shared, 10_000)
        with pytest.raises(FileRefused, match="larger than the"):
            await right.fetch(shared, 100)
        assert await right.fetch(shared, 10_000) == PNG
    finally:
        await wrong.close()
        await right.close()
    assert [ok for _, ok in fake_slack.downloads] == [False, True, True]


async def test_the_token_is_never_sent_outside_slack(fake_slack: FakeSlack) -> None:
    files = SlackFiles(SecretStr("xoxb-fake"), fake_slack.url)
    elsewhere = attachment(
        {"url_private": "https://evil.example.com/x.png", "mimetype": "image/png"}
    )
    with pytest.raises(FileRefused):
        await files.fetch(elsewhere, 10_000)
    await files.close()
