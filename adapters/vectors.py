"""Exact cosine search with numpy: the knowledge search where Redis has no vector index, and
the in-memory store's only one."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float32]


def as_float32(vector: Sequence[float]) -> Matrix:
    return np.asarray(vector, dtype=np.float32)


def unit_rows(matrix: Matrix) -> Matrix:
    """Each row scaled to length 1 (a zero row stays zero), so a dot product is the cosine."""
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    scaled: Matrix = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
    return scaled


def top_cosine(unit_matrix: Matrix, query: Sequence[float], count: int) -> list[tuple[int, float]]:
    """``(row, cosine)`` of the ``count`` rows closest to ``query``, closest first.

    ``unit_matrix`` rows must have length 1 (``unit_rows``); a query of another dimension
    matches nothing.
    """
    if count <= 0 or unit_matrix.size == 0 or unit_matrix.shape[1] != len(query):
        return []
    scores = unit_matrix @ unit_rows(as_float32(query))
    count = min(count, len(scores))
    best = np.argpartition(-scores, count - 1)[:count]
    ranked = best[np.argsort(-scores[best], kind="stable")]
    return [(int(row), float(scores[row])) for row in ranked]
