"""Probe the host for the memory model: NVIDIA GPUs (NVML, else nvidia-smi), RAM, CPU cores.

No GPU is a normal answer (an empty tuple), not an error.
"""

from __future__ import annotations

import csv
import importlib
import os
import subprocess
from typing import Any

from core.modelfit import Gpu, Host, MiB

SMI_QUERY = "--query-gpu=index,name,memory.total,memory.free,driver_version"
SMI_FORMAT = "--format=csv,noheader,nounits"


class NoGpuFound(Exception):
    """This probe could not see any NVIDIA GPU (no library, no driver, no device)."""


def probe_host(nvml: Any = None, nvidia_smi: str = "nvidia-smi") -> Host:
    """The host as the model sees it; ``nvml`` defaults to ``pynvml`` (tests pass a fake)."""
    gpus, driver, source = probe_gpus(nvml, nvidia_smi)
    return Host(gpus, system_ram_bytes(), os.cpu_count() or 1, driver, source)


def probe_gpus(
    nvml: Any = None, nvidia_smi: str = "nvidia-smi"
) -> tuple[tuple[Gpu, ...], str | None, str]:
    """GPUs, driver version and which probe answered: ``nvml``, ``nvidia-smi`` or ``none``."""
    try:
        return (*gpus_from_nvml(nvml), "nvml")
    except NoGpuFound:
        pass
    try:
        return (*gpus_from_nvidia_smi(nvidia_smi), "nvidia-smi")
    except NoGpuFound:
        return (), None, "none"


def gpus_from_nvml(nvml: Any = None) -> tuple[tuple[Gpu, ...], str | None]:
    """Ask NVML (``nvidia-ml-py``) for every GPU's name and memory."""
    nvml = nvml or importlib.import_module("pynvml")
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as error:
        raise NoGpuFound(str(error)) from error
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        gpus = tuple(_nvml_gpu(nvml, i) for i in range(nvml.nvmlDeviceGetCount()))
    except nvml.NVMLError as error:
        raise NoGpuFound(str(error)) from error
    finally:
        nvml.nvmlShutdown()
    if not gpus:
        raise NoGpuFound("NVML sees no device")
    return gpus, driver


def _nvml_gpu(nvml: Any, index: int) -> Gpu:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    return Gpu(index, _text(nvml.nvmlDeviceGetName(handle)), int(memory.total), int(memory.free))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def gpus_from_nvidia_smi(binary: str = "nvidia-smi") -> tuple[tuple[Gpu, ...], str | None]:
    """Run ``nvidia-smi`` with a CSV query and parse its answer."""
    try:
        done = subprocess.run(
            [binary, SMI_QUERY, SMI_FORMAT], capture_output=True, text=True, timeout=15, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise NoGpuFound(str(error)) from error
    if done.returncode != 0:
        raise NoGpuFound((done.stdout + done.stderr).strip())
    return parse_nvidia_smi_csv(done.stdout)


def parse_nvidia_smi_csv(text: str) -> tuple[tuple[Gpu, ...], str | None]:
    """Parse ``index, name, memory.total [MiB], memory.free [MiB], driver_version`` rows.

    Rows whose memory reads ``[N/A]`` (unified-memory boards, some MIG set-ups) are skipped:
    there is no dedicated memory to fit a model into.
    """
    gpus: list[Gpu] = []
    driver: str | None = None
    for row in csv.reader(text.splitlines(), skipinitialspace=True):
        if len(row) != 5 or not (row[2].strip().isdigit() and row[3].strip().isdigit()):
            continue
        index, name, total, free, driver = (cell.strip() for cell in row)
        gpus.append(Gpu(int(index), name, int(total) * MiB, int(free) * MiB))
    if not gpus:
        raise NoGpuFound("nvidia-smi listed no GPU with dedicated memory")
    return tuple(gpus), driver


def system_ram_bytes() -> int:
    """Physical memory of the machine."""
    return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
