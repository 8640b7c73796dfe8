"""The core stays pure: no SDK, network, Redis or settings library anywhere in core/."""

import ast
from pathlib import Path

FORBIDDEN = {
    "telegram",
    "slack_bolt",
    "slack_sdk",
    "redis",
    "ollama",
    "httpx",
    "aiohttp",
    "pydantic_settings",
    "pydantic",
    "structlog",
    "socket",
    "requests",
    "websockets",
    "os",
}
CORE = Path(__file__).resolve().parents[2] / "core"


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_no_core_module_imports_io_or_sdk_libraries() -> None:
    modules = sorted(CORE.glob("*.py"))
    assert len(modules) > 5
    offenders = {p.name: imported_roots(p) & FORBIDDEN for p in modules}
    assert {name: libs for name, libs in offenders.items() if libs} == {}
