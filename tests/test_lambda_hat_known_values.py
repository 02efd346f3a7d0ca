"""The LLC estimators against known learning coefficients, at small sizes, in-process.

Ground truth: a regular model (linear regression, d parameters) has λ = d/2; reduced-rank
regression (a two-layer linear network) has Aoyagi and Watanabe's value, 4.0 for 3-3-3
with true rank 1 against d/2 = 9. γ = 1 is small against nβ ≈ 145 (n = 1000), so the
localization shrinks the regular estimate only by the factor nβ/(nβ + γ) ≈ 0.993.

Tolerances (relative to the known value) and why:
- HMC, MCLMC (float64, full-batch, exact up to MCMC error): 15%.
- SGLD (float32, minibatch, step-size bias, shorter effective chains): 20%.
- VI (mean-field Gaussian): 15% on the regular model, where mean-field is exact for the
  quadratic form. On the singular model it is off by ~60% (the product of Gaussians
  cannot follow the curved valley of minima); a separate test asserts that bias.
The runs are seeded, so the numbers are reproducible; the tolerances still leave room
for the Monte Carlo error a different seed would show (several standard errors).
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import pytest

pytest.importorskip("blackjax")

from lambda_hat.analysis import Estimate, ess, estimate, rhat
from lambda_hat.config import SamplerConfig, TargetConfig
from lambda_hat.known import reduced_rank_llc, regular_llc
from lambda_hat.tasks import build_target_task, run_sampler_task

GAMMA = 1.0
TARGETS = {
    "linear": TargetConfig(name="linear_d6", model="linear", d=6, n=1000, seed=0),
    "rrlinear": TargetConfig(
        name="rr333_r1", model="rrlinear", in_dim=3, hidden=3, out_dim=3, rank=1, n=1000, seed=1
    ),
}
SAMPLERS = {
    "sgld": SamplerConfig(
        "sgld",
        "sgld",
        "float32",
        chains=4,
        params={"step_size": 1e-4, "batch_size": 200, "steps": 4000, "burn_in": 1000},
    ),
    "vi": SamplerConfig("vi", "vi", "float32", chains=4, params={"steps": 1000, "draws": 500}),
    "hmc": SamplerConfig("hmc", "hmc", "float64", chains=4, params={"warmup": 200, "draws": 400}),
    "mclmc": SamplerConfig(
        "mclmc", "mclmc", "float64", chains=4, params={"tune_steps": 1000, "draws": 1000}
    ),
}
TOLERANCE = {"sgld": 0.20, "vi": 0.15, "hmc": 0.15, "mclmc": 0.15}


def test_regular_llc_is_half_the_dimension() -> None:
    assert regular_llc(6) == 3.0


@pytest.mark.parametrize(
    ("dims", "expected"),
    [
        ((3, 3, 3, 1), 4.0),  # the example; d/2 would be 9
        ((3, 3, 3, 3), 4.5),  # full rank: dimension of rank-3 3×3 matrices over 2
        ((3, 3, 3, 0), 3.5),  # odd parity branch: (2·3·6 − 0 − 9 + 1)/8 = 28/8
        ((5, 1, 5, 1), 4.5),  # hidden = rank = 1: regular in the rank-1 manifold, 9/2
        ((10, 2, 1, 1), 5.0),  # N + H < M + r: (H N − H r + M r)/2 = (2 − 2 + 10)/2
        ((1, 2, 10, 1), 5.0),  # mirror image: M + H < N + r
        ((2, 6, 2, 1), 2.0),  # M + N < H + r: λ = M N / 2
    ],
)
def test_aoyagi_formula(dims: tuple[int, int, int, int], expected: float) -> None:
    in_dim, hidden, out_dim, rank = dims
    assert reduced_rank_llc(in_dim, hidden, out_dim, rank) == pytest.approx(expected)


def test_aoyagi_rejects_impossible_rank() -> None:
    with pytest.raises(ValueError, match="rank"):
        reduced_rank_llc(3, 2, 3, 3)


def test_aoyagi_never_exceeds_regular_bound() -> None:
    for m in range(1, 5):
        for h in range(1, 5):
            for n in range(1, 5):
                for r in range(min(m, h, n) + 1):
                    assert reduced_rank_llc(m, h, n, r) <= (h * m + n * h) / 2 + 1e-12


def test_diagnostics_on_known_sequences() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    iid = rng.normal(size=(4, 2000))
    assert rhat(iid) == pytest.approx(1.0, abs=0.01)
    assert 6000 < ess(iid) < 10000
    shifted = iid + np.array([[0.0], [0.0], [0.0], [3.0]])
    assert rhat(shifted) > 1.3
    # AR(1) with φ = 0.9: τ = (1 + φ)/(1 − φ) = 19, so ESS ≈ 8000/19 ≈ 420.
    ar = np.zeros((4, 2000))
    for t in range(1, 2000):
        ar[:, t] = 0.9 * ar[:, t - 1] + rng.normal(size=4)
    assert 250 < ess(ar) < 700


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("artifacts")
    return {
        name: build_target_task(asdict(t), str(root), strict=False) for name, t in TARGETS.items()
    }


_RUNS: dict[tuple[str, str], Estimate] = {}


def _run(built: dict[str, dict], target: str, sampler: str) -> Estimate:
    """Run a sampler once per session; several tests read the same estimate."""
    if (target, sampler) in _RUNS:
        return _RUNS[target, sampler]
    result = run_sampler_task(built[target], asdict(SAMPLERS[sampler]), GAMMA, strict=False)
    assert result["dtype"] == SAMPLERS[sampler].dtype
    est = estimate(result)
    print(
        f"{target} {sampler} {est.dtype}: LLC {est.llc:.3f} ± {est.se:.3f} (known {est.known}), "
        f"R-hat {est.rhat:.3f}, ESS {est.ess:.0f}"
    )
    _RUNS[target, sampler] = est
    return est


def test_built_targets_know_their_llc(built: dict[str, dict]) -> None:
    assert built["linear"]["known_llc"] == 3.0
    assert built["rrlinear"]["known_llc"] == 4.0
    assert built["rrlinear"]["num_params"] == 18
    for meta in built.values():
        assert meta["train"]["grad_norm"] < 1e-8  # w* is a minimum, to float64 precision
        assert meta["dtype"] == "float64"


# Mean-field VI on the singular model is left out here on purpose: it overestimates the
# 3-3-3 LLC (~6.4 against 4.0), which test_vi_on_singular_model_is_biased asserts.
RECOVERABLE = [
    (target, sampler)
    for target in ("linear", "rrlinear")
    for sampler in ("sgld", "vi", "hmc", "mclmc")
    if (target, sampler) != ("rrlinear", "vi")
]


@pytest.mark.parametrize(("target", "sampler"), RECOVERABLE)
def test_sampler_recovers_known_llc(built: dict[str, dict], target: str, sampler: str) -> None:
    est = _run(built, target, sampler)
    assert est.known is not None
    assert math.isfinite(est.llc)
    assert abs(est.llc - est.known) <= TOLERANCE[sampler] * est.known, est


def test_vi_on_singular_model_is_biased(built: dict[str, dict]) -> None:
    """Documents the known failure instead of loosening VI's tolerance to hide it."""
    est = _run(built, "rrlinear", "vi")
    assert est.llc > 1.3 * est.known  # type: ignore[operator]


def test_singular_estimate_is_far_below_regular_bound(built: dict[str, dict]) -> None:
    """The estimator distinguishes λ = 4 from d/2 = 9: a check that it measures degeneracy."""
    est = _run(built, "rrlinear", "hmc")
    assert est.llc < 0.6 * regular_llc(18)


def test_build_is_a_cache_hit(built: dict[str, dict], tmp_path: Path) -> None:
    first = build_target_task(asdict(TARGETS["linear"]), str(tmp_path), strict=False)
    again = build_target_task(asdict(TARGETS["linear"]), str(tmp_path), strict=False)
    assert not first["cache_hit"]
    assert again["cache_hit"]
    assert again["path"] == first["path"]
    assert again["loss_star"] == first["loss_star"]
    renamed = asdict(TARGETS["linear"]) | {"name": "other_name"}
    assert build_target_task(renamed, str(tmp_path), strict=False)["cache_hit"]
    changed = asdict(TARGETS["linear"]) | {"seed": 7}
    other = build_target_task(changed, str(tmp_path), strict=False)
    assert not other["cache_hit"]
    assert other["path"] != first["path"]
