"""`ollabot model status`: what Ollama holds (/api/ps), and a warning when it spills to RAM."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bots.model_cli import run_model_command
from tests.fakes.ollama import FakeOllama, unused_port
from tests.model.cli import parse, settings_for

Q8 = "llama3.1:8b-instruct-q8_0"


def expire_in(fake: FakeOllama, delta: timedelta) -> None:
    fake.loaded[-1]["expires_at"] = (datetime.now(UTC) + delta).isoformat()


async def test_a_model_fully_on_the_gpu(
    fake_ollama: FakeOllama, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_ollama.load(Q8, context_length=8192)
    expire_in(fake_ollama, timedelta(minutes=29, seconds=50))

    code = await run_model_command(parse("status"), settings_for(fake_ollama.url))

    out = capsys.readouterr().out
    assert code == 0
    row = out.splitlines()[1].split()
    # the wire file's size: 10,108,923,904 bytes = 9.4 GiB
    assert row == [Q8, "Q8_0", "9.4", "GiB", "100%", "GPU", "8192", "in", "30", "min"]
    assert "Warning" not in out


async def test_a_model_partly_in_system_memory_is_flagged(
    fake_ollama: FakeOllama, capsys: pytest.CaptureFixture[str]
) -> None:
    # 7,000,000,000 of 10,108,923,904 bytes on the GPU: 69 %, 2.9 GiB in system memory.
    fake_ollama.load(Q8, context_length=32768, size_vram=7_000_000_000)
    fake_ollama.loaded[-1]["expires_at"] = "2318-02-24T12:00:00+00:00"  # keep_alive -1

    await run_model_command(parse("status"), settings_for(fake_ollama.url))

    out = capsys.readouterr().out
    assert "31%/69% CPU/GPU" in out
    assert "32768" in out
    assert "forever (keep_alive -1)" in out
    assert f"Warning: {Q8} has 2.9 GiB of 9.4 GiB in system memory" in out


async def test_nothing_loaded_says_so(
    fake_ollama: FakeOllama, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run_model_command(parse("status"), settings_for(fake_ollama.url)) == 0

    assert capsys.readouterr().out.startswith("Ollama has no model loaded")


async def test_ollama_down_exits_non_zero(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{unused_port()}"

    assert await run_model_command(parse("status"), settings_for(url)) == 1

    assert "not reachable" in capsys.readouterr().err
