"""Model families on flat parameter vectors.

Samplers work on one flat vector w; each family knows how to slice it into its weights.
Keeping parameters flat makes every sampler family-agnostic and the dtype of a run the
dtype of one array.

Every family is linear in its last layer: predict(w, x) = φ(front, x)·W, with W the last
layer as a features × outputs matrix and φ the features the earlier layers compute. VI
uses this to integrate the last layer out exactly (see :func:`lambda_hat.samplers.vi`).
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
    """A family instance: shapes, the features map, a teacher and the known LLC if any.

    ``features`` maps the weights of every layer but the last, and inputs x, to φ
    (samples × features). The last block of w is stored as ``shapes[-1]``; it is the
    features × outputs matrix W itself, or its transpose if ``last_transposed``.
    """

    in_dim: int
    out_dim: int
    shapes: tuple[tuple[int, ...], ...]
    features: Callable[[list[Array], Array], Array]
    known_llc: float | None
    last_transposed: bool = False

    @property
    def num_params(self) -> int:
        return sum(math.prod(s) for s in self.shapes)

    @property
    def num_front(self) -> int:
        """Number of parameters before the last layer."""
        return self.num_params - math.prod(self.shapes[-1])

    def unflatten(self, w: Array, shapes: tuple[tuple[int, ...], ...] | None = None) -> list[Array]:
        parts, start = [], 0
        for shape in self.shapes if shapes is None else shapes:
            size = math.prod(shape)
            parts.append(w[start : start + size].reshape(shape))
            start += size
        return parts

    def last_matrix(self, last: Array) -> Array:
        """The flat last block as the features × outputs matrix W."""
        m = last.reshape(self.shapes[-1])
        return m.T if self.last_transposed else m

    def flat_last(self, m: Array) -> Array:
        """Inverse of :meth:`last_matrix`."""
        return (m.T if self.last_transposed else m).reshape(-1)

    def front_features(self, front: Array, x: Array) -> Array:
        """φ(front, x) from the flat parameters before the last layer."""
        return self.features(self.unflatten(front, self.shapes[:-1]), x)

    def predict(self, w: Array, x: Array) -> Array:
        parts = self.unflatten(w)
        return self.features(parts[:-1], x) @ self.last_matrix(parts[-1])


def _identity(ws: list[Array], x: Array) -> Array:
    return x


def _hidden_linear(ws: list[Array], x: Array) -> Array:
    (a,) = ws  # a: hidden × in; the last layer b: out × hidden, stored transposed
    return x @ a.T


def _tanh_layers(ws: list[Array], x: Array) -> Array:
    h = x
    for w in ws:
        h = jnp.tanh(h @ w)
    return h


def make_model(t: TargetConfig) -> Model:
    if t.model == "linear":
        return Model(t.d, 1, ((t.d, 1),), _identity, regular_llc(t.d))
    if t.model == "rrlinear":
        shapes = ((t.hidden, t.in_dim), (t.out_dim, t.hidden))
        known = reduced_rank_llc(t.in_dim, t.hidden, t.out_dim, t.rank)
        return Model(t.in_dim, t.out_dim, shapes, _hidden_linear, known, last_transposed=True)
    dims = (t.in_dim, *t.widths, t.out_dim)
    shapes = tuple(itertools.pairwise(dims))
    # No closed form for a tanh MLP: d/2 is only an upper bound, so report none.
    return Model(t.in_dim, t.out_dim, shapes, _tanh_layers, None)


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
