"""The experiment configuration: a YAML file read into frozen dataclasses.

Example (see ``config/small.yaml``)::

    experiment: small
    gamma: 100.0                 # localization strength, shared unless a sampler overrides
    targets:
      - {name: linear_d6, model: linear, d: 6, n: 2000, noise: 1.0, seed: 0}
      - {name: rr333_r1, model: rrlinear, in_dim: 3, hidden: 3, out_dim: 3, rank: 1,
         n: 2000, noise: 1.0, seed: 1}
    samplers:
      - {name: sgld, kind: sgld, dtype: float32, chains: 4, cost: 20,
         params: {step_size: 1.0e-4, batch_size: 256, steps: 4000, burn_in: 1000}}
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

Dtype = Literal["float32", "float64"]
ModelFamily = Literal["linear", "rrlinear", "mlp"]
SamplerKind = Literal["sgld", "vi", "hmc", "mclmc"]

MODEL_FAMILIES: tuple[str, ...] = ("linear", "rrlinear", "mlp")
SAMPLER_KINDS: tuple[str, ...] = ("sgld", "vi", "hmc", "mclmc")
DTYPES: tuple[str, ...] = ("float32", "float64")

# Bump when the way a target is built changes, so old cached artifacts are not reused.
TARGET_SCHEMA = 1


@dataclass(frozen=True)
class TargetConfig:
    """A teacher-student regression problem and how to train the student to w*.

    ``linear``: y = x·w, ``d`` parameters. ``rrlinear``: y = B A x with A: hidden × in_dim,
    B: out_dim × hidden, teacher of rank ``rank``. ``mlp``: tanh network with ``hidden``
    units per layer in ``widths``, teacher of the same shape.
    """

    name: str
    model: ModelFamily
    n: int
    noise: float = 1.0
    seed: int = 0
    d: int = 0
    in_dim: int = 0
    hidden: int = 0
    out_dim: int = 0
    rank: int = 0
    widths: tuple[int, ...] = ()
    train_steps: int = 3000
    learning_rate: float = 0.01
    init_scale: float = 0.1
    cost: float | None = None
    """Planning hint: seconds the build takes on a node of speed 1."""

    def key(self) -> str:
        """Content address of the target: everything that determines its artifacts.

        The name and the planning hint are left out: neither changes what is built.
        """
        fields = asdict(self)
        fields.pop("name")
        fields.pop("cost")
        fields["schema"] = TARGET_SCHEMA
        blob = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SamplerConfig:
    """A sampler and its hyperparameters; ``dtype`` decides which executor runs it."""

    name: str
    kind: SamplerKind
    dtype: Dtype
    chains: int = 4
    seed: int = 0
    cost: float | None = None
    """Planning hint: seconds the sampler takes on a node of speed 1."""
    gamma: float | None = None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExperimentConfig:
    experiment: str
    targets: tuple[TargetConfig, ...]
    samplers: tuple[SamplerConfig, ...]
    gamma: float = 100.0
    artifacts: str = "artifacts/lambda_hat"
    out: str = "out"
    parsl: str | None = None

    def gamma_for(self, sampler: SamplerConfig) -> float:
        return self.gamma if sampler.gamma is None else sampler.gamma


class ConfigError(ValueError):
    """The YAML does not describe a valid experiment; the message names the field."""


def _target(raw: dict[str, Any]) -> TargetConfig:
    raw = dict(raw)
    if raw.get("model") not in MODEL_FAMILIES:
        raise ConfigError(f"target {raw.get('name')!r}: model must be one of {MODEL_FAMILIES}")
    if "widths" in raw:
        raw["widths"] = tuple(raw["widths"])
    try:
        target = TargetConfig(**raw)
    except TypeError as e:
        raise ConfigError(f"target {raw.get('name')!r}: {e}") from e
    _check_target(target)
    return target


def _check_target(t: TargetConfig) -> None:
    if t.n < 2:
        raise ConfigError(f"target {t.name!r}: n must be at least 2 (β = 1/log n)")
    if t.model == "linear" and t.d < 1:
        raise ConfigError(f"target {t.name!r}: linear needs d >= 1")
    if t.model == "rrlinear":
        if min(t.in_dim, t.hidden, t.out_dim) < 1:
            raise ConfigError(f"target {t.name!r}: rrlinear needs in_dim, hidden, out_dim")
        if not 0 <= t.rank <= min(t.in_dim, t.hidden, t.out_dim):
            raise ConfigError(f"target {t.name!r}: rank must be <= min(in_dim, hidden, out_dim)")
    if t.model == "mlp" and (t.in_dim < 1 or t.out_dim < 1 or not t.widths):
        raise ConfigError(f"target {t.name!r}: mlp needs in_dim, out_dim and widths")


def _sampler(raw: dict[str, Any]) -> SamplerConfig:
    if raw.get("kind") not in SAMPLER_KINDS:
        raise ConfigError(f"sampler {raw.get('name')!r}: kind must be one of {SAMPLER_KINDS}")
    if raw.get("dtype") not in DTYPES:
        raise ConfigError(f"sampler {raw.get('name')!r}: dtype must be one of {DTYPES}")
    try:
        return SamplerConfig(**raw)
    except TypeError as e:
        raise ConfigError(f"sampler {raw.get('name')!r}: {e}") from e


def parse_config(raw: dict[str, Any]) -> ExperimentConfig:
    raw = dict(raw)
    for key in ("experiment", "targets", "samplers"):
        if key not in raw:
            raise ConfigError(f"missing top-level key {key!r}")
    targets = tuple(_target(t) for t in raw.pop("targets"))
    samplers = tuple(_sampler(s) for s in raw.pop("samplers"))
    for kind, names in (
        ("target", [t.name for t in targets]),
        ("sampler", [s.name for s in samplers]),
    ):
        if len(set(names)) != len(names):
            raise ConfigError(f"{kind} names must be unique: {names}")
    try:
        return ExperimentConfig(targets=targets, samplers=samplers, **raw)
    except TypeError as e:
        raise ConfigError(str(e)) from e


def load_config(path: str | Path) -> ExperimentConfig:
    with open(path) as f:
        return parse_config(yaml.safe_load(f))
