"""Samplers of the localized tempered posterior around w*.

    p(w) ∝ exp(−nβ·L_n(w) − γ/2·‖w − w*‖²),   β = 1/log n

Each sampler returns, per chain and draw, the LLC observable nβ·(L_n(w) − L_n(w*)); its
mean over draws is the LLC estimate. Everything runs in the dtype of the arrays handed
in: the caller decides the precision (see :mod:`lambda_hat.precision`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import blackjax
import jax
import jax.numpy as jnp
import optax

from lambda_hat.models import Model

Array = jax.Array


@dataclass(frozen=True)
class Posterior:
    """The localized tempered posterior of one target, in one dtype."""

    model: Model
    x: Array
    y: Array
    w_star: Array
    noise: float
    n_beta: float
    gamma: float

    def loss(self, w: Array, x: Array | None = None, y: Array | None = None) -> Array:
        x = self.x if x is None else x
        y = self.y if y is None else y
        residual = y - self.model.predict(w, x)
        return jnp.mean(jnp.sum(residual**2, axis=-1)) / (2.0 * self.noise**2)

    @property
    def loss_star(self) -> Array:
        # Recomputed in the run's dtype: subtracting a float64 L_n(w*) from a float32
        # L_n(w) would bias every draw by the rounding of L_n(w*).
        return self.loss(self.w_star)

    def logdensity(self, w: Array) -> Array:
        return -self.n_beta * self.loss(w) - 0.5 * self.gamma * jnp.sum((w - self.w_star) ** 2)

    def llc_observable(self, w: Array) -> Array:
        return self.n_beta * (self.loss(w) - self.loss_star)


@dataclass(frozen=True)
class SamplerRun:
    """Per-chain LLC observable traces; draws before ``burn_in`` are warm-up."""

    traces: Array  # chains × draws
    burn_in: int
    info: dict[str, Any]


def _param(params: dict[str, Any], name: str, default: Any) -> Any:
    return params.get(name, default)


def sgld(post: Posterior, key: Array, chains: int, params: dict[str, Any]) -> SamplerRun:
    """Minibatch SGLD: w ← w + ε/2·∇log p̂(w) + N(0, ε), with a minibatch estimate of L_n."""
    step_size = float(_param(params, "step_size", 1e-4))
    batch_size = int(_param(params, "batch_size", 256))
    steps = int(_param(params, "steps", 4000))
    burn_in = int(_param(params, "burn_in", steps // 4))
    thin = int(_param(params, "thin", 1))
    n = post.x.shape[0]
    eps = jnp.asarray(step_size, post.w_star.dtype)

    def minibatch_logdensity(w: Array, idx: Array) -> Array:
        batch_loss = post.loss(w, post.x[idx], post.y[idx])
        return -post.n_beta * batch_loss - 0.5 * post.gamma * jnp.sum((w - post.w_star) ** 2)

    grad = jax.grad(minibatch_logdensity)

    def chain(key: Array) -> Array:
        def step(w: Array, key: Array) -> tuple[Array, Array]:
            k_batch, k_noise = jax.random.split(key)
            idx = jax.random.choice(k_batch, n, (batch_size,), replace=False)
            noise = jax.random.normal(k_noise, w.shape, w.dtype)
            w = w + 0.5 * eps * grad(w, idx) + jnp.sqrt(eps) * noise
            return w, post.llc_observable(w)

        _, obs = jax.lax.scan(step, post.w_star, jax.random.split(key, steps))
        return obs[::thin]

    traces = jax.jit(jax.vmap(chain))(jax.random.split(key, chains))
    return SamplerRun(traces, burn_in // thin, {"step_size": step_size, "batch_size": batch_size})


def vi(post: Posterior, key: Array, chains: int, params: dict[str, Any]) -> SamplerRun:
    """Mean-field Gaussian VI; each chain is an independent fit, its draws iid from q.

    The ELBO E_q[log p(w)] + H[q] is maximized with Adam on reparameterized samples.
    Mean-field q matches E_q[(w−w*)ᵀH(w−w*)] = Σ H_ii Var_i exactly for a quadratic
    target, so it is right for regular models and biased high for singular ones, whose
    posterior mass spreads along a thin curved valley a product of Gaussians cannot
    follow: q must put mass off the valley, where the loss is higher. On the 3-3-3
    rank-1 network (LLC 4.0) it gives about 6.4; full-rank Gaussians (about 6.8) and
    small RealNVP flows (4.8 to 6.4, mostly above 5.0) were tried; none got within 20%
    repeatably.
    """
    steps = int(_param(params, "steps", 2000))
    lr = float(_param(params, "learning_rate", 0.01))
    mc = int(_param(params, "mc_samples", 8))
    draws = int(_param(params, "draws", 1000))
    init_log_std = float(_param(params, "init_log_std", -3.0))
    dim = post.w_star.shape[0]
    opt = optax.adam(lr)

    def neg_elbo(q: tuple[Array, Array], key: Array) -> Array:
        mu, log_std = q
        eps = jax.random.normal(key, (mc, dim), mu.dtype)
        ws = mu + jnp.exp(log_std) * eps
        return -(jnp.mean(jax.vmap(post.logdensity)(ws)) + jnp.sum(log_std))

    def fit(key: Array) -> Array:
        k_fit, k_draw = jax.random.split(key)
        q = (post.w_star, jnp.full((dim,), init_log_std, post.w_star.dtype))

        def step(carry, key):
            q, state = carry
            value, g = jax.value_and_grad(neg_elbo)(q, key)
            updates, state = opt.update(g, state)
            return (optax.apply_updates(q, updates), state), value

        (q, _), losses = jax.lax.scan(step, (q, opt.init(q)), jax.random.split(k_fit, steps))
        mu, log_std = q
        ws = mu + jnp.exp(log_std) * jax.random.normal(k_draw, (draws, dim), mu.dtype)
        return jax.vmap(post.llc_observable)(ws), losses[-1]

    traces, final_neg_elbo = jax.jit(jax.vmap(fit))(jax.random.split(key, chains))
    return SamplerRun(traces, 0, {"final_neg_elbo": [float(v) for v in final_neg_elbo]})


def hmc(post: Posterior, key: Array, chains: int, params: dict[str, Any]) -> SamplerRun:
    """HMC with Stan-style window adaptation of step size and diagonal mass matrix.

    ``algorithm: nuts`` (default) picks trajectory lengths by the no-U-turn rule;
    ``algorithm: hmc`` uses ``num_integration_steps`` fixed leapfrog steps. Fixed lengths
    mix badly on near-Gaussian posteriors (regular models): after mass-matrix adaptation
    the whitened posterior is isotropic and a fixed trajectory can return near its start
    (seen here: ESS 15 of 2400 draws on linear regression).
    """
    warmup = int(_param(params, "warmup", 500))
    draws = int(_param(params, "draws", 1000))
    algorithm = str(_param(params, "algorithm", "nuts"))
    target = float(_param(params, "target_acceptance", 0.8))
    extra = {}
    if algorithm == "hmc":
        extra["num_integration_steps"] = int(_param(params, "num_integration_steps", 10))
    elif algorithm != "nuts":
        raise ValueError(f"hmc algorithm must be 'nuts' or 'hmc', not {algorithm!r}")
    family = blackjax.nuts if algorithm == "nuts" else blackjax.hmc

    def chain(key: Array) -> tuple[Array, Array, Array]:
        k_warm, k_draw = jax.random.split(key)
        adapt = blackjax.window_adaptation(
            family, post.logdensity, target_acceptance_rate=target, **extra
        )
        (state, tuned), _ = adapt.run(k_warm, post.w_star, num_steps=warmup)
        kernel = family(post.logdensity, **tuned)

        def step(state, key):
            state, info = kernel.step(key, state)
            return state, (post.llc_observable(state.position), info.acceptance_rate)

        _, (obs, acc) = jax.lax.scan(step, state, jax.random.split(k_draw, draws))
        return obs, jnp.mean(acc), tuned["step_size"]

    traces, acc, step_size = _per_chain(chain, key, chains)
    info = {"algorithm": algorithm, "acceptance": _floats(acc), "step_size": _floats(step_size)}
    return SamplerRun(traces, 0, info)


def mclmc(post: Posterior, key: Array, chains: int, params: dict[str, Any]) -> SamplerRun:
    """Microcanonical Langevin MC, L and step size from blackjax's tuner."""
    tune_steps = int(_param(params, "tune_steps", 2000))
    draws = int(_param(params, "draws", 2000))
    diagonal = bool(_param(params, "diagonal_preconditioning", True))
    energy_var = float(_param(params, "desired_energy_var", 5e-4))

    def chain(key: Array) -> tuple[Array, Array, Array]:
        k_init, k_tune, k_draw = jax.random.split(key, 3)
        state = blackjax.mcmc.mclmc.init(post.w_star, post.logdensity, k_init)
        kernel = blackjax.mcmc.mclmc.build_kernel(desired_energy_var=energy_var)
        state, tuned, _ = blackjax.mclmc_find_L_and_step_size(
            mclmc_kernel=kernel,
            num_steps=tune_steps,
            state=state,
            rng_key=k_tune,
            logdensity_fn=post.logdensity,
            diagonal_preconditioning=diagonal,
            desired_energy_var=energy_var,
        )
        sampler = blackjax.mclmc(
            post.logdensity,
            L=tuned.L,
            step_size=tuned.step_size,
            inverse_mass_matrix=tuned.inverse_mass_matrix,
        )

        def step(state, key):
            state, _ = sampler.step(key, state)
            return state, post.llc_observable(state.position)

        _, obs = jax.lax.scan(step, state, jax.random.split(k_draw, draws))
        return obs, tuned.L, tuned.step_size

    traces, big_l, step_size = _per_chain(chain, key, chains)
    return SamplerRun(traces, 0, {"L": _floats(big_l), "step_size": _floats(step_size)})


def _per_chain(chain: Callable, key: Array, chains: int):
    # vmap: all chains in one compiled program, so the XLA compile is paid once.
    return jax.jit(jax.vmap(chain))(jax.random.split(key, chains))


def _floats(a: Array) -> list[float]:
    return [float(v) for v in jnp.atleast_1d(a)]


SAMPLERS: dict[str, Callable[[Posterior, Array, int, dict[str, Any]], SamplerRun]] = {
    "sgld": sgld,
    "vi": vi,
    "hmc": hmc,
    "mclmc": mclmc,
}
