"""The Kubernetes files (RBAC manifests, kind config, worker Dockerfile) and
scripts/test.py's config building, checked offline: schemas from kubernetes-validate,
no cluster, no Docker engine.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes.config import kube_config

from k8s_standin import StandInAPIServer, standin_node

ROOT = Path(__file__).resolve().parent.parent
K8S_VERSION = "1.37.0"
# A Kubernetes label value: at most 63 characters, alphanumeric at both ends.
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def rbac_documents() -> list[dict[str, Any]]:
    with open(ROOT / "k8s" / "rbac.yaml") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def test_rbac_manifests_are_valid_kubernetes_objects() -> None:
    docs = rbac_documents()
    assert [d["kind"] for d in docs] == ["Namespace", "ServiceAccount", "ClusterRole",
                                         "ClusterRoleBinding", "Role", "RoleBinding"]
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_rbac_grants_exactly_what_the_provider_needs() -> None:
    by_kind = {d["kind"]: d for d in rbac_documents()}
    account = by_kind["ServiceAccount"]["metadata"]
    assert by_kind["ClusterRole"]["rules"] == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]}]
    [pod_rule] = by_kind["Role"]["rules"]
    assert pod_rule["apiGroups"] == [""] and pod_rule["resources"] == ["pods"]
    assert set(pod_rule["verbs"]) == {"create", "get", "list", "watch", "delete"}
    assert by_kind["Role"]["metadata"]["namespace"] == account["namespace"]
    for binding, role in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        b = by_kind[binding]
        assert b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role,
                                "name": by_kind[role]["metadata"]["name"]}
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": account["name"],
                                  "namespace": account["namespace"]}]


def test_schema_validation_rejects_a_broken_manifest() -> None:
    broken = dict(rbac_documents()[2])
    broken["rules"] = [{"apiGroups": [""], "resources": "nodes", "verbs": ["get"]}]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_kind_config_has_a_control_plane_and_three_workers_of_different_speeds() -> None:
    with open(ROOT / "kind-config.yaml") as f:
        cfg = yaml.safe_load(f)
    assert (cfg["kind"], cfg["apiVersion"]) == ("Cluster", "kind.x-k8s.io/v1alpha4")
    roles = [n["role"] for n in cfg["nodes"]]
    assert roles == ["control-plane", "worker", "worker", "worker"]
    speeds = [n["labels"]["parsl.org/node-speed"] for n in cfg["nodes"][1:]]
    assert len(set(speeds)) == 3
    for speed in speeds:
        assert isinstance(speed, str) and LABEL_VALUE.match(speed) and float(speed) > 0


def expected_wheels() -> list[str]:
    """The file names of the wheels `make dist` builds: each fork at
    <pinned release>+saga.<number of patches>, and the project."""
    with open(ROOT / "forks.toml", "rb") as f:
        pins = tomllib.load(f)
    with open(ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    names = []
    for fork, pin in pins.items():
        patches = (ROOT / "patches" / fork / "series").read_text().split()
        stem = pin["distribution"].replace("-", "_")
        names.append(f"{stem}-{pin['version']}+saga.{len(patches)}-py3-none-any.whl")
    return [*names, f"{project['name'].replace('-', '_')}-{project['version']}-py3-none-any.whl"]


def test_dockerfile_installs_the_wheels_of_make_dist() -> None:
    text = (ROOT / "Dockerfile.worker").read_text()
    assert re.search(r"^FROM python:3\.12-slim$", text, re.M)
    [copy] = [line.split()[1:] for line in text.splitlines() if line.startswith("COPY")]
    *sources, dest = copy
    assert dest == "/tmp/dist/"
    wheels = expected_wheels()
    # Each pattern names exactly one wheel of make dist, and together they name all three.
    matched = [[w for w in wheels if fnmatch.fnmatchcase(f"dist/{w}", s)] for s in sources]
    assert all(len(m) == 1 for m in matched), dict(zip(sources, matched, strict=True))
    assert sorted(m[0] for m in matched) == sorted(wheels)
    [run] = re.findall(r"^RUN (.*?)(?<!\\)$", text, re.M | re.S)
    install = re.search(r"pip install ((?:/tmp/dist/\S+\s*)+)", run)
    assert install is not None
    assert install[1].split() == [s.replace("dist/", "/tmp/dist/") for s in sources]
    assert "import parsl, saga, parsl_saga" in run
    # No fork tree is built in the image: the wheels carry the series.
    assert "fork.py" not in text and "git" not in run


# -- scripts/test.py, offline ---------------------------------------------------------------


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kind_test_script", ROOT / "scripts" / "test.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


@pytest.fixture
def script() -> ModuleType:
    return load_script()


@pytest.fixture
def kind_standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StandInAPIServer]:
    nodes = [standin_node("parsl-saga-control-plane", taints=[
                 {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}])]
    with open(ROOT / "kind-config.yaml") as f:
        workers = yaml.safe_load(f)["nodes"][1:]
    names = ["parsl-saga-worker", "parsl-saga-worker2", "parsl-saga-worker3"]
    nodes += [standin_node(name, labels=w["labels"])
              for name, w in zip(names, workers, strict=True)]
    with StandInAPIServer(nodes, namespaces=("parsl",)) as server:
        path = server.write_kubeconfig(str(tmp_path / "kubeconfig"))
        monkeypatch.setenv("KUBECONFIG", path)
        monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", path)
        yield server


def test_plan_puts_the_longest_task_on_the_fastest_node(script: ModuleType) -> None:
    nodes = [{"name": "slow", "speed": 0.5}, {"name": "fast", "speed": 2.0},
             {"name": "mid", "speed": 1.0}]
    steps = {s.name: s for s in script.plan(nodes)}
    assert (steps["t1"].node, steps["t2"].node, steps["t3"].node, steps["t4"].node) == (
        "slow", "fast", "mid", "fast")
    assert steps["t4"].after == ("t2", "t3") and steps["t2"].after == ("t1",)
    assert {steps[f"f{i}"].node for i in range(script.FANOUT)} == {"slow", "fast", "mid"}
    names = list(steps)
    for s in steps.values():  # parents are submitted first
        assert all(names.index(a) < names.index(s.name) for a in s.after)
    with pytest.raises(ValueError):
        script.plan([])


def test_build_config_on_the_kind_cluster_as_described_by_kind_config(
        script: ModuleType, kind_standin: StandInAPIServer, tmp_path: Path) -> None:
    graph = script.discover_nodes("parsl-saga-worker:dev", "parsl")
    nodes = [n["name"] for n in graph]
    assert nodes == ["parsl-saga-worker", "parsl-saga-worker2", "parsl-saga-worker3"]
    assert [n["speed"] for n in graph] == [1.0, 2.0, 0.5]
    config = script.build_config("parsl-saga-worker:dev", "parsl", nodes, "10.0.0.5",
                                 str(tmp_path / "runinfo"))
    [executor] = config.executors
    assert executor.label == script.LABEL
    assert executor.encrypted is False
    assert executor.address == "10.0.0.5"
    provider = executor.provider
    assert provider.nodes == nodes
    assert provider.init_blocks == provider.min_blocks == provider.max_blocks == 3
    assert provider.image == "parsl-saga-worker:dev" and provider.namespace == "parsl"
    assert provider.pending_timeout == 300
    assert config.strategy == "simple"
    # What the config's provider creates for one block, without starting Parsl:
    provider.submit("python -P -m parsl.executors.high_throughput.process_worker_pool", 1,
                    "parsl.kind.block-0")
    [sent] = kind_standin.created
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "Pod", **sent}, K8S_VERSION,
                                 strict=True)
    terms = sent["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms[0]["matchFields"][0]["values"] == ["parsl-saga-worker"]
    assert sent["metadata"]["name"].startswith("parsl-saga-worker.")
    with pytest.raises(ValueError):
        script.build_config("img", "parsl", [], "10.0.0.5", str(tmp_path))


def test_report_counts_tasks_off_their_node(script: ModuleType,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    steps = script.plan([{"name": "a", "speed": 1.0}, {"name": "b", "speed": 2.0}])
    ran = {s.name: s.node for s in steps}
    assert script.report(steps, ran) == 0
    assert "distinct nodes used: 2 (a, b)" in capsys.readouterr().out
    ran["t3"] = "elsewhere"
    assert script.report(steps, ran) == 1
    assert "WRONG NODE" in capsys.readouterr().out
