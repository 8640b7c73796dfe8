"""The GPU plan: which of the chat, vision and embedding models stay in GPU memory together.

Ollama keeps a model loaded until its keep-alive runs out or the memory is needed for
another one; when a request needs a model that does not fit beside the loaded ones, it
unloads idle models (the shortest keep-alive first) and loads it. Each model is estimated
alone with ``core.modelfit`` (weights, KV cache at the context Ollama gives it, compute
buffer, per-GPU overhead, a vision projector on the first GPU), then the models are placed
the way Ollama's scheduler does: the chat model first, each on the GPU with the most room
left, or spread over all GPUs when one is too small.

    resident    every model fits beside the others: nothing is ever reloaded
    swap        the chat model (and what fits beside it) stays; the others evict it when
                used, so they get a short keep-alive and the chat model comes back soon
    cannot-fit  a model is larger than the GPU memory on its own: it runs mostly on the CPU
    cpu         no GPU: every model runs from system RAM
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from core.modelfit import (
    CandidateFit,
    Deployment,
    Host,
    ModelArch,
    ModelFile,
    estimate_memory,
    fit_candidate,
    gib,
    library_file,
    product_file,
    usable,
)

Role = Literal["chat", "vision", "embed"]
Verdict = Literal["resident", "swap", "cannot-fit", "cpu"]

SWAP_KEEP_ALIVE = "1m"
MULTIMODAL_MIN_CONTEXT = 2048
ENV_OFF = {"vision": "OLLABOT_OLLAMA__VISION_MODEL", "embed": "OLLABOT_OLLAMA__EMBED_MODEL"}

LLAMA32_VISION_11B = ModelArch(
    "Llama 3.2 Vision 11B", 40, 4096, 32, 8, 128, 128_256,
    family="mllama", cross_attention_layers=8, parallel=False,
)  # fmt: skip
NOMIC_EMBED = ModelArch(
    "nomic-embed-text", 12, 768, 12, 12, 64, 30_522,
    family="nomic-bert", trained_context=2048, parallel=False,
)  # fmt: skip


def mllama_projector_graph(
    image: int = 560, patch: int = 14, tiles: int = 4, width: int = 1280, heads: int = 16
) -> int:
    """The vision encoder's compute buffer, Ollama's formula for mllama (3 colour channels)."""
    patches = (image // patch) ** 2 + 1
    padded = patches + 8 - (patches % 8) % 8  # Ollama's own rounding, kept as it is
    return 4 * (
        8
        + image * image * 3 * tiles
        + width * patches * tiles
        + 9 * width * padded * tiles
        + (padded * tiles) ** 2 * heads
    )


# The default vision and embedding models, sizes as listed on ollama.com (decimal): the
# vision download is 7.9 GB, a 6.0 GB Q4_K_M text model and a 1.9 GB F16 projector.
COMPANIONS: tuple[ModelFile, ...] = (
    ModelFile(
        "llama3.2-vision:11b", LLAMA32_VISION_11B, "Q4_K_M", 6_000_000_000,
        projector_bytes=1_900_000_000, projector_graph=mllama_projector_graph(),
    ),
    ModelFile("nomic-embed-text", NOMIC_EMBED, "F16", 274_000_000),
)  # fmt: skip
COMPANION_ALIASES = {
    "llama3.2-vision": "llama3.2-vision:11b",
    "llama3.2-vision:latest": "llama3.2-vision:11b",
    "nomic-embed-text:latest": "nomic-embed-text",
}


def known_file(tag: str) -> ModelFile | None:
    """A model whose shape and size are known without asking Ollama."""
    tag = COMPANION_ALIASES.get(tag, tag)
    return library_file(tag) or next((f for f in COMPANIONS if f.tag == tag), None)


def with_size_on_disk(model: ModelFile, on_disk: int) -> ModelFile:
    """``model`` at the size Ollama reports in /api/tags (which counts the projector too)."""
    return replace(model, size_bytes=max(1, on_disk - model.projector_bytes))


def arch_from_model_info(name: str, info: Mapping[str, Any]) -> ModelArch | None:
    """A model's shape from /api/show ``model_info``; None when the keys are missing."""
    family = str(info.get("general.architecture", ""))

    def number(key: str, default: int = 0) -> int:
        value = info.get(f"{family}.{key}", default)
        return value if isinstance(value, int) and value > 0 else default

    layers, embedding = number("block_count"), number("embedding_length")
    heads = number("attention.head_count")
    if not (family and layers and embedding and heads):
        return None
    kv_heads = number("attention.head_count_kv", heads)
    embedding_model = f"{family}.pooling_type" in info
    return ModelArch(
        name, layers, embedding, heads, kv_heads,
        number("attention.key_length", embedding // heads), number("vocab_size", 0),
        family=family, trained_context=number("context_length", 131_072),
        parallel=not embedding_model and family != "mllama",
    )  # fmt: skip


def as_loaded(model: ModelFile, deployment: Deployment) -> Deployment:
    """The context and slots Ollama gives ``model`` under the configured deployment."""
    num_ctx = min(deployment.num_ctx, model.arch.trained_context)
    if model.projector_bytes:
        num_ctx = max(num_ctx, MULTIMODAL_MIN_CONTEXT)
    slots = deployment.num_parallel if model.arch.parallel else 1
    return replace(deployment, num_ctx=num_ctx, num_parallel=slots)


@dataclass(frozen=True, slots=True)
class PlannedModel:
    """One configured model alone on this host, as Ollama would load it."""

    role: Role
    fit: CandidateFit
    deployment: Deployment
    size_from: str  # "ollama" (its /api/tags) or "table" (known sizes)

    @property
    def tag(self) -> str:
        return self.fit.model.tag

    @property
    def need(self) -> int:
        return self.fit.estimate.total

    def label(self) -> str:
        return f"{self.role} {self.tag}"


@dataclass(frozen=True, slots=True)
class GpuPlan:
    """Where each model lives, and what to set so that the chat model stays fast."""

    models: tuple[PlannedModel, ...]
    resident: tuple[PlannedModel, ...]
    swapping: tuple[PlannedModel, ...]
    too_big: tuple[PlannedModel, ...]
    usable: int
    keep_alive: str
    notes: tuple[str, ...] = ()

    @property
    def verdict(self) -> Verdict:
        if not self.usable:
            return "cpu"
        if self.too_big:
            return "cannot-fit"
        return "swap" if self.swapping else "resident"

    @property
    def max_loaded_models(self) -> int:
        """The least OLLAMA_MAX_LOADED_MODELS that keeps the resident models loaded."""
        return max(1, len(self.resident))

    def keep_alive_for(self, tag: str) -> str:
        """The keep-alive to send with requests to ``tag``: short for a model that swaps."""
        swaps = any(m.tag == tag for m in self.swapping)
        return SWAP_KEEP_ALIVE if swaps else self.keep_alive


def plan_gpu(
    host: Host,
    models: Sequence[tuple[Role, ModelFile, str]],
    deployment: Deployment,
    keep_alive: str,
) -> GpuPlan:
    """Plan ``(role, file, size_from)`` models (chat first) on ``host`` under ``deployment``."""
    planned = tuple(_planned(role, m, source, host, deployment) for role, m, source in models)
    capacity = sum(usable(g.total_bytes) for g in host.gpus)
    if not host.gpus:
        return GpuPlan(planned, (), (), (), 0, keep_alive, _ram_notes(planned, host))
    too_big = tuple(m for m in planned if not m.fit.fits)
    if any(m.role == "chat" for m in too_big):  # a spilled chat model takes the whole GPU
        resident: tuple[PlannedModel, ...] = ()
    else:
        resident = _pack([m for m in planned if m not in too_big], host)
    swapping = tuple(m for m in planned if m not in resident and m not in too_big)
    plan = GpuPlan(planned, resident, swapping, too_big, capacity, keep_alive)
    notes = (*_smaller_chat_note(plan, host, deployment), *_free_now_note(plan, host))
    return replace(plan, notes=notes)


def _planned(
    role: Role, model: ModelFile, source: str, host: Host, deployment: Deployment
) -> PlannedModel:
    loaded = as_loaded(model, deployment)
    return PlannedModel(role, fit_candidate(model, host, loaded), loaded, source)


def _pack(models: list[PlannedModel], host: Host) -> tuple[PlannedModel, ...]:
    """The models that fit together, placed in order as Ollama's scheduler places them."""
    room = [usable(g.total_bytes) for g in host.gpus]
    return tuple(m for m in models if _place(m, room))


def _place(model: PlannedModel, room: list[int]) -> bool:
    alone = estimate_memory(model.fit.model, model.deployment, 1).total
    roomiest = max(range(len(room)), key=room.__getitem__)
    if alone <= room[roomiest]:
        room[roomiest] -= alone
        return True
    spread = estimate_memory(model.fit.model, model.deployment, len(room)).total
    if len(room) == 1 or spread > sum(room):
        return False
    left = sum(room)
    for i, free in enumerate(room):
        room[i] = free - spread * free // left
    return True


def _smaller_chat_note(plan: GpuPlan, host: Host, deployment: Deployment) -> tuple[str, ...]:
    chat = next((m for m in plan.models if m.role == "chat"), None)
    q8, q4 = product_file("Q8_0"), product_file("Q4_K_M")
    if not plan.swapping or chat is None or chat.tag != q8.tag:
        return ()
    others = [(m.role, m.fit.model, m.size_from) for m in plan.models if m.role != "chat"]
    smaller = plan_gpu(host, [("chat", q4, "table"), *others], deployment, plan.keep_alive)
    already = _tags(plan.resident)
    joining = [m for m in smaller.resident if m.role != "chat" and m.tag not in already]
    if not joining:
        return ()
    return (
        f"with {q4.tag} as chat model ({gib(smaller.models[0].need)}) {_names(joining)} "
        f"would stay resident beside it too: set OLLABOT_OLLAMA__MODEL to it if "
        f"{'it is' if len(joining) == 1 else 'they are'} used often",
    )


def _tags(models: Sequence[PlannedModel]) -> set[str]:
    return {m.tag for m in models}


def _free_now_note(plan: GpuPlan, host: Host) -> tuple[str, ...]:
    free = sum(g.free_bytes for g in host.gpus)
    need = sum(m.need for m in plan.resident)
    if host.source == "given" or free >= need:
        return ()
    return (
        f"right now only {gib(free)} of GPU memory is free (other processes, or models "
        f"Ollama already holds) for the {gib(need)} the resident models need",
    )


def _ram_notes(planned: tuple[PlannedModel, ...], host: Host) -> tuple[str, ...]:
    need = sum(m.fit.ram_estimate.total for m in planned)
    if need <= usable(host.ram_bytes):
        return ()
    return (
        f"together they need {gib(need)} of RAM, more than the {gib(usable(host.ram_bytes))} "
        "usable: Ollama will unload one to load another",
    )


def _names(models: Sequence[PlannedModel]) -> str:
    labels = [m.label() for m in models]
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def plan_summary(plan: GpuPlan) -> str:
    """One line: what stays resident, what swaps and with which keep-alive (or RAM, no GPU)."""
    if plan.verdict == "cpu":
        need = sum(m.fit.ram_estimate.total for m in plan.models)
        return f"no NVIDIA GPU: {_names(plan.models)} run from system RAM ({gib(need)})"
    swaps = ", ".join(f"{m.label()} ({gib(m.need)})" for m in plan.swapping)
    swap_advice = (
        f"give {' and '.join(m.tag for m in plan.swapping)} keep_alive {SWAP_KEEP_ALIVE} "
        "so that the chat model comes back soon"
    )
    if not plan.resident:
        text = "the chat model does not fit the GPU on its own"
        return f"{text}; {swaps} must swap with it: {swap_advice}" if swaps else text
    together = sum(m.need for m in plan.resident)
    share = f"{gib(together)} of {gib(plan.usable)} usable"
    if len(plan.resident) == 1:
        stays, them = f"{_names(plan.resident)} fits alone ({share})", "it"
    else:
        stays, them = f"{_names(plan.resident)} fit together ({share})", "them"
    loaded = (
        f"; OLLAMA_MAX_LOADED_MODELS must be at least {plan.max_loaded_models} "
        "(Ollama's default, 3 per GPU, is)"
        if plan.max_loaded_models > 1
        else ""
    )
    if not plan.swapping:
        return f"{stays}: nothing is reloaded between requests{loaded}"
    return (
        f"{stays}; {swaps} must swap with {them}, unloading the chat model on each use: "
        f"{swap_advice}{loaded}"
    )


def too_big_lines(plan: GpuPlan) -> tuple[str, ...]:
    """One line per model that does not fit the GPU memory even alone."""
    return tuple(_too_big(m) for m in plan.too_big)


def _too_big(model: PlannedModel) -> str:
    where = "on the GPUs" if model.fit.gpus_used > 1 else "on the largest GPU"
    text = (
        f"{model.label()} needs {gib(model.need)} alone, more than the "
        f"{gib(model.fit.available)} usable {where}: it would run mostly on the CPU"
    )
    if model.role in ENV_OFF:
        text += f"; set {ENV_OFF[model.role]}= (empty) to turn it off, or pick a smaller model"
    return text
