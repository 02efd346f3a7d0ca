"""LLC estimates with uncertainty and convergence diagnostics, tables and trace plots.

R-hat and ESS follow Vehtari et al. (2021) / Stan: split-R-hat on the raw draws, and a
multi-chain ESS from autocorrelations truncated by Geyer's initial monotone sequence.
Implemented with numpy so the analysis needs no extra dependency.

Draws resampled from importance weights (VI) repeat proposals in random order: their
autocorrelation is nil and would claim an ESS near the number of draws. A run whose
``info`` has ``is_ess`` (one importance-sampling ESS per chain) reports at most their sum.
"""

from __future__ import annotations

import csv
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Estimate:
    target: str
    sampler: str
    dtype: str
    llc: float
    se: float
    rhat: float
    ess: float
    known: float | None
    chains: int
    draws: int

    @property
    def error(self) -> float | None:
        return None if self.known is None else self.llc - self.known


def _split(chains: np.ndarray) -> np.ndarray:
    half = chains.shape[1] // 2
    return np.concatenate([chains[:, :half], chains[:, half : 2 * half]], axis=0)


def rhat(chains: np.ndarray) -> float:
    """Split-R-hat of a (chains, draws) array; ~1 when the chains agree."""
    x = _split(np.asarray(chains, dtype=np.float64))
    n = x.shape[1]
    if n < 2:
        return float("nan")
    within = x.var(axis=1, ddof=1).mean()
    between = n * x.mean(axis=1).var(ddof=1)
    if within == 0:
        return float("nan") if between == 0 else float("inf")
    var_plus = (n - 1) / n * within + between / n
    return float(math.sqrt(var_plus / within))


def _autocov(x: np.ndarray) -> np.ndarray:
    """Autocovariance of each row at every lag, by FFT."""
    n = x.shape[-1]
    centered = x - x.mean(axis=-1, keepdims=True)
    size = 2 ** math.ceil(math.log2(2 * n))
    f = np.fft.rfft(centered, size, axis=-1)
    return np.fft.irfft(f * np.conj(f), size, axis=-1)[..., :n] / n


def ess(chains: np.ndarray) -> float:
    """Multi-chain effective sample size (Stan's estimator, non-split)."""
    x = np.asarray(chains, dtype=np.float64)
    m, n = x.shape
    if n < 4:
        return float("nan")
    acov = _autocov(x)
    chain_var = acov[:, 0] * n / (n - 1)
    within = chain_var.mean()
    var_plus = within * (n - 1) / n + (x.mean(axis=1).var(ddof=1) if m > 1 else 0.0)
    if var_plus == 0:
        return float("nan")
    rho = 1 - (within - acov.mean(axis=0)) / var_plus
    rho[0] = 1.0
    # Geyer: sum pairs ρ_{2t} + ρ_{2t+1} while positive, forced monotone non-increasing.
    pairs = rho[: 2 * (n // 2)].reshape(-1, 2).sum(axis=1)
    positive = np.argmax(pairs <= 0) if np.any(pairs <= 0) else len(pairs)
    pairs = np.minimum.accumulate(pairs[:positive])
    tau = -1 + 2 * pairs.sum()
    return float(m * n / max(tau, 1.0 / math.log10(m * n)))


def estimate(result: dict[str, Any]) -> Estimate:
    """LLC = mean of post-burn-in draws; SE from the spread of the per-chain means."""
    draws = np.asarray(result["traces"], dtype=np.float64)[:, result["burn_in"] :]
    chain_means = draws.mean(axis=1)
    chains = draws.shape[0]
    se = float(chain_means.std(ddof=1) / math.sqrt(chains)) if chains > 1 else float("nan")
    effective = ess(draws)
    is_ess = result.get("info", {}).get("is_ess")
    if is_ess:
        effective = min(effective, float(sum(is_ess)))
    return Estimate(
        target=result["target"],
        sampler=result["sampler"]["name"],
        dtype=result["dtype"],
        llc=float(draws.mean()),
        se=se,
        rhat=rhat(draws),
        ess=effective,
        known=result["known_llc"],
        chains=chains,
        draws=draws.shape[1],
    )


COLUMNS = (
    "target",
    "sampler",
    "dtype",
    "llc",
    "se",
    "known",
    "error",
    "rhat",
    "ess",
    "chains",
    "draws",
)


def _row(e: Estimate) -> dict[str, Any]:
    return {**asdict(e), "error": e.error}


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3f}" if math.isfinite(v) else str(v)
    return str(v)


def markdown_table(estimates: list[Estimate]) -> str:
    header = "| " + " | ".join(COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    rows = ["| " + " | ".join(_fmt(_row(e)[c]) for c in COLUMNS) + " |" for e in estimates]
    return "\n".join([header, rule, *rows])


def write_csv(estimates: list[Estimate], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for e in estimates:
            writer.writerow({c: _row(e)[c] for c in COLUMNS})


def plot_traces(results: list[dict[str, Any]], path: Path) -> None:
    """One panel per (target, sampler): every chain's trace, burn-in shaded, truth dashed."""
    import matplotlib

    matplotlib.use("Agg")  # files only: workers and CI have no display
    import matplotlib.pyplot as plt

    targets = sorted({r["target"] for r in results})
    samplers = list(dict.fromkeys(r["sampler"]["name"] for r in results))
    fig, axes = plt.subplots(
        len(targets),
        len(samplers),
        figsize=(3.2 * len(samplers), 2.6 * len(targets)),
        squeeze=False,
        sharex=False,
    )
    by_key = {(r["target"], r["sampler"]["name"]): r for r in results}
    for i, t in enumerate(targets):
        for j, s in enumerate(samplers):
            ax = axes[i][j]
            r = by_key.get((t, s))
            if r is None:
                ax.set_visible(False)
                continue
            traces = np.asarray(r["traces"], dtype=np.float64)
            for chain in traces:
                ax.plot(chain, lw=0.5, alpha=0.8)
            if r["burn_in"]:
                ax.axvspan(0, r["burn_in"], color="0.9")
            if r["known_llc"] is not None:
                ax.axhline(r["known_llc"], color="k", ls="--", lw=1)
            ax.set_title(f"{t} · {s} ({r['dtype']})", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.supylabel("nβ(L_n(w) − L_n(w*))")
    fig.supxlabel("draw")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
