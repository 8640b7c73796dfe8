"""The GPU plan: chat, embedding and vision models resident together, swapping, or too big.

The default companions at num_ctx 8192 (core/modelfit, core/gpuplan):
    nomic-embed-text   one slot, context clamped to its trained 2048 tokens
        KV 12 x 2048 x (64 + 64) x 12 x 2 B = 75,497,472; graph (no formula) KV / 6 = 12,582,912
        274,000,000 + 75,497,472 + 12,582,912 + 479,199,232 + 29,124,789 = 870,404,405 (0.8 GiB)
    llama3.2-vision:11b   one slot (mllama serves one request at a time)
        KV 32 self-attention layers x 8192 x 256 x 8 x 2 B = 1,073,741,824
           + 8 cross-attention layers x 8 x 256 x 4 B x 1601 x 4 tiles = 419,692,544
        graph 4 x 512 x (2 + 3 x 4096 + 128 x 32 + 8192 x 33) = 587,206,656
        overhead 479,199,232 + one layer 187,335,859
           + projector 1,900,000,000 + its compute buffer 2,991,947,808
        total 13,639,123,923 (12.7 GiB)
    chat Q8_0 10,980,575,096 (10.2 GiB), Q4_K_M 7,248,212,132 (6.8 GiB); usable = 90 %.
"""

from __future__ import annotations

import pytest

from core.gpuplan import (
    LLAMA32_VISION_11B,
    NOMIC_EMBED,
    GpuPlan,
    Role,
    arch_from_model_info,
    as_loaded,
    known_file,
    mllama_projector_graph,
    plan_gpu,
    plan_summary,
    too_big_lines,
    with_size_on_disk,
)
from core.modelfit import (
    LLAMA31_8B,
    Deployment,
    GiB,
    Gpu,
    Host,
    MiB,
    ModelFile,
    kv_cache_bytes,
    product_file,
)
from tests.fakes.ollama import wire_json

Q8, Q4 = product_file("Q8_0"), product_file("Q4_K_M")
VISION = known_file("llama3.2-vision:11b")
EMBED = known_file("nomic-embed-text")


def host(*gpu_bytes: int, ram: int = 64 * GiB) -> Host:
    gpus = tuple(Gpu(i, "test GPU", size, size) for i, size in enumerate(gpu_bytes))
    return Host(gpus, ram, 16, source="given")


def plan(the_host: Host, chat: ModelFile = Q8, num_ctx: int = 8192, parallel: int = 1) -> GpuPlan:
    assert VISION is not None and EMBED is not None
    models: list[tuple[Role, ModelFile, str]] = [
        ("chat", chat, "table"),
        ("embed", EMBED, "table"),
        ("vision", VISION, "table"),
    ]
    return plan_gpu(the_host, models, Deployment(num_ctx, parallel), "30m")


def roles(models: tuple[object, ...]) -> list[str]:
    return [m.role for m in models]  # type: ignore[attr-defined]


CASES = [
    # 6 GiB (5.4 usable): even Q4_K_M spills, so it holds the GPU and the embedder swaps.
    pytest.param(host(6 * GiB), Q4, "cannot-fit", [], ["embed"], ["chat", "vision"], id="6GB"),
    # 8 GiB (7.2 usable): Q4_K_M 6.8 fits, the embedder's 0.8 does not beside it; vision 12.7
    # cannot fit at all.
    pytest.param(host(8 * GiB), Q4, "cannot-fit", ["chat"], ["embed"], ["vision"], id="8GB"),
    # 12 GiB (10.8 usable): Q8_0 10.2 + embed 0.8 = 11.0 > 10.8, vision too big.
    pytest.param(host(12 * GiB), Q8, "cannot-fit", ["chat"], ["embed"], ["vision"], id="12GB"),
    # 16 GiB (14.4 usable): Q8_0 + embed = 11.0 resident; 11.0 + 12.7 > 14.4: vision swaps.
    pytest.param(host(16 * GiB), Q8, "swap", ["chat", "embed"], ["vision"], [], id="16GB"),
    # 24 GiB (21.6 usable): Q8_0 + embed + vision = 23.7 > 21.6: vision swaps ...
    pytest.param(host(24 * GiB), Q8, "swap", ["chat", "embed"], ["vision"], [], id="24GB-Q8"),
    # ... but with Q4_K_M: 6.8 + 0.8 + 12.7 = 20.3 <= 21.6, all three stay.
    pytest.param(host(24 * GiB), Q4, "resident", ["chat", "embed", "vision"], [], [], id="24GB-Q4"),
    # H100 80GB (81,559 MiB): 23.7 of 71.7 usable.
    pytest.param(
        host(81_559 * MiB), Q8, "resident", ["chat", "embed", "vision"], [], [], id="80GB"
    ),
    # Two 16 GiB GPUs: chat on one (10.2), embed on the roomier other (0.8), vision beside
    # it (0.8 + 12.7 = 13.5 <= 14.4): each model on one GPU, nothing swaps.
    pytest.param(
        host(16 * GiB, 16 * GiB), Q8, "resident", ["chat", "embed", "vision"], [], [], id="2x16"
    ),
]


@pytest.mark.parametrize(("the_host", "chat", "verdict", "resident", "swapping", "too_big"), CASES)
def test_which_models_stay_which_swap_which_cannot_fit(
    the_host: Host,
    chat: ModelFile,
    verdict: str,
    resident: list[str],
    swapping: list[str],
    too_big: list[str],
) -> None:
    result = plan(the_host, chat)

    assert result.verdict == verdict
    assert roles(result.resident) == resident
    assert roles(result.swapping) == swapping
    assert roles(result.too_big) == too_big


def test_the_companions_estimates_follow_ollama() -> None:
    result = plan(host(80 * GiB))

    needs = {m.role: m.need for m in result.models}
    assert needs == {"chat": 10_980_575_096, "embed": 870_404_405, "vision": 13_639_123_923}
    assert mllama_projector_graph() == 2_991_947_808


def test_a_long_context_pushes_the_vision_model_out() -> None:
    # 24 GiB with Q4_K_M at 32k: chat 11.4 GiB; vision's self-attention cache grows 4x.
    result = plan(host(24 * GiB), Q4, num_ctx=32768)

    assert result.verdict == "swap"
    assert roles(result.swapping) == ["vision"]


def test_the_swapping_model_gets_a_short_keep_alive_and_the_resident_ones_the_configured() -> None:
    result = plan(host(16 * GiB))

    assert result.keep_alive_for("llama3.2-vision:11b") == "1m"
    assert result.keep_alive_for(Q8.tag) == "30m"
    assert result.max_loaded_models == 2
    line = plan_summary(result)
    assert line.startswith(
        f"chat {Q8.tag} and embed nomic-embed-text fit together (11.0 GiB of 14.4 GiB usable); "
        "vision llama3.2-vision:11b (12.7 GiB) must swap with them"
    )
    assert "give llama3.2-vision:11b keep_alive 1m so that the chat model comes back" in line
    assert "OLLAMA_MAX_LOADED_MODELS must be at least 2" in line


def test_all_resident_says_nothing_reloads() -> None:
    line = plan_summary(plan(host(48 * GiB)))

    assert line == (
        f"chat {Q8.tag}, embed nomic-embed-text and vision llama3.2-vision:11b fit together "
        "(23.7 GiB of 43.2 GiB usable): nothing is reloaded between requests; "
        "OLLAMA_MAX_LOADED_MODELS must be at least 3 (Ollama's default, 3 per GPU, is)"
    )


def test_a_model_too_big_alone_is_named_with_how_to_turn_it_off() -> None:
    (line,) = too_big_lines(plan(host(8 * GiB), Q4))

    assert line.startswith(
        "vision llama3.2-vision:11b needs 12.7 GiB alone, more than the 7.2 GiB usable"
    )
    assert "OLLABOT_OLLAMA__VISION_MODEL=" in line


def test_q8_that_pushes_a_companion_out_suggests_q4() -> None:
    assert "would stay resident beside it too" in plan(host(24 * GiB)).notes[0]
    assert "embed nomic-embed-text" in plan(host(12 * GiB)).notes[0]
    assert plan(host(16 * GiB)).notes == ()  # Q4_K_M + vision does not fit 14.4 either


def test_a_spilled_chat_model_leaves_the_others_to_swap() -> None:
    line = plan_summary(plan(host(6 * GiB), Q4))

    assert line.startswith("the chat model does not fit the GPU on its own; embed")


def test_a_probed_gpu_short_of_free_memory_says_so() -> None:
    busy = Host((Gpu(0, "test GPU", 48 * GiB, 20 * GiB),), 64 * GiB, 16, source="nvml")

    result = plan(busy)

    assert result.verdict == "resident"
    assert result.notes == (
        "right now only 20.0 GiB of GPU memory is free (other processes, or models Ollama "
        "already holds) for the 23.7 GiB the resident models need",
    )
    assert plan(host(48 * GiB)).notes == ()


def test_no_gpu_runs_everything_from_ram() -> None:
    result = plan(host(), Q4)

    assert result.verdict == "cpu"
    assert plan_summary(result).startswith("no NVIDIA GPU: chat")
    assert plan(host(), Q4).notes == ()
    assert "more than the" in plan(host(ram=8 * GiB), Q4).notes[0]


def test_vision_and_embedding_models_get_one_slot_and_their_own_context() -> None:
    four_slots = Deployment(num_ctx=8192, num_parallel=4)
    assert VISION is not None and EMBED is not None

    assert as_loaded(VISION, four_slots) == Deployment(8192, 1)
    assert as_loaded(EMBED, four_slots) == Deployment(2048, 1)
    assert as_loaded(VISION, Deployment(num_ctx=1024)).num_ctx == 2048
    assert as_loaded(Q8, four_slots) == four_slots


def test_cross_attention_layers_cache_the_image_not_the_context() -> None:
    one_token = Deployment(num_ctx=1)

    image_layer = 8 * 256 * 4 * 1601 * 4
    assert kv_cache_bytes(LLAMA32_VISION_11B, one_token) == 32 * 8 * 256 * 2 + 8 * image_layer
    assert kv_cache_bytes(NOMIC_EMBED, one_token) == 12 * 12 * 128 * 2


def test_ollamas_size_on_disk_replaces_the_tables() -> None:
    assert VISION is not None
    real = with_size_on_disk(VISION, 7_901_234_567)

    assert real.size_bytes == 7_901_234_567 - 1_900_000_000
    assert real.projector_bytes == VISION.projector_bytes


def test_aliases_and_latest_resolve_to_the_table() -> None:
    assert known_file("llama3.2-vision") == VISION
    assert known_file("nomic-embed-text:latest") == EMBED
    assert known_file("llama3.1:8b") == Q4
    assert known_file("mistral:7b") is None


def test_a_models_shape_comes_from_api_show() -> None:
    info = wire_json("show_response.json")["model_info"]

    arch = arch_from_model_info("llama3.1:8b", info)

    assert arch is not None
    shape = (arch.layers, arch.embedding, arch.heads, arch.kv_heads, arch.head_dim, arch.vocab)
    assert shape == (32, 4096, 32, 8, 128, 128_256)
    assert (arch.family, arch.trained_context, arch.parallel) == ("llama", 131_072, True)
    assert kv_cache_bytes(arch, Deployment()) == kv_cache_bytes(LLAMA31_8B, Deployment())
    assert arch_from_model_info("x", {"general.architecture": "llama"}) is None
    embedder = {"general.architecture": "bert", "bert.block_count": 12,
                "bert.embedding_length": 768, "bert.attention.head_count": 12,
                "bert.pooling_type": 1}  # fmt: skip
    assert arch_from_model_info("e", embedder).parallel is False  # type: ignore[union-attr]
