"""Which Llama 3.1 file fits this host: Ollama's memory estimate and the choice of quantisation.

The estimate follows Ollama's own (``llm/memory.go`` ``EstimateGPULayers`` and
``fs/ggml/ggml.go`` ``GraphSize`` for the ``llama`` architecture; ``mllama``, the vision
model, and families without a formula are covered for the GPU plan in ``core.gpuplan``):

    weights     the GGUF file (Ollama keeps the token embedding on the CPU; counting it
                anyway is ~0.3-0.6 GB of extra margin)
    KV cache    layers x num_ctx x num_parallel x (k_dim + v_dim) x kv_heads x bytes/element
                (f16: 2 bytes, so 128 KiB per token for 8B, 320 KiB for 70B)
    graph       the compute buffer, full offload on one GPU, the larger "partial" formula
                when the model is split across GPUs or spills to the CPU
    overhead    per GPU: CUDA's minimum (457 MiB) plus one layer held as a buffer; a vision
                projector (weights and compute buffer) on the first GPU

A file "fits" when that total is at most the GPU memory less a 10 % safety margin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

GB = 1_000_000_000
KiB = 1024
MiB = 1024**2
GiB = 1024**3

CUDA_MINIMUM_MEMORY = 457 * MiB
NUM_BATCH = 512
SAFETY_MARGIN = 0.10
KV_BYTES_PER_ELEMENT = {"f16": 2.0, "q8_0": 1.0, "q4_0": 0.5}
QUALITY_ORDER = ("Q8_0", "Q4_K_M")
# mllama caches an image as 4 tiles of (560 / 14)^2 patches plus a class token.
MLLAMA_TILES = 4
MLLAMA_IMAGE_TOKENS = (560 // 14) ** 2 + 1
SEED_RAM_8B = "the seed's guidance for 8B: 16 GB of RAM minimum, 32 GB recommended"

Placement = Literal["gpu", "gpu+cpu", "cpu"]


@dataclass(frozen=True, slots=True)
class ModelArch:
    """The shape of a model that the memory estimate needs (GGUF ``llama.*`` keys)."""

    name: str
    layers: int
    embedding: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    family: str = "llama"  # general.architecture: llama, mllama, nomic-bert
    cross_attention_layers: int = 0  # mllama: layers caching image tokens, not the context
    trained_context: int = 131_072  # Ollama loads no more context than this
    parallel: bool = True  # False: Ollama serves one request at a time (mllama, embeddings)


LLAMA31_8B = ModelArch("Llama 3.1 8B", 32, 4096, 32, 8, 128, 128_256)
LLAMA31_70B = ModelArch("Llama 3.1 70B", 80, 8192, 64, 8, 128, 128_256)


@dataclass(frozen=True, slots=True)
class ModelFile:
    """One file of the Ollama library: its tag, architecture, quantisation and size."""

    tag: str
    arch: ModelArch
    quantization: str
    size_bytes: int
    projector_bytes: int = 0  # a vision projector's weights, loaded on the first GPU
    projector_graph: int = 0  # and its compute buffer


# Sizes of the files as listed on ollama.com/library/llama3.1/tags (decimal GB). The 8B
# Q4_K_M figure is exact: the layer's `total` in the /api/pull stream of llama3.1:8b.
LIBRARY: tuple[ModelFile, ...] = (
    ModelFile("llama3.1:8b-instruct-q4_K_M", LLAMA31_8B, "Q4_K_M", 4_920_738_944),
    ModelFile("llama3.1:8b-instruct-q5_K_M", LLAMA31_8B, "Q5_K_M", 5_730_000_000),
    ModelFile("llama3.1:8b-instruct-q8_0", LLAMA31_8B, "Q8_0", 8_540_000_000),
    ModelFile("llama3.1:8b-instruct-fp16", LLAMA31_8B, "F16", 16_100_000_000),
    ModelFile("llama3.1:70b-instruct-q4_K_M", LLAMA31_70B, "Q4_K_M", 42_500_000_000),
    ModelFile("llama3.1:70b-instruct-q5_K_M", LLAMA31_70B, "Q5_K_M", 49_900_000_000),
    ModelFile("llama3.1:70b-instruct-q8_0", LLAMA31_70B, "Q8_0", 75_000_000_000),
    ModelFile("llama3.1:70b-instruct-fp16", LLAMA31_70B, "F16", 141_000_000_000),
)
TAG_ALIASES = {
    "llama3.1:8b": "llama3.1:8b-instruct-q4_K_M",
    "llama3.1": "llama3.1:8b-instruct-q4_K_M",
}


def library_file(tag: str) -> ModelFile | None:
    """The library file behind ``tag`` (aliases such as ``llama3.1:8b`` resolved), if known."""
    tag = TAG_ALIASES.get(tag, tag)
    return next((f for f in LIBRARY if f.tag == tag), None)


def product_file(quantization: str) -> ModelFile:
    """The Llama 3.1 8B Instruct file of the given quantisation (the product's model)."""
    return next(f for f in LIBRARY if f.arch is LLAMA31_8B and f.quantization == quantization)


@dataclass(frozen=True, slots=True)
class Deployment:
    """What Ollama is asked to hold: context per request, parallel slots, KV cache type."""

    num_ctx: int = 8192
    num_parallel: int = 1
    kv_cache_type: str = "f16"

    @property
    def context_tokens(self) -> int:
        return self.num_ctx * self.num_parallel

    @property
    def batch(self) -> int:
        return min(self.num_ctx, NUM_BATCH)


@dataclass(frozen=True, slots=True)
class MemoryEstimate:
    """Bytes a model needs where it is loaded, in Ollama's four parts."""

    weights: int
    kv_cache: int
    graph: int
    overhead: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.graph + self.overhead


def kv_cache_bytes(arch: ModelArch, deployment: Deployment) -> int:
    """KV cache for all slots: per layer ``tokens x (k_dim + v_dim) x kv_heads x bytes``.

    mllama's cross-attention layers hold the image instead: 4 tiles of 1601 tokens in f32.
    """
    per_element = KV_BYTES_PER_ELEMENT.get(deployment.kv_cache_type, 2.0)
    per_layer = deployment.context_tokens * 2 * arch.head_dim * arch.kv_heads * per_element
    image = arch.kv_heads * 2 * arch.head_dim * 4 * MLLAMA_IMAGE_TOKENS * MLLAMA_TILES
    self_attention = arch.layers - arch.cross_attention_layers
    return self_attention * int(per_layer) + arch.cross_attention_layers * image


def graph_full_offload(arch: ModelArch, deployment: Deployment) -> int:
    """Compute buffer when every layer sits on one GPU (Ollama's formula for the family)."""
    b, c, e, h = deployment.batch, deployment.context_tokens, arch.embedding, arch.heads
    vocab_graph = 4 * b * (e + arch.vocab)
    if arch.family == "mllama":
        return max(4 * b * (2 + 3 * e + arch.head_dim * h + c * (1 + h)), vocab_graph)
    if arch.family != "llama":
        return graph_without_formula(arch, deployment)
    return max(4 * b * (1 + 4 * e + c * (1 + h)), vocab_graph)


def graph_without_formula(arch: ModelArch, deployment: Deployment) -> int:
    """Ollama's fallback for families it has no formula for: GQA x KV cache / 6."""
    return arch.heads // arch.kv_heads * kv_cache_bytes(arch, deployment) // 6


def graph_partial_offload(arch: ModelArch, deployment: Deployment) -> int:
    """Compute buffer when the model is split across GPUs or partly on the CPU."""
    b, c, e, v = deployment.batch, deployment.context_tokens, arch.embedding, arch.vocab
    if arch.family == "mllama":
        rope_freqs = arch.head_dim // 2
        attention = b * (2 * e + 1 + c * (1 + arch.heads) + arch.head_dim * arch.heads)
        cache = arch.head_dim * c * arch.kv_heads
        return max(4 * (attention + rope_freqs + cache), 4 * b * (e + v) + e * v * 105 // 128)
    if arch.family != "llama":
        return graph_without_formula(arch, deployment)
    attention = (
        4 * b * (1 + e + max(c, e))
        + e * e * 9 // 16
        + 4 * c * (b * arch.heads + arch.head_dim * arch.kv_heads)
    )
    output = 4 * b * (e + v) + e * v * 105 // 128
    return 4 * b * e + max(attention, output)


def estimate_memory(model: ModelFile, deployment: Deployment, gpu_count: int = 1) -> MemoryEstimate:
    """Ollama's estimate for loading ``model`` whole on ``gpu_count`` GPUs (0: system RAM)."""
    kv = kv_cache_bytes(model.arch, deployment)
    layer_buffer = (model.size_bytes + kv) // model.arch.layers
    projector = model.projector_bytes + model.projector_graph
    if gpu_count <= 1:
        minimum = CUDA_MINIMUM_MEMORY if gpu_count == 1 else 0
        graph = graph_full_offload(model.arch, deployment)
        return MemoryEstimate(model.size_bytes, kv, graph, minimum + layer_buffer + projector)
    graph = graph_partial_offload(model.arch, deployment)
    per_gpu = CUDA_MINIMUM_MEMORY + layer_buffer
    return MemoryEstimate(model.size_bytes, kv, graph * gpu_count, per_gpu * gpu_count + projector)


@dataclass(frozen=True, slots=True)
class Gpu:
    """One GPU as the probe saw it."""

    index: int
    name: str
    total_bytes: int
    free_bytes: int


@dataclass(frozen=True, slots=True)
class Host:
    """What the model can be loaded into: the GPUs, system RAM and CPU cores."""

    gpus: tuple[Gpu, ...]
    ram_bytes: int
    cpu_cores: int
    driver: str | None = None
    source: str = "given"


def usable(total_bytes: int) -> int:
    """Memory the estimate may use: the total less the safety margin."""
    return int(total_bytes * (1 - SAFETY_MARGIN))


@dataclass(frozen=True, slots=True)
class CandidateFit:
    """One library file against this host: its estimate on the GPU(s), in RAM, and the verdict."""

    model: ModelFile
    estimate: MemoryEstimate
    available: int
    gpus_used: int
    ram_estimate: MemoryEstimate

    @property
    def fits(self) -> bool:
        return self.gpus_used > 0 and self.estimate.total <= self.available


def fit_candidate(model: ModelFile, host: Host, deployment: Deployment) -> CandidateFit:
    """Place ``model`` as Ollama would: on the largest single GPU if it fits, else across all."""
    ram = estimate_memory(model, deployment, 0)
    if not host.gpus:
        return CandidateFit(model, ram, 0, 0, ram)
    largest = max(usable(g.total_bytes) for g in host.gpus)
    alone = estimate_memory(model, deployment, 1)
    if alone.total <= largest or len(host.gpus) == 1:
        return CandidateFit(model, alone, largest, 1, ram)
    spread = estimate_memory(model, deployment, len(host.gpus))
    return CandidateFit(
        model, spread, sum(usable(g.total_bytes) for g in host.gpus), len(host.gpus), ram
    )


@dataclass(frozen=True, slots=True)
class Recommendation:
    """The pick, why, what to watch out for, and every candidate's numbers."""

    pick: CandidateFit
    placement: Placement
    reason: str
    warnings: tuple[str, ...]
    notes: tuple[str, ...]
    candidates: tuple[CandidateFit, ...]
    deployment: Deployment
    host: Host


def recommend(host: Host, deployment: Deployment) -> Recommendation:
    """Q8_0 when it fits the GPU(s) with the margin, else Q4_K_M (on the GPU, split, or CPU)."""
    candidates = tuple(fit_candidate(m, host, deployment) for m in LIBRARY)
    by_quant = {c.model.quantization: c for c in candidates if c.model.arch is LLAMA31_8B}
    fitting = [by_quant[q] for q in QUALITY_ORDER if by_quant[q].fits]
    placement: Placement
    if fitting:
        pick, placement = fitting[0], "gpu"
        reason, warnings = _gpu_reason(pick, by_quant), _free_memory_warnings(pick, host)
    elif host.gpus:
        pick, placement = by_quant["Q4_K_M"], "gpu+cpu"
        reason, warnings = _spill_reason(pick, deployment), _spill_warnings(pick, host, deployment)
    else:
        pick, placement = by_quant["Q4_K_M"], "cpu"
        reason, warnings = _cpu_reason(host), _ram_warnings(pick.ram_estimate.total, host)
    notes = _larger_fits(candidates) if placement == "gpu" else ()
    return Recommendation(pick, placement, reason, warnings, notes, candidates, deployment, host)


def _where(pick: CandidateFit) -> str:
    if pick.gpus_used > 1:
        return f"across {pick.gpus_used} GPUs (Ollama spreads one model's layers over them)"
    return "on one GPU"


def _gpu_reason(pick: CandidateFit, by_quant: dict[str, CandidateFit]) -> str:
    need = f"{gib(pick.estimate.total)} of {gib(pick.available)} usable"
    if pick.model.quantization == "Q8_0":
        return f"Q8_0 fits {_where(pick)}: {need} (best quality that fits)"
    q8 = by_quant["Q8_0"]
    return (
        f"Q8_0 needs {gib(q8.estimate.total)}, more than the {gib(q8.available)} usable; "
        f"Q4_K_M fits {_where(pick)}: {need}"
    )


def _spill_reason(pick: CandidateFit, deployment: Deployment) -> str:
    return (
        f"even Q4_K_M needs {gib(pick.estimate.total)} at num_ctx {deployment.num_ctx} "
        f"x {deployment.num_parallel}, more than the {gib(pick.available)} usable on the GPU: "
        f"Ollama will keep about {gpu_share(pick, deployment):.0%} of it on the GPU "
        "and run the rest on the CPU"
    )


def _cpu_reason(host: Host) -> str:
    return (
        f"no NVIDIA GPU found: Q4_K_M, the smallest file, runs on the {host.cpu_cores} "
        f"CPU cores from system RAM ({SEED_RAM_8B})"
    )


def gpu_share(pick: CandidateFit, deployment: Deployment) -> float:
    """Share of weights + KV cache that Ollama can place on the GPU(s) when they overflow."""
    arch = pick.model.arch
    layer_buffer = (pick.model.size_bytes + pick.estimate.kv_cache) // arch.layers
    fixed = CUDA_MINIMUM_MEMORY + layer_buffer + graph_partial_offload(arch, deployment)
    on_gpu = max(0, pick.available - fixed * pick.gpus_used)
    return min(1.0, on_gpu / (pick.estimate.weights + pick.estimate.kv_cache))


def _spill_warnings(pick: CandidateFit, host: Host, deployment: Deployment) -> tuple[str, ...]:
    share = gpu_share(pick, deployment)
    on_cpu = int((pick.estimate.weights + pick.estimate.kv_cache) * (1 - share))
    hints = (
        f"part of the model ({gib(on_cpu)}) will run on the CPU: replies will be several "
        "times slower; a smaller num_ctx or OLLAMA_KV_CACHE_TYPE=q8_0 with "
        "OLLAMA_FLASH_ATTENTION=1 may make it fit",
    )
    return hints + _ram_warnings(on_cpu, host)


def _ram_warnings(needed: int, host: Host) -> tuple[str, ...]:
    warnings: list[str] = []
    if needed > usable(host.ram_bytes):
        warnings.append(
            f"system RAM is short too: {gib(needed)} needed in RAM, "
            f"{gib(usable(host.ram_bytes))} usable of {gib(host.ram_bytes)}"
        )
    if host.ram_bytes < 16 * GB:
        warnings.append(f"only {gib(host.ram_bytes)} of RAM: below {SEED_RAM_8B}")
    return tuple(warnings)


def _free_memory_warnings(pick: CandidateFit, host: Host) -> tuple[str, ...]:
    free = sorted((g.free_bytes for g in host.gpus), reverse=True)[: pick.gpus_used]
    if host.source == "given" or sum(free) >= pick.estimate.total:
        return ()
    return (
        f"right now only {gib(sum(free))} is free on the GPU (other processes, or a model "
        "Ollama already holds): Ollama may have to unload something first",
    )


def _larger_fits(candidates: tuple[CandidateFit, ...]) -> tuple[str, ...]:
    bigger = [c for c in candidates if c.model.arch is LLAMA31_70B and c.fits]
    if not bigger:
        return ()
    best = bigger[-1]
    return (
        f"{best.model.tag} would fit too ({gib(best.estimate.total)}); "
        "ollabot is tuned for 8B, set OLLABOT_OLLAMA__MODEL to try it",
    )


def gib(n: int) -> str:
    """Bytes as GiB with one decimal, the unit nvidia-smi and Ollama's logs use."""
    return f"{n / GiB:.1f} GiB"
