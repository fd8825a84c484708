"""The local stack (ARCHITECTURE.md "The local stack"): registry, git + GitLab, Konflux, in one place.

`Stack.up(state_dir)` starts every part on a free loopback port inside this process (threads plus
the `docker-registry` child process) and writes `state_dir/stack.json` with the endpoints, tokens
and kubeconfig path. `python -m sandbox.stack serve <state_dir>` is what `indexflow sandbox up`
runs in the background: the same stack, kept alive until SIGTERM.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from indexflow.errors import IndexflowError
from sandbox.gitlab import GitLabAPI
from sandbox.gitserver import GitServer
from sandbox.konflux import Builder, KubeAPI
from sandbox.registry import LocalRegistry

NAMESPACE = "iib-tenant"


@dataclass
class Stack:
    state_dir: Path
    registry: LocalRegistry
    git: GitServer
    gitlab: GitLabAPI
    kube: KubeAPI
    builder: Builder
    kubeconfig_path: Path
    konflux_namespace: str = NAMESPACE

    @classmethod
    def up(cls, state_dir: Path) -> "Stack":
        """Start everything; tokens are fresh per start and only written to the 0600 state files."""
        state_dir = Path(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        registry = LocalRegistry(root=state_dir / "registry").start()
        started: list = [registry]
        try:
            git = GitServer(state_dir / "git", secrets.token_urlsafe(24))
            gitlab = GitLabAPI(git)
            started.append(git.start())
            kube = KubeAPI(secrets.token_urlsafe(24))
            started.append(kube.start())
            builder = Builder(kube, git, registry.host, NAMESPACE)
        except BaseException:
            for part in reversed(started):
                part.stop()
            raise
        gitlab.on_mr_opened.append(builder.on_merge_request)
        git.on_push.append(builder.on_push)
        kubeconfig = kube.write_kubeconfig(state_dir / "kubeconfig.yaml", NAMESPACE)
        stack = cls(state_dir, registry, git, gitlab, kube, builder, kubeconfig)
        stack.write_state()
        return stack

    def down(self) -> None:
        """Stop every part (builds in flight are abandoned) and forget the state file."""
        self.builder.close()
        self.kube.stop()
        self.git.stop()
        self.registry.stop()
        (self.state_dir / "stack.json").unlink(missing_ok=True)

    # -- what clients need --------------------------------------------------------------------------
    @property
    def git_token(self) -> str:
        """The GitLab token: API (PRIVATE-TOKEN / Bearer) and git over HTTP (as the password)."""
        return self.git.token

    @property
    def gitlab_url(self) -> str:
        return self.gitlab.url

    @property
    def kube_url(self) -> str:
        return self.kube.url

    def git_repo_url(self, project: str) -> str:
        return self.git.repo_url(project)

    def publish_git_repo(self, project: str, source_repo: Path) -> str:
        """Push every branch of a local repo into the git server as `project`; returns its URL."""
        return self.git.publish(project, source_repo)

    def set_knobs(self, **knobs: object) -> None:
        """Steer the next Konflux builds (see sandbox.konflux.Knobs)."""
        self.kube.knobs.update(knobs)

    def describe(self) -> dict:
        return {"pid": os.getpid(), "state_dir": str(self.state_dir),
                "registry": {"host": self.registry.host, "url": self.registry.url},
                "gitlab": {"url": self.gitlab_url, "token": self.git_token,
                           "repos": {p: self.git_repo_url(p) for p in self.git.projects()}},
                "konflux": {"api": self.kube_url, "namespace": self.konflux_namespace,
                            "kubeconfig": str(self.kubeconfig_path), "knobs": f"{self.kube_url}/_sandbox/knobs"}}

    def write_state(self) -> Path:
        path = self.state_dir / "stack.json"
        path.touch(mode=0o600)
        path.write_text(json.dumps(self.describe(), indent=2))
        return path


def serve(state_dir: Path) -> int:
    """Run the stack until SIGTERM/SIGINT (the body of `indexflow sandbox up`'s background process)."""
    try:
        stack = Stack.up(state_dir)
    except IndexflowError as exc:  # e.g. docker-registry missing: one line for `sandbox up` to show
        print(f"Error: {exc}", file=sys.stderr, flush=True)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(5.0):
            stack.write_state()  # keep the repo list fresh for `indexflow sandbox up` re-runs
    finally:
        stack.down()
    return 0


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "serve":
    sys.exit(serve(Path(sys.argv[2])))
