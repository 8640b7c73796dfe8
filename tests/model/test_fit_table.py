"""Which file `ollabot model recommend` picks for each GPU, with the arithmetic behind it.

Llama 3.1 8B, num_ctx 8192, one slot, f16 KV cache (Ollama's memory estimate, core/modelfit):
    KV cache  32 layers x 8192 tokens x (128 + 128) x 8 kv heads x 2 B   =  1,073,741,824
    graph     4 x 512 x (1 + 4 x 4096 + 8192 x (1 + 32 heads))            =    587,204,608
    overhead  CUDA minimum 457 MiB = 479,199,232, plus one layer = (file + KV) / 32
    Q8_0      8,540,000,000 + 1,073,741,824 + 587,204,608 + 479,199,232 + 300,429,432
              = 10,980,575,096 (10.2 GiB)
    Q4_K_M    4,920,738,944 + 1,073,741,824 + 587,204,608 + 479,199,232 + 187,327,524
              =  7,248,212,132 (6.8 GiB)
A file fits when its estimate is at most 90 % of the GPU's memory ("usable").
"""

from __future__ import annotations

import pytest

from core.modelfit import Deployment, GiB, Gpu, Host, MiB, recommend

Q8 = "llama3.1:8b-instruct-q8_0"
Q4 = "llama3.1:8b-instruct-q4_K_M"


def host(*gpu_bytes: int, ram: int = 32 * GiB) -> Host:
    gpus = tuple(Gpu(i, "test GPU", size, size) for i, size in enumerate(gpu_bytes))
    return Host(gpus, ram, 16, source="given")


CASES = [
    # 6 GiB: usable 5.4 GiB < Q4_K_M's 6.8 GiB, so even Q4_K_M spills onto the CPU.
    pytest.param(host(6 * GiB), 8192, Q4, "gpu+cpu", 7_248_212_132, id="6GB"),
    # 8 GiB: usable 7.2 GiB; Q8_0 (10.2) does not fit, Q4_K_M (6.8) does.
    pytest.param(host(8 * GiB), 8192, Q4, "gpu", 7_248_212_132, id="8GB"),
    # 12 GiB at 4k: KV 536,870,912; graph 4 x 512 x (1 + 16384 + 4096 x 33) = 310,380,544;
    # Q8_0 = 8,540,000,000 + 536,870,912 + 310,380,544 + 479,199,232 + 283,652,216
    #      = 10,150,102,904 (9.5 GiB) <= usable 10.8 GiB.
    pytest.param(host(12 * GiB), 4096, Q8, "gpu", 10_150_102_904, id="12GB-4k"),
    # 12 GiB at 32k: KV 4,294,967,296; graph 4 x 512 x (1 + 16384 + 32768 x 33) = 2,248,148,992;
    # Q4_K_M = 4,920,738,944 + 4,294,967,296 + 2,248,148,992 + 479,199,232 + 287,990,820
    #        = 12,231,045,284 (11.4 GiB) > usable 10.8 GiB: the long context pushes it off.
    pytest.param(host(12 * GiB), 32768, Q4, "gpu+cpu", 12_231_045_284, id="12GB-32k"),
    # 16 and 24 GiB: Q8_0's 10.2 GiB fits easily (usable 14.4 and 21.6 GiB).
    pytest.param(host(16 * GiB), 8192, Q8, "gpu", 10_980_575_096, id="16GB"),
    pytest.param(host(24 * GiB), 8192, Q8, "gpu", 10_980_575_096, id="24GB"),
    # H100 80GB reports 81,559 MiB; H200 143,771 MiB.
    pytest.param(host(81_559 * MiB), 8192, Q8, "gpu", 10_980_575_096, id="80GB"),
    pytest.param(host(143_771 * MiB), 8192, Q8, "gpu", 10_980_575_096, id="141GB"),
    # Two 8 GiB GPUs: Q8_0 alone (10.2) overflows one, so Ollama spreads it; each GPU then
    # holds 457 MiB + one layer + the partial graph (4 x 512 x 4096 + 701,997,056 = 710,385,664):
    # 8,540,000,000 + 1,073,741,824 + 2 x (479,199,232 + 300,429,432 + 710,385,664)
    # = 12,593,770,480 (11.7 GiB) <= 2 x 7.2 GiB usable.
    pytest.param(host(8 * GiB, 8 * GiB), 8192, Q8, "gpu", 12_593_770_480, id="2x8GB"),
    # No GPU: Q4_K_M from RAM; 4,920,738,944 + 1,073,741,824 + 587,204,608 + 187,327,524
    # = 6,769,012,900 (6.3 GiB) of RAM, no CUDA minimum.
    pytest.param(host(), 8192, Q4, "cpu", 6_769_012_900, id="no-GPU"),
]


@pytest.mark.parametrize(("the_host", "num_ctx", "tag", "placement", "estimate"), CASES)
def test_the_pick_for_each_gpu(
    the_host: Host, num_ctx: int, tag: str, placement: str, estimate: int
) -> None:
    choice = recommend(the_host, Deployment(num_ctx=num_ctx))

    assert (choice.pick.model.tag, choice.placement) == (tag, placement)
    assert choice.pick.estimate.total == estimate
    assert choice.pick.fits is (placement == "gpu")


def test_a_gpu_too_small_warns_that_part_runs_on_the_cpu() -> None:
    choice = recommend(host(6 * GiB), Deployment())

    # On the GPU: usable 5,798,205,849 less 457 MiB, one layer and the partial graph
    # (710,385,664) leaves 4,421,293,429 of the 5,994,480,768 bytes of weights + KV: 74 %.
    assert "about 74% of it on the GPU" in choice.reason
    assert "will run on the CPU" in choice.warnings[0]
    assert "1.5 GiB" in choice.warnings[0]


def test_two_gpus_say_the_model_is_spread_over_both() -> None:
    choice = recommend(host(8 * GiB, 8 * GiB), Deployment())

    assert choice.pick.gpus_used == 2
    assert "across 2 GPUs" in choice.reason


def test_two_gpus_where_one_is_enough_use_one() -> None:
    choice = recommend(host(24 * GiB, 24 * GiB), Deployment())

    assert choice.pick.gpus_used == 1
    assert choice.pick.estimate.total == 10_980_575_096


def test_big_gpus_mention_the_largest_70b_file_that_would_fit() -> None:
    # 70B at 8k: KV 80 x 8192 x 256 x 8 x 2 = 2,684,354,560; graph 4 x 512 x (1 + 32768 +
    # 8192 x 65) = 1,157,629,952; Q5_K_M 54,878,488,176 (51.1 GiB) fits the H100's 71.7 GiB,
    # Q8_0 80,292,238,176 (74.8 GiB) does not; the H200 (126.4 GiB usable) holds Q8_0.
    h100 = recommend(host(81_559 * MiB), Deployment())
    h200 = recommend(host(143_771 * MiB), Deployment())

    assert h100.notes and h100.notes[0].startswith("llama3.1:70b-instruct-q5_K_M would fit")
    assert h200.notes and h200.notes[0].startswith("llama3.1:70b-instruct-q8_0 would fit")
    assert recommend(host(24 * GiB), Deployment()).notes == ()


def test_cpu_only_gives_the_seeds_ram_guidance() -> None:
    choice = recommend(host(ram=32 * GiB), Deployment())

    assert "16 GB of RAM minimum, 32 GB recommended" in choice.reason
    assert choice.warnings == ()


def test_cpu_only_with_little_ram_says_ram_is_short() -> None:
    # Q4_K_M needs 6.3 GiB in RAM; 4 GiB of RAM leaves 3.6 GiB usable.
    choice = recommend(host(ram=4 * GiB), Deployment())

    assert any("system RAM is short" in w for w in choice.warnings)
    assert any("below the seed's guidance" in w for w in choice.warnings)


def test_more_parallel_slots_need_more_kv_cache() -> None:
    # 16 GiB, num_ctx 8192 x 4 slots: KV 4 GiB and graph 2,248,148,992 as for 32k; Q8_0
    # = 8,540,000,000 + 4,294,967,296 + 2,248,148,992 + 479,199,232 + 401,092,728
    # = 15,963,408,248 (14.9 GiB) > 14.4 usable, so Q4_K_M (11.4 GiB) it is.
    choice = recommend(host(16 * GiB), Deployment(num_ctx=8192, num_parallel=4))

    assert choice.pick.model.tag == Q4
    q8 = next(c for c in choice.candidates if c.model.tag == Q8)
    assert q8.estimate.total == 15_963_408_248


def test_a_quantised_kv_cache_lets_q8_fit_at_32k_on_16gb() -> None:
    # q8_0 KV: 1 byte per element, KV 2,147,483,648; Q8_0 = 8,540,000,000 + 2,147,483,648
    # + 2,248,148,992 + 479,199,232 + 333,983,864 = 13,748,815,736 (12.8 GiB) <= 14.4.
    f16 = recommend(host(16 * GiB), Deployment(num_ctx=32768))
    q8_kv = recommend(host(16 * GiB), Deployment(num_ctx=32768, kv_cache_type="q8_0"))

    assert f16.pick.model.tag == Q4
    assert (q8_kv.pick.model.tag, q8_kv.pick.estimate.total) == (Q8, 13_748_815_736)
