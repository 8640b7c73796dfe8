"""Layers point one way: bots/ wires adapters/ into core/; never the other way round.

Relative imports stay inside their package (no package sits above the layers), so only
absolute ones can cross a layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS = {"core", "adapters", "bots"}
# What each layer may not import: the layers above it.
FORBIDDEN = {"core": {"adapters", "bots"}, "adapters": {"bots"}}


def layers_imported(source: str) -> set[str]:
    """The project's layers that a module's source imports, wherever the import stands."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots & LAYERS


def upward_imports(layer: str) -> dict[str, set[str]]:
    modules = sorted((ROOT / layer).rglob("*.py"))
    assert len(modules) > 5, f"{layer}/ has no modules to check"
    found = {
        str(path.relative_to(ROOT)): layers_imported(path.read_text(encoding="utf-8"))
        & FORBIDDEN[layer]
        for path in modules
    }
    return {name: hits for name, hits in found.items() if hits}


def test_core_imports_neither_adapters_nor_bots() -> None:
    assert upward_imports("core") == {}


def test_adapters_do_not_import_bots() -> None:
    assert upward_imports("adapters") == {}


def test_every_form_of_import_is_seen() -> None:
    source = (
        "import bots.settings\n"
        "from core import chat\n"
        "def later():\n"
        "    from adapters.slack.sink import SlackSinks\n"
        "from . import render\n"
        "import redis\n"
    )
    assert layers_imported(source) == {"bots", "core", "adapters"}
