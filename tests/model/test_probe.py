"""The hardware probe against a fake NVML and a fake `nvidia-smi` printing recorded answers."""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from adapters.hardware import SMI_FORMAT, SMI_QUERY, probe_gpus, probe_host
from core.modelfit import Deployment, MiB, recommend

DATA = Path(__file__).parent / "data"


class FakeNvmlError(Exception):
    """What pynvml raises (``NVMLError`` and its subclasses)."""


@dataclass
class Memory:
    total: int
    free: int
    used: int = 0


@dataclass
class FakeNvml:
    """The slice of the pynvml API the probe uses; ``fail_init`` plays a host without driver."""

    devices: list[tuple[str | bytes, int, int]]
    driver: str | bytes = "560.35.03"
    fail_init: bool = False
    calls: list[str] = field(default_factory=list)
    NVMLError = FakeNvmlError

    def nvmlInit(self) -> None:
        self.calls.append("init")
        if self.fail_init:
            raise FakeNvmlError("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None:
        self.calls.append("shutdown")

    def nvmlSystemGetDriverVersion(self) -> str | bytes:
        return self.driver

    def nvmlDeviceGetCount(self) -> int:
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> str | bytes:
        return self.devices[handle][0]

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Memory:
        return Memory(total=self.devices[handle][1], free=self.devices[handle][2])


NO_NVML = FakeNvml([], fail_init=True)


def fake_nvidia_smi(tmp_path: Path, recorded: str, exit_code: int = 0) -> str:
    """An executable that answers our exact query with a recorded output, like nvidia-smi."""
    script = tmp_path / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$*" != "{SMI_QUERY} {SMI_FORMAT}" ]; then\n'
        '  echo "Field \\"$1\\" is not a valid field to query." ; exit 2\n'
        "fi\n"
        f'cat "{DATA / recorded}"\n'
        f"exit {exit_code}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_nvml_lists_each_gpu_with_total_and_free_memory() -> None:
    nvml = FakeNvml([(b"NVIDIA GeForce RTX 4090", 24564 * MiB, 23000 * MiB)], driver=b"560.35.03")

    host = probe_host(nvml=nvml, nvidia_smi="/nonexistent/nvidia-smi")

    assert host.source == "nvml"
    assert host.driver == "560.35.03"
    assert [(g.name, g.total_bytes, g.free_bytes) for g in host.gpus] == [
        ("NVIDIA GeForce RTX 4090", 24564 * MiB, 23000 * MiB)
    ]
    assert host.ram_bytes > 0 and host.cpu_cores >= 1
    assert nvml.calls == ["init", "shutdown"]


def test_without_nvml_the_probe_falls_back_to_nvidia_smi(tmp_path: Path) -> None:
    gpus, driver, source = probe_gpus(NO_NVML, fake_nvidia_smi(tmp_path, "nvidia_smi_rtx3060.csv"))

    assert source == "nvidia-smi"
    assert driver == "550.54.15"
    assert [(g.index, g.name, g.total_bytes, g.free_bytes) for g in gpus] == [
        (0, "NVIDIA GeForce RTX 3060", 12288 * MiB, 11781 * MiB)
    ]


@pytest.mark.parametrize(
    ("recorded", "names", "pick"),
    [
        ("nvidia_smi_rtx3060.csv", ["NVIDIA GeForce RTX 3060"], "llama3.1:8b-instruct-q8_0"),
        ("nvidia_smi_2x_rtx4090.csv", ["NVIDIA GeForce RTX 4090"] * 2, "llama3.1:8b-instruct-q8_0"),
        ("nvidia_smi_h100.csv", ["NVIDIA H100 80GB HBM3"], "llama3.1:8b-instruct-q8_0"),
        ("nvidia_smi_h200.csv", ["NVIDIA H200"], "llama3.1:8b-instruct-q8_0"),
    ],
)
def test_recorded_nvidia_smi_outputs_lead_to_a_pick(
    tmp_path: Path, recorded: str, names: list[str], pick: str
) -> None:
    host = probe_host(NO_NVML, fake_nvidia_smi(tmp_path, recorded))

    assert [g.name for g in host.gpus] == names
    assert recommend(host, Deployment()).pick.model.tag == pick


def test_a_unified_memory_board_without_dedicated_memory_counts_as_no_gpu(tmp_path: Path) -> None:
    host = probe_host(NO_NVML, fake_nvidia_smi(tmp_path, "nvidia_smi_gb10_unified.csv"))

    assert (host.gpus, host.source) == ((), "none")
    assert recommend(host, Deployment()).placement == "cpu"


def test_no_driver_is_a_normal_answer_not_an_error(tmp_path: Path) -> None:
    smi = fake_nvidia_smi(tmp_path, "nvidia_smi_no_driver.txt", exit_code=9)

    assert probe_gpus(NO_NVML, smi) == ((), None, "none")
    assert probe_gpus(NO_NVML, str(tmp_path / "not-installed")) == ((), None, "none")
