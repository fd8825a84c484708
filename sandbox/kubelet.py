"""The sandbox cluster's kubelet: each pod's container runs as a podman container, as its spec says.

For a pod of `sandbox.cluster.Cluster` it resolves the environment (`env` values, `secretKeyRef`,
`fieldRef`, `envFrom` secrets), pulls the image per `imagePullPolicy` (ErrImagePull, then
ImagePullBackOff, retried with back-off like a kubelet), mounts the volumes (an `emptyDir` per pod;
a `persistentVolumeClaim` is a directory that outlives its pods, keyed by namespace and claim
name; `fsGroup` owns both), and runs the container with its `command` as entrypoint, its `args`,
`workingDir`, user and memory/CPU limits. Phase, container state, exit code and the
`OOMKilled`/`Error`/`Completed` reason go back through the API; logs are served from podman.

One deliberate difference from a real node: containers share the host's network, so a pod reaches
the loopback services of the sandbox and the test's Prefect server (`127.0.0.1`) directly.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

from sandbox.cluster import ApiError, Cluster, now
from sandbox.image import Podman

UNITS = {"": 1, "k": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4, "Ki": 1024, "Mi": 1024**2,
         "Gi": 1024**3, "Ti": 1024**4, "m": 0.001}
QUANTITY = re.compile(r"^(?P<number>\d+(?:\.\d+)?)(?P<unit>Ki|Mi|Gi|Ti|k|M|G|T|m)?$")
PULL_BACKOFF_MAX = 20.0


def quantity(value: str | int | float) -> float:
    """A Kubernetes resource quantity as a number (`512Mi` -> 536870912.0, `500m` -> 0.5)."""
    m = QUANTITY.match(str(value))
    if not m:
        raise ValueError(f"unsupported quantity {value!r}")
    return float(m["number"]) * UNITS[m["unit"] or ""]


class ConfigError(Exception):
    """The container cannot be configured yet (CreateContainerConfigError)."""


class Kubelet:
    """Runs the pods of `cluster` with `podman`; `insecure` registries are pulled over plain HTTP."""

    def __init__(self, cluster: Cluster, podman: Podman, state_dir: Path, insecure: tuple[str, ...] = ()) -> None:
        self.cluster, self.podman, self.insecure = cluster, podman, insecure
        self.state_dir = Path(state_dir)
        self.label = f"indexflow-sandbox-cluster={self.state_dir.name}"
        self._deleted: set[tuple[str, str]] = set()
        self._threads: list[threading.Thread] = []
        cluster.kubelet = self

    def container_name(self, ns: str, pod: str) -> str:
        return f"k8s_{ns}_{pod}_{self.state_dir.name}"

    def start(self, ns: str, pod_name: str) -> None:
        thread = threading.Thread(target=self._run_pod, args=(ns, pod_name), name=f"kubelet-{pod_name}",
                                  daemon=True)
        self._threads.append(thread)
        thread.start()

    def stop(self, ns: str, pod_name: str, grace: int) -> None:
        self._deleted.add((ns, pod_name))
        self.podman.run("stop", "--ignore", "-t", str(grace), self.container_name(ns, pod_name),
                        check=False, timeout=grace + 60)

    def close(self) -> None:
        """Stop every container of this cluster (what a node drain would do)."""
        for (ns, name) in list(self._running()):
            self._deleted.add((ns, name))
        self.podman.run("rm", "--force", "--filter", f"label={self.label}", "--time", "2", check=False,
                        timeout=120)
        for thread in self._threads:
            thread.join(timeout=30)

    def _running(self) -> list[tuple[str, str]]:
        return [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in self.cluster.list("pods", None)]

    def logs(self, ns: str, pod_name: str) -> str | None:
        saved = self.state_dir / "logs" / f"{ns}_{pod_name}.log"
        if saved.exists():
            return saved.read_text(errors="replace")
        result = self.podman.run("logs", self.container_name(ns, pod_name), check=False, timeout=60)
        return result.stdout + result.stderr if result.returncode == 0 else None

    # -- one pod's life ----------------------------------------------------------------------------------
    def _gone(self, ns: str, name: str) -> bool:
        return (ns, name) in self._deleted or self.cluster._stopped.is_set()

    def _run_pod(self, ns: str, name: str) -> None:
        try:
            pod = self.cluster.get("pods", ns, name)
        except ApiError:
            return
        container = pod["spec"]["containers"][0]
        self._set(ns, name, phase="Pending", state={"waiting": {"reason": "ContainerCreating"}}, scheduled=True)
        args = self._prepared(ns, name, pod, container)
        if args is None or not self._pulled(ns, name, pod, container):
            return
        if self._gone(ns, name):
            return
        env, argv = args
        started = self.podman.run(*argv, check=False, timeout=120, env=env)
        if started.returncode != 0:
            self._terminated(ns, name, pod, 128, "StartError", (started.stderr or started.stdout)[-1000:])
            return
        self._set(ns, name, phase="Running", state={"running": {"startedAt": now()}}, ready=True)
        self.cluster.event(pod, "Started", f"Started container {container['name']}")
        waited = self.podman.run("wait", self.container_name(ns, name), check=False, timeout=24 * 3600)
        code = int(waited.stdout.strip() or 137) if waited.returncode == 0 else 137
        oom = self.podman.run("inspect", "--format", "{{.State.OOMKilled}}", self.container_name(ns, name),
                              check=False).stdout.strip() == "true"
        self._save_logs(ns, name)
        reason = "OOMKilled" if oom else ("Completed" if code == 0 else "Error")
        self._terminated(ns, name, pod, code, reason, None)

    def _prepared(self, ns: str, name: str, pod: dict, container: dict) -> tuple[dict, list[str]] | None:
        """The podman environment and argv, waiting (CreateContainerConfigError) until they resolve."""
        while not self._gone(ns, name):
            try:
                return self._argv(ns, name, pod, container)
            except ConfigError as exc:
                self._set(ns, name, phase="Pending", state={"waiting": {"reason": "CreateContainerConfigError",
                                                                        "message": str(exc)}})
                time.sleep(2)
        return None

    def _pulled(self, ns: str, name: str, pod: dict, container: dict) -> bool:
        image, policy = container["image"], container.get("imagePullPolicy") or (
            "Always" if container["image"].endswith(":latest") or ":" not in container["image"] else "IfNotPresent")
        if policy == "IfNotPresent" and self.podman.exists(image) or policy == "Never" and self.podman.exists(image):
            return True
        if policy == "Never":
            message = f'Container image "{image}" is not present with pull policy of Never'
            self._set(ns, name, phase="Pending", state={"waiting": {"reason": "ErrImageNeverPull", "message": message}})
            self.cluster.event(pod, "ErrImageNeverPull", message, "Warning")
            return False
        backoff = 2.0
        while not self._gone(ns, name):
            self.cluster.event(pod, "Pulling", f'Pulling image "{image}"')
            tls = ["--tls-verify=false"] if image.split("/", 1)[0] in self.insecure else []
            pulled = self.podman.run("pull", "--quiet", *tls, image, check=False, timeout=600)
            if pulled.returncode == 0:
                self.cluster.event(pod, "Pulled", f'Successfully pulled image "{image}"')
                return True
            message = f'failed to pull and unpack image "{image}": {pulled.stderr.strip()[-500:]}'
            self._set(ns, name, phase="Pending", state={"waiting": {"reason": "ErrImagePull", "message": message}})
            self.cluster.event(pod, "Failed", f"Failed to pull image \"{image}\": {message}", "Warning")
            time.sleep(min(backoff, 2.0))
            self._set(ns, name, phase="Pending", state={"waiting": {
                "reason": "ImagePullBackOff", "message": f'Back-off pulling image "{image}"'}})
            self.cluster.event(pod, "BackOff", f'Back-off pulling image "{image}"', "Warning")
            deadline = time.monotonic() + backoff
            while time.monotonic() < deadline and not self._gone(ns, name):
                time.sleep(0.5)
            backoff = min(backoff * 2, PULL_BACKOFF_MAX)
        return False

    def _argv(self, ns: str, name: str, pod: dict, container: dict) -> tuple[dict, list[str]]:
        spec = pod["spec"]
        env = self._environment(ns, pod, container)
        security = {**(spec.get("securityContext") or {}), **(container.get("securityContext") or {})}
        argv = ["run", "--detach", "--name", self.container_name(ns, name), "--label", self.label,
                "--network", "host", "--hostname", name, "--pull", "never"]
        for key in env:
            argv += ["--env", key]  # values travel in podman's environment, never on its command line
        if "command" in container and container["command"]:
            argv += ["--entrypoint", json.dumps(container["command"])]
        if container.get("workingDir"):
            argv += ["--workdir", container["workingDir"]]
        if security.get("runAsUser") is not None:
            argv += ["--user", f"{security['runAsUser']}:{security.get('runAsGroup', security['runAsUser'])}"]
        if security.get("runAsNonRoot") and not self._runs_as_non_root(container["image"], security):
            raise ConfigError("container has runAsNonRoot and image will run as root")
        if spec.get("securityContext", {}).get("fsGroup") is not None:
            argv += ["--group-add", str(spec["securityContext"]["fsGroup"])]
        limits = (container.get("resources") or {}).get("limits") or {}
        if "memory" in limits:
            argv += ["--memory", str(int(quantity(limits["memory"])))]
        if "cpu" in limits:
            argv += ["--cpus", f"{quantity(limits['cpu']):g}"]
        for mount in container.get("volumeMounts") or []:
            source = self._volume(ns, name, spec, mount["name"])
            argv += ["--volume", f"{source}:{mount['mountPath']}{':ro' if mount.get('readOnly') else ''}"]
        argv += [container["image"], *(container.get("args") or [])]
        return {**self.podman.env, **env}, argv

    def _runs_as_non_root(self, image: str, security: dict) -> bool:
        if security.get("runAsUser") is not None:
            return int(security["runAsUser"]) != 0
        user = self.podman.run("image", "inspect", "--format", "{{.User}}", image, check=False).stdout.strip()
        return bool(user) and user.split(":")[0] not in ("0", "root")

    def _environment(self, ns: str, pod: dict, container: dict) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            ref = source.get("secretRef")
            if ref is None:
                raise ConfigError("only secretRef is supported in envFrom")
            data = self._secret(ns, ref["name"], optional=bool(ref.get("optional")))
            env.update({(source.get("prefix") or "") + k: v for k, v in data.items()})
        for item in container.get("env") or []:
            if "valueFrom" not in item or item["valueFrom"] is None:
                env[item["name"]] = item.get("value") or ""
                continue
            frm = item["valueFrom"]
            if frm.get("secretKeyRef"):
                ref = frm["secretKeyRef"]
                data = self._secret(ns, ref["name"], optional=bool(ref.get("optional")))
                if ref["key"] not in data and not ref.get("optional"):
                    raise ConfigError(f'couldn\'t find key {ref["key"]} in Secret {ns}/{ref["name"]}')
                if ref["key"] in data:
                    env[item["name"]] = data[ref["key"]]
            elif frm.get("fieldRef"):
                path = frm["fieldRef"]["fieldPath"]
                fields = {"metadata.name": pod["metadata"]["name"], "metadata.namespace": ns,
                          "metadata.uid": pod["metadata"]["uid"], "spec.serviceAccountName":
                          pod["spec"].get("serviceAccountName") or "default"}
                if path not in fields:
                    raise ConfigError(f"unsupported fieldPath {path}")
                env[item["name"]] = fields[path]
            else:
                raise ConfigError(f"unsupported valueFrom in env {item['name']}")
        return env

    def _secret(self, ns: str, name: str, optional: bool) -> dict[str, str]:
        try:
            secret = self.cluster.get("secrets", ns, name)
        except ApiError:
            if optional:
                return {}
            raise ConfigError(f'secret "{name}" not found')
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}

    def _volume(self, ns: str, pod_name: str, spec: dict, volume_name: str) -> Path:
        volume = next(v for v in spec.get("volumes") or [] if v["name"] == volume_name)
        if volume.get("persistentVolumeClaim"):
            claim = volume["persistentVolumeClaim"]["claimName"]
            try:
                self.cluster.get("persistentvolumeclaims", ns, claim)
            except ApiError:
                raise ConfigError(f'persistentvolumeclaim "{claim}" not found')
            path = self.state_dir / "volumes" / ns / claim
        elif volume.get("emptyDir") is not None:
            path = self.state_dir / "pods" / f"{ns}_{pod_name}" / volume_name
        else:
            raise ConfigError(f"volume {volume_name}: only emptyDir and persistentVolumeClaim are supported")
        path.mkdir(parents=True, exist_ok=True)
        group = (spec.get("securityContext") or {}).get("fsGroup")
        if group is not None:  # what the kubelet does for fsGroup: group-owned, group-writable, setgid
            shutil.chown(path, group=int(group))
            os.chmod(path, 0o2775)
        return path

    # -- status ----------------------------------------------------------------------------------------
    def _set(self, ns: str, name: str, phase: str, state: dict, scheduled: bool = False, ready: bool = False,
             exit_reason: str | None = None) -> None:
        def change(pod: dict) -> None:
            container = pod["spec"]["containers"][0]
            status = pod["status"]
            status["phase"] = phase
            status.setdefault("startTime", now())
            status["hostIP"] = status["podIP"] = "127.0.0.1"
            conditions = {c["type"]: c for c in status.get("conditions") or []}
            conditions["PodScheduled"] = {"type": "PodScheduled", "status": "True", "lastTransitionTime": now()}
            conditions["Ready"] = {"type": "Ready", "status": "True" if ready else "False",
                                   "lastTransitionTime": now()}
            status["conditions"] = list(conditions.values())
            status["containerStatuses"] = [{"name": container["name"], "image": container["image"],
                                            "imageID": "", "ready": ready, "restartCount": 0,
                                            "started": "running" in state, "state": state}]
            if exit_reason:
                status["reason"] = exit_reason
        self.cluster.update("pods", ns, name, change)

    def _terminated(self, ns: str, name: str, pod: dict, code: int, reason: str, message: str | None) -> None:
        terminated = {"exitCode": code, "reason": reason, "startedAt": now(), "finishedAt": now()}
        if message:
            terminated["message"] = message
        succeeded = code == 0
        self._set(ns, name, phase="Succeeded" if succeeded else "Failed", state={"terminated": terminated})
        if not succeeded:
            self.cluster.event(pod, "BackOff" if reason == "Error" else reason,
                               f"container {pod['spec']['containers'][0]['name']} exited with code {code} ({reason})",
                               "Warning")
        self.cluster.pod_finished(ns, name, succeeded)
        self.podman.run("rm", "--ignore", self.container_name(ns, name), check=False, timeout=60)

    def _save_logs(self, ns: str, name: str) -> None:
        result = self.podman.run("logs", self.container_name(ns, name), check=False, timeout=60)
        folder = self.state_dir / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{ns}_{name}.log").write_text(result.stdout + result.stderr)
