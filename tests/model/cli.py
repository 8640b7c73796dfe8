"""Helpers of the model CLI tests: parse `ollabot model ...`, settings pointing at a fake."""

from __future__ import annotations

import argparse

from bots.model_cli import add_model_parser
from bots.settings import OllamaSettings, Settings
from core.modelfit import GiB, Gpu, Host


def parse(*argv: str) -> argparse.Namespace:
    """Parse ``ollabot model <argv>`` with the parser the CLI gets."""
    parser = argparse.ArgumentParser(prog="ollabot")
    add_model_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["model", *argv])


def settings_for(url: str, **ollama: object) -> Settings:
    """Settings whose Ollama is the fake at ``url``."""
    return Settings(ollama=OllamaSettings(host=url, read_timeout_s=10, **ollama))  # type: ignore[arg-type]


def gpu_host(*sizes_gib: int, ram_gib: int = 64) -> Host:
    """A probed-looking host with these GPUs (all memory free)."""
    gpus = tuple(
        Gpu(i, "NVIDIA GeForce RTX 4090", n * GiB, n * GiB) for i, n in enumerate(sizes_gib)
    )
    return Host(gpus, ram_gib * GiB, 16, "560.35.03", "nvml")
