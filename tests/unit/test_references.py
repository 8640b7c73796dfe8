"""Code and docs name only what this repository has, and say things in their own words."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIP_DIRS = {".git", ".venv", ".mypy_cache", ".ruff_cache", ".pytest_cache", "__pycache__"}
TEXT_SUFFIXES = {".py", ".md", ".sh", ".toml", ".conf", ".service", ".yml", ".example"}
# The wire reference names files of the upstream projects its shapes come from.
UPSTREAM_CITATIONS = {Path("tests/fakes/wire/README.md")}
PROJECT_PATH = re.compile(
    r"(?<![\w/.-])((?:deploy|tools|\.ci|adapters|bots|core|tests|bench)/[\w./-]*\w)"
)
# Built from pieces so that this file does not itself cite what it forbids.
_DOC, _DIR = "DESIGN" + r"\.md", r"\.\./" + "shared/"
OUTSIDE_CITATION = re.compile(rf"{_DOC}|§|{_DIR}|\b{'shared'}/wire")


def project_files() -> list[Path]:
    """The repository's own text files (not the venv's, nor caches)."""
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        for name in files:
            relative = (Path(folder) / name).relative_to(ROOT)
            if relative.suffix in TEXT_SUFFIXES or relative.parts[0] in (".ci", "tools"):
                found.append(relative)
    return sorted(found)


def test_nothing_cites_a_document_outside_the_repository() -> None:
    files = [p for p in project_files() if p != Path(__file__).resolve().relative_to(ROOT)]
    assert len(files) > 50
    citing = {
        str(p): sorted(set(OUTSIDE_CITATION.findall((ROOT / p).read_text(encoding="utf-8"))))
        for p in files
    }
    assert {name: found for name, found in citing.items() if found} == {}


def test_every_path_named_in_code_and_docs_exists() -> None:
    missing = {}
    for path in project_files():
        if path in UPSTREAM_CITATIONS:
            continue
        for named in PROJECT_PATH.findall((ROOT / path).read_text(encoding="utf-8")):
            is_file_like = "." in Path(named).name or named.startswith(
                ("deploy/", "tools/", ".ci/")
            )
            if is_file_like and not (ROOT / named).exists():
                missing.setdefault(str(path), []).append(named)
    assert missing == {}
