"""Build ollabot's wheel with the standard library, so install tests need no network or
build backend (a fresh venv has setuptools without ``wheel``; build isolation would download)."""

from __future__ import annotations

import base64
import hashlib
import tomllib
import zipfile
from pathlib import Path


def build_wheel(source: Path, out_dir: Path) -> Path:
    """A pure-Python wheel of the packages, their data files and the console scripts named in
    pyproject.toml."""
    project = tomllib.loads((source / "pyproject.toml").read_text())
    name, version = project["project"]["name"], project["project"]["version"]
    dist_info = f"{name}-{version}.dist-info"
    files: dict[str, bytes] = {}
    for package in project["tool"]["setuptools"]["packages"]:
        folder = source / package.replace(".", "/")
        for module in sorted(folder.glob("*.py")):
            files[module.relative_to(source).as_posix()] = module.read_bytes()
    for package, patterns in project["tool"]["setuptools"].get("package-data", {}).items():
        folder = source / package.replace(".", "/")
        for pattern in patterns:
            for data in sorted(folder.glob(pattern)):
                files[data.relative_to(source).as_posix()] = data.read_bytes()
    scripts = project["project"].get("scripts", {})
    files[f"{dist_info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        + "".join(f"Requires-Dist: {dep}\n" for dep in project["project"]["dependencies"])
    ).encode()
    files[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: tests.ops.wheel\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n"
    )
    files[f"{dist_info}/entry_points.txt"] = (
        "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in scripts.items())
    ).encode()
    wheel = out_dir / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
        archive.writestr(f"{dist_info}/RECORD", _record(files, dist_info))
    return wheel


def _record(files: dict[str, bytes], dist_info: str) -> str:
    lines = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        lines.append(f"{path},sha256={digest},{len(data)}")
    return "\n".join([*lines, f"{dist_info}/RECORD,,"]) + "\n"
