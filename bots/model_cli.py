"""`ollabot model recommend|pull|status`, the `auto` model tag, start-up warm-up, doctor's fit.

Thin: the probe and Ollama adapters gather facts, ``core.modelfit`` and ``core.gpuplan``
decide, this module prints. Also runnable alone: ``python -m bots.model_cli recommend --json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

import structlog

from adapters.hardware import probe_host
from adapters.ollama_models import OllamaModels
from adapters.ollama_wire import full_name
from bots.model_view import (
    PullProgress,
    plan_json,
    render_loaded,
    render_plan,
    render_recommendation,
)
from bots.settings import Settings
from core.errors import OllabotError
from core.gpuplan import (
    GpuPlan,
    Role,
    arch_from_model_info,
    known_file,
    plan_gpu,
    plan_summary,
    too_big_lines,
    with_size_on_disk,
)
from core.modelfit import (
    Deployment,
    GiB,
    Gpu,
    Host,
    ModelFile,
    Recommendation,
    fit_candidate,
    gib,
    library_file,
    recommend,
)

log = structlog.get_logger(__name__)
Probe = Callable[[], Host]


def add_model_parser(subparsers: Any) -> None:
    """Add ``model recommend|pull|status`` with the flags of the issue to an argparse CLI."""
    model = subparsers.add_parser("model", help="recommend, pull and inspect the model")
    actions = model.add_subparsers(dest="model_command", required=True)
    rec = actions.add_parser("recommend", help="which quantisation fits this host, and why")
    rec.add_argument(
        "--vram-gib",
        type=_gib_list,
        metavar="X[,X...]",
        help="GPU memory in GiB instead of probing (one per GPU; 0: no GPU)",
    )
    rec.add_argument("--ram-gib", type=float, metavar="Y", help="system RAM in GiB")
    rec.add_argument("--num-ctx", type=_positive_int, metavar="N", help="context per request")
    rec.add_argument("--parallel", type=_positive_int, metavar="P", help="OLLAMA_NUM_PARALLEL")
    rec.add_argument(
        "--kv-cache-type",
        choices=("f16", "q8_0", "q4_0"),
        help="OLLAMA_KV_CACHE_TYPE (quantised types need OLLAMA_FLASH_ATTENTION=1)",
    )
    rec.add_argument("--json", action="store_true", help="print one JSON object")
    pull = actions.add_parser("pull", help="pull a model with progress and verify it")
    pull.add_argument("tag", nargs="?", help="default: the recommended tag")
    actions.add_parser("status", help="what Ollama has loaded, and where")


async def run_model_command(
    args: argparse.Namespace, settings: Settings, probe: Probe = probe_host
) -> int:
    """Run ``ollabot model ...``; returns the exit code (0 ok, 1 failed)."""
    if args.model_command == "recommend":
        return await _recommend(args, settings, probe)
    if args.model_command == "pull":
        tag = args.tag or (await _recommendation(settings, probe)).pick.model.tag
        return await pull_and_verify(settings, tag)
    return await _status(settings)


async def _recommend(args: argparse.Namespace, settings: Settings, probe: Probe) -> int:
    host = await asyncio.to_thread(_host_from_args, args, probe)
    deployment = Deployment(
        args.num_ctx or settings.ollama.num_ctx,
        args.parallel or settings.ollama.num_parallel,
        args.kv_cache_type or kv_cache_type(settings),
    )
    choice = recommend(host, deployment)
    plan = await gpu_plan(settings, choice, _chat_tag(settings, choice))
    if args.json:
        print(json.dumps({**recommendation_json(choice), "plan": plan_json(plan)}))
    else:
        print(render_recommendation(choice) + "\n\n" + render_plan(plan))
    return 0


def _chat_tag(settings: Settings, choice: Recommendation) -> str:
    configured = settings.ollama.model
    return choice.pick.model.tag if configured == "auto" else configured


async def gpu_plan(settings: Settings, choice: Recommendation, chat_tag: str) -> GpuPlan:
    """Plan the chat model with the configured vision and embedding models on this host.

    Sizes come from Ollama where it has the model (its /api/tags, and /api/show for a
    model ollabot has no table entry for), else from the table; Ollama being down is a note.
    """
    models = _client(settings)
    try:
        files, notes = await _model_files(models, _wanted(settings, chat_tag))
    finally:
        await models.close()
    plan = plan_gpu(choice.host, files, choice.deployment, settings.ollama.keep_alive)
    return replace(plan, notes=(*plan.notes, *notes))


def _wanted(settings: Settings, chat_tag: str) -> list[tuple[Role, str]]:
    wanted: list[tuple[Role, str]] = [("chat", chat_tag)]
    if settings.ollama.embed_model:
        wanted.append(("embed", settings.ollama.embed_model))
    vision = settings.ollama.vision_model
    if vision and full_name(vision) != full_name(chat_tag):
        wanted.append(("vision", vision))
    return wanted


async def _model_files(
    models: OllamaModels, wanted: list[tuple[Role, str]]
) -> tuple[list[tuple[Role, ModelFile, str]], list[str]]:
    notes: list[str] = []
    try:
        sizes = await models.sizes()
    except OllabotError as error:
        sizes = {}
        notes.append(f"sizes from ollabot's table, not from Ollama: {error.notice}")
    chat_tag = wanted[0][1]
    if len(wanted) > 1 and wanted[-1][0] == "vision" and await _sees(models, chat_tag, sizes):
        wanted = wanted[:-1]
        notes.append(f"chat {chat_tag} reads photos itself: the vision model is not loaded")
    files: list[tuple[Role, ModelFile, str]] = []
    for role, tag in wanted:
        on_disk = _size_of(sizes, tag)
        found = await _model_file(models, tag, on_disk)
        if found is None:
            notes.append(
                f"{role} {tag} is left out: its size is unknown until it is pulled "
                f"(`ollabot model pull {tag}`)"
            )
        else:
            files.append((role, *found))
    return files, notes


async def _model_file(
    models: OllamaModels, tag: str, on_disk: int | None
) -> tuple[ModelFile, str] | None:
    known = known_file(tag)
    if known is not None:
        return (with_size_on_disk(known, on_disk), "ollama") if on_disk else (known, "table")
    if not on_disk:
        return None
    try:
        shown = await models.shape(tag)
    except OllabotError:
        return None
    arch = arch_from_model_info(tag, shown.model_info)
    model = ModelFile(tag, arch, shown.quantization, on_disk) if arch else None
    return None if model is None else (model, "ollama")


def _size_of(sizes: dict[str, int], tag: str) -> int | None:
    return sizes.get(tag) or sizes.get(full_name(tag))


async def _sees(models: OllamaModels, chat_tag: str, sizes: dict[str, int]) -> bool:
    """Whether Ollama says the (pulled) chat model has vision, so photos need no other model."""
    if not _size_of(sizes, chat_tag):
        return False
    try:
        return "vision" in (await models.shape(chat_tag)).capabilities
    except OllabotError:
        return False


def _host_from_args(args: argparse.Namespace, probe: Probe) -> Host:
    """The probed host, with the sizes given on the command line in place of probed ones."""
    given_all = args.vram_gib is not None and args.ram_gib is not None
    host = Host((), 0, os.cpu_count() or 1) if given_all else probe()
    if args.vram_gib is not None:
        sizes = [int(x * GiB) for x in args.vram_gib if x > 0]
        gpus = tuple(Gpu(i, "given", size, size) for i, size in enumerate(sizes))
        host = replace(host, gpus=gpus, driver=None, source="given")
    if args.ram_gib is not None:
        host = replace(host, ram_bytes=int(args.ram_gib * GiB))
    return host


def recommendation_json(choice: Recommendation) -> dict[str, Any]:
    """The pick and every candidate as plain JSON (``--json``)."""
    pick, host, deployment = choice.pick, choice.host, choice.deployment
    return {
        "tag": pick.model.tag,
        "quantization": pick.model.quantization,
        "estimate_bytes": pick.estimate.total,
        "available_bytes": pick.available,
        "fits": pick.fits,
        "placement": choice.placement,
        "gpus_used": pick.gpus_used,
        "reason": choice.reason,
        "warnings": list(choice.warnings),
        "notes": list(choice.notes),
        "num_ctx": deployment.num_ctx,
        "num_parallel": deployment.num_parallel,
        "kv_cache_type": deployment.kv_cache_type,
        "host": {
            "source": host.source,
            "driver": host.driver,
            "ram_bytes": host.ram_bytes,
            "cpu_cores": host.cpu_cores,
            "gpus": [asdict(gpu) for gpu in host.gpus],
        },
        "candidates": [
            {
                "tag": c.model.tag,
                "quantization": c.model.quantization,
                "file_bytes": c.model.size_bytes,
                "kv_cache_bytes": c.estimate.kv_cache,
                "graph_bytes": c.estimate.graph,
                "overhead_bytes": c.estimate.overhead,
                "estimate_bytes": c.estimate.total,
                "available_bytes": c.available,
                "fits": c.fits,
                "cpu_only_ram_bytes": c.ram_estimate.total,
            }
            for c in choice.candidates
        ],
    }


async def pull_and_verify(settings: Settings, tag: str) -> int:
    """Pull ``tag`` with a progress bar on stderr, then check its quantisation with /api/show."""
    models = _client(settings)
    try:
        progress = PullProgress(sys.stderr)
        async for update in models.pull(tag):
            progress.show(update)
        progress.close()
        actual = await models.quantization(tag)
    except OllabotError as error:
        print(f"ollabot: {error.notice}", file=sys.stderr)
        return 1
    finally:
        await models.close()
    return _verify(tag, actual)


def _verify(tag: str, actual: str) -> int:
    known = library_file(tag)
    if known and actual.upper() != known.quantization.upper():
        print(
            f"ollabot: {tag} was pulled but Ollama serves it as {actual or 'unknown'}, "
            f"not {known.quantization}.",
            file=sys.stderr,
        )
        return 1
    print(f"{tag} is ready ({actual or 'quantisation not reported'}, checked with /api/show).")
    return 0


async def _status(settings: Settings) -> int:
    models = _client(settings)
    try:
        loaded = await models.loaded()
    except OllabotError as error:
        print(f"ollabot: {error.notice}", file=sys.stderr)
        return 1
    finally:
        await models.close()
    print(render_loaded(loaded))
    return 0


async def resolve_model_tag(settings: Settings, probe: Probe = probe_host) -> str:
    """The tag to serve: the configured one, or for ``auto`` the recommendation for this host.

    When that tag is not pulled yet, pulls it if ``OLLABOT_OLLAMA__AUTO_PULL`` is set, else
    logs how to pull it. Ollama being down is logged, not raised: the bot still starts.
    """
    if settings.ollama.model != "auto":
        return settings.ollama.model
    choice = await _recommendation(settings, probe)
    tag = choice.pick.model.tag
    log.info("model_auto", tag=tag, placement=choice.placement, reason=choice.reason)
    models = _client(settings)
    try:
        if tag not in await models.installed():
            await _missing(settings, tag)
    except OllabotError as error:
        log.warning("model_check_failed", tag=tag, error=error.notice)
    finally:
        await models.close()
    return tag


async def _missing(settings: Settings, tag: str) -> None:
    if not settings.ollama.auto_pull:
        log.warning("model_missing", tag=tag, fix=f"ollabot model pull {tag}")
        return
    log.info("model_pulling", tag=tag)
    if await pull_and_verify(settings, tag) != 0:
        log.warning("model_pull_failed", tag=tag, fix=f"ollabot model pull {tag}")


async def warm_up(host: str, tag: str, num_ctx: int, keep_alive: str) -> bool:
    """Load ``tag`` with the deployment's ``num_ctx`` and ``keep_alive``; False (logged) if not."""
    models = OllamaModels(host)
    try:
        await models.load(tag, num_ctx, keep_alive)
    except OllabotError as error:
        log.warning("model_warm_up_failed", tag=tag, error=error.notice)
        return False
    finally:
        await models.close()
    log.info("model_warm", tag=tag, num_ctx=num_ctx, keep_alive=keep_alive)
    return True


FitCheck = tuple[str, bool, str, bool]


async def doctor_fit(settings: Settings, probe: Probe = probe_host) -> list[FitCheck]:
    """Checks for ``ollabot doctor``: (name, ok, what it found or how to fix it, only a warning).

    All are warnings: ollabot still answers text when a companion model cannot fit.
    """
    choice = await _recommendation(settings, probe)
    configured = settings.ollama.model
    tag = _chat_tag(settings, choice)
    checks = [(*_fit_check(choice, configured), True)]
    checks += plan_checks(await gpu_plan(settings, choice, tag))
    models = _client(settings)
    try:
        installed, loaded = await models.installed(), await models.loaded()
    except OllabotError as error:
        return [*checks, ("model pulled", False, error.notice, True)]
    finally:
        await models.close()
    pulled = (
        tag in installed,
        f"{tag} is pulled"
        if tag in installed
        else f"{tag} is missing: run `ollabot model pull {tag}`",
    )
    return [*checks, ("model pulled", *pulled, True), (*_memory_check(loaded), True)]


def plan_checks(plan: GpuPlan) -> list[FitCheck]:
    """The GPU plan for doctor: a warning per model too big for the GPU alone, and one line
    for the rest (a warning when something swaps)."""
    failures = [("GPU plan", False, line, True) for line in too_big_lines(plan)]
    detail = "; ".join((plan_summary(plan), *plan.notes))
    settled = plan.verdict == "cpu" or (bool(plan.resident) and not plan.swapping)
    return [*failures, ("GPU plan", settled, detail, True)]


def _fit_check(choice: Recommendation, configured: str) -> tuple[str, bool, str]:
    if configured == "auto":
        details = "; ".join((choice.reason, *choice.warnings))
        return "hardware fit", choice.placement == "gpu", f"{choice.pick.model.tag}: {details}"
    known = library_file(configured)
    if known is None:
        return "hardware fit", True, f"{configured}: no size known, not estimated"
    fit = fit_candidate(known, choice.host, choice.deployment)
    verdict = "fits" if fit.fits else "does not fit"
    text = f"{configured} {verdict}: {gib(fit.estimate.total)} of {gib(fit.available)} usable"
    if not fit.fits:
        text += f"; `ollabot model recommend` suggests {choice.pick.model.tag}"
    return "hardware fit", fit.fits, text


def _memory_check(loaded: list[Any]) -> tuple[str, bool, str]:
    spilled = [m for m in loaded if m.size_vram < m.size]
    if not loaded:
        return "model in GPU memory", True, "no model loaded right now"
    if spilled:
        names = ", ".join(f"{m.name} ({m.gpu_share:.0%} on GPU)" for m in spilled)
        return "model in GPU memory", False, f"partly in system memory: {names}"
    return "model in GPU memory", True, ", ".join(m.name for m in loaded) + " fully on GPU"


async def _recommendation(settings: Settings, probe: Probe) -> Recommendation:
    host = await asyncio.to_thread(probe)
    return recommend(host, deployment_from(settings))


def deployment_from(settings: Settings) -> Deployment:
    """The deployment's context, parallel slots and KV cache type as the memory model sees them."""
    ollama = settings.ollama
    return Deployment(ollama.num_ctx, ollama.num_parallel, kv_cache_type(settings))


def kv_cache_type(settings: Settings) -> str:
    """``settings.ollama.kv_cache_type`` once that field exists; Ollama's default f16 until then."""
    return str(getattr(settings.ollama, "kv_cache_type", "f16"))


def _client(settings: Settings) -> OllamaModels:
    ollama = settings.ollama
    return OllamaModels(ollama.host, ollama.connect_timeout_s, ollama.read_timeout_s)


def _gib_list(text: str) -> list[float]:
    try:
        sizes = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give GiB per GPU, e.g. 24 or 24,24") from None
    if not sizes or any(size < 0 for size in sizes):
        raise argparse.ArgumentTypeError(f"{text!r}: sizes must be 0 or more GiB")
    return sizes


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number of 1 or more")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry: ``python -m bots.model_cli recommend|pull|status ...``."""
    parser = argparse.ArgumentParser(prog="ollabot")
    add_model_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["model", *(sys.argv[1:] if argv is None else argv)])
    return asyncio.run(run_model_command(args, Settings()))


if __name__ == "__main__":
    sys.exit(main())
