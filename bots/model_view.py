"""What `ollabot model` prints: the recommendation table, the GPU plan, the pull progress bar,
what is loaded."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from adapters.ollama_models import LoadedModel, PullUpdate
from core.gpuplan import GpuPlan, PlannedModel, plan_summary, too_big_lines
from core.modelfit import CandidateFit, Gpu, Host, Recommendation, gib


def render_recommendation(choice: Recommendation) -> str:
    """The host, a table of every candidate, the pick with its reason, warnings and notes."""
    deployment = choice.deployment
    lines = [
        _describe_host(choice.host),
        f"Deployment: num_ctx {deployment.num_ctx} x {deployment.num_parallel} parallel, "
        f"KV cache {deployment.kv_cache_type}",
        "",
        _row(
            (
                "tag",
                "quant",
                "file",
                "KV cache",
                "compute+overhead",
                "estimate",
                "usable",
                "GPU fit",
                "CPU-only RAM",
            )
        ),
        *(_candidate_row(c) for c in choice.candidates),
        "",
        f"Pick: {choice.pick.model.tag} ({choice.pick.model.quantization}, {choice.placement})",
        f"Why: {choice.reason}",
        *(f"Warning: {w}" for w in choice.warnings),
        *(f"Note: {n}" for n in choice.notes),
        f"Next: ollabot model pull {choice.pick.model.tag}",
    ]
    return "\n".join(lines)


COLUMNS = (30, 8, 11, 10, 18, 11, 11, 14, 0)
PLAN_COLUMNS = (8, 30, 8, 12, 11, 0)


def render_plan(plan: GpuPlan) -> str:
    """Each configured model, its estimate and where it lives; the plan in one line."""
    head = ("role", "tag", "slots", "context", "estimate", "in GPU memory")
    rows = [_plan_row(plan, m) for m in plan.models]
    return "\n".join(
        [
            "GPU plan (chat, embedding and vision models together):",
            "".join(c.ljust(w) for c, w in zip(head, PLAN_COLUMNS, strict=True)).rstrip(),
            *("".join(c.ljust(w) for c, w in zip(r, PLAN_COLUMNS, strict=True)) for r in rows),
            f"Plan: {plan_summary(plan)}",
            *(f"Error: {line}" for line in too_big_lines(plan)),
            *(f"Note: {n}" for n in plan.notes),
        ]
    )


def _plan_row(plan: GpuPlan, model: PlannedModel) -> tuple[str, ...]:
    return (
        model.role,
        model.tag,
        str(model.deployment.num_parallel),
        str(model.deployment.num_ctx),
        gib(model.need),
        _place(plan, model),
    )


PLACES = {
    "ram": "no GPU: system RAM",
    "resident": "resident (keep_alive {})",
    "swap": "swaps (keep_alive {})",
    "too-big": "does not fit alone",
}


def _place(plan: GpuPlan, model: PlannedModel) -> str:
    return PLACES[_where(plan, model)].format(plan.keep_alive_for(model.tag))


def _where(plan: GpuPlan, model: PlannedModel) -> str:
    if plan.verdict == "cpu":
        return "ram"
    if model in plan.resident:
        return "resident"
    return "swap" if model in plan.swapping else "too-big"


def plan_json(plan: GpuPlan) -> dict[str, Any]:
    """The plan as plain JSON (``recommend --json``, key ``plan``)."""
    return {
        "verdict": plan.verdict,
        "summary": plan_summary(plan),
        "usable_bytes": plan.usable,
        "max_loaded_models": plan.max_loaded_models,
        "cannot_fit": list(too_big_lines(plan)),
        "notes": list(plan.notes),
        "models": [
            {
                "role": m.role,
                "tag": m.tag,
                "size_from": m.size_from,
                "file_bytes": m.fit.model.size_bytes + m.fit.model.projector_bytes,
                "num_ctx": m.deployment.num_ctx,
                "num_parallel": m.deployment.num_parallel,
                "estimate_bytes": m.need,
                "place": _where(plan, m),
                "keep_alive": plan.keep_alive_for(m.tag),
            }
            for m in plan.models
        ],
    }


def _row(cells: tuple[str, ...]) -> str:
    return "".join(cell.ljust(width) for cell, width in zip(cells, COLUMNS, strict=True)).rstrip()


def _candidate_row(c: CandidateFit) -> str:
    verdict = "-" if c.gpus_used == 0 else ("fits" if c.fits else "no")
    if c.fits and c.gpus_used > 1:
        verdict = f"fits ({c.gpus_used} GPUs)"
    return _row(
        (
            c.model.tag,
            c.model.quantization,
            gib(c.model.size_bytes),
            gib(c.estimate.kv_cache),
            gib(c.estimate.graph + c.estimate.overhead),
            gib(c.estimate.total),
            gib(c.available) if c.gpus_used else "-",
            verdict,
            gib(c.ram_estimate.total),
        )
    )


def _describe_host(host: Host) -> str:
    gpus = "; ".join(_describe_gpu(g, host.source) for g in host.gpus) or "no NVIDIA GPU"
    driver = f", driver {host.driver}" if host.driver else ""
    return (
        f"Host ({host.source}{driver}): {gpus}; RAM {gib(host.ram_bytes)}, "
        f"{host.cpu_cores} CPU cores"
    )


def _describe_gpu(gpu: Gpu, source: str) -> str:
    if source == "given":
        return f"GPU {gpu.index} {gib(gpu.total_bytes)}"
    return f"GPU {gpu.index} {gpu.name} {gib(gpu.total_bytes)} ({gib(gpu.free_bytes)} free)"


class PullProgress:
    """A terminal progress bar on a TTY (bytes, speed, ETA); else a line per layer and 10 %."""

    def __init__(self, stream: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream, self.clock = stream, clock
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.digest: str | None = None
        self.layer_start = (0.0, 0)
        self.decile = -1
        self.bar_open = False

    def show(self, update: PullUpdate) -> None:
        """Render one line of the pull stream."""
        if update.digest and update.total:
            self._layer(update.status, update.digest, update.total, update.completed or 0)
            return
        self.close()
        print(update.status, file=self.stream, flush=True)

    def close(self) -> None:
        """End the bar line, if one is open."""
        if self.bar_open:
            print(file=self.stream, flush=True)
            self.bar_open = False

    def _layer(self, status: str, digest: str, total: int, completed: int) -> None:
        if digest != self.digest:
            self.close()
            self.digest, self.layer_start, self.decile = digest, (self.clock(), completed), -1
        line = f"{status} {progress_line(completed, total, self._speed(completed))}"
        if self.tty:
            self.stream.write(f"\r{line}\x1b[K")
            self.stream.flush()
            self.bar_open = True
        elif completed * 10 // total > self.decile:
            self.decile = completed * 10 // total
            print(line, file=self.stream, flush=True)

    def _speed(self, completed: int) -> float | None:
        started, start_bytes = self.layer_start
        elapsed = self.clock() - started
        return (completed - start_bytes) / elapsed if elapsed > 0 else None


def progress_line(completed: int, total: int, bytes_per_s: float | None, width: int = 20) -> str:
    """``[#####---] 45% 2.2/4.9 GB 85.3 MB/s ETA 0:32`` (decimal units, as Ollama prints)."""
    done = min(completed, total) / total if total else 1.0
    bar = "#" * int(done * width) + "-" * (width - int(done * width))
    speed, eta = "--", "--"
    if bytes_per_s:
        speed = f"{_decimal(bytes_per_s)}/s"
        eta = _clock_time((total - completed) / bytes_per_s)
    return f"[{bar}] {done:4.0%} {_decimal(completed)}/{_decimal(total)} {speed} ETA {eta}"


def _decimal(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def _clock_time(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def render_loaded(loaded: list[LoadedModel], now: datetime | None = None) -> str:
    """``ollabot model status``: each loaded model, where it sits, and a warning when it spills."""
    if not loaded:
        return "Ollama has no model loaded (it loads one on the first request or at start-up)."
    now = now or datetime.now(UTC)
    header = f"{'NAME':32}{'QUANT':8}{'SIZE':11}{'PROCESSOR':18}{'CONTEXT':9}UNTIL"
    rows = [
        f"{m.name:32}{m.quantization or '?':8}{gib(m.size):11}{_processor(m):18}"
        f"{m.context_length or '?'!s:9}{_until(m.expires_at, now)}"
        for m in loaded
    ]
    warnings = [
        f"Warning: {m.name} has {gib(m.size - m.size_vram)} of {gib(m.size)} in system "
        "memory: replies are slower; see `ollabot model recommend`"
        for m in loaded
        if m.size_vram < m.size
    ]
    return "\n".join([header, *rows, *warnings])


def _processor(model: LoadedModel) -> str:
    if model.size_vram >= model.size:
        return "100% GPU"
    if model.size_vram == 0:
        return "100% CPU"
    gpu = round(model.gpu_share * 100)
    return f"{100 - gpu}%/{gpu}% CPU/GPU"


def _until(expires_at: datetime | None, now: datetime) -> str:
    if expires_at is None:
        return "?"
    seconds = (expires_at - now).total_seconds()
    if seconds > 365 * 86400:
        return "forever (keep_alive -1)"
    if seconds < 60:
        return "under a minute"
    return f"in {seconds / 60:.0f} min" if seconds < 5400 else f"in {seconds / 3600:.1f} h"
