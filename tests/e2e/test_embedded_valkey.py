"""``OLLABOT_REDIS__URL=embedded`` without the model: ollabot's own Valkey over a data directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adapters.valkey_embedded import EmbeddedValkey


async def test_conversations_persist_in_the_data_directory_across_runs(
    ollabot: Any, tmp_path: Path
) -> None:
    bot = ollabot(OLLABOT_REDIS__URL="embedded", OLLABOT_DATA_DIR=str(tmp_path / "data"))
    await bot.chat("my name is Alice")
    code, out, _ = await bot.chat("/undo", "/undo")

    assert code == 0
    assert out.splitlines() == [
        "ollabot> Forgot the last question and its answer.",
        "ollabot> There is nothing to undo yet.",
    ]


async def test_a_data_directory_in_use_is_refused_with_what_to_do(
    ollabot: Any, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    running = await EmbeddedValkey(data).start()
    try:
        bot = ollabot(OLLABOT_REDIS__URL="embedded", OLLABOT_DATA_DIR=str(data))
        code, _, err = await bot.chat("hello")
    finally:
        await running.stop()

    assert code == 2
    assert f"OLLABOT_REDIS__URL=embedded (OLLABOT_DATA_DIR): a Valkey already serves {data}:" in err
