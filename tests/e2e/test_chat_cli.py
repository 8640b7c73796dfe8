"""``ollabot chat`` end to end: a person typing into the console, Redis and Ollama behind it."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from pathlib import Path
from typing import Any

from adapters.redis_keys import RedisKeys
from tests.e2e.conftest import Ollabot
from tests.fakes.ollama import FakeOllama, Reply, unused_port

ROOT = Path(__file__).resolve().parents[2]


async def stored_turns(redis_client: Any, prefix: str, channel: str = "default") -> list[dict]:
    conversation = f"console:{channel}"
    raw = await redis_client.lrange(RedisKeys(prefix).conv(conversation, conversation), 0, -1)
    return [
        dict(zip(("role", "content", "seq", "author"), json.loads(i), strict=True)) for i in raw
    ]


async def test_a_scripted_conversation_streams_replies_and_applies_admin_commands(
    ollabot: Any, fake_ollama: FakeOllama, redis_client: Any, key_prefix: str
) -> None:
    fake_ollama.script(Reply(text="Hello Alice, how can I help?", chunks=4))
    code, out, _ = await ollabot().chat(
        "hello there",
        "/preset set temperature 0.2",
        "/preset set temperature 7",
        "and now?",
        "/audit",
    )
    assert code == 0
    assert "ollabot> Hello Alice, how can I help?" in out
    assert "Set temperature = 0.2" in out
    assert "temperature must be a number in 0 to 2" in out
    trail = out.split("Recent settings changes in this chat (newest last):\n")[1].splitlines()
    assert trail[0].endswith(" alice preset: balanced → balanced temperature=0.2")
    assert "alice preset: refused (temperature must be a number in 0 to 2" in trail[1]
    second = fake_ollama.chat_requests[1]
    assert second["options"]["temperature"] == 0.2
    assert second["options"]["num_ctx"] == 8192
    assert [m["content"] for m in second["messages"][1:]] == [
        "hello there",
        "Hello Alice, how can I help?",
        "and now?",
    ]
    assert len(await stored_turns(redis_client, key_prefix)) == 4


async def test_the_conversation_continues_across_runs(
    ollabot: Any, fake_ollama: FakeOllama
) -> None:
    bot: Ollabot = ollabot()
    await bot.chat("my name is Alice")
    code, out, _ = await bot.chat("what is my name?")
    assert code == 0 and "echo: what is my name?" in out
    history = [m["content"] for m in fake_ollama.chat_requests[-1]["messages"]]
    assert "my name is Alice" in history


async def test_channels_keep_their_own_settings_and_history(
    ollabot: Any, fake_ollama: FakeOllama
) -> None:
    bot: Ollabot = ollabot()
    await bot.chat("/preset use precise", "first", channel="docs")
    await bot.chat("second", channel="chitchat")
    docs, chitchat = fake_ollama.chat_requests
    assert (docs["options"]["temperature"], docs["options"]["top_p"]) == (0.1, 0.95)
    assert (docs["options"]["top_k"], docs["options"]["num_predict"]) == (40, 2000)
    assert chitchat["options"]["temperature"] == 0.7
    assert "first" not in [m["content"] for m in chitchat["messages"]]


async def test_ollama_down_gives_a_notice_and_loses_nothing(
    ollabot: Any, fake_ollama: FakeOllama, redis_client: Any, key_prefix: str
) -> None:
    down: Ollabot = ollabot(OLLABOT_OLLAMA__HOST=f"http://127.0.0.1:{unused_port()}")
    code, out, err = await down.chat("are you there?", "/preset")
    assert code == 0
    assert "Ollama) is not reachable" in out
    assert "Preset balanced" in out, "the process keeps serving after the failure"
    assert "Traceback" not in err
    assert await stored_turns(redis_client, key_prefix) == []
    code, out, _ = await ollabot().chat("now?")
    assert "echo: now?" in out
    assert [m["content"] for m in fake_ollama.chat_requests[-1]["messages"][1:]] == ["now?"]


async def test_missing_model_and_busy_server_are_named(
    ollabot: Any, fake_ollama: FakeOllama
) -> None:
    fake_ollama.script(Reply.not_found(), Reply.busy(), Reply.busy(), Reply.busy())
    _, out, _ = await ollabot().chat("one", "two")
    assert "ollabot model pull llama3.1:8b" in out
    assert "busy" in out


async def test_bad_input_is_refused_with_a_reason(ollabot: Any, fake_ollama: FakeOllama) -> None:
    _, out, _ = await ollabot(OLLABOT_CHAT__MAX_MESSAGE_CHARS="100").chat(
        "   ", "x" * 150, "/frobnicate"
    )
    assert "Send me some text" in out
    assert "150 characters; the limit is 100" in out
    assert "Unknown command 'frobnicate'" in out
    assert fake_ollama.chat_requests == []


async def test_an_empty_model_reply_is_refused_with_a_notice_and_not_stored(
    ollabot: Any, fake_ollama: FakeOllama, redis_client: Any, key_prefix: str
) -> None:
    fake_ollama.script(Reply(text=""), Reply(text=" \n "))
    code, out, _ = await ollabot().chat("hello?", "anyone?", "/preset")
    assert code == 0
    assert out.count("The model returned an empty reply; please rephrase") == 2
    assert "Preset balanced" in out, "the process keeps serving after the refusal"
    assert await stored_turns(redis_client, key_prefix) == []


async def test_a_reply_cut_at_max_tokens_says_so(ollabot: Any, fake_ollama: FakeOllama) -> None:
    fake_ollama.script(Reply(text="Once upon a time", done_reason="length"))
    _, out, _ = await ollabot().chat("tell me a story")
    assert "Once upon a time" in out and "cut short" in out


async def test_a_message_interrupted_by_a_crash_is_answered_once_after_restart(
    ollabot: Any, fake_ollama: FakeOllama, redis_client: Any, key_prefix: str
) -> None:
    held = asyncio.Event()
    fake_ollama.script(
        Reply(text="partial answer that never finishes", chunks=5, hold_gate=held, hold_after=1)
    )
    bot: Ollabot = ollabot()
    process = await bot.start("chat", "--user", "alice")
    assert process.stdin is not None
    process.stdin.write(b"important question\n")
    await process.stdin.drain()
    await fake_ollama.wait_for_chat(1)
    process.send_signal(signal.SIGKILL)
    await process.wait()
    held.set()

    code, out, _ = await bot.chat()
    assert code == 0
    assert "echo: important question" in out
    assert len(fake_ollama.chat_requests) == 2
    turns = await stored_turns(redis_client, key_prefix)
    assert [(t["role"], t["content"]) for t in turns] == [
        ("user", "important question"),
        ("assistant", "echo: important question"),
    ]
    _, out, _ = await bot.chat()
    assert "important question" not in out, "answered exactly once"


async def test_the_in_memory_store_works_without_redis(
    ollabot: Any, fake_ollama: FakeOllama
) -> None:
    code, out, err = await ollabot(OLLABOT_REDIS__URL="memory://").chat("hi", "again")
    assert code == 0 and "echo: hi" in out and "echo: again" in out
    assert "nothing persists" in err
    assert "hi" in [m["content"] for m in fake_ollama.chat_requests[1]["messages"]]


async def test_a_silent_redis_gives_a_notice_in_seconds_and_the_chat_recovers(
    ollabot: Any, fake_ollama: FakeOllama, redis_server: Any
) -> None:
    bot: Ollabot = ollabot(OLLABOT_REDIS__URL=redis_server.url)
    process = await bot.start("chat")
    assert process.stdin is not None and process.stdout is not None

    async def say(line: str) -> str:
        process.stdin.write(f"{line}\n".encode())  # type: ignore[union-attr]
        await process.stdin.drain()  # type: ignore[union-attr]
        async with asyncio.timeout(8):
            return (await process.stdout.readline()).decode()  # type: ignore[union-attr]

    assert "echo: before" in await say("before")
    redis_server.pause()
    try:
        assert "Redis) is not reachable" in await say("during")
    finally:
        redis_server.resume()
    # The XADD sent while Redis was frozen runs when it wakes: "during" is not lost either.
    later = [await say("after")]
    while "echo: after" not in later[-1]:
        async with asyncio.timeout(8):
            later.append((await process.stdout.readline()).decode())
    assert sum("echo: during" in line for line in later) <= 1
    process.stdin.close()
    assert await process.wait() == 0


async def test_doctor_names_what_is_wrong_and_how_to_fix_it(
    ollabot: Any, fake_ollama: FakeOllama, redis_server: Any
) -> None:
    healthy: Ollabot = ollabot(OLLABOT_REDIS__URL=redis_server.url)
    process = await healthy.start("doctor")
    out, _ = await process.communicate()
    report = out.decode()
    assert process.returncode == 0, report
    assert "[ok  ] ollama: version" in report and "[ok  ] model: llama3.1:8b is installed" in report
    assert "[warn] redis persistence: AOF is off" in report
    assert "[warn] embedding model: nomic-embed-text is missing" in report
    assert "Fix: ollama pull nomic-embed-text" in report
    assert "[ok  ] dead letters: none" in report
    assert "[warn] vision model: llama3.2-vision:11b is missing" in report
    assert "[warn] speech-to-text: not configured" in report
    fixes = re.findall(r"deploy/[\w./-]*\w", report)
    assert fixes and all((ROOT / path).is_file() for path in fixes), fixes

    redis_server.stop()
    broken: Ollabot = ollabot(
        OLLABOT_REDIS__URL=redis_server.url,
        OLLABOT_OLLAMA__MODEL="llama3.1:70b",
    )
    process = await broken.start("doctor")
    out, _ = await process.communicate()
    report = out.decode()
    assert process.returncode == 1
    assert "llama3.1:70b is missing. Fix: ollabot model pull llama3.1:70b" in report
    assert "[FAIL] redis" in report and "Fix: start redis-server" in report


async def test_operators_add_few_shot_templates_in_a_file(
    ollabot: Any, fake_ollama: FakeOllama, tmp_path: Any
) -> None:
    templates = tmp_path / "fewshot.json"
    templates.write_text(
        json.dumps(
            {
                "pirate": {
                    "description": "answers like a pirate",
                    "examples": [["Hello", "Arr, ahoy!"], ["Bye", "Fair winds, matey."]],
                }
            }
        )
    )
    bot: Ollabot = ollabot(OLLABOT_CHAT__FEWSHOT_FILE=str(templates))
    _, out, _ = await bot.chat("/fewshot list", "/fewshot use pirate", "How are you?")
    assert "pirate: answers like a pirate (2 examples)" in out
    assert "sentiment:" in out, "the built-in template is still there"
    contents = [m["content"] for m in fake_ollama.chat_requests[-1]["messages"][1:]]
    assert contents == ["Hello", "Arr, ahoy!", "Bye", "Fair winds, matey.", "How are you?"]

    templates.write_text('{"broken": {"examples": "not a list"}}')
    code, out, err = await bot.chat("hi")
    assert code == 2
    assert "OLLABOT_CHAT__FEWSHOT_FILE" in err and "needs a list of examples" in err
    assert "Traceback" not in err
