"""Known learning coefficients, the ground truth the estimators are tested against."""

from __future__ import annotations


def regular_llc(num_params: int) -> float:
    """A regular (identifiable, non-degenerate Hessian) model has λ = d/2."""
    return num_params / 2


def reduced_rank_llc(in_dim: int, hidden: int, out_dim: int, rank: int) -> float:
    """Aoyagi & Watanabe (2005): the RLCT of reduced-rank regression.

    The model is y = B A x with A: hidden × in_dim, B: out_dim × hidden, and the true
    product B0 A0 has rank ``rank``. Notation from the paper: M = in_dim, N = out_dim,
    H = hidden, r = rank. The three "outside" cases are the ones where one factor is so
    narrow that the model behaves regularly in it; the main case has the parity term.
    """
    m, n, h, r = in_dim, out_dim, hidden, rank
    if not 0 <= r <= min(m, n, h):
        raise ValueError(f"rank {r} must be in [0, min(in, out, hidden)] = [0, {min(m, n, h)}]")
    if n + r <= m + h and m + r <= n + h and h + r <= m + n:
        numerator = 2 * (h + r) * (m + n) - (m - n) ** 2 - (h + r) ** 2
        if (m + h + n + r) % 2 == 1:
            numerator += 1
        return numerator / 8
    if m + h < n + r:
        return (h * m - h * r + n * r) / 2
    if n + h < m + r:
        return (h * n - h * r + m * r) / 2
    # m + n < h + r: more hidden units than the map can use; λ is that of the full matrix.
    return m * n / 2
