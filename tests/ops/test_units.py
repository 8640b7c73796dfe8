"""The systemd units and drop-ins: valid for systemd, hardened, consistent with the settings,
and the Redis durability settings accepted by a real redis-server."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import redis

from bots.settings import OllamaSettings, Settings
from tests.fixtures.redis import RedisServer

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNITS = DEPLOY / "systemd"
OPTIONAL = UNITS / "optional"
# Ollama's own unit, as its install script writes it (ExecStart filled in by the test).
STOCK_OLLAMA = """[Unit]
Description=Ollama Service
After=network-online.target

[Service]
ExecStart={binary} serve
User=ollama
Group=ollama
Restart=always
RestartSec=3

[Install]
WantedBy=default.target
"""
# The part of Debian's redis-server.service that the drop-in overrides.
STOCK_REDIS = """[Unit]
Description=Advanced key-value store
After=network.target

[Service]
Type=notify
ExecStart=/usr/bin/redis-server /etc/redis/redis.conf --supervised systemd --daemonize no
User=redis
Group=redis

[Install]
WantedBy=multi-user.target
"""


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    command = ["systemd-analyze", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def exposure(unit: Path) -> float:
    """``systemd-analyze security --offline=true`` overall exposure (drop-ins beside it count)."""
    result = analyze("security", "--offline=true", "--no-pager", str(unit))
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    return float(found.group(1))


def directives(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]


@pytest.fixture
def program(tmp_path: Path) -> Path:
    """An executable standing in for the binary a unit starts (verify checks it exists)."""
    binary = tmp_path / "bin" / "program"
    binary.parent.mkdir()
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    return binary


@pytest.fixture
def ollabot_unit(tmp_path: Path, program: Path) -> Path:
    unit = tmp_path / "units" / "ollabot.service"
    unit.parent.mkdir()
    text = (UNITS / "ollabot.service").read_text()
    unit.write_text(text.replace("/opt/ollabot/venv/bin/ollabot", str(program)))
    return unit


@pytest.fixture
def ollama_unit(tmp_path: Path, program: Path) -> Path:
    """Ollama's stock unit with our drop-ins beside it, as in /etc/systemd/system."""
    folder = tmp_path / "ollama-units"
    shutil.copytree(UNITS / "ollama.service.d", folder / "ollama.service.d")
    shutil.copy(OPTIONAL / "ollama-hardening.conf", folder / "ollama.service.d/20-hardening.conf")
    unit = folder / "ollama.service"
    unit.write_text(STOCK_OLLAMA.format(binary=program))
    return unit


def test_the_ollabot_unit_verifies_cleanly(ollabot_unit: Path) -> None:
    result = analyze("verify", str(ollabot_unit))

    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def test_the_ollabot_unit_is_rated_2_or_lower(ollabot_unit: Path) -> None:
    assert exposure(ollabot_unit) <= 2.0


def test_with_the_gpu_probe_drop_in_it_verifies_and_stays_at_2_or_lower(
    ollabot_unit: Path,
) -> None:
    dropins = ollabot_unit.parent / "ollabot.service.d"
    dropins.mkdir()
    shutil.copy(OPTIONAL / "ollabot-gpu-probe.conf", dropins / "20-gpu-probe.conf")

    result = analyze("verify", str(ollabot_unit))

    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""
    assert exposure(ollabot_unit) <= 2.0


def test_the_ollama_drop_ins_verify_and_harden_the_stock_unit(ollama_unit: Path) -> None:
    result = analyze("verify", str(ollama_unit))
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""

    hardened = exposure(ollama_unit)
    shutil.rmtree(ollama_unit.parent / "ollama.service.d")
    assert exposure(ollama_unit) > 9.0 > 2.0 >= hardened


def test_the_ollama_hardening_keeps_the_gpu_devices() -> None:
    text = (OPTIONAL / "ollama-hardening.conf").read_text()

    assert "PrivateDevices=yes" not in text
    allowed = directives(text, "DeviceAllow")
    assert "/dev/nvidiactl rw" in allowed and "/dev/nvidia-uvm rw" in allowed
    assert "char-nvidia-frontend rw" in allowed  # /dev/nvidia0, /dev/nvidia1, ...


def test_ollama_runs_with_the_context_and_parallelism_ollabot_sends() -> None:
    text = (UNITS / "ollama.service.d" / "10-ollabot.conf").read_text()
    env = dict(value.split("=", 1) for value in directives(text, "Environment"))
    defaults = OllamaSettings()

    assert env["OLLAMA_CONTEXT_LENGTH"] == str(defaults.num_ctx)
    assert env["OLLAMA_NUM_PARALLEL"] == str(defaults.num_parallel)
    assert env["OLLAMA_KEEP_ALIVE"] == defaults.keep_alive
    assert env["OLLAMA_FLASH_ATTENTION"] == "1"
    assert env["OLLAMA_HOST"].startswith("127.0.0.1:")
    assert defaults.host.endswith(env["OLLAMA_HOST"])
    assert directives(text, "LimitMEMLOCK") == ["infinity"]


def test_the_unit_orders_after_its_backends_and_reads_secrets_from_credentials() -> None:
    text = (UNITS / "ollabot.service").read_text()
    after = " ".join(directives(text, "After")).split()

    assert {"network-online.target", "ollama.service", "redis-server.service"} <= set(after)
    assert directives(text, "Type") == ["notify"]
    assert directives(text, "Restart") == ["on-failure"]
    assert directives(text, "RestartPreventExitStatus") == ["2"]
    assert directives(text, "EnvironmentFile") == ["/etc/ollabot/ollabot.env"]
    assert directives(text, "LoadCredential") == ["ollabot:/etc/ollabot/credentials"]
    assert not [line for line in directives(text, "Environment") if "TOKEN" in line.upper()]


def test_credential_files_as_systemd_names_them_reach_the_settings(tmp_path: Path) -> None:
    # LoadCredential=ollabot:/etc/ollabot/credentials turns the file telegram__token into
    # $CREDENTIALS_DIRECTORY/ollabot_telegram__token.
    for name, value in {
        "telegram__token": "123:abc",
        "slack__bot_token": "xoxb-1",
        "slack__app_token": "xapp-1",
        "slack__signing_secret": "s3",
    }.items():
        (tmp_path / f"ollabot_{name}").write_text(value + "\n")  # fmt: skip

    settings = Settings(_env_file=None, _secrets_dir=tmp_path)

    assert settings.telegram.token is not None
    assert settings.telegram.token.get_secret_value() == "123:abc"
    assert settings.slack.bot_token is not None
    assert settings.slack.bot_token.get_secret_value() == "xoxb-1"
    assert settings.slack.signing_secret is not None


def test_the_sysctl_file_sets_the_seeds_values() -> None:
    text = (DEPLOY / "sysctl.d" / "90-ollabot.conf").read_text()
    values = dict(
        (part.strip() for part in line.split("=", 1))
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    )

    assert values == {"vm.swappiness": "10", "vm.overcommit_memory": "1"}


def redis_config(arguments: list[str], workdir: Path) -> dict[str, str]:
    """Start redis-server with ``arguments`` and read back what it runs with."""
    server = RedisServer(workdir)
    options = ["--port", str(server.port), "--bind", "127.0.0.1", "--dir", str(workdir)]
    server.process = subprocess.Popen(
        [*arguments, *options, "--daemonize", "no", "--supervised", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=server.port, socket_timeout=2)
    try:
        server.wait_ready()
        names = ("appendonly", "appendfsync", "maxmemory-policy")
        return {name: client.config_get(name)[name] for name in names}
    finally:
        client.close()
        server.stop()


DURABLE = {"appendonly": "yes", "appendfsync": "everysec", "maxmemory-policy": "noeviction"}


def test_the_redis_drop_in_verifies(tmp_path: Path) -> None:
    shutil.copytree(UNITS / "redis-server.service.d", tmp_path / "redis-server.service.d")
    (tmp_path / "redis-server.service").write_text(STOCK_REDIS)

    result = analyze("verify", str(tmp_path / "redis-server.service"))

    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def test_redis_runs_durable_with_the_drop_in(tmp_path: Path) -> None:
    text = (UNITS / "redis-server.service.d" / "50-ollabot-durability.conf").read_text()
    command = shlex.split(directives(text, "ExecStart")[-1])
    assert command[:2] == ["/usr/bin/redis-server", "/etc/redis/redis.conf"]
    binary = shutil.which("redis-server")
    assert binary is not None

    assert redis_config([binary, *command[2:]], tmp_path) == DURABLE


def test_redis_runs_durable_with_the_config_snippet(tmp_path: Path) -> None:
    snippet = DEPLOY / "redis" / "ollabot-durability.conf"
    binary = shutil.which("redis-server")
    assert binary is not None

    assert redis_config([binary, str(snippet)], tmp_path) == DURABLE
