"""The README's first run: ``ollabot chat`` with the embedded model and the embedded Valkey,
nothing else installed or running; a second run finds the first one's conversation."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from bots.app import DEMO_NOTICE
from core.chat import UNDONE
from tests.e2e.conftest import OLLABOT

pytestmark = pytest.mark.model


async def run(data_dir: Path, args: tuple[str, ...], *lines: str) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OLLABOT_")}
    env |= {
        "OLLABOT_OLLAMA__HOST": "embedded",
        "OLLABOT_REDIS__URL": "embedded",
        "OLLABOT_DATA_DIR": str(data_dir),
        "OLLABOT_OPS__LISTEN": "off",
    }
    process = await asyncio.create_subprocess_exec(
        str(OLLABOT),
        *args,
        env=env,
        cwd=data_dir.parent,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(90):
        out, err = await process.communicate("".join(f"{line}\n" for line in lines).encode())
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def chat(data_dir: Path, *lines: str) -> tuple[str, str]:
    code, out, err = await run(data_dir, ("chat", "--user", "alice"), *lines)
    assert code == 0, err
    return out, err


def replies(out: str) -> list[str]:
    return [line.removeprefix("ollabot> ") for line in out.splitlines() if line]


async def test_a_first_run_answers_with_the_demo_model_and_a_second_run_remembers(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    out, err = await chat(data, "/preset set temperature 0", "What is the capital of France?")

    assert DEMO_NOTICE in err  # said, and not mangled by the log redactor
    setting, answer = replies(out)
    assert "temperature = 0" in setting
    assert "Paris" in answer
    assert (data / "appendonlydir").is_dir()

    out, _ = await chat(data, "/retry", "/undo")

    assert replies(out) == [answer, UNDONE]


async def test_doctor_checks_the_embedded_parts_it_starts(tmp_path: Path) -> None:
    code, out, err = await run(tmp_path / "data", ("doctor",))

    assert code == 0, out + err
    assert "[ok  ] model: smollm2:135m is installed" in out
    assert "[ok  ] embedding model: smollm2:135m is installed" in out
    assert "[ok  ] redis persistence: AOF with appendfsync everysec" in out
