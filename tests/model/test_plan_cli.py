"""The GPU plan in `ollabot model recommend` and `ollabot doctor`, sizes from the fake Ollama."""

from __future__ import annotations

import json

import pytest

from bots.doctor import Check
from bots.model_cli import doctor_fit, run_model_command
from tests.fakes.ollama import FakeOllama, unused_port
from tests.model.cli import gpu_host, parse, settings_for

Q8, Q4 = "llama3.1:8b-instruct-q8_0", "llama3.1:8b-instruct-q4_K_M"
VISION, EMBED = "llama3.2-vision:11b", "nomic-embed-text"


def never_probe() -> None:
    raise AssertionError("the sizes were given: the host must not be probed")


def pull_companions(fake: FakeOllama) -> None:
    fake.models += [VISION, f"{EMBED}:latest"]


async def test_recommend_prints_which_models_swap_on_16_gib(
    fake_ollama: FakeOllama, capsys: pytest.CaptureFixture[str]
) -> None:
    pull_companions(fake_ollama)
    args = parse("recommend", "--vram-gib", "16", "--ram-gib", "64")

    assert await run_model_command(args, settings_for(fake_ollama.url), never_probe) == 0

    out = capsys.readouterr().out.splitlines()
    table = out[out.index("GPU plan (chat, embedding and vision models together):") + 2 :][:3]
    rows = {line.split()[0]: " ".join(line.split()[1:]) for line in table}
    assert rows == {
        "chat": f"{Q8} 1 8192 10.2 GiB resident (keep_alive 30m)",
        "embed": f"{EMBED} 1 2048 0.8 GiB resident (keep_alive 30m)",
        "vision": f"{VISION} 1 8192 12.7 GiB swaps (keep_alive 1m)",
    }
    plan = next(line for line in out if line.startswith("Plan: "))
    assert f"vision {VISION} (12.7 GiB) must swap with them" in plan
    assert not any(line.startswith("Note: sizes from") for line in out)


async def test_recommend_json_takes_sizes_from_ollama_where_it_has_the_model(
    fake_ollama: FakeOllama, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_ollama.models.append(VISION)  # the embedding model is not pulled
    args = parse("recommend", "--vram-gib", "80", "--ram-gib", "64", "--parallel", "4", "--json")

    await run_model_command(args, settings_for(fake_ollama.url), never_probe)

    plan = json.loads(capsys.readouterr().out)["plan"]
    models = {m["role"]: m for m in plan["models"]}
    assert plan["verdict"] == "resident"
    assert plan["max_loaded_models"] == 3
    assert (models["vision"]["size_from"], models["vision"]["file_bytes"]) == (
        "ollama",
        7_901_829_417,
    )
    assert (models["embed"]["size_from"], models["embed"]["file_bytes"]) == ("table", 274_000_000)
    assert [m["num_parallel"] for m in plan["models"]] == [4, 1, 1]


async def test_a_model_without_a_table_entry_is_sized_by_ollama_or_left_out(
    fake_ollama: FakeOllama, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_ollama.models.append("mistral:7b")  # /api/show answers a Llama 8B shape
    settings = settings_for(fake_ollama.url, model="mistral:7b", embed_model="bge-m3")

    await run_model_command(
        parse("recommend", "--vram-gib", "24", "--ram-gib", "64", "--json"), settings, never_probe
    )

    plan = json.loads(capsys.readouterr().out)["plan"]
    chat = plan["models"][0]
    assert (chat["tag"], chat["size_from"], chat["file_bytes"]) == (
        "mistral:7b",
        "ollama",
        4_920_753_328,
    )
    assert [m["role"] for m in plan["models"]] == ["chat", "vision"]
    assert "embed bge-m3 is left out: its size is unknown until it is pulled" in plan["notes"][-1]
    shown = [body["model"] for path, body in fake_ollama.requests if path == "/api/show"]
    assert set(shown) == {"mistral:7b"}


async def test_a_chat_model_with_vision_leaves_the_vision_model_out(
    fake_ollama: FakeOllama, capsys: pytest.CaptureFixture[str]
) -> None:
    pull_companions(fake_ollama)
    fake_ollama.models.append("gemma3:12b")
    fake_ollama.shows["gemma3:12b"] = {"capabilities": ["completion", "vision"]}
    settings = settings_for(fake_ollama.url, model="gemma3:12b")

    await run_model_command(
        parse("recommend", "--vram-gib", "24", "--ram-gib", "64", "--json"), settings, never_probe
    )

    plan = json.loads(capsys.readouterr().out)["plan"]
    assert [m["role"] for m in plan["models"]] == ["chat", "embed"]
    assert "chat gemma3:12b reads photos itself: the vision model is not loaded" in plan["notes"]


async def test_features_turned_off_are_not_planned(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = settings_for(f"http://127.0.0.1:{unused_port()}", vision_model="", embed_model="")

    await run_model_command(
        parse("recommend", "--vram-gib", "8", "--ram-gib", "64", "--json"), settings, never_probe
    )

    plan = json.loads(capsys.readouterr().out)["plan"]
    assert [m["role"] for m in plan["models"]] == ["chat"]
    assert plan["verdict"] == "resident"
    assert plan["notes"][0].startswith("sizes from ollabot's table, not from Ollama")


async def test_doctor_warns_of_a_vision_model_too_big_for_the_gpu(
    fake_ollama: FakeOllama,
) -> None:
    pull_companions(fake_ollama)

    checks = await doctor_fit(settings_for(fake_ollama.url), probe=lambda: gpu_host(8))

    warning, rest = (Check(*c).line() for c in checks if c[0] == "GPU plan")
    assert warning.startswith(
        f"[warn] GPU plan: vision {VISION} needs 12.7 GiB alone, more than the 7.2 GiB usable"
    )
    assert "OLLABOT_OLLAMA__VISION_MODEL=" in warning
    assert rest.startswith(
        f"[warn] GPU plan: chat {Q4} fits alone (6.8 GiB of 7.2 GiB usable); "
        f"embed {EMBED} (0.8 GiB) must swap with it"
    )


async def test_doctor_warns_in_one_line_when_the_vision_model_swaps(
    fake_ollama: FakeOllama,
) -> None:
    pull_companions(fake_ollama)

    checks = await doctor_fit(settings_for(fake_ollama.url), probe=lambda: gpu_host(16))

    (plan,) = [Check(*c) for c in checks if c[0] == "GPU plan"]
    assert plan.line().startswith(f"[warn] GPU plan: chat {Q8} and embed {EMBED} fit together")
    assert f"vision {VISION} (12.7 GiB) must swap with them" in plan.detail
    assert "keep_alive 1m" in plan.detail and "\n" not in plan.detail


async def test_doctor_is_content_when_everything_stays_resident(fake_ollama: FakeOllama) -> None:
    pull_companions(fake_ollama)

    checks = await doctor_fit(settings_for(fake_ollama.url), probe=lambda: gpu_host(48))

    (plan,) = [Check(*c) for c in checks if c[0] == "GPU plan"]
    assert plan.ok
    assert "nothing is reloaded between requests" in plan.detail
