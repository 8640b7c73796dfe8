"""Shared pytest fixtures: a real Redis, the stores, a fake Ollama server."""

pytest_plugins = [
    "tests.fixtures.redis",
    "tests.fixtures.store",
    "tests.fakes.ollama",
    "tests.fakes.slack_api",
]
