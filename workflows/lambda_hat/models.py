"""Model families on flat parameter vectors.

Samplers work on one flat vector w; each family knows how to slice it into its weights.
Keeping parameters flat makes every sampler family-agnostic and the dtype of a run the
dtype of one array.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from lambda_hat.config import TargetConfig
from lambda_hat.known import reduced_rank_llc, regular_llc

Array = jax.Array


@dataclass(frozen=True)
class Model:
    """A family instance: shapes, the forward map, a teacher and the known LLC if any."""

    in_dim: int
    out_dim: int
    shapes: tuple[tuple[int, ...], ...]
    forward: Callable[[list[Array], Array], Array]
    known_llc: float | None

    @property
    def num_params(self) -> int:
        return sum(math.prod(s) for s in self.shapes)

    def unflatten(self, w: Array) -> list[Array]:
        parts, start = [], 0
        for shape in self.shapes:
            size = math.prod(shape)
            parts.append(w[start : start + size].reshape(shape))
            start += size
        return parts

    def predict(self, w: Array, x: Array) -> Array:
        return self.forward(self.unflatten(w), x)


def _linear(ws: list[Array], x: Array) -> Array:
    return x @ ws[0]


def _two_layer_linear(ws: list[Array], x: Array) -> Array:
    a, b = ws  # a: hidden × in, b: out × hidden
    return x @ a.T @ b.T


def _mlp(ws: list[Array], x: Array) -> Array:
    h = x
    for w in ws[:-1]:
        h = jnp.tanh(h @ w)
    return h @ ws[-1]


def make_model(t: TargetConfig) -> Model:
    if t.model == "linear":
        return Model(t.d, 1, ((t.d, 1),), _linear, regular_llc(t.d))
    if t.model == "rrlinear":
        shapes = ((t.hidden, t.in_dim), (t.out_dim, t.hidden))
        known = reduced_rank_llc(t.in_dim, t.hidden, t.out_dim, t.rank)
        return Model(t.in_dim, t.out_dim, shapes, _two_layer_linear, known)
    dims = (t.in_dim, *t.widths, t.out_dim)
    shapes = tuple(itertools.pairwise(dims))
    # No closed form for a tanh MLP: d/2 is only an upper bound, so report none.
    return Model(t.in_dim, t.out_dim, shapes, _mlp, None)


def teacher_params(t: TargetConfig, model: Model, key: Array) -> Array:
    """The true parameter; for rrlinear, hidden units beyond ``rank`` are switched off."""
    parts = [
        jax.random.normal(k, s)
        for k, s in zip(jax.random.split(key, len(model.shapes)), model.shapes, strict=True)
    ]
    if t.model == "rrlinear":
        a, b = parts
        mask = (jnp.arange(t.hidden) < t.rank).astype(a.dtype)
        parts = [a * mask[:, None], b * mask[None, :]]
    elif t.model == "mlp":
        parts = [p / math.sqrt(p.shape[0]) for p in parts]
    return jnp.concatenate([p.ravel() for p in parts])
