"""The bounds of the fit: a GPU too small for even one layer, the RAM margin, free memory."""

from __future__ import annotations

from core.modelfit import Deployment, GiB, Gpu, Host, recommend


def test_a_gpu_smaller_than_its_fixed_overhead_holds_none_of_the_model() -> None:
    # 1 GiB: usable 966,367,641 < 457 MiB + one layer (187,327,524) + the partial graph
    # (710,385,664) = 1,376,912,420, so no layer fits and all 5.6 GiB run on the CPU.
    choice = recommend(Host((Gpu(0, "small", GiB, GiB),), 32 * GiB, 8), Deployment())

    assert choice.placement == "gpu+cpu"
    assert "about 0% of it on the GPU" in choice.reason
    assert "part of the model (5.6 GiB) will run on the CPU" in choice.warnings[0]


def test_ram_keeps_the_ten_percent_margin_too() -> None:
    # CPU only: Q4_K_M needs 6,769,012,900 bytes; 7 GiB of RAM is more, but its usable
    # 90 % (6,764,573,491) is not.
    choice = recommend(Host((), 7 * GiB, 8), Deployment())

    assert any("system RAM is short" in w and "6.3 GiB needed" in w for w in choice.warnings)


def test_only_a_probed_gpu_warns_that_memory_is_taken_now() -> None:
    # 16 GiB fits Q8_0 (10.2 GiB); the probe saw only 4 GiB free (another process holds it).
    gpu = Gpu(0, "NVIDIA test", 16 * GiB, 4 * GiB)
    probed = recommend(Host((gpu,), 32 * GiB, 8, source="nvml"), Deployment())
    given = recommend(Host((gpu,), 32 * GiB, 8, source="given"), Deployment())

    roomy = Gpu(0, "NVIDIA test", 16 * GiB, 15 * GiB)
    free_enough = recommend(Host((roomy,), 32 * GiB, 8, source="nvml"), Deployment())

    assert probed.warnings and probed.warnings[0].startswith("right now only 4.0 GiB is free")
    assert given.warnings == () and free_enough.warnings == ()
