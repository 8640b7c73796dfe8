"""Start-up: `OLLABOT_OLLAMA__MODEL=auto`, auto-pull, warm-up, and the fit in `ollabot doctor`."""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

from bots.model_cli import doctor_fit, resolve_model_tag, warm_up
from core.modelfit import Host
from tests.fakes.ollama import FakeOllama, unused_port
from tests.model.cli import gpu_host, settings_for

Q8 = "llama3.1:8b-instruct-q8_0"
Q4 = "llama3.1:8b-instruct-q4_K_M"


def never_probe() -> Host:
    raise AssertionError("a fixed tag needs no probe")


async def test_a_fixed_tag_is_used_as_configured(fake_ollama: FakeOllama) -> None:
    settings = settings_for(fake_ollama.url, model="llama3.1:70b")

    assert await resolve_model_tag(settings, probe=never_probe) == "llama3.1:70b"


async def test_auto_picks_q8_on_a_24gb_gpu_that_is_already_pulled(fake_ollama: FakeOllama) -> None:
    settings = settings_for(fake_ollama.url, model="auto")

    assert await resolve_model_tag(settings, probe=lambda: gpu_host(24)) == Q8
    assert [path for path, _ in fake_ollama.requests] == ["/api/tags"]


async def test_auto_with_the_model_missing_says_how_to_pull_it(fake_ollama: FakeOllama) -> None:
    fake_ollama.models = []
    settings = settings_for(fake_ollama.url, model="auto")

    with capture_logs() as logs:
        tag = await resolve_model_tag(settings, probe=lambda: gpu_host(8))

    assert tag == Q4
    missing = [entry for entry in logs if entry["event"] == "model_missing"]
    assert missing == [
        {
            "event": "model_missing",
            "tag": Q4,
            "fix": f"ollabot model pull {Q4}",
            "log_level": "warning",
        }
    ]
    assert "/api/pull" not in [path for path, _ in fake_ollama.requests]


async def test_auto_pull_pulls_the_missing_model(
    fake_ollama: FakeOllama, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_ollama.models = []
    settings = settings_for(fake_ollama.url, model="auto", auto_pull=True)

    assert await resolve_model_tag(settings, probe=lambda: gpu_host(16)) == Q8

    assert Q8 in fake_ollama.models
    assert capsys.readouterr().err.splitlines()[-1] == "success"


async def test_auto_still_starts_when_ollama_is_down() -> None:
    settings = settings_for(f"http://127.0.0.1:{unused_port()}", model="auto")

    with capture_logs() as logs:
        assert await resolve_model_tag(settings, probe=lambda: gpu_host(24)) == Q8

    assert [entry["event"] for entry in logs] == ["model_auto", "model_check_failed"]


async def test_warm_up_loads_the_model_with_the_deployments_context(
    fake_ollama: FakeOllama,
) -> None:
    assert await warm_up(fake_ollama.url, Q8, num_ctx=16384, keep_alive="30m") is True

    body = await fake_ollama.wait_for_chat()
    assert body["model"] == Q8
    assert body["messages"] == []
    assert body["options"] == {"num_ctx": 16384}
    assert body["keep_alive"] == "30m"


async def test_warm_up_of_a_missing_model_is_logged_not_raised(fake_ollama: FakeOllama) -> None:
    fake_ollama.models = []

    with capture_logs() as logs:
        assert await warm_up(fake_ollama.url, Q8, num_ctx=8192, keep_alive="30m") is False

    assert logs[0]["event"] == "model_warm_up_failed"
    assert "ollabot model pull" in logs[0]["error"]


async def test_doctor_reports_a_configured_model_too_big_for_the_gpu(
    fake_ollama: FakeOllama,
) -> None:
    fake_ollama.load(Q8, size_vram=7_000_000_000)
    settings = settings_for(fake_ollama.url, model=Q8)

    checks = await doctor_fit(settings, probe=lambda: gpu_host(8))

    assert [c for c in checks if c[0] != "GPU plan"] == [
        (
            "hardware fit",
            False,
            f"{Q8} does not fit: 10.2 GiB of 7.2 GiB usable; "
            f"`ollabot model recommend` suggests {Q4}",
            True,
        ),
        ("model pulled", True, f"{Q8} is pulled", True),
        ("model in GPU memory", False, f"partly in system memory: {Q8} (69% on GPU)", True),
    ]


async def test_doctor_with_auto_on_a_good_gpu_is_all_green(fake_ollama: FakeOllama) -> None:
    settings = settings_for(fake_ollama.url, model="auto", vision_model="")

    checks = await doctor_fit(settings, probe=lambda: gpu_host(24))

    assert [(name, ok) for name, ok, _, _ in checks] == [
        ("hardware fit", True),
        ("GPU plan", True),
        ("model pulled", True),
        ("model in GPU memory", True),
    ]
    assert checks[0][2].startswith(f"{Q8}: Q8_0 fits on one GPU")


async def test_doctor_with_ollama_down_says_so() -> None:
    settings = settings_for(f"http://127.0.0.1:{unused_port()}", model="auto")

    checks = await doctor_fit(settings, probe=lambda: gpu_host(24))

    assert checks[-1][:2] == ("model pulled", False)
    assert "sizes from ollabot's table, not from Ollama" in checks[-2][2]
    assert "not reachable" in checks[-1][2]
