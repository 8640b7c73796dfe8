"""Shared pytest fixtures: a real Redis (or a Sentinel group), the stores, a fake Ollama server."""

pytest_plugins = [
    "tests.fixtures.redis",
    "tests.fixtures.cluster",
    "tests.fixtures.redis_stack",
    "tests.fixtures.sentinel",
    "tests.fixtures.store",
    "tests.fakes.ollama",
    "tests.fakes.slack_api",
]
