"""A Kubernetes cluster on loopback for Prefect's real `KubernetesWorker` (the `kubernetes` work pool).

`Cluster` serves the Kubernetes API the worker and its observer (kopf) use, behind a bearer token:
discovery (`/api`, `/apis`), `namespaces`, `batch/v1` `jobs`, `pods` and `pods/log`, `events`,
`secrets`, `serviceaccounts` and `persistentvolumeclaims` — list (label selectors), watch
(streamed watch events from a resourceVersion), get, create, replace, merge-patch, delete. Every
object it receives is checked by `sandbox.kubeschema` against the official OpenAPI models and the
API server's rules, so a job template a real cluster would refuse is refused here too.

Behind the API run a Job controller (one pod per attempt, `backoffLimit`, `activeDeadlineSeconds`,
`ttlSecondsAfterFinished`, cascading deletes, events) and a kubelet (`sandbox.kubelet`) that runs
each pod's container with podman exactly as the pod spec says and reports its phase, container
state and logs back through the API.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import yaml

from sandbox.gitserver import LoopbackServer, Request, Response, Served
from sandbox.konflux import merge_patch, selector_matches
from sandbox.kubeschema import Invalid, validate

# plural -> (group, version, kind, namespaced)
RESOURCES = {
    "namespaces": ("", "v1", "Namespace", False),
    "pods": ("", "v1", "Pod", True),
    "secrets": ("", "v1", "Secret", True),
    "events": ("", "v1", "Event", True),
    "serviceaccounts": ("", "v1", "ServiceAccount", True),
    "persistentvolumeclaims": ("", "v1", "PersistentVolumeClaim", True),
    "jobs": ("batch", "v1", "Job", True),
}
SUBRESOURCES = {"pods": ("log", "status"), "jobs": ("status",)}
CORE_PATH = re.compile(r"^/api/v1(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[a-z]+)"
                       r"(?:/(?P<name>[^/]+)(?:/(?P<sub>[a-z]+))?)?$")
NAMESPACE_PATH = re.compile(r"^/api/v1/namespaces(?:/(?P<name>[^/]+))?$")
BATCH_PATH = re.compile(r"^/apis/batch/v1(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>jobs)"
                        r"(?:/(?P<name>[^/]+)(?:/(?P<sub>[a-z]+))?)?$")
WATCH_TIMEOUT = 300.0  # a real API server ends a watch after 5-10 minutes; clients reconnect
JOB_LABELS = ("batch.kubernetes.io/controller-uid", "batch.kubernetes.io/job-name", "controller-uid", "job-name")


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status(code: int, reason: str, message: str, details: dict | None = None) -> Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}
    if details:
        body["details"] = details
    return Response.json(code, body)


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.response = status(code, reason, message, details)


def not_found(plural: str, name: str) -> ApiError:
    group = RESOURCES[plural][0]
    return ApiError(404, "NotFound", f'{plural}{"." + group if group else ""} "{name}" not found',
                    {"name": name, "kind": plural})


class Cluster(Served):
    """One fake cluster: objects in memory, a Job controller, pods run by `kubelet` (a sandbox.kubelet.Kubelet)."""

    def __init__(self, token: str | None = None, namespaces: tuple[str, ...] = ("default",)) -> None:
        self.token = token or secrets.token_urlsafe(24)
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.history: list[tuple[int, str, str, dict]] = []  # (resourceVersion, type, plural, object)
        self.version = 0
        self.kubelet = None  # set by the owner: a sandbox.kubelet.Kubelet (pods stay Pending without one)
        self._cond = threading.Condition(threading.RLock())
        self._stopped = threading.Event()
        self._timers: list[threading.Timer] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request: what the clients used
        self.unserved: list[tuple[str, str]] = []  # requests for paths this stand-in does not serve (404)
        self.server = LoopbackServer(self._authorized, [self.route], challenge="Bearer")
        for name in namespaces:
            self.create("namespaces", "", {"metadata": {"name": name}})

    def stop(self) -> None:
        self._stopped.set()
        for timer in self._timers:
            timer.cancel()
        with self._cond:
            self._cond.notify_all()
        super().stop()

    def _authorized(self, req: Request) -> bool:
        scheme, _, value = req.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and secrets.compare_digest(value.strip(), self.token)

    def kubeconfig(self, namespace: str = "default") -> dict:
        return {"apiVersion": "v1", "kind": "Config", "current-context": "sandbox", "preferences": {},
                "clusters": [{"name": "sandbox", "cluster": {"server": self.url}}],
                "users": [{"name": "sandbox", "user": {"token": self.token}}],
                "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox", "user": "sandbox",
                                                             "namespace": namespace}}]}

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(self.kubeconfig(namespace), sort_keys=False))
        return path

    # -- the object store ----------------------------------------------------------------------------
    def _record(self, kind: str, plural: str, obj: dict) -> dict:
        """Bump the resourceVersion, remember the change for watchers; returns a copy for the caller."""
        with self._cond:
            self.version += 1
            obj["metadata"]["resourceVersion"] = str(self.version)
            snapshot = copy.deepcopy(obj)
            self.history.append((self.version, kind, plural, snapshot))
            self._cond.notify_all()
            return copy.deepcopy(snapshot)

    def get(self, plural: str, ns: str, name: str) -> dict:
        with self._cond:
            obj = self.objects.get((plural, ns, name))
            if obj is None:
                raise not_found(plural, name)
            return copy.deepcopy(obj)

    def list(self, plural: str, ns: str | None, selector: str = "") -> list[dict]:
        with self._cond:
            return [copy.deepcopy(o) for (p, n, _), o in sorted(self.objects.items())
                    if p == plural and (ns is None or n == ns)
                    and selector_matches(selector, o["metadata"].get("labels") or {})]

    def create(self, plural: str, ns: str, obj: dict) -> dict:
        """Validate and store a new object (status is the server's); starts Jobs' pods and pods."""
        group, version, kind, namespaced = RESOURCES[plural]
        try:
            validate(plural, obj, ns or None)
        except Invalid as exc:
            name = (obj.get("metadata") or {}).get("name") or (obj.get("metadata") or {}).get("generateName") or ""
            raise ApiError(422, "Invalid", f'{kind}{"." + group if group else ""} "{name}" is invalid: {exc}',
                           {"name": name, "kind": kind, "causes": [{"field": f, "message": m} for f, m in exc.causes]})
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        with self._cond:
            if namespaced and ("namespaces", "", ns) not in self.objects:
                raise not_found("namespaces", ns)
            if not meta.get("name"):
                meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
            if (plural, ns, meta["name"]) in self.objects:
                raise ApiError(409, "AlreadyExists", f'{plural} "{meta["name"]}" already exists')
            obj["apiVersion"], obj["kind"] = f"{group}/{version}" if group else version, kind
            meta.update(uid=secrets.token_hex(16), creationTimestamp=now(), generation=1)
            if namespaced:
                meta["namespace"] = ns
            self._server_defaults(plural, obj)
            self.objects[(plural, ns, meta["name"])] = obj
            created = self._record("ADDED", plural, obj)
        self._after_create(plural, ns, created)
        return created

    def _server_defaults(self, plural: str, obj: dict) -> None:
        if plural == "secrets" and obj.get("stringData"):  # the API server folds stringData into data
            data = obj.setdefault("data", {}) or {}
            data.update({k: base64.b64encode(v.encode()).decode() for k, v in obj.pop("stringData").items()})
            obj["data"] = data
        elif plural == "jobs":
            obj["status"] = {}
            spec = obj["spec"]
            spec.setdefault("backoffLimit", 6)
            uid = obj["metadata"]["uid"]
            spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
            template_meta = spec["template"].setdefault("metadata", {}) or {}
            spec["template"]["metadata"] = template_meta
            template_meta["labels"] = {**(template_meta.get("labels") or {}),
                                       **dict.fromkeys(JOB_LABELS[0::2], uid),
                                       **dict.fromkeys(JOB_LABELS[1::2], obj["metadata"]["name"])}
        elif plural == "pods":
            obj["status"] = {"phase": "Pending", "conditions": [], "qosClass": "Burstable"}
        elif plural == "namespaces":
            obj["status"] = {"phase": "Active"}
        elif plural == "persistentvolumeclaims":
            obj["status"] = {"phase": "Bound", "accessModes": obj["spec"].get("accessModes") or [],
                             "capacity": (obj["spec"].get("resources") or {}).get("requests") or {}}

    def _after_create(self, plural: str, ns: str, obj: dict) -> None:
        if plural == "namespaces":  # every namespace has its `default` service account
            self.create("serviceaccounts", obj["metadata"]["name"], {"metadata": {"name": "default"}})
        elif plural == "jobs":
            self._job_started(ns, obj)
        elif plural == "pods" and self.kubelet is not None:
            self.kubelet.start(ns, obj["metadata"]["name"])

    def replace(self, plural: str, ns: str, name: str, obj: dict) -> dict:
        try:
            validate(plural, obj, ns or None)
        except Invalid as exc:
            raise ApiError(422, "Invalid", f'{RESOURCES[plural][2]} "{name}" is invalid: {exc}')
        with self._cond:
            current = self.get(plural, ns, name)
            obj = copy.deepcopy(obj)
            for key in ("uid", "creationTimestamp", "namespace", "name"):
                obj["metadata"][key] = current["metadata"].get(key)
            obj["apiVersion"], obj["kind"] = current["apiVersion"], current["kind"]
            if plural == "secrets" and obj.get("stringData"):
                self._server_defaults(plural, obj)
            self.objects[(plural, ns, name)] = obj
            return self._record("MODIFIED", plural, obj)

    def patch(self, plural: str, ns: str, name: str, patch: dict, status_only: bool = False) -> dict:
        with self._cond:
            obj = self.objects.get((plural, ns, name))
            if obj is None:
                raise not_found(plural, name)
            patch = {"status": patch.get("status")} if status_only else {k: v for k, v in patch.items()
                                                                        if k != "status"}
            merged = merge_patch(obj, patch)
            obj.clear()
            obj.update(merged)
            return self._record("MODIFIED", plural, obj)

    def update(self, plural: str, ns: str, name: str, change: Callable[[dict], None]) -> dict | None:
        """Apply `change` to a stored object in place (controllers); None if it is gone."""
        with self._cond:
            obj = self.objects.get((plural, ns, name))
            if obj is None:
                return None
            change(obj)
            return self._record("MODIFIED", plural, obj)

    def delete(self, plural: str, ns: str, name: str, propagation: str | None = None, grace: int = 30) -> dict:
        with self._cond:
            obj = self.objects.pop((plural, ns, name), None)
            if obj is None:
                raise not_found(plural, name)
            obj["metadata"]["deletionTimestamp"] = now()
            gone = self._record("DELETED", plural, obj)
        if plural == "jobs" and (propagation or "Orphan") != "Orphan":  # batch/v1 Jobs orphan by default
            for pod in self.list("pods", ns, f"batch.kubernetes.io/controller-uid={gone['metadata']['uid']}"):
                self.delete("pods", ns, pod["metadata"]["name"], grace=grace)
        elif plural == "pods" and self.kubelet is not None:
            self.kubelet.stop(ns, name, grace)
        return gone

    def event(self, obj: dict, reason: str, message: str, kind: str = "Normal", component: str = "kubelet") -> None:
        """A core/v1 Event about `obj`, as the controllers and the kubelet write them."""
        meta = obj["metadata"]
        stamp = now()
        self.create("events", meta["namespace"], {
            "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}"},
            "involvedObject": {"kind": obj["kind"], "apiVersion": obj["apiVersion"], "name": meta["name"],
                               "namespace": meta["namespace"], "uid": meta["uid"]},
            "reason": reason, "message": message, "type": kind, "source": {"component": component},
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1, "reportingComponent": component})

    def events_for(self, ns: str, name: str) -> list[tuple[str, str]]:
        """(reason, message) of the events about object `name`, oldest first."""
        return [(e["reason"], e["message"]) for e in self.list("events", ns)
                if e["involvedObject"]["name"] == name]

    def _later(self, seconds: float, action: Callable[[], None]) -> None:
        timer = threading.Timer(seconds, action)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    # -- the Job controller ----------------------------------------------------------------------------
    def _job_started(self, ns: str, job: dict) -> None:
        name = job["metadata"]["name"]
        self.update("jobs", ns, name, lambda j: j["status"].update(startTime=now()))
        deadline = job["spec"].get("activeDeadlineSeconds")
        if deadline:
            self._later(deadline, lambda: self._job_deadline(ns, name))
        self._new_pod(ns, job)

    def _new_pod(self, ns: str, job: dict) -> None:
        meta, template = job["metadata"], copy.deepcopy(job["spec"]["template"])
        account = template["spec"].get("serviceAccountName") or "default"
        if ("serviceaccounts", ns, account) not in self.objects:
            self.event(job, "FailedCreate", f'Error creating: pods "{meta["name"]}-" is forbidden: error looking '
                       f'up service account {ns}/{account}: serviceaccount "{account}" not found',
                       "Warning", "job-controller")
            return
        pod = {"metadata": {**template.get("metadata", {}), "generateName": f"{meta['name']}-",
                            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"],
                                                 "uid": meta["uid"], "controller": True,
                                                 "blockOwnerDeletion": True}]},
               "spec": template["spec"]}
        created = self.create("pods", ns, pod)
        self.update("jobs", ns, meta["name"], lambda j: j["status"].update(active=1))
        self.event(job, "SuccessfulCreate", f"Created pod: {created['metadata']['name']}", component="job-controller")

    def pod_finished(self, ns: str, pod_name: str, succeeded: bool) -> None:
        """Called by the kubelet when a pod reached Succeeded or Failed: count it on its Job."""
        try:
            pod = self.get("pods", ns, pod_name)
        except ApiError:
            return
        owner = next((o for o in pod["metadata"].get("ownerReferences") or [] if o["kind"] == "Job"), None)
        if owner is None:
            return
        with self._cond:
            job = self.objects.get(("jobs", ns, owner["name"]))
            if job is None or job["metadata"]["uid"] != owner["uid"] or _finished(job):
                return
            if succeeded:
                self.update("jobs", ns, owner["name"], _complete)
                retry = False
            else:
                failed = (job["status"].get("failed") or 0) + 1
                retry = failed <= job["spec"]["backoffLimit"]
                self.update("jobs", ns, owner["name"], lambda j: _fail(j, failed, None if retry else (
                    "BackoffLimitExceeded", "Job has reached the specified backoff limit")))
            job = copy.deepcopy(self.objects[("jobs", ns, owner["name"])])
        if retry:
            self._new_pod(ns, job)
        else:
            self.event(job, "Completed" if succeeded else "BackoffLimitExceeded",
                       "Job completed" if succeeded else "Job has reached the specified backoff limit",
                       "Normal" if succeeded else "Warning", "job-controller")
            self._schedule_ttl(ns, job)

    def _job_deadline(self, ns: str, name: str) -> None:
        with self._cond:
            job = self.objects.get(("jobs", ns, name))
            if job is None or _finished(job):
                return
            active = self.list("pods", ns, f"batch.kubernetes.io/controller-uid={job['metadata']['uid']}")
            running = [p for p in active if p["status"]["phase"] not in ("Succeeded", "Failed")]
            self.update("jobs", ns, name, lambda j: _fail(j, (j["status"].get("failed") or 0) + len(running), (
                "DeadlineExceeded", "Job was active longer than specified deadline")))
            job = copy.deepcopy(self.objects[("jobs", ns, name)])
        for pod in running:
            self.delete("pods", ns, pod["metadata"]["name"], grace=0)
        self.event(job, "DeadlineExceeded", "Job was active longer than specified deadline", "Warning",
                   "job-controller")
        self._schedule_ttl(ns, job)

    def _schedule_ttl(self, ns: str, job: dict) -> None:
        ttl = job["spec"].get("ttlSecondsAfterFinished")
        if ttl is not None:
            self._later(ttl, lambda: self._expire(ns, job["metadata"]["name"]))

    def _expire(self, ns: str, name: str) -> None:
        try:
            self.delete("jobs", ns, name, propagation="Background")
        except ApiError:
            pass

    # -- HTTP ----------------------------------------------------------------------------------------
    def route(self, req: Request) -> Response | None:
        self.requests.append((req.method, req.path))
        try:
            if req.path in DISCOVERY:
                return Response.json(200, DISCOVERY[req.path])
            target = self._target(req.path)
            if target is None:
                self.unserved.append((req.method, req.path))
                return None
            return self._serve(req, *target)
        except ApiError as exc:
            return exc.response
        except (ValueError, KeyError, TypeError) as exc:
            return status(400, "BadRequest", f"the request body could not be decoded: {exc}")

    def _target(self, path: str) -> tuple[str, str | None, str | None, str | None] | None:
        """(plural, namespace or None, name, subresource) of an API path, None if not one of ours."""
        if m := NAMESPACE_PATH.match(path):
            return "namespaces", "", m["name"], None
        m = CORE_PATH.match(path) or BATCH_PATH.match(path)
        if not m or m["plural"] not in RESOURCES or RESOURCES[m["plural"]][0] != ("batch" if path.startswith(
                "/apis/") else ""):
            return None
        if m["sub"] and m["sub"] not in SUBRESOURCES.get(m["plural"], ()):
            return None
        return m["plural"], m["ns"], m["name"], m["sub"]

    def _serve(self, req: Request, plural: str, ns: str | None, name: str | None, sub: str | None) -> Response:
        if name is None:
            return self._collection(req, plural, ns)
        ns = ns or ""
        if sub == "log":
            return self._log(req, ns, name)
        if req.method == "GET":
            return Response.json(200, self.get(plural, ns, name))
        if req.method == "PUT":
            return Response.json(200, self.replace(plural, ns, name, req.json()))
        if req.method == "PATCH":
            return Response.json(200, self.patch(plural, ns, name, req.json(), status_only=sub == "status"))
        if req.method == "DELETE":
            body = req.json() if req.body else {}
            propagation = req.query.get("propagationPolicy") or body.get("propagationPolicy")
            grace = req.query.get("gracePeriodSeconds") or body.get("gracePeriodSeconds") or 30
            self.delete(plural, ns, name, propagation, int(grace))
            return Response.json(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                       "details": {"name": name, "kind": plural}})
        return status(405, "MethodNotAllowed", f"{req.method} is not supported here")

    def _collection(self, req: Request, plural: str, ns: str | None) -> Response:
        if req.method == "POST":
            if plural != "namespaces" and ns is None:
                return status(405, "MethodNotAllowed", "create needs a namespace")
            return Response.json(201, self.create(plural, ns or "", req.json()))
        if req.method != "GET":
            return status(405, "MethodNotAllowed", f"{req.method} is not supported here")
        selector = req.query.get("labelSelector", "")
        if req.query.get("watch") in ("true", "1"):
            timeout = float(req.query.get("timeoutSeconds") or WATCH_TIMEOUT)
            since = int(req.query.get("resourceVersion") or 0) or self.version
            return Response(200, headers={"Content-Type": "application/json"},
                            stream=self._watch(plural, ns, selector, since, timeout))
        group, version, kind, _ = RESOURCES[plural]
        with self._cond:
            items, version_now = self.list(plural, ns, selector), self.version
        return Response.json(200, {"apiVersion": f"{group}/{version}" if group else version, "kind": f"{kind}List",
                                   "metadata": {"resourceVersion": str(version_now)}, "items": items})

    def _watch(self, plural: str, ns: str | None, selector: str, since: int, timeout: float) -> Iterator[bytes]:
        deadline = time.monotonic() + timeout
        while not self._stopped.is_set() and time.monotonic() < deadline:
            with self._cond:
                fresh = [h for h in self.history[-2000:] if h[0] > since]
                if not fresh:
                    self._cond.wait(1.0)
                    continue
            for version, kind, p, obj in fresh:
                since = version
                if p == plural and (ns is None or obj["metadata"].get("namespace", "") == ns) \
                        and selector_matches(selector, obj["metadata"].get("labels") or {}):
                    yield json.dumps({"type": kind, "object": obj}).encode() + b"\n"

    def _log(self, req: Request, ns: str, name: str) -> Response:
        pod = self.get("pods", ns, name)
        containers = [c["name"] for c in pod["spec"]["containers"]]
        container = req.query.get("container") or (containers[0] if len(containers) == 1 else None)
        if container not in containers:
            return status(400, "BadRequest", f'a container name must be specified for pod {name}, choose one of: '
                          f'{containers}' if container is None else f'container {container} is not valid for pod {name}')
        if req.query.get("previous") in ("true", "1"):
            return status(400, "BadRequest", f'previous terminated container "{container}" in pod "{name}" not found')
        text = self.kubelet.logs(ns, name) if self.kubelet is not None else ""
        if text is None:
            return status(400, "BadRequest", f'container "{container}" in pod "{name}" is waiting to start: '
                          "ContainerCreating")
        tail = req.query.get("tailLines")
        if tail:
            text = "".join(text.splitlines(keepends=True)[-int(tail):])
        return Response(200, text.encode(), {"Content-Type": "text/plain"})


def _finished(job: dict) -> bool:
    return any(c["type"] in ("Complete", "Failed") and c["status"] == "True"
               for c in job["status"].get("conditions") or [])


def _condition(kind: str, reason: str | None = None, message: str | None = None) -> dict:
    stamp = now()
    condition = {"type": kind, "status": "True", "lastProbeTime": stamp, "lastTransitionTime": stamp}
    if reason:
        condition.update(reason=reason, message=message)
    return condition


def _complete(job: dict) -> None:
    job["status"].update(active=0, succeeded=1, completionTime=now(), conditions=[
        _condition("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods"),
        _condition("Complete", "CompletionsReached", "Reached expected number of succeeded pods")])
    job["status"].pop("active")


def _fail(job: dict, failed: int, terminal: tuple[str, str] | None) -> None:
    job["status"].update(failed=failed)
    job["status"].pop("active", None)
    if terminal:
        job["status"]["conditions"] = [_condition("FailureTarget", *terminal), _condition("Failed", *terminal)]


def _resource_list(group_version: str, plurals: list[str]) -> dict:
    resources = []
    for plural in plurals:
        _, _, kind, namespaced = RESOURCES[plural]
        resources.append({"name": plural, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind,
                          "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]})
        resources += [{"name": f"{plural}/{sub}", "singularName": "", "namespaced": namespaced, "kind": kind,
                       "verbs": ["get"]} for sub in SUBRESOURCES.get(plural, ())]
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}


DISCOVERY = {
    "/version": {"major": "1", "minor": "33", "gitVersion": "v1.33.0-indexflow-sandbox", "platform": "linux/amd64"},
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
    "/api/v1": _resource_list("v1", [p for p, r in RESOURCES.items() if r[0] == ""]),
    "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
        {"name": "batch", "versions": [{"groupVersion": "batch/v1", "version": "v1"}],
         "preferredVersion": {"groupVersion": "batch/v1", "version": "v1"}}]},
    "/apis/batch": {"kind": "APIGroup", "apiVersion": "v1", "name": "batch",
                    "versions": [{"groupVersion": "batch/v1", "version": "v1"}],
                    "preferredVersion": {"groupVersion": "batch/v1", "version": "v1"}},
    "/apis/batch/v1": _resource_list("batch/v1", ["jobs"]),
}
