"""The experiment configuration: a YAML file validated into frozen pydantic models.

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

Every model forbids keys it does not define: a misspelt key, in a target, a sampler or a
sampler's ``params``, is an error that names it and the file, never a silently used
default. A target's fields depend on its ``model`` family, a sampler's ``params`` on its
``kind``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

Dtype = Literal["float32", "float64"]
ModelFamily = Literal["linear", "rrlinear", "mlp"]

# Bump when the way a target is built changes, so old cached artifacts are not reused.
# 2: per-family target models; a target's key hashes only its family's fields.
TARGET_SCHEMA = 2


class ConfigError(ValueError):
    """The YAML does not describe a valid experiment; the message names the key."""


class Strict(BaseModel):
    """Frozen, and no key beyond the fields: a typo is an error, not a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# -- targets ---------------------------------------------------------------------------------


class _Target(Strict):
    """A teacher-student regression problem and how to train the student to w*."""

    name: str
    n: int = Field(ge=2, description="β = 1/log n needs n >= 2")
    noise: float = Field(1.0, gt=0)
    seed: int = 0
    train_steps: int = Field(3000, ge=0)
    learning_rate: float = Field(0.01, gt=0)
    init_scale: float = 0.1
    cost: float | None = None
    """Planning hint: seconds the build takes on a node of speed 1."""

    def key(self) -> str:
        """Content address of the target: everything that determines its artifacts.

        The name and the planning hint are left out: neither changes what is built.
        """
        fields = self.model_dump(exclude={"name", "cost"}) | {"schema": TARGET_SCHEMA}
        blob = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


class LinearTarget(_Target):
    """y = x·w with ``d`` parameters."""

    model: Literal["linear"]
    d: int = Field(ge=1)


class RRLinearTarget(_Target):
    """y = B A x, A: hidden × in_dim, B: out_dim × hidden, teacher of rank ``rank``."""

    model: Literal["rrlinear"]
    in_dim: int = Field(ge=1)
    hidden: int = Field(ge=1)
    out_dim: int = Field(ge=1)
    rank: int = Field(ge=0)

    @model_validator(mode="after")
    def _rank_fits(self) -> RRLinearTarget:
        if self.rank > min(self.in_dim, self.hidden, self.out_dim):
            raise ValueError("rank must be <= min(in_dim, hidden, out_dim)")
        return self


class MLPTarget(_Target):
    """A tanh network with hidden layers of ``widths`` units, teacher of the same shape."""

    model: Literal["mlp"]
    in_dim: int = Field(ge=1)
    widths: tuple[Annotated[int, Field(ge=1)], ...] = Field(min_length=1)
    out_dim: int = Field(ge=1)


TargetConfig = Annotated[LinearTarget | RRLinearTarget | MLPTarget, Field(discriminator="model")]


# -- samplers: their params, then the samplers ---------------------------------------------


class SgldParams(Strict):
    step_size: float = Field(1e-4, gt=0)
    batch_size: int = Field(256, ge=1)
    steps: int = Field(4000, ge=1)
    burn_in: int | None = Field(None, ge=0, description="default: steps // 4")
    thin: int = Field(1, ge=1)


class ViParams(Strict):
    """See :func:`lambda_hat.samplers.vi` for what each parameter does."""

    collapse: bool = True
    family: Literal["auto", "fullrank", "meanfield"] = "auto"
    importance: bool = True
    steps: int = Field(1000, ge=1)
    learning_rate: float = Field(0.01, gt=0)
    iw_samples: int = Field(8, ge=1)
    mc_samples: int = Field(2, ge=1)
    draws: int = Field(1000, ge=1)
    proposals: int = Field(4000, ge=1)
    proposal_df: int | None = Field(5, ge=1, description="null: proposals from q itself")
    init_log_std: float = -3.0


class HmcParams(Strict):
    algorithm: Literal["nuts", "hmc"] = "nuts"
    warmup: int = Field(500, ge=1)
    draws: int = Field(1000, ge=1)
    target_acceptance: float = Field(0.8, gt=0, lt=1)
    num_integration_steps: int = Field(10, ge=1, description="algorithm: hmc only")


class MclmcParams(Strict):
    tune_steps: int = Field(2000, ge=1)
    draws: int = Field(2000, ge=1)
    diagonal_preconditioning: bool = True
    desired_energy_var: float = Field(5e-4, gt=0)


class _Sampler(Strict):
    """A sampler and its hyperparameters; ``dtype`` decides which executor runs it."""

    name: str
    dtype: Dtype
    chains: int = Field(4, ge=1)
    seed: int = 0
    cost: float | None = None
    """Planning hint: seconds the sampler takes on a node of speed 1."""
    gamma: float | None = None


class SgldSampler(_Sampler):
    kind: Literal["sgld"]
    params: SgldParams = SgldParams()


class ViSampler(_Sampler):
    kind: Literal["vi"]
    params: ViParams = ViParams()


class HmcSampler(_Sampler):
    kind: Literal["hmc"]
    params: HmcParams = HmcParams()


class MclmcSampler(_Sampler):
    kind: Literal["mclmc"]
    params: MclmcParams = MclmcParams()


SamplerConfig = Annotated[
    SgldSampler | ViSampler | HmcSampler | MclmcSampler, Field(discriminator="kind")
]


# -- the experiment ----------------------------------------------------------------------------


class ExperimentConfig(Strict):
    experiment: str
    targets: tuple[TargetConfig, ...]
    samplers: tuple[SamplerConfig, ...]
    gamma: float = 100.0
    artifacts: str = "artifacts/lambda_hat"
    out: str = "out"
    parsl: str | None = None

    @field_validator("targets", "samplers")
    @classmethod
    def _unique_names(cls, entries: tuple[Any, ...]) -> tuple[Any, ...]:
        names = [e.name for e in entries]
        if len(set(names)) != len(names):
            raise ValueError(f"names must be unique: {names}")
        return entries

    def gamma_for(self, sampler: SamplerConfig) -> float:
        return self.gamma if sampler.gamma is None else sampler.gamma


_TARGET = TypeAdapter(TargetConfig)
_SAMPLER = TypeAdapter(SamplerConfig)


def _tags(entry: dict[str, Any]) -> tuple[Any, ...]:
    return (entry.get("kind"), entry.get("model"))


def where(loc: tuple[int | str, ...], raw: Any) -> str:
    """A pydantic error location as the YAML reads: ``samplers[0] ('sgld').params.step``.

    Walks the raw data beside the location, so list entries are shown with their name and
    the discriminator tags pydantic inserts (the ``kind`` or ``model`` value) are left out.
    """
    parts: list[str] = []
    for step in loc:
        if isinstance(raw, list) and isinstance(step, int) and step < len(raw):
            raw = raw[step]
            name = raw.get("name") if isinstance(raw, dict) else None
            parts.append(f"[{step}]" + (f" ({name!r})" if name else ""))
        elif isinstance(raw, dict) and step not in raw and step in _tags(raw):
            continue  # pydantic's union tag, not a key of the file
        else:
            raw = raw.get(step) if isinstance(raw, dict) else None
            parts.append(f".{step}" if parts else str(step))
    return "".join(parts) or "top level"


def _validate[T](adapter: TypeAdapter[T], raw: Any, source: str) -> T:
    try:
        return adapter.validate_python(raw)
    except ValidationError as e:
        problems = "; ".join(f"{where(err['loc'], raw)}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"{source}: {problems}") from None


def parse_yaml[T](model: type[T], raw: Any, source: str) -> T:
    """*raw* (what ``yaml.safe_load`` read from *source*) as a *model*, or a ConfigError."""
    return _validate(TypeAdapter(model), raw, source)


def parse_target(raw: dict[str, Any], source: str = "target") -> TargetConfig:
    return _validate(_TARGET, raw, source)


def parse_sampler(raw: dict[str, Any], source: str = "sampler") -> SamplerConfig:
    return _validate(_SAMPLER, raw, source)


def parse_config(raw: Any, source: str = "config") -> ExperimentConfig:
    return parse_yaml(ExperimentConfig, raw, source)


def load_config(path: str | Path) -> ExperimentConfig:
    with open(path) as f:
        return parse_config(yaml.safe_load(f), str(path))
