"""A stand-in for a Kubernetes API server, for tests on machines without a cluster.

This is **not Kubernetes**. It is a small HTTP server on 127.0.0.1 that answers the part
of the Kubernetes REST API that the ``kubernetes`` Python client (as used by Parsl's
``KubernetesProvider``) and ``kubectl get`` need, with the real paths and JSON shapes:

- discovery: ``GET /version``, ``/api``, ``/api/v1``, ``/apis``;
- nodes: ``GET /api/v1/nodes`` (NodeList, with ``labelSelector``) and ``/api/v1/nodes/{name}``;
- pods in a namespace: create (``POST``), list, read and delete, and ``GET /api/v1/pods``;
- errors as ``Status`` objects: 404, 409, 400, and a 403 for listing nodes when the
  stand-in is told to forbid it (the RBAC case).

What it does not do: authentication, TLS, watches, patches, any other resource, and real
scheduling. In place of a scheduler and kubelets it "schedules" a new pod at once on the
node that ``spec.nodeName`` or a ``metadata.name`` node affinity names (or on the first
usable node): if that node exists, is Ready, not cordoned and has no NoSchedule/NoExecute
taint the pod does not tolerate, the pod is bound to it and reported ``Running``;
otherwise the pod stays ``Pending`` with a ``PodScheduled=False, Unschedulable``
condition, as a real scheduler reports it. Nothing runs in the pods. Tests change the
stand-in's state directly (``server.nodes``, ``server.pods``, ``server.forbid_nodes``).

    with StandInAPIServer([standin_node("w1")]) as server:
        server.write_kubeconfig(path)   # then KUBECONFIG=path for the client or kubectl
"""

from __future__ import annotations

import contextlib
import copy
import json
import socket
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

__all__ = ["StandInAPIServer", "standin_node"]

STANDIN_VERSION = {
    "major": "1", "minor": "37", "gitVersion": "v1.37.0-standin", "gitCommit": "standin",
    "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25",
    "compiler": "gc", "platform": "linux/amd64",
}

_RESOURCES = {
    "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1",
    "resources": [
        {"name": "nodes", "singularName": "node", "namespaced": False, "kind": "Node",
         "verbs": ["get", "list"], "shortNames": ["no"]},
        {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
         "verbs": ["create", "delete", "get", "list"], "shortNames": ["po"],
         "categories": ["all"]},
        {"name": "namespaces", "singularName": "namespace", "namespaced": False,
         "kind": "Namespace", "verbs": ["get", "list"], "shortNames": ["ns"]},
    ],
}

Json = dict[str, Any]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def standin_node(name: str, cpu: str = "4", memory: str = "8Gi", *, ready: bool = True,
                 unschedulable: bool = False, labels: dict[str, str] | None = None,
                 annotations: dict[str, str] | None = None,
                 taints: list[Json] | None = None) -> Json:
    """A Node object as the API server returns it (what a kubelet would have registered)."""
    node: Json = {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name, "uid": str(uuid.uuid5(uuid.NAMESPACE_DNS, name)),
            "resourceVersion": "1", "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                       "kubernetes.io/arch": "amd64", **(labels or {})},
            "annotations": dict(annotations or {}),
        },
        "spec": {"podCIDR": "10.244.0.0/24"},
        "status": {
            "capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
            "conditions": [
                {"type": "MemoryPressure", "status": "False",
                 "reason": "KubeletHasSufficientMemory",
                 "lastHeartbeatTime": "2026-01-01T00:00:00Z",
                 "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "Ready", "status": "True" if ready else "False",
                 "reason": "KubeletReady" if ready else "KubeletNotReady",
                 "lastHeartbeatTime": "2026-01-01T00:00:00Z",
                 "lastTransitionTime": "2026-01-01T00:00:00Z"},
            ],
            "addresses": [{"type": "Hostname", "address": name}],
            "nodeInfo": {"kubeletVersion": "v1.37.0-standin", "architecture": "amd64",
                         "operatingSystem": "linux", "osImage": "stand-in",
                         "containerRuntimeVersion": "none://0", "kernelVersion": "0",
                         "kubeProxyVersion": "", "machineID": "", "systemUUID": "",
                         "bootID": ""},
        },
    }
    if unschedulable:
        node["spec"]["unschedulable"] = True
    if taints:
        node["spec"]["taints"] = [dict(t) for t in taints]
    return node


def _status(code: int, reason: str, message: str, details: Json | None = None) -> Json:
    body: Json = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                  "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = details
    return body


def _matches_selector(labels: dict[str, str], selector: str) -> bool:
    """Equality-based label selectors: ``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _tolerated(taint: Json, tolerations: list[Json]) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        operator = t.get("operator", "Equal")
        if not t.get("key"):
            if operator == "Exists":
                return True
            continue
        if t["key"] != taint.get("key"):
            continue
        if operator == "Exists" or t.get("value", "") == taint.get("value", ""):
            return True
    return False


def _node_refusal(node: Json, pod: Json) -> str | None:
    """Why the stand-in's scheduler will not put *pod* on *node*, or None."""
    conditions = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
    if conditions.get("Ready") != "True":
        return "node(s) were not ready"
    if node.get("spec", {}).get("unschedulable"):
        return "node(s) were unschedulable"
    tolerations = pod.get("spec", {}).get("tolerations") or []
    for taint in node.get("spec", {}).get("taints") or []:
        if (taint.get("effect") in ("NoSchedule", "NoExecute")
                and not _tolerated(taint, tolerations)):
            return f"node(s) had untolerated taint {{{taint['key']}: {taint.get('value', '')}}}"
    return None


def _affinity_nodes(pod: Json) -> list[str] | None:
    """Node names a required ``metadata.name`` node affinity allows, or None if unset."""
    required = (pod.get("spec", {}).get("affinity", {}).get("nodeAffinity", {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if not required:
        return None
    names: list[str] = []
    for term in required.get("nodeSelectorTerms", []):
        for field in term.get("matchFields", []):
            if field.get("key") == "metadata.name" and field.get("operator") == "In":
                names += field.get("values", [])
    return names


class StandInAPIServer:
    """The stand-in API server: see the module docstring for what it is and is not.

    *nodes* are Node objects (see :func:`standin_node`); *namespaces* lists the namespaces
    that exist. The server runs in a background thread from :meth:`start` (or ``with``)
    until :meth:`close`.
    """

    def __init__(self, nodes: list[Json] | None = None,
                 namespaces: tuple[str, ...] = ("default",)) -> None:
        self.nodes: list[Json] = list(nodes or [])
        self.namespaces = set(namespaces)
        self.pods: dict[tuple[str, str], Json] = {}
        #: When True, listing or reading nodes answers 403 as an API server whose RBAC
        #: does not grant the caller ``nodes: get, list``.
        self.forbid_nodes = False
        self.forbidden_user = "system:serviceaccount:default:parsl"
        #: (method, path) of every request, and the body of every pod create, for tests.
        self.requests: list[tuple[str, str]] = []
        self.created: list[Json] = []
        self._connections: set[socket.socket] = set()
        self.lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._resource_version = 100

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> Self:
        if self._httpd is not None:
            return self
        handler = type("Handler", (_Handler,), {"server_state": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        # Handler threads are joined on close (the client keeps connections alive, so
        # close() also shuts those down): the stand-in leaves no thread behind.
        self._httpd.daemon_threads = False
        self._httpd.block_on_close = True
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        name="k8s-standin", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        with self.lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                conn.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()
        assert self._thread is not None
        self._thread.join()
        self._httpd = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the stand-in API server is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def write_kubeconfig(self, path: str, namespace: str = "default") -> str:
        """Write a kubeconfig for this server (plain HTTP, no credentials); return *path*."""
        config = {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
            "users": [{"name": "standin", "user": {}}],
            "contexts": [{"name": "standin", "context": {
                "cluster": "standin", "user": "standin", "namespace": namespace}}],
            "current-context": "standin",
        }
        with open(path, "w") as f:
            json.dump(config, f)  # JSON is YAML: both clients read it
        return path

    # -- state -------------------------------------------------------------------------

    def node(self, name: str) -> Json | None:
        return next((n for n in self.nodes if n["metadata"]["name"] == name), None)

    def _next_version(self) -> str:
        self._resource_version += 1
        return str(self._resource_version)

    def _schedule(self, pod: Json) -> None:
        """Bind *pod* to a node, or mark it Unschedulable (the stand-in's 'scheduler')."""
        spec = pod.setdefault("spec", {})
        status = pod.setdefault("status", {})
        if spec.get("nodeName"):
            # Bound by the client: no scheduler involved; a kubelet would run it if the node
            # exists. For a missing node the pod just stays Pending.
            if self.node(spec["nodeName"]) is not None:
                status.update(phase="Running", conditions=[
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": "True"}])
            else:
                status.update(phase="Pending", conditions=[])
            return
        allowed = _affinity_nodes(pod)
        candidates = [n for n in self.nodes
                      if allowed is None or n["metadata"]["name"] in allowed]
        refusals: dict[str, int] = {}
        for node in candidates:
            why = _node_refusal(node, pod)
            if why is None:
                spec["nodeName"] = node["metadata"]["name"]
                status.update(phase="Running", startTime=_now(), conditions=[
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": "True"}])
                return
            refusals[why] = refusals.get(why, 0) + 1
        mismatched = len(self.nodes) - len(candidates)
        if mismatched:
            refusals["node(s) didn't match Pod's node affinity/selector"] = mismatched
        # Like the real scheduler's FitError: "<count> <reason>" strings, sorted.
        reasons = ", ".join(sorted(f"{count} {why}" for why, count in refusals.items()))
        status.update(phase="Pending", conditions=[{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": f"0/{len(self.nodes)} nodes are available: {reasons}.",
            "lastTransitionTime": _now()}])

    # -- request handling (called from the handler threads) -----------------------------

    def handle(self, method: str, path: str, query: dict[str, list[str]],
               body: Json | None) -> tuple[int, Json]:
        with self.lock:
            self.requests.append((method, path))
            return self._route(method, path.rstrip("/").split("/")[1:], query, body)

    def _route(self, method: str, parts: list[str], query: dict[str, list[str]],
               body: Json | None) -> tuple[int, Json]:
        if method == "GET" and parts == ["version"]:
            return 200, dict(STANDIN_VERSION)
        if method == "GET" and parts == ["api"]:
            return 200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": self.url.split("//", 1)[1]}]}
        if method == "GET" and parts == ["apis"]:
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}
        if method == "GET" and parts == ["api", "v1"]:
            return 200, copy.deepcopy(_RESOURCES)
        if parts[:2] != ["api", "v1"]:
            return 404, _status(404, "NotFound", "the server could not find the requested resource")
        rest = parts[2:]
        selector = query.get("labelSelector", [""])[0]
        if rest[:1] == ["nodes"] and method == "GET":
            if self.forbid_nodes:
                verb = "list" if len(rest) == 1 else "get"
                return 403, _status(
                    403, "Forbidden",
                    f'nodes is forbidden: User "{self.forbidden_user}" cannot {verb} resource '
                    '"nodes" in API group "" at the cluster scope',
                    {"kind": "nodes"})
            if len(rest) == 1:
                items = [copy.deepcopy(n) for n in self.nodes
                         if _matches_selector(n["metadata"].get("labels", {}), selector)]
                return 200, {"kind": "NodeList", "apiVersion": "v1",
                             "metadata": {"resourceVersion": str(self._resource_version)},
                             "items": items}
            node = self.node(rest[1])
            if node is None:
                return 404, _status(404, "NotFound", f'nodes "{rest[1]}" not found',
                                    {"name": rest[1], "kind": "nodes"})
            return 200, copy.deepcopy(node)
        if rest == ["pods"] and method == "GET":
            return 200, self._pod_list(None, selector)
        if rest[:1] == ["namespaces"] and len(rest) == 2 and method == "GET":
            if rest[1] not in self.namespaces:
                return 404, _status(404, "NotFound", f'namespaces "{rest[1]}" not found')
            return 200, {"kind": "Namespace", "apiVersion": "v1",
                         "metadata": {"name": rest[1]}, "status": {"phase": "Active"}}
        if rest[:1] == ["namespaces"] and len(rest) >= 3 and rest[2] == "pods":
            namespace = rest[1]
            if namespace not in self.namespaces:
                return 404, _status(404, "NotFound", f'namespaces "{namespace}" not found',
                                    {"name": namespace, "kind": "namespaces"})
            if len(rest) == 3 and method == "GET":
                return 200, self._pod_list(namespace, selector)
            if len(rest) == 3 and method == "POST":
                return self._create_pod(namespace, body)
            if len(rest) == 4 and method in ("GET", "DELETE"):
                pod = self.pods.get((namespace, rest[3]))
                if pod is None:
                    return 404, _status(404, "NotFound", f'pods "{rest[3]}" not found',
                                        {"name": rest[3], "kind": "pods"})
                if method == "DELETE":
                    del self.pods[(namespace, rest[3])]
                    pod["metadata"]["deletionTimestamp"] = _now()
                return 200, copy.deepcopy(pod)
        return 404, _status(404, "NotFound",
                            f"the stand-in API server does not serve {method} /{'/'.join(parts)}")

    def _pod_list(self, namespace: str | None, selector: str) -> Json:
        items = [copy.deepcopy(p) for (ns, _), p in sorted(self.pods.items())
                 if namespace in (None, ns)
                 and _matches_selector(p["metadata"].get("labels") or {}, selector)]
        return {"kind": "PodList", "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self._resource_version)}, "items": items}

    def _create_pod(self, namespace: str, body: Json | None) -> tuple[int, Json]:
        if not isinstance(body, dict) or body.get("kind", "Pod") != "Pod":
            return 400, _status(400, "BadRequest", "the request body is not a Pod")
        name = (body.get("metadata") or {}).get("name")
        if not name:
            return 400, _status(400, "BadRequest", "Pod metadata.name is required")
        if not (body.get("spec") or {}).get("containers"):
            return 422, _status(422, "Invalid",
                                f'Pod "{name}" is invalid: spec.containers: Required value')
        if (namespace, name) in self.pods:
            return 409, _status(409, "AlreadyExists", f'pods "{name}" already exists',
                                {"name": name, "kind": "pods"})
        self.created.append(copy.deepcopy(body))
        pod = copy.deepcopy(body)
        pod.update(apiVersion="v1", kind="Pod")
        pod["metadata"].update(namespace=namespace, uid=str(uuid.uuid4()),
                               resourceVersion=self._next_version(),
                               creationTimestamp=_now())
        pod["status"] = {}
        self._schedule(pod)
        self.pods[(namespace, name)] = pod
        return 201, copy.deepcopy(pod)


class _Handler(BaseHTTPRequestHandler):
    server_state: StandInAPIServer
    protocol_version = "HTTP/1.1"
    timeout = 60  # an idle kept-alive connection is dropped after this

    def setup(self) -> None:
        super().setup()
        with self.server_state.lock:
            self.server_state._connections.add(self.connection)

    def finish(self) -> None:
        with self.server_state.lock:
            self.server_state._connections.discard(self.connection)
        super().finish()

    def _serve(self, method: str) -> None:
        url = urlsplit(self.path)
        body = None
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                self._send(400, _status(400, "BadRequest", "the request body is not JSON"))
                return
        code, payload = self.server_state.handle(method, url.path, parse_qs(url.query), body)
        self._send(code, payload)

    def _send(self, code: int, payload: Json) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read .requests
        pass
