"""The stand-in Kubernetes API server, checked with the real `kubernetes` client and kubectl.

The stand-in (tests/k8s_standin.py) is not Kubernetes: these tests check that it speaks
the parts of the HTTP API the provider tests rely on in the shapes real clients accept,
so that the provider tests exercise the real client code paths.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from k8s_standin import StandInAPIServer, standin_node

CONTROL_PLANE_TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}


def kind_like_nodes() -> list[dict]:
    return [
        standin_node("parsl-saga-control-plane", taints=[CONTROL_PLANE_TAINT],
                     labels={"node-role.kubernetes.io/control-plane": ""}),
        standin_node("parsl-saga-worker", labels={"parsl.org/node-speed": "1.0"}),
        standin_node("parsl-saga-worker2", labels={"parsl.org/node-speed": "2.0"}),
        standin_node("parsl-saga-worker3", cpu="2", labels={"parsl.org/node-speed": "0.5"}),
    ]


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[StandInAPIServer]:
    server = StandInAPIServer(kind_like_nodes(), namespaces=("default", "parsl")).start()
    try:
        yield server
    finally:
        server.close()
    assert not server.running
    assert not [t for t in threading.enumerate() if t.name == "k8s-standin"]


@pytest.fixture
def core(standin: StandInAPIServer, tmp_path: Path) -> client.CoreV1Api:
    kubeconfig = standin.write_kubeconfig(str(tmp_path / "kubeconfig"))
    api_client = config.new_client_from_config(config_file=kubeconfig)
    return client.CoreV1Api(api_client)


def kubectl(standin: StandInAPIServer, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    kubeconfig = standin.write_kubeconfig(str(tmp_path / "kubeconfig-kubectl"))
    env = {**os.environ, "KUBECONFIG": kubeconfig, "HOME": str(tmp_path)}
    return subprocess.run(["kubectl", *args], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")


def pod_body(name: str, **spec: object) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "img"}], **spec}}


def test_client_lists_nodes_with_the_fields_discovery_reads(core: client.CoreV1Api) -> None:
    nodes = core.list_node().items
    assert [n.metadata.name for n in nodes] == [
        "parsl-saga-control-plane", "parsl-saga-worker", "parsl-saga-worker2",
        "parsl-saga-worker3"]
    cp, _, w2, w3 = nodes
    assert cp.spec.taints[0].key == "node-role.kubernetes.io/control-plane"
    assert cp.spec.taints[0].effect == "NoSchedule"
    assert w2.metadata.labels["parsl.org/node-speed"] == "2.0"
    assert w3.status.allocatable["cpu"] == "2"
    assert {c.type: c.status for c in w3.status.conditions}["Ready"] == "True"
    selected = core.list_node(label_selector="parsl.org/node-speed=2.0").items
    assert [n.metadata.name for n in selected] == ["parsl-saga-worker2"]


def test_forbidden_nodes_is_a_status_object(core: client.CoreV1Api,
                                            standin: StandInAPIServer) -> None:
    standin.forbid_nodes = True
    with pytest.raises(client.ApiException) as e:
        core.list_node()
    assert e.value.status == 403
    status = json.loads(e.value.body)
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "Forbidden", 403)
    assert 'cannot list resource "nodes"' in status["message"]


def test_pod_create_read_list_delete(core: client.CoreV1Api, standin: StandInAPIServer) -> None:
    created = core.create_namespaced_pod("parsl", pod_body("p1"))
    assert created.metadata.namespace == "parsl" and created.metadata.uid
    # The stand-in's scheduler leaves out the tainted control plane.
    assert core.read_namespaced_pod("p1", "parsl").spec.node_name == "parsl-saga-worker"
    assert core.read_namespaced_pod("p1", "parsl").status.phase == "Running"
    assert [p.metadata.name for p in core.list_namespaced_pod("parsl").items] == ["p1"]
    assert core.list_namespaced_pod("default").items == []
    with pytest.raises(client.ApiException) as e:
        core.create_namespaced_pod("parsl", pod_body("p1"))
    assert e.value.status == 409
    core.delete_namespaced_pod("p1", "parsl")
    with pytest.raises(client.ApiException) as e:
        core.read_namespaced_pod("p1", "parsl")
    assert e.value.status == 404
    assert standin.created[0]["metadata"]["name"] == "p1"


def test_unschedulable_pod_is_pending_with_the_scheduler_reason(core: client.CoreV1Api) -> None:
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["parsl-saga-control-plane"]}]}]}}}
    core.create_namespaced_pod("parsl", pod_body("p", affinity=affinity))
    pod = core.read_namespaced_pod("p", "parsl")
    assert pod.status.phase == "Pending" and pod.spec.node_name is None
    [condition] = pod.status.conditions
    assert (condition.type, condition.status, condition.reason) == (
        "PodScheduled", "False", "Unschedulable")
    assert condition.message == (
        "0/4 nodes are available: 1 node(s) had untolerated taint "
        "{node-role.kubernetes.io/control-plane: }, "
        "3 node(s) didn't match Pod's node affinity/selector.")


def test_unknown_namespace_and_path(core: client.CoreV1Api) -> None:
    with pytest.raises(client.ApiException) as e:
        core.list_namespaced_pod("nope")
    assert e.value.status == 404


def test_close_leaves_no_thread_even_with_kept_alive_connections(tmp_path: Path) -> None:
    server = StandInAPIServer([standin_node("w1")]).start()
    api = client.CoreV1Api(config.new_client_from_config(
        config_file=server.write_kubeconfig(str(tmp_path / "kc"))))
    assert len(api.list_node().items) == 1  # leaves a kept-alive connection open
    before = threading.active_count()
    server.close()
    assert not server.running
    assert threading.active_count() < before
    server.close()  # idempotent


@needs_kubectl
def test_kubectl_sees_the_same_nodes(standin: StandInAPIServer, core: client.CoreV1Api,
                                     tmp_path: Path) -> None:
    result = kubectl(standin, tmp_path, "get", "nodes", "-o", "json")
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)["items"]
    from_client = core.list_node().items
    assert [n["metadata"]["name"] for n in listed] == [n.metadata.name for n in from_client]
    assert [n["metadata"]["labels"] for n in listed] == [n.metadata.labels for n in from_client]
    assert listed[0]["spec"]["taints"] == [CONTROL_PLANE_TAINT]
    selected = kubectl(standin, tmp_path, "get", "nodes", "-l", "parsl.org/node-speed=0.5",
                       "-o", "name")
    assert selected.stdout.split() == ["node/parsl-saga-worker3"]
    # kubectl discovered the API from /api and /apis like against a real server.
    assert ("GET", "/api") in standin.requests and ("GET", "/apis") in standin.requests


@needs_kubectl
def test_kubectl_sees_pods_and_the_403(standin: StandInAPIServer, core: client.CoreV1Api,
                                       tmp_path: Path) -> None:
    core.create_namespaced_pod("parsl", pod_body("p1"))
    result = kubectl(standin, tmp_path, "get", "pods", "-n", "parsl", "-o", "json")
    assert result.returncode == 0, result.stderr
    [pod] = json.loads(result.stdout)["items"]
    assert (pod["metadata"]["name"], pod["spec"]["nodeName"]) == ("p1", "parsl-saga-worker")
    table = kubectl(standin, tmp_path, "get", "pods", "-n", "parsl")
    assert table.returncode == 0 and "p1" in table.stdout
    standin.forbid_nodes = True
    denied = kubectl(standin, tmp_path, "get", "nodes")
    assert denied.returncode != 0
    assert 'cannot list resource "nodes"' in denied.stderr
