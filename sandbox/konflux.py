"""Konflux stand-in: a Kubernetes API subset for Tekton PipelineRuns, and a pipelines-as-code builder.

`KubeAPI` serves `tekton.dev/v1` `pipelineruns` (list with labelSelector, get, create, merge-patch
of the object and of its `status` subresource) behind a bearer token, so the real kubernetes
client (through prefect-kubernetes and a kubeconfig) talks to it as to a cluster. Runtime knobs
(fail, cancel, never finish, delay) are read and set over HTTP at `/_sandbox/knobs`, so a test or
a user in another process can steer the next builds of a running `indexflow sandbox up`.

`Builder` does what PaC + the catalog pipeline do: when an MR is opened (or its branch, or a
watched branch, moves) it creates a PipelineRun labelled with the head sha, builds the catalog
image of that commit (binary image layers + a `/configs` layer + labels, one image per arch
under an OCI index), pushes it to the sandbox registry and sets `Succeeded` with the results.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import re
import secrets
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path

import yaml

from sandbox.gitserver import CGI_TIMEOUT, GitServer, LoopbackServer, Request, Response, Served

SHA_LABEL = "pipelinesascode.tekton.dev/sha"
CONFIGS_LABEL = "operators.operatorframework.io.index.configs.v1"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
PR_PATH = re.compile(r"^/apis/tekton\.dev/v1/namespaces/(?P<ns>[^/]+)/pipelineruns"
                     r"(?:/(?P<name>[^/]+)(?P<status>/status)?)?$")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str) -> Response:
    return Response.json(code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "message": message, "reason": reason, "code": code})


def merge_patch(target: object, patch: object) -> object:
    """RFC 7386 JSON merge patch (what `application/merge-patch+json` means)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Equality-based label selectors: `a=b`, `a==b`, `a!=b`, `a`, `!a`, comma-separated."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = re.split(r"==?", term, maxsplit=1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


@dataclass
class Knobs:
    """How the next builds end. `fail` may be a message; `fail_reason` is the condition reason."""

    fail: bool | str = False
    fail_reason: str = "Failed"
    cancel: bool = False
    never_finish: bool = False
    delay: float = 0.0

    def update(self, values: dict) -> None:
        names = {f.name for f in fields(self)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown knobs: {', '.join(sorted(unknown))}")
        for key, value in values.items():
            setattr(self, key, float(value) if key == "delay" else value)


class KubeAPI(Served):
    """The `pipelineruns` resource of one fake cluster, in memory."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.knobs = Knobs()
        self.objects: dict[tuple[str, str], dict] = {}
        self._version = 0
        self._lock = threading.RLock()
        self.server = LoopbackServer(self._authorized, [self.route], challenge="Bearer")

    def _authorized(self, req: Request) -> bool:
        scheme, _, value = req.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and secrets.compare_digest(value.strip(), self.token)

    def write_kubeconfig(self, path: Path, namespace: str) -> Path:
        """A kubeconfig whose current context reaches this API with the bearer token."""
        config = {"apiVersion": "v1", "kind": "Config", "current-context": "sandbox", "preferences": {},
                  "clusters": [{"name": "sandbox", "cluster": {"server": self.url}}],
                  "users": [{"name": "sandbox", "user": {"token": self.token}}],
                  "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox", "user": "sandbox",
                                                               "namespace": namespace}}]}
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    # -- objects ---------------------------------------------------------------------------------
    def _bump(self, obj: dict) -> dict:
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)
        return copy.deepcopy(obj)

    def create(self, namespace: str, obj: dict, keep_status: bool = False) -> dict:
        """Store a new PipelineRun (status dropped, as the status subresource demands, unless kept)."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        if not keep_status:
            obj.pop("status", None)
        meta.update(namespace=namespace, uid=secrets.token_hex(16), creationTimestamp=_now(), generation=1)
        obj.setdefault("apiVersion", "tekton.dev/v1")
        obj.setdefault("kind", "PipelineRun")
        with self._lock:
            if (namespace, meta.get("name")) in self.objects or not meta.get("name"):
                raise KeyError(meta.get("name"))
            self.objects[(namespace, meta["name"])] = obj
            return self._bump(obj)

    def patch(self, namespace: str, name: str, patch: dict, status_only: bool = False) -> dict:
        with self._lock:
            obj = self.objects[(namespace, name)]
            if status_only:
                patch = {"status": patch.get("status")} if "status" in patch else {}
            else:
                patch = {k: v for k, v in patch.items() if k != "status"}
            merged = merge_patch(obj, patch)
            obj.clear()
            obj.update(merged)
            return self._bump(obj)

    def set_status(self, namespace: str, name: str, status: dict) -> dict:
        return self.patch(namespace, name, {"status": status}, status_only=True)

    def list(self, namespace: str, selector: str = "") -> list[dict]:
        with self._lock:
            return [copy.deepcopy(o) for (ns, _), o in self.objects.items()
                    if ns == namespace and selector_matches(selector, o["metadata"].get("labels") or {})]

    # -- HTTP --------------------------------------------------------------------------------------
    def route(self, req: Request) -> Response | None:
        if req.path == "/_sandbox/knobs":
            return self._knobs(req)
        m = PR_PATH.match(req.path)
        if not m:
            return None
        ns, name = m["ns"], m["name"]
        try:
            if name is None:
                return self._collection(req, ns)
            if req.method == "GET":
                with self._lock:
                    return Response.json(200, copy.deepcopy(self.objects[(ns, name)]))
            if req.method == "PATCH":
                return Response.json(200, self.patch(ns, name, req.json(), status_only=bool(m["status"])))
            if req.method == "DELETE":
                with self._lock:
                    gone = self.objects.pop((ns, name))
                return Response.json(200, gone)
        except KeyError:
            return _status(404, "NotFound", f'pipelineruns.tekton.dev "{name}" not found')
        return _status(405, "MethodNotAllowed", f"{req.method} is not supported here")

    def _collection(self, req: Request, ns: str) -> Response:
        if req.method == "POST":
            try:
                return Response.json(201, self.create(ns, req.json()))
            except KeyError as exc:
                return _status(409, "AlreadyExists", f'pipelineruns.tekton.dev "{exc.args[0]}" already exists')
        items = self.list(ns, req.query.get("labelSelector", ""))
        return Response.json(200, {"apiVersion": "tekton.dev/v1", "kind": "PipelineRunList",
                                   "metadata": {"resourceVersion": str(self._version)}, "items": items})

    def _knobs(self, req: Request) -> Response:
        if req.method == "POST":
            try:
                self.knobs.update(req.json())
            except (ValueError, TypeError) as exc:
                return Response.json(400, {"message": str(exc)})
        return Response.json(200, asdict(self.knobs))


class Builder:
    """Pipelines-as-code + the catalog pipeline, on loopback: commit in, image in the registry out."""

    def __init__(self, kube: KubeAPI, git: GitServer, registry_host: str, namespace: str) -> None:
        from indexflow.registry.client import RegistryClient

        self.kube, self.git, self.namespace = kube, git, namespace
        self.registry_host = registry_host
        self.client = RegistryClient(insecure=(registry_host,))
        self.watched: set[tuple[str, str]] = set()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sandbox-build")
        self._stop = threading.Event()

    def close(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.client.close()

    def watch(self, project: str, branch: str) -> None:
        """Build every commit pushed to `branch` (a push pipeline), not only MR heads."""
        self.watched.add((project, branch))

    def on_merge_request(self, project: str, branch: str, sha: str) -> None:
        self.start(project, sha, "pull_request", branch)

    def on_push(self, project: str, moved: dict[str, tuple[str | None, str | None]]) -> None:
        for branch, (_, new) in moved.items():
            if new and (project, branch) in self.watched:
                self.start(project, new, "push", branch)

    def start(self, project: str, sha: str, event: str, branch: str) -> str:
        """Create the Running PipelineRun of `sha` now; build in the background. Returns its name."""
        knobs = copy.copy(self.kube.knobs)
        component = project.rsplit("/", 1)[-1]
        event_name = "on-pull-request" if event == "pull_request" else "on-push"
        pr = {"metadata": {"generateName": f"{component}-{event_name}-",
                           "labels": {SHA_LABEL: sha, "pipelinesascode.tekton.dev/event-type": event,
                                      "pipelinesascode.tekton.dev/branch": branch,
                                      "appstudio.openshift.io/component": component},
                           "annotations": {"pipelinesascode.tekton.dev/repo-url": self.git.repo_url(project)}},
              "spec": {"pipelineRef": {"name": "fbc-catalog-build"},
                       "params": [{"name": "git-url", "value": self.git.repo_url(project)},
                                  {"name": "revision", "value": sha}]},
              "status": {"startTime": _now(), "conditions": [
                  {"type": "Succeeded", "status": "Unknown", "reason": "Running",
                   "message": "Tasks Completed: 0 (Failed: 0, Cancelled 0), Incomplete: 1, Skipped: 0",
                   "lastTransitionTime": _now()}]}}
        name = self.kube.create(self.namespace, pr, keep_status=True)["metadata"]["name"]
        self._pool.submit(self._run, name, project, sha, event, knobs)
        return name

    def _finish(self, name: str, status: str, reason: str, message: str, results: list | None = None) -> None:
        body: dict = {"completionTime": _now(), "conditions": [
            {"type": "Succeeded", "status": status, "reason": reason, "message": message,
             "lastTransitionTime": _now()}]}
        if results is not None:
            body["results"] = results
        self.kube.set_status(self.namespace, name, body)

    def _run(self, name: str, project: str, sha: str, event: str, knobs: Knobs) -> None:
        if self._stop.wait(knobs.delay) or knobs.never_finish:
            return
        try:
            if knobs.cancel:
                self._finish(name, "False", "Cancelled", f'PipelineRun "{name}" was cancelled')
            elif knobs.fail:
                message = knobs.fail if isinstance(knobs.fail, str) else \
                    "Tasks Completed: 1 (Failed: 1, Cancelled 0), Skipped: 0"
                self._finish(name, "False", knobs.fail_reason, message)
            else:
                url, digest = self.build(project, sha, "on-pr-" + sha if event == "pull_request" else sha)
                self._finish(name, "True", "Succeeded", "Tasks Completed: 1 (Failed: 0, Cancelled 0), Skipped: 0",
                             [{"name": "IMAGE_URL", "value": url}, {"name": "IMAGE_DIGEST", "value": digest}])
        except Exception as exc:  # the build failed: say so on the run, like a failed TaskRun would
            self._finish(name, "False", "Failed", f"build-image: {type(exc).__name__}: {exc}")

    # -- the catalog build ---------------------------------------------------------------------------
    def build(self, project: str, sha: str, tag: str) -> tuple[str, str]:
        """Build and push the catalog image of commit `sha`; returns (IMAGE_URL, IMAGE_DIGEST)."""
        from indexflow.registry.refs import ImageRef

        bare = self.git.bare_path(project)
        meta = json.loads(_git_bytes(bare, "show", f"{sha}:.iib-build-metadata.json"))
        layer_tar = _git_bytes(bare, "archive", "--format=tar", sha, "configs")
        layer = gzip.compress(layer_tar, mtime=0)
        diff_id = "sha256:" + hashlib.sha256(layer_tar).hexdigest()
        labels = {CONFIGS_LABEL: "/configs", **(meta.get("labels") or {})}
        dst = ImageRef(self.registry_host, f"konflux/{project.rsplit('/', 1)[-1]}", tag=tag)
        entries = [self._arch_image(dst, meta.get("binary_image") or "scratch", arch, layer, diff_id, labels)
                   for arch in (meta.get("arches") or ["amd64"])]
        raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
        digest = self.client.push_manifest(dst, raw, OCI_INDEX)
        return f"{dst.name}:{tag}", digest

    def _arch_image(self, dst, base: str, arch: str, layer: bytes, diff_id: str, labels: dict) -> dict:  # noqa: ANN001
        """FROM `base` (its `arch` image's layers and config) + the configs layer; returns its index entry."""
        from indexflow.registry.client import sha256
        from indexflow.registry.refs import ImageRef

        repo = ImageRef(dst.registry, dst.repository)
        layers: list[dict] = []
        config: dict = {"architecture": arch, "os": "linux", "config": {},
                        "rootfs": {"type": "layers", "diff_ids": []}, "history": []}
        if base != "scratch":
            base_ref = ImageRef.parse(base)
            child, manifest = self.client.image_manifest(base_ref, arch)
            config = copy.deepcopy(self.client.config(child))
            for desc in manifest.json.get("layers") or []:
                self.client.copy_blob(child, repo, desc["digest"])
                layers.append(desc)
        config.update(architecture=arch, os=config.get("os") or "linux")
        inner = config.setdefault("config", {})
        inner["Labels"] = {**(inner.get("Labels") or {}), **labels}
        config.setdefault("rootfs", {"type": "layers"}).setdefault("diff_ids", []).append(diff_id)
        config.setdefault("history", []).append({"created": _now(), "created_by": "ADD configs /configs"})
        config_raw = json.dumps(config).encode()
        self.client.push_blob(repo, layer)
        self.client.push_blob(repo, config_raw)
        manifest_raw = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(config_raw), "size": len(config_raw)},
            "layers": [*layers, {"mediaType": OCI_LAYER, "digest": sha256(layer), "size": len(layer)}]}).encode()
        digest = self.client.push_manifest(repo, manifest_raw, OCI_MANIFEST)
        return {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(manifest_raw),
                "platform": {"architecture": arch, "os": config["os"]}}


def _git_bytes(bare: Path, *args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=bare, capture_output=True, check=True, timeout=CGI_TIMEOUT).stdout
