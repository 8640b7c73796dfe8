"""Presets from the seed and the validation admins meet when they change them."""

import re
from pathlib import Path

import pytest

from core import presets
from core.errors import InvalidCommand
from core.models import ChannelSettings


def test_builtin_presets_carry_the_seeds_values() -> None:
    assert presets.PRESETS["precise"].temperature == 0.1
    assert presets.PRESETS["creative"].top_k == 50
    assert presets.PRESETS["balanced"].max_tokens == 500
    assert presets.DEFAULT_PRESET == "balanced"


def test_the_readme_shows_every_preset_as_it_is() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith("| `preset use "))
    shown = dict(re.findall(r"(\w+) ([\d.]+/[\d.]+/\d+/\d+)", row))
    actual = {
        name: f"{p.temperature:g}/{p.top_p:g}/{p.top_k}/{p.max_tokens}"
        for name, p in presets.PRESETS.items()
    }
    assert shown == actual


def test_overrides_apply_on_top_of_the_named_preset() -> None:
    params = presets.resolve(ChannelSettings(preset="precise", overrides={"temperature": 0.3}))
    assert (params.temperature, params.top_k, params.max_tokens) == (0.3, 40, 2000)


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [("temperature", "2", 2.0), ("top_k", "100", 100), ("repeat_penalty", "1.15", 1.15)],
)
def test_values_inside_the_range_are_accepted(name: str, raw: str, expected: float) -> None:
    assert presets.parse_param(name, raw) == expected


@pytest.mark.parametrize(
    ("name", "raw", "says"),
    [
        ("temperature", "2.5", "temperature must be a number in 0 to 2"),
        ("top_p", "-0.1", "top_p must be a number in 0 to 1"),
        ("top_k", "40.5", "top_k must be a whole number in 1 to 100"),
        ("max_tokens", "0", "1 to 128000"),
        ("repeat_penalty", "nan", "1 to 2"),
        ("temperature", "hot", "0 to 2"),
        ("creativity", "1", "Unknown parameter 'creativity'"),
    ],
)
def test_bad_values_are_refused_with_the_valid_range(name: str, raw: str, says: str) -> None:
    with pytest.raises(InvalidCommand, match=says):
        presets.parse_param(name, raw)


def test_options_use_ollamas_names_and_always_carry_num_ctx() -> None:
    options = presets.ollama_options(presets.PRESETS["creative"], num_ctx=4096)
    assert options == {
        "temperature": 0.8,
        "top_p": 0.95,
        "top_k": 50,
        "num_predict": 1000,
        "repeat_penalty": 1.1,
        "num_ctx": 4096,
    }
