"""KubernetesProvider (the fork's Kubernetes patches) with the real `kubernetes` client over
HTTP against the stand-in API server (tests/k8s_standin.py, not a real cluster), with
kubectl cross-checks and offline schema validation (kubernetes-validate) of the pods the
provider creates.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from kubernetes.config import kube_config
from parsl.jobs.states import JobState
from parsl.providers import KubernetesProvider
from parsl.providers.kubernetes.kube import NodeDiscoveryError

from k8s_standin import StandInAPIServer, standin_node

K8S_VERSION = "1.37.0"
NAMESPACE = "parsl"
CONTROL_PLANE_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
WORKERS = ["parsl-saga-worker", "parsl-saga-worker2", "parsl-saga-worker3"]


def kind_like_nodes() -> list[dict[str, Any]]:
    return [
        standin_node("parsl-saga-control-plane", taints=[CONTROL_PLANE_TAINT]),
        standin_node("parsl-saga-worker", labels={"parsl.org/node-speed": "1.0"}),
        standin_node("parsl-saga-worker2", cpu="7500m", memory="16Gi",
                     labels={"parsl.org/node-speed": "2.0"},
                     annotations={"parsl.org/bandwidth-mbit": "1000"}),
        standin_node("parsl-saga-worker3", cpu="2", labels={"parsl.org/node-speed": "0.5"}),
    ]


@pytest.fixture
def standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StandInAPIServer]:
    server = StandInAPIServer(kind_like_nodes(), namespaces=("default", NAMESPACE)).start()
    use_kubeconfig(monkeypatch, server.write_kubeconfig(str(tmp_path / "kubeconfig")))
    try:
        yield server
    finally:
        server.close()
    assert not server.running


def use_kubeconfig(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    """Point KubernetesProvider's load_kube_config() (and kubectl) at *path*.

    The client reads KUBECONFIG when it is imported, so its default location is set too.
    """
    monkeypatch.setenv("KUBECONFIG", path)
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", path)


def provider(**kwargs: Any) -> KubernetesProvider:
    return KubernetesProvider(image="parsl-saga-worker:dev", namespace=NAMESPACE, **kwargs)


def kubectl_json(tmp_path: Path, *args: str) -> Any:
    env = {**os.environ, "HOME": str(tmp_path)}
    result = subprocess.run(["kubectl", *args, "-o", "json"], env=env, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def validate_pod(sent: dict[str, Any]) -> None:
    """Validate a pod body against the Kubernetes schema.

    The provider (like upstream's) sends no apiVersion/kind: the API server takes them
    from the URL (POST /api/v1/namespaces/{ns}/pods), so they are added from it here.
    """
    assert "apiVersion" not in sent or sent["apiVersion"] == "v1"
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "Pod", **sent}, K8S_VERSION,
                                 strict=True)


# -- node discovery ------------------------------------------------------------------------


def test_discovery_on_a_kind_like_cluster(standin: StandInAPIServer) -> None:
    nodes = provider().describe_nodes()
    assert [n["name"] for n in nodes] == WORKERS  # the control plane is tainted
    by_name = {n["name"]: n for n in nodes}
    assert [by_name[w]["speed"] for w in WORKERS] == [1.0, 2.0, 0.5]
    assert [by_name[w]["slots"] for w in WORKERS] == [4, 7, 2]
    assert by_name["parsl-saga-worker2"]["bandwidth_mbit"] == 1000.0
    assert by_name["parsl-saga-worker"]["bandwidth_mbit"] == 10000.0
    assert by_name["parsl-saga-worker2"]["memory_bytes"] == 16 * 2**30
    assert by_name["parsl-saga-worker3"]["labels"]["kubernetes.io/hostname"] == \
        "parsl-saga-worker3"
    # Nodes, not pods: discovery works before any block exists.
    assert ("GET", "/api/v1/nodes") in standin.requests
    assert not any("/pods" in path for _, path in standin.requests)


def test_tolerating_the_control_plane_taint_includes_it(standin: StandInAPIServer) -> None:
    tolerate = [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists",
                 "effect": "NoSchedule"}]
    names = [n["name"] for n in provider(tolerations=tolerate).describe_nodes()]
    assert names == ["parsl-saga-control-plane", *WORKERS]


def test_not_ready_and_cordoned_nodes_are_left_out(standin: StandInAPIServer) -> None:
    standin.nodes[1] = standin_node("parsl-saga-worker", ready=False)
    standin.nodes[2] = standin_node("parsl-saga-worker2", unschedulable=True)
    assert [n["name"] for n in provider().describe_nodes()] == ["parsl-saga-worker3"]


def test_zero_usable_nodes(standin: StandInAPIServer) -> None:
    standin.nodes = [standin.nodes[0], standin_node("w-down", ready=False)]
    with pytest.raises(NodeDiscoveryError) as e:
        provider().describe_nodes()
    assert "no usable Kubernetes nodes" in str(e.value)
    assert ("parsl-saga-control-plane: taint node-role.kubernetes.io/control-plane:NoSchedule "
            "not tolerated") in str(e.value)
    assert "w-down: not Ready" in str(e.value)
    standin.nodes = []
    with pytest.raises(NodeDiscoveryError, match="the cluster lists no nodes"):
        provider().describe_nodes()


def test_forbidden_names_the_cluster_role_rule(standin: StandInAPIServer) -> None:
    standin.forbid_nodes = True
    with pytest.raises(NodeDiscoveryError) as e:
        provider().describe_nodes()
    message = str(e.value)
    assert standin.url in message
    assert ('User "system:serviceaccount:default:parsl" cannot list resource "nodes"'
            in message)
    assert 'resources: ["nodes"], verbs: ["get", "list"]' in message and "ClusterRole" in message


def test_unreachable_api_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = StandInAPIServer()
    server.start()
    kubeconfig = server.write_kubeconfig(str(tmp_path / "kubeconfig"))
    server.close()
    with open(kubeconfig) as f:
        text = f.read()
    url = f"http://127.0.0.1:{port}"
    with open(kubeconfig, "w") as f:
        f.write(text.replace(json.loads(text)["clusters"][0]["cluster"]["server"], url))
    use_kubeconfig(monkeypatch, kubeconfig)
    with pytest.raises(NodeDiscoveryError) as e:
        provider().describe_nodes()
    assert f"cannot reach the Kubernetes API server at {url}" in str(e.value)


# -- one pool per node ---------------------------------------------------------------------


def test_pinned_blocks_land_on_their_nodes(standin: StandInAPIServer, tmp_path: Path) -> None:
    p = provider(pin_blocks_to_nodes=True)
    jobs = [p.submit("python -P -m parsl.executors.high_throughput.process_worker_pool", 1,
                     f"parsl.kind.block-{i}") for i in range(3)]
    # The stand-in's scheduler bound each pod to the node its affinity names.
    assert [standin.pods[(NAMESPACE, p.resources[j]["pod_name"])]["spec"]["nodeName"]
            for j in jobs] == WORKERS
    assert [s.state for s in p.status(jobs)] == [JobState.RUNNING] * 3
    if shutil.which("kubectl"):
        pods = kubectl_json(tmp_path, "get", "pods", "-n", NAMESPACE)["items"]
        assert sorted((x["metadata"]["name"], x["spec"]["nodeName"]) for x in pods) == sorted(
            (p.resources[j]["pod_name"], node) for j, node in zip(jobs, WORKERS, strict=True))
    assert p.cancel(jobs) == [True] * 3
    assert standin.pods == {}


def test_planner_sees_exactly_the_nodes_that_get_pools(standin: StandInAPIServer) -> None:
    """max_blocks below the node count: the third worker gets no block, so it is not offered
    to the planner; the nodes offered are the ones the stand-in's scheduler bound pods to."""
    p = provider(pin_blocks_to_nodes=True, init_blocks=2, max_blocks=2)
    planner_view = p.get_graph_nodes()
    assert [(n.name, n.pools, n.speed) for n in planner_view] == \
        [("parsl-saga-worker", 1, 1.0), ("parsl-saga-worker2", 1, 2.0)]
    jobs = [p.submit("python -P -m parsl.executors.high_throughput.process_worker_pool", 1,
                     f"parsl.kind.block-{i}") for i in range(2)]
    pods = [standin.pods[(NAMESPACE, p.resources[j]["pod_name"])] for j in jobs]
    bound = [pod["spec"]["nodeName"] for pod in pods]
    assert bound == [n.name for n in planner_view]
    assert p.get_graph_nodes() == planner_view  # counted from the live blocks now
    assert p.cancel(jobs) == [True] * 2


def test_unpinned_blocks_are_not_planned_onto_guessed_nodes(standin: StandInAPIServer) -> None:
    with pytest.raises(NodeDiscoveryError, match="pin_blocks_to_nodes=True"):
        provider().get_graph_nodes()


def test_pinned_pod_spec_field_by_field(standin: StandInAPIServer) -> None:
    p = provider(nodes=["parsl-saga-worker2"], init_cpu=0.25, max_cpu=1.0, init_mem="256Mi",
                 max_mem="1Gi", worker_init="export X=1")
    job = p.submit("python -P -m parsl.executors.high_throughput.process_worker_pool -a x", 1,
                   "parsl.kind.block-0")
    [sent] = standin.created  # the JSON the real client sent
    assert sent["metadata"]["name"] == p.resources[job]["pod_name"]
    assert sent["metadata"]["labels"] == {"parsl-job-id": job}
    spec = sent["spec"]
    assert "nodeName" not in spec  # pinned through the scheduler, not bound directly
    assert spec["affinity"] == {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In",
                              "values": ["parsl-saga-worker2"]}]}]}}}
    [container] = spec["containers"]
    assert container["image"] == "parsl-saga-worker:dev"
    assert container["command"] == ["/bin/bash"]
    assert container["args"][0] == "-c"
    assert "export X=1" in container["args"][1]
    assert "python -P -m parsl.executors.high_throughput.process_worker_pool -a x" in \
        container["args"][1]
    assert container["resources"] == {"limits": {"cpu": "1.0", "memory": "1Gi"},
                                      "requests": {"cpu": "0.25", "memory": "256Mi"}}
    node_env = [e for e in container["env"] if e["name"] == "PARSL_NODE_NAME"]
    assert node_env == [{"name": "PARSL_NODE_NAME",
                         "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    # The pod is a valid Pod for Kubernetes 1.37 (strict: no unknown fields).
    validate_pod(sent)


def test_node_name_pinning_validates_and_binds(standin: StandInAPIServer) -> None:
    p = provider(nodes=["parsl-saga-worker3"], node_pinning="node_name",
                 tolerations=[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}])
    p.submit("cmd", 1, "parsl.kind.block-0")
    [sent] = standin.created
    assert sent["spec"]["nodeName"] == "parsl-saga-worker3" and "affinity" not in sent["spec"]
    assert sent["spec"]["tolerations"] == [
        {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]
    validate_pod(sent)


def test_invalid_pod_is_caught_by_the_schema() -> None:
    # The validation above can fail: a wrong type in the same place is rejected.
    bad = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "i", "env": [
               {"name": "PARSL_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": 7}}}]}]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_pod_that_never_schedules_is_reported_then_failed(standin: StandInAPIServer) -> None:
    p = provider(nodes=["parsl-saga-control-plane"])  # tainted: the scheduler refuses
    job = p.submit("cmd", 1, "parsl.kind.block-0")
    [status] = p.status([job])
    assert status.state == JobState.PENDING
    assert "Unschedulable" in status.message and "untolerated taint" in status.message
    p.pending_timeout = 0
    [status] = p.status([job])
    assert status.state == JobState.FAILED
    assert "did not start within pending_timeout=0" in status.message
    assert "pinned to node parsl-saga-control-plane" in status.message
    assert standin.pods == {}  # the provider deleted the pod


def test_lost_pod_is_failed_and_replaced_on_its_node(standin: StandInAPIServer) -> None:
    p = provider(nodes=WORKERS)
    jobs = [p.submit("cmd", 1, f"parsl.kind.block-{i}") for i in range(3)]
    del standin.pods[(NAMESPACE, p.resources[jobs[1]]["pod_name"])]  # evicted
    states = [s.state for s in p.status(jobs)]
    assert states == [JobState.RUNNING, JobState.FAILED, JobState.RUNNING]
    replacement = p.submit("cmd", 1, "parsl.kind.block-3")
    assert standin.pods[(NAMESPACE, p.resources[replacement]["pod_name"])]["spec"][
        "nodeName"] == "parsl-saga-worker2"
    p.cancel([jobs[0], jobs[2], replacement])
    assert standin.pods == {}
