"""lambda_hat's YAML files: the shipped ones parse, and every wrong or misspelt key is an
error that names the key and the file (nothing falls back to a default silently)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from lambda_hat.config import ConfigError, ViParams, load_config, parse_config
from lambda_hat.parsl_config import load_parsl_spec, only

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ["config/test.yaml", "config/small.yaml", "config/routing.yaml"]


def written(tmp_path: Path, raw: Any) -> Path:
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def small() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "config" / "small.yaml").read_text())


@pytest.mark.parametrize("path", CONFIGS)
def test_shipped_configs_parse(path: str) -> None:
    cfg = load_config(ROOT / path)
    assert {s.kind for s in cfg.samplers} == {"sgld", "vi", "hmc", "mclmc"}
    assert {s.dtype for s in cfg.samplers} == {"float32", "float64"}


def test_sampler_params_are_typed_per_kind() -> None:
    vi = next(s for s in load_config(ROOT / "config/small.yaml").samplers if s.kind == "vi")
    assert isinstance(vi.params, ViParams)
    assert vi.params.proposals == 4000  # from the file
    assert vi.params.iw_samples == ViParams().iw_samples  # the documented default


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        # A misspelt sampler parameter: once silently ignored, the default used instead.
        (lambda raw: raw["samplers"][0]["params"].update(step_sise=1e-3), "step_sise"),
        (lambda raw: raw["samplers"][3]["params"].update(draw=10), "draw"),
        # A key of another target family: rrlinear has no d.
        (lambda raw: raw["targets"][1].update(d=6), "d"),
        (lambda raw: raw["targets"][0].update(nosie=0.5), "nosie"),
        (lambda raw: raw.update(gama=3.0), "gama"),
    ],
)
def test_a_misspelt_key_is_an_error_naming_it_and_the_file(
    tmp_path: Path, edit: Any, named: str
) -> None:
    raw = small()
    edit(raw)
    path = written(tmp_path, raw)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    file, _, problem = str(error.value).partition(": ")
    assert file == str(path)
    assert re.match(rf"(.*\.)?{named}: Extra inputs are not permitted$", problem), problem


def test_errors_say_which_entry(tmp_path: Path) -> None:
    raw = small()
    raw["samplers"][1]["params"]["family"] = "fullrnak"
    with pytest.raises(ConfigError, match=r"samplers\[1\] \('vi'\)\.params\.family: Input"):
        load_config(written(tmp_path, raw))


def test_config_errors_name_the_field() -> None:
    base = {"experiment": "x", "targets": [], "samplers": []}
    with pytest.raises(ConfigError, match="dtype"):
        parse_config(base | {"samplers": [{"name": "s", "kind": "sgld", "dtype": "float16"}]})
    bad = {"name": "t", "model": "rrlinear", "n": 10, "in_dim": 2, "hidden": 2, "out_dim": 2}
    with pytest.raises(ConfigError, match="rank must be <="):
        parse_config(base | {"targets": [bad | {"rank": 3}]})
    with pytest.raises(ConfigError, match="names must be unique"):
        parse_config(base | {"targets": [bad | {"rank": 1}, bad | {"rank": 2}]})


def test_parsl_spec_loads_the_shipped_file() -> None:
    spec = load_parsl_spec(ROOT / "config" / "parsl" / "local.yaml")
    assert spec.labels == ("htex32", "htex64")
    x64 = only(spec, "htex64", workers=2)
    assert x64.labels == ("htex64",) and x64.executors[0].max_workers_per_node == 2
    with pytest.raises(ValueError, match="no executor 'htex16'"):
        only(spec, "htex16")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("executors:\n  - {label: a, max_worker_per_node: 1}\n", r"executors\[0\]\.max_worker_"),
        ("executors: []\n", "at least one executor"),
        ("executor:\n  - {label: a}\n", "executor: Extra inputs"),
        ("executors:\n  - {label: a}\nconfig: {run_dir: x}\n", "run_dir.*set by the loader"),
        ("- just a list\n", "top level: Input should be a valid dictionary"),
    ],
)
def test_parsl_spec_errors_name_the_key_and_the_file(
    tmp_path: Path, text: str, match: str
) -> None:
    path = tmp_path / "parsl.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as error:
        load_parsl_spec(path)
    assert str(error.value).startswith(f"{path}: ")
