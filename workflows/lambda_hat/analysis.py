"""LLC estimates with uncertainty and convergence diagnostics, tables and trace plots.

R-hat and ESS are blackjax's implementations of Vehtari et al. (2021): the rank-normalized
split-R-hat and the bulk ESS (rank-normalized split chains, autocorrelations truncated by
Geyer's initial monotone sequence), as Stan and ArviZ report them.

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
from blackjax import diagnostics

from parsl_saga.markdown import markdown_table


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


def rhat(chains: np.ndarray) -> float:
    """Rank-normalized split-R-hat of a (chains, draws) array; ~1 when the chains agree."""
    return float(diagnostics.rhat(np.asarray(chains)))


def ess(chains: np.ndarray) -> float:
    """Bulk effective sample size of a (chains, draws) array."""
    return float(diagnostics.ess_bulk(np.asarray(chains)))


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


def estimates_table(estimates: list[Estimate]) -> str:
    return markdown_table(COLUMNS, [[_fmt(_row(e)[c]) for c in COLUMNS] for e in estimates])


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
