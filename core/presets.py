"""Built-in generation presets (from the seed) and validated per-channel overrides."""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import InvalidCommand
from core.i18n import N_
from core.models import ChannelSettings, GenerationParams


@dataclass(frozen=True, slots=True)
class ParamRange:
    low: float
    high: float
    integer: bool = False


PARAM_RANGES: dict[str, ParamRange] = {
    "temperature": ParamRange(0.0, 2.0),
    "top_p": ParamRange(0.0, 1.0),
    "top_k": ParamRange(1, 100, integer=True),
    "max_tokens": ParamRange(1, 128_000, integer=True),
    "repeat_penalty": ParamRange(1.0, 2.0),
}

PRESETS: dict[str, GenerationParams] = {
    "precise": GenerationParams(0.1, 0.95, 40, 2000, 1.1),
    "creative": GenerationParams(0.8, 0.95, 50, 1000, 1.1),
    "balanced": GenerationParams(0.7, 0.9, 40, 500, 1.1),
}
PRESET_USES = {
    "precise": N_("documentation, code"),
    "creative": N_("stories, marketing"),
    "balanced": N_("conversation (default)"),
}
DEFAULT_PRESET = "balanced"


def parse_param(name: str, raw: str) -> float:
    """Validate one ``preset set NAME VALUE``; the error states the valid range."""
    rng = PARAM_RANGES.get(name)
    if rng is None:
        raise InvalidCommand(
            N_("Unknown parameter '{name}'. Parameters: {known}."),
            name=name,
            known=", ".join(PARAM_RANGES),
        )
    kind = N_("{name} must be a whole number in {low:g} to {high:g}.")
    if not rng.integer:
        kind = N_("{name} must be a number in {low:g} to {high:g}.")
    refusal = InvalidCommand(kind, name=name, low=rng.low, high=rng.high)
    try:
        value = float(raw)
    except ValueError:
        raise refusal from None
    if (
        value != value
        or not rng.low <= value <= rng.high
        or (rng.integer and not value.is_integer())
    ):
        raise refusal
    return int(value) if rng.integer else value


def preset_named(name: str) -> GenerationParams:
    try:
        return PRESETS[name]
    except KeyError:
        raise InvalidCommand(
            N_("Unknown preset '{name}'. Presets: {known}."), name=name, known=", ".join(PRESETS)
        ) from None


def resolve(settings: ChannelSettings) -> GenerationParams:
    """The channel's preset with its overrides applied (unknown names fall back to default)."""
    base = PRESETS.get(settings.preset, PRESETS[DEFAULT_PRESET])
    o = {k: v for k, v in settings.overrides.items() if k in PARAM_RANGES}
    return GenerationParams(
        temperature=o.get("temperature", base.temperature),
        top_p=o.get("top_p", base.top_p),
        top_k=int(o.get("top_k", base.top_k)),
        max_tokens=int(o.get("max_tokens", base.max_tokens)),
        repeat_penalty=o.get("repeat_penalty", base.repeat_penalty),
    )


def describe(params: GenerationParams) -> str:
    return (
        f"temperature={params.temperature:g} top_p={params.top_p:g} top_k={params.top_k} "
        f"max_tokens={params.max_tokens} repeat_penalty={params.repeat_penalty:g}"
    )


def ollama_options(params: GenerationParams, num_ctx: int) -> dict[str, float | int]:
    """Ollama's option names; ``num_ctx`` is the deployment's, sent on every request."""
    return {
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k,
        "num_predict": params.max_tokens,
        "repeat_penalty": params.repeat_penalty,
        "num_ctx": num_ctx,
    }
