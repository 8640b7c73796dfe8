"""`ollabot model recommend`: the table, the pick with its reason, and `--json`."""

from __future__ import annotations

import json

import pytest

from bots.model_cli import run_model_command
from tests.model.cli import gpu_host, parse, settings_for

NOWHERE = "http://127.0.0.1:9"


def never_probe() -> None:
    raise AssertionError("the sizes were given: the host must not be probed")


async def test_given_sizes_print_every_candidate_and_the_pick(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = parse("recommend", "--vram-gib", "12", "--ram-gib", "32")

    code = await run_model_command(args, settings_for(NOWHERE), probe=never_probe)

    out = capsys.readouterr().out
    assert code == 0
    q8_row = next(line for line in out.splitlines() if line.startswith("llama3.1:8b-instruct-q8_0"))
    assert q8_row.split()[-5:] == ["10.8", "GiB", "fits", "9.8", "GiB"]
    assert "Pick: llama3.1:8b-instruct-q8_0 (Q8_0, gpu)" in out
    assert "Why: Q8_0 fits on one GPU: 10.2 GiB of 10.8 GiB usable" in out
    assert "Next: ollabot model pull llama3.1:8b-instruct-q8_0" in out


async def test_json_has_the_fields_scripts_need(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("recommend", "--vram-gib", "12", "--ram-gib", "32", "--num-ctx", "32768", "--json")

    assert await run_model_command(args, settings_for(NOWHERE), probe=never_probe) == 0

    answer = json.loads(capsys.readouterr().out)
    assert answer["tag"] == "llama3.1:8b-instruct-q4_K_M"
    assert answer["quantization"] == "Q4_K_M"
    assert answer["estimate_bytes"] == 12_231_045_284
    assert answer["fits"] is False
    assert answer["placement"] == "gpu+cpu"
    assert "on the CPU" in answer["reason"]
    assert len(answer["candidates"]) == 8


async def test_without_sizes_the_host_is_probed(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("recommend", "--json")

    await run_model_command(args, settings_for(NOWHERE), probe=lambda: gpu_host(24, 24))

    answer = json.loads(capsys.readouterr().out)
    assert answer["tag"] == "llama3.1:8b-instruct-q8_0"
    assert [g["name"] for g in answer["host"]["gpus"]] == ["NVIDIA GeForce RTX 4090"] * 2
    assert answer["host"]["source"] == "nvml"


async def test_deployment_settings_feed_the_estimate(capsys: pytest.CaptureFixture[str]) -> None:
    # 16 GiB with 4 parallel slots of 8192: Q8_0 needs 14.9 GiB > 14.4 usable (see the table test)
    settings = settings_for(NOWHERE, num_parallel=4)

    await run_model_command(
        parse("recommend", "--vram-gib", "16", "--ram-gib", "64", "--json"), settings, never_probe
    )

    assert json.loads(capsys.readouterr().out)["tag"] == "llama3.1:8b-instruct-q4_K_M"


@pytest.mark.parametrize(
    "bad", [["--vram-gib", "twelve"], ["--num-ctx", "0"], ["--parallel", "-1"]]
)
def test_bad_flags_get_a_usage_error(bad: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse("recommend", *bad)

    assert exit_info.value.code == 2
    assert "error: argument" in capsys.readouterr().err
