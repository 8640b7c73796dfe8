"""deploy/install.sh into a scratch root: idempotent, never overwrites the env file,
uninstall keeps configuration and data, --dry-run changes nothing."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bots.settings import Settings
from tests.ops.wheel import build_wheel

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "deploy" / "install.sh"
SECRETS = ("TELEGRAM__TOKEN", "SLACK__BOT_TOKEN", "SLACK__APP_TOKEN", "SLACK__SIGNING_SECRET")


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheelhouse")
    build_wheel(REPO, folder)
    return folder


def install(root: Path, wheelhouse: Path, *options: str) -> str:
    """Run install.sh against ``root`` offline; its output."""
    done = subprocess.run(
        ["bash", str(INSTALL), "--prefix", str(root), "--python", sys.executable,
         "--wheelhouse", str(wheelhouse), "--pip-args", "--no-deps --no-compile", *options],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with its mode and content hash (or link target)."""
    tree = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            value = "-> " + os.readlink(path)
        elif stat.S_ISDIR(info.st_mode):
            value = "dir"
        else:
            value = hashlib.sha256(path.read_bytes()).hexdigest()
        tree[str(path.relative_to(root))] = f"{stat.filemode(info.st_mode)} {value}"
    return tree


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Path:
    """A scratch root with ollabot installed once (copied by tests that change it)."""
    root = tmp_path_factory.mktemp("installed")
    install(root, wheelhouse)
    return root


def test_install_twice_gives_the_same_tree(
    tmp_path: Path, installed: Path, wheelhouse: Path
) -> None:
    shutil.copytree(installed, tmp_path, symlinks=True, dirs_exist_ok=True)
    first = snapshot(tmp_path)
    output = install(tmp_path, wheelhouse)

    assert snapshot(tmp_path) == first
    assert "(kept)" in output and "(unchanged)" in output
    assert (tmp_path / "opt/ollabot/venv/bin/ollabot").is_file()
    unit = tmp_path / "etc/systemd/system/ollabot.service"
    assert unit.read_text() == (REPO / "deploy/systemd/ollabot.service").read_text()
    wants = tmp_path / "etc/systemd/system/multi-user.target.wants/ollabot.service"
    assert os.readlink(wants) == "/etc/systemd/system/ollabot.service"
    assert stat.S_IMODE((tmp_path / "etc/ollabot/credentials").stat().st_mode) == 0o700
    env_file = tmp_path / "etc/ollabot/ollabot.env"
    env_lines = env_file.read_text().splitlines()
    assert not [line for line in env_lines for name in SECRETS if f"OLLABOT_{name}=" in line]
    settings = Settings(_env_file=env_file)
    assert settings.telegram.token is None and settings.slack.bot_token is None

    # The operator edits the env file and reruns: the file stays theirs, Ollama follows it.
    edited = "# ours\nOLLABOT_OLLAMA__NUM_CTX=16384\nOLLABOT_OLLAMA__NUM_PARALLEL=2\n"
    (tmp_path / "etc/ollabot/ollabot.env").write_text(edited)
    install(tmp_path, wheelhouse, "--harden-ollama")

    assert (tmp_path / "etc/ollabot/ollabot.env").read_text() == edited
    dropins = tmp_path / "etc/systemd/system/ollama.service.d"
    ollama_env = (dropins / "10-ollabot.conf").read_text()
    assert "Environment=OLLAMA_CONTEXT_LENGTH=16384\n" in ollama_env
    assert "Environment=OLLAMA_NUM_PARALLEL=2\n" in ollama_env
    assert (dropins / "20-hardening.conf").is_file()


def test_uninstall_removes_what_it_installed_and_keeps_config_and_data(
    tmp_path: Path, installed: Path, wheelhouse: Path
) -> None:
    shutil.copytree(installed, tmp_path, symlinks=True, dirs_exist_ok=True)
    install(tmp_path, wheelhouse, "--harden-ollama", "--gpu-probe")
    assert (tmp_path / "etc/systemd/system/ollabot.service.d/20-gpu-probe.conf").is_file()
    env_text = (tmp_path / "etc/ollabot/ollabot.env").read_text()
    credentials = tmp_path / "etc/ollabot/credentials"
    (credentials / "telegram__token").write_text("123:secret")
    data = tmp_path / "var/lib/private/ollabot/notes"
    data.parent.mkdir(parents=True)
    data.write_text("state")

    install(tmp_path, wheelhouse, "--uninstall")

    left = {path for path in snapshot(tmp_path) if not path.startswith(("var", "etc/ollabot"))}
    assert left <= {"etc", "etc/systemd", "etc/systemd/system", "etc/sysctl.d", "opt",
                    "etc/systemd/system/multi-user.target.wants"}  # fmt: skip
    assert (tmp_path / "etc/ollabot/ollabot.env").read_text() == env_text
    assert (credentials / "telegram__token").read_text() == "123:secret"
    assert data.read_text() == "state"


def test_dry_run_prints_the_actions_and_writes_nothing(tmp_path: Path, wheelhouse: Path) -> None:
    root = tmp_path / "root"

    output = install(root, wheelhouse, "--dry-run")

    assert not root.exists()
    assert "-m venv" in output
    assert f"{root}/etc/systemd/system/ollabot.service" in output
    assert f"systemctl --root={root} enable ollabot.service" in output
