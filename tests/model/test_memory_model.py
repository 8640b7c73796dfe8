"""Ollama's memory estimate, part by part, and the seed's "how much RAM for 8B in Q4 vs Q8?"."""

from __future__ import annotations

from core.modelfit import (
    LLAMA31_8B,
    LLAMA31_70B,
    Deployment,
    KiB,
    estimate_memory,
    graph_partial_offload,
    kv_cache_bytes,
    library_file,
    product_file,
)


def test_kv_cache_is_128_kib_per_token_for_8b_and_320_kib_for_70b() -> None:
    one_token = Deployment(num_ctx=1)

    # 2 (K and V) x layers x 8 kv heads x 128 head_dim x 2 bytes
    assert kv_cache_bytes(LLAMA31_8B, one_token) == 2 * 32 * 8 * 128 * 2 == 128 * KiB
    assert kv_cache_bytes(LLAMA31_70B, one_token) == 2 * 80 * 8 * 128 * 2 == 320 * KiB


def test_kv_cache_grows_with_context_times_parallel_slots() -> None:
    four_slots = Deployment(num_ctx=8192, num_parallel=4)

    assert kv_cache_bytes(LLAMA31_8B, four_slots) == 4 * 8192 * 128 * KiB


def test_quantised_kv_cache_halves_or_quarters_it() -> None:
    f16 = kv_cache_bytes(LLAMA31_8B, Deployment(kv_cache_type="f16"))

    assert kv_cache_bytes(LLAMA31_8B, Deployment(kv_cache_type="q8_0")) == f16 // 2
    assert kv_cache_bytes(LLAMA31_8B, Deployment(kv_cache_type="q4_0")) == f16 // 4


def test_the_seeds_exercise_ram_for_8b_in_q4_and_q8() -> None:
    # CPU only, num_ctx 8192: file + KV 1 GiB + graph 587,204,608 + one layer as a buffer.
    q4 = estimate_memory(product_file("Q4_K_M"), Deployment(), gpu_count=0)
    q8 = estimate_memory(product_file("Q8_0"), Deployment(), gpu_count=0)

    assert q4.total == 4_920_738_944 + 1_073_741_824 + 587_204_608 + 187_327_524  # 6.3 GiB
    assert q8.total == 8_540_000_000 + 1_073_741_824 + 587_204_608 + 300_429_432  # 9.8 GiB
    # Both sit well under the seed's 16 GB minimum for 8B, which leaves room for the OS.
    assert q4.total < q8.total < 16 * 10**9


def test_split_models_use_the_larger_partial_graph_on_every_gpu() -> None:
    # 4 x 512 x 4096 + max(attention 605,030,400, output 271,056,896 + 430,940,160)
    assert graph_partial_offload(LLAMA31_8B, Deployment()) == 8_388_608 + 701_997_056
    one = estimate_memory(product_file("Q8_0"), Deployment(), gpu_count=1)
    two = estimate_memory(product_file("Q8_0"), Deployment(), gpu_count=2)
    assert two.graph == 2 * 710_385_664
    assert two.total > one.total


def test_library_tags_and_aliases() -> None:
    assert library_file("llama3.1:8b") == product_file("Q4_K_M")
    assert library_file("llama3.1:70b-instruct-q8_0") is not None
    assert library_file("mistral:7b") is None
