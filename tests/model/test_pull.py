"""`ollabot model pull` against the fake Ollama's /api/pull stream, then /api/show."""

from __future__ import annotations

import io
from typing import Any

import pytest

from adapters.ollama_models import PullUpdate
from bots.model_cli import run_model_command
from bots.model_view import PullProgress, progress_line
from tests.fakes.ollama import FakeOllama, unused_port, wire_ndjson
from tests.model.cli import gpu_host, parse, settings_for
from tests.model.conftest import DroppingPullOllama

Q8 = "llama3.1:8b-instruct-q8_0"


def pulls(fake: FakeOllama) -> list[str]:
    return [body["model"] for path, body in fake.requests if path == "/api/pull"]


async def test_pull_shows_progress_and_verifies_the_quantisation(
    fake_ollama: FakeOllama, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_ollama.models = []

    code = await run_model_command(parse("pull", Q8), settings_for(fake_ollama.url))

    out, err = capsys.readouterr()
    assert code == 0
    assert f"{Q8} is ready (Q8_0, checked with /api/show)" in out
    # stderr is not a terminal here: one line per layer and per 10 %, then the statuses.
    big_layer = [line for line in err.splitlines() if line.startswith("pulling 667b0c1932bc")]
    assert [line.split("] ")[1].split()[0] for line in big_layer] == ["0%", "24%", "72%", "100%"]
    assert "4.9 GB/4.9 GB" in big_layer[-1]
    assert err.splitlines()[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    assert Q8 in fake_ollama.models
    assert [path for path, _ in fake_ollama.requests] == ["/api/pull", "/api/show"]


async def test_pull_without_a_tag_pulls_the_recommendation(
    fake_ollama: FakeOllama, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_ollama.models = []

    code = await run_model_command(
        parse("pull"), settings_for(fake_ollama.url), probe=lambda: gpu_host(8)
    )

    assert code == 0
    assert pulls(fake_ollama) == ["llama3.1:8b-instruct-q4_K_M"]


async def test_an_unknown_tag_ends_with_a_clear_message(
    fake_ollama: FakeOllama, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_ollama.script_pull(
        [{"status": "pulling manifest"}, {"error": "pull model manifest: file does not exist"}]
    )

    code = await run_model_command(parse("pull", "llama3.1:9b"), settings_for(fake_ollama.url))

    err = capsys.readouterr().err
    assert code == 1
    assert "ollabot: Ollama's library has no model llama3.1:9b" in err
    assert "llama3.1:9b" not in fake_ollama.models


async def test_an_error_mid_pull_ends_non_zero_and_says_to_resume(
    fake_ollama: FakeOllama, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_ollama.models = []
    lines = [*wire_ndjson("pull_stream.ndjson")[:4], {"error": "max retries exceeded: EOF"}]
    fake_ollama.script_pull(lines)

    code = await run_model_command(parse("pull", Q8), settings_for(fake_ollama.url))

    err = capsys.readouterr().err
    assert code == 1
    assert f"ollabot: The pull of {Q8} failed: max retries exceeded: EOF. Run it again" in err
    assert "/api/show" not in [path for path, _ in fake_ollama.requests]


async def test_a_stream_that_stops_before_success_is_an_interrupted_pull(
    fake_ollama: FakeOllama, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_ollama.models = []
    fake_ollama.script_pull(wire_ndjson("pull_stream.ndjson")[:5])

    code = await run_model_command(parse("pull", Q8), settings_for(fake_ollama.url))

    assert code == 1
    assert f"The pull of {Q8} was interrupted (last status: pulling 667b0c1932bc)" in (
        capsys.readouterr().err
    )


async def test_a_dropped_connection_mid_pull_is_reported(
    dropping_ollama: DroppingPullOllama, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await run_model_command(parse("pull", Q8), settings_for(dropping_ollama.url))

    assert code == 1
    assert "The connection to Ollama broke during the pull" in capsys.readouterr().err


async def test_ollama_down_is_a_clear_message(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{unused_port()}"

    code = await run_model_command(parse("pull", Q8), settings_for(url))

    assert code == 1
    assert f"Ollama is not reachable at {url}" in capsys.readouterr().err


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_bar_redraws_one_line_with_speed_and_eta() -> None:
    ticks = iter([0.0, 0.0, 10.0, 20.0])  # layer start, then one reading per update
    terminal = Terminal()
    progress = PullProgress(terminal, clock=lambda: next(ticks))
    for line in wire_ndjson("pull_stream.ndjson")[1:4]:
        progress.show(_update(line))

    frames = terminal.getvalue().split("\r")[1:]
    assert len(frames) == 3
    # The layer started at 0 s with 0 bytes; at 20 s 1,180,237,824 bytes: 59.0 MB/s, and the
    # 3,740,501,120 bytes left take 63 s.
    assert "[####----------------]  24% 1.2 GB/4.9 GB 59.0 MB/s ETA 1:03" in frames[2]


def test_progress_line_without_a_speed_yet() -> None:
    assert progress_line(0, 1000, None) == "[--------------------]   0% 0 B/1.0 kB -- ETA --"


def _update(line: dict[str, Any]) -> PullUpdate:
    return PullUpdate(line["status"], line.get("digest"), line.get("total"), line.get("completed"))
