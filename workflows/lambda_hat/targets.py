"""Build a target: teacher-student data, a student trained to w*, stored by content.

A target directory is named by :meth:`TargetConfig.key`, so building a target that
exists is a cache hit, and concurrent builds of the same target cannot corrupt each
other (each writes a private directory and renames it into place).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lambda_hat.config import TargetConfig
from lambda_hat.models import Model, make_model, teacher_params
from lambda_hat.precision import placement, x64_enabled

Array = jax.Array


def beta_for(n: int) -> float:
    """The WBIC inverse temperature β = 1/log n."""
    return 1.0 / math.log(n)


def make_loss(model: Model, x: Array, y: Array, noise: float):
    """L_n(w): the average Gaussian negative log-likelihood per sample, without constant."""
    scale = 1.0 / (2.0 * noise**2)

    def loss(w: Array) -> Array:
        residual = y - model.predict(w, x)
        return scale * jnp.mean(jnp.sum(residual**2, axis=-1))

    return loss


def generate_data(t: TargetConfig, model: Model) -> tuple[Array, Array, Array]:
    key_teacher, key_x, key_noise = jax.random.split(jax.random.key(t.seed), 3)
    w0 = teacher_params(t, model, key_teacher)
    x = jax.random.normal(key_x, (t.n, model.in_dim))
    y = model.predict(w0, x) + t.noise * jax.random.normal(key_noise, (t.n, model.out_dim))
    return x, y, w0


def train(t: TargetConfig, model: Model, loss, key: Array) -> tuple[Array, dict[str, Any]]:
    """Adam from a small init, then L-BFGS to polish.

    A small init keeps the deep-linear student near the low-rank, balanced solutions
    gradient descent finds in practice; L-BFGS then puts w* at the minimum to the
    precision of the dtype, since the LLC estimator measures L_n(w) − L_n(w*) and an
    off-minimum w* biases it by the gradient term.
    """
    w = t.init_scale * jax.random.normal(key, (model.num_params,))
    adam = optax.adam(t.learning_rate)

    @jax.jit
    def adam_phase(w: Array) -> Array:
        def step(carry, _):
            w, opt = carry
            g = jax.grad(loss)(w)
            updates, opt = adam.update(g, opt)
            return (optax.apply_updates(w, updates), opt), None

        (w, _), _ = jax.lax.scan(step, (w, adam.init(w)), None, length=t.train_steps)
        return w

    w = adam_phase(w)
    lbfgs = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)

    @jax.jit
    def lbfgs_phase(w: Array) -> Array:
        def step(carry, _):
            w, opt = carry
            value, g = value_and_grad(w, state=opt)
            updates, opt = lbfgs.update(g, opt, w, value=value, grad=g, value_fn=loss)
            return (optax.apply_updates(w, updates), opt), None

        (w, _), _ = jax.lax.scan(step, (w, lbfgs.init(w)), None, length=200)
        return w

    w = lbfgs_phase(w)
    grad_norm = float(jnp.linalg.norm(jax.grad(loss)(w)))
    return w, {"grad_norm": grad_norm, "adam_steps": t.train_steps, "lbfgs_steps": 200}


def target_dir(root: str | Path, t: TargetConfig) -> Path:
    return Path(root) / "targets" / t.key()


def load_target(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metadata and arrays (x, y, w_star, w_teacher) of a built target."""
    path = Path(path)
    meta = json.loads((path / "meta.json").read_text())
    with np.load(path / "data.npz") as data, np.load(path / "params.npz") as params:
        arrays = {**{k: data[k] for k in data.files}, **{k: params[k] for k in params.files}}
    return meta, arrays


def build_target(t: TargetConfig, root: str | Path, executor: str | None = None) -> dict[str, Any]:
    """Build ``t`` under ``root`` unless it is there already; return its metadata.

    The returned dict has ``cache_hit`` and ``path`` besides what ``meta.json`` stores.
    """
    final = target_dir(root, t)
    if (final / "meta.json").exists():
        meta = json.loads((final / "meta.json").read_text())
        return {**meta, "cache_hit": True, "path": str(final), "placement": placement(executor)}

    start = time.perf_counter()
    model = make_model(t)
    x, y, w0 = generate_data(t, model)
    loss = make_loss(model, x, y, t.noise)
    w_star, info = train(t, model, loss, jax.random.key(t.seed + 1))
    meta = {
        "target": t.model_dump(),
        "key": t.key(),
        "num_params": model.num_params,
        "known_llc": model.known_llc,
        "beta": beta_for(t.n),
        "loss_star": float(loss(w_star)),
        "loss_teacher": float(loss(w0)),
        "dtype": str(w_star.dtype),
        "x64": x64_enabled(),
        "train": info,
        "build_seconds": time.perf_counter() - start,
    }
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{t.key()}-", dir=final.parent))
    np.savez(tmp / "data.npz", x=np.asarray(x), y=np.asarray(y))
    np.savez(tmp / "params.npz", w_star=np.asarray(w_star), w_teacher=np.asarray(w0))
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    try:
        os.rename(tmp, final)
    except OSError:
        # Another build of the same target won the race; its artifacts are equivalent.
        shutil.rmtree(tmp, ignore_errors=True)
    return {**meta, "cache_hit": False, "path": str(final), "placement": placement(executor)}
