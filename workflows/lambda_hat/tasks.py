"""The two task bodies, as plain functions: Parsl apps in :mod:`lambda_hat.workflow`
wrap them, and tests call them in-process.

Arguments and results are plain dicts and numpy arrays so they pickle between the
submitting process and workers of either precision.
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lambda_hat.config import parse_sampler, parse_target
from lambda_hat.models import make_model
from lambda_hat.precision import check_dtype, placement, precision_scope
from lambda_hat.samplers import SAMPLERS, Posterior
from lambda_hat.targets import build_target, load_target

# Targets are trained in float64 so w* sits at the minimum to float64 precision; float32
# samplers then round it, which costs them nothing they could resolve anyway.
BUILD_DTYPE = "float64"


def build_target_task(
    target: dict[str, Any], root: str, executor: str | None = None, strict: bool = True
) -> dict[str, Any]:
    started = time.time()
    with precision_scope(BUILD_DTYPE, strict=strict):
        meta = build_target(parse_target(target), root, executor)
    return {**meta, "started": started, "finished": time.time()}


def make_posterior(
    meta: dict[str, Any], arrays: dict[str, np.ndarray], dtype: str, gamma: float
) -> Posterior:
    t = parse_target(meta["target"])
    cast = {k: jnp.asarray(arrays[k], dtype=dtype) for k in ("x", "y", "w_star")}
    for name, array in cast.items():
        check_dtype(name, array, dtype)  # type: ignore[arg-type]
    return Posterior(
        make_model(t), cast["x"], cast["y"], cast["w_star"], t.noise, t.n * meta["beta"], gamma
    )


def run_sampler_task(
    target_meta: dict[str, Any],
    sampler: dict[str, Any],
    gamma: float,
    executor: str | None = None,
    strict: bool = True,
) -> dict[str, Any]:
    """Run one sampler on one built target; return traces and where/how it ran."""
    s = parse_sampler(sampler)
    started = time.time()
    start = time.perf_counter()
    with precision_scope(s.dtype, strict=strict):
        meta, arrays = load_target(target_meta["path"])
        post = make_posterior(meta, arrays, s.dtype, gamma)
        key = jax.random.key(s.seed)
        run = SAMPLERS[s.kind](post, key, s.chains, s.params)
        traces = np.asarray(run.traces)
        check_dtype("traces", traces, s.dtype)
        loss_star = float(post.loss_star)
        where = placement(executor)
    return {
        "target": meta["target"]["name"],
        "target_key": meta["key"],
        "known_llc": meta["known_llc"],
        "num_params": meta["num_params"],
        "sampler": s.model_dump(),
        "gamma": gamma,
        "n_beta": post.n_beta,
        "dtype": str(traces.dtype),
        "loss_star": loss_star,
        "traces": traces,
        "burn_in": run.burn_in,
        "info": run.info,
        "seconds": time.perf_counter() - start,
        "placement": where,
        "started": started,
        "finished": time.time(),
    }
