"""The sandbox as the merge sees it: stack up, seed, and the Prefect blocks pointing at it.

Shared by `indexflow demo` and the end-to-end tests so both exercise the very same wiring.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.seed import INDEX_REPO, SeedResult

GIT_PROJECT = "iib/iib-pub-pending-index-configs"


@dataclass
class SandboxEnv:
    state_dir: Path
    stack: Any  # sandbox.stack.Stack
    registry_client: Any = None
    artifacts: Any = None
    seeded: SeedResult | None = None
    _blocks: dict = field(default_factory=dict)

    # -- endpoints, from the stack -------------------------------------------------------------
    @property
    def registry_host(self) -> str:
        return self.stack.registry.host

    @property
    def registry_url(self) -> str:
        return self.stack.registry.url

    @property
    def git_url(self) -> str:
        return self.stack.git_repo_url(GIT_PROJECT)

    @property
    def git_token(self) -> str:
        return self.stack.git_token

    @property
    def gitlab_url(self) -> str:
        return self.stack.gitlab_url

    # -- lifecycle -----------------------------------------------------------------------------
    @classmethod
    @contextmanager
    def up(cls, state_dir: Path | None = None, keep: bool = False) -> Iterator["SandboxEnv"]:
        from indexflow.registry.artifacts import IndexDbArtifacts
        from indexflow.registry.client import RegistryClient
        from sandbox.stack import Stack

        owned = state_dir is None
        state_dir = Path(state_dir or tempfile.mkdtemp(prefix="indexflow-sandbox-"))
        stack = Stack.up(state_dir)
        env = cls(state_dir, stack)
        try:
            env.registry_client = RegistryClient(insecure=(env.registry_host,))
            env.artifacts = IndexDbArtifacts(env.registry_client, env.registry_host,
                                             cache_dir=state_dir / "artifact-cache")
            yield env
        finally:
            if env.registry_client is not None:
                env.registry_client.close()
            if not keep:
                stack.down()
                if owned:
                    shutil.rmtree(state_dir, ignore_errors=True)

    @classmethod
    @contextmanager
    def attach(cls, state: dict) -> Iterator["SandboxEnv"]:
        """The env of a sandbox already running in another process (its stack.json `state`)."""
        from indexflow.registry.artifacts import IndexDbArtifacts
        from indexflow.registry.client import RegistryClient
        from sandbox.attached import AttachedStack

        stack = AttachedStack.from_state(state)
        env = cls(stack.state_dir, stack)
        with RegistryClient(insecure=(env.registry_host,)) as client:
            env.registry_client = client
            env.artifacts = IndexDbArtifacts(client, env.registry_host, cache_dir=stack.state_dir / "artifact-cache")
            yield env

    def seed(self) -> SeedResult:
        """Seed once per state dir (the result is remembered in seed.json)."""
        from sandbox.seed import scratch_dir, seed_registry, write_git_branches

        saved = self.state_dir / "seed.json"
        if saved.exists():
            self.seeded = SeedResult.load(saved)
            return self.seeded
        work = scratch_dir()
        try:
            result, branches = seed_registry(self.registry_client, self.registry_host, self.artifacts, work)
            write_git_branches(work / "repo", branches, ("seed", "seed@localhost"))
            self.stack.publish_git_repo(GIT_PROJECT, work / "repo")
            result.git_url = self.git_url
        finally:
            shutil.rmtree(work, ignore_errors=True)
        result.save(saved)
        self.seeded = result
        return result

    def settings(self, **overrides: Any):  # noqa: ANN201 - MergeSettings
        from blocks.settings import MergeSettings

        host = self.registry_host
        values = dict(
            iib_registry=host, index_db_artifact_registry=host, insecure_registries=[host],
            binary_image_config={"prod": {"v4.16": self.seeded.binary_image, "v4.17": self.seeded.binary_image}},
            index_to_gitlab_push_map={f"{host}/{INDEX_REPO}": self.git_url},
            no_ocp_label_allow_list=[f"{host}/{INDEX_REPO}"], environment_name="sandbox",
            konflux_namespace=self.stack.konflux_namespace, konflux_poll_interval=0.5,
            konflux_pipeline_timeout=120,
            gitlab_credentials=self._blocks["gitlab"], kubernetes_credentials=self._blocks["kubernetes"])
        values.update(overrides)
        return MergeSettings(**values)

    def save_blocks(self, name: str, gitlab_url: str | None = None, **overrides: Any) -> str:
        """Credential blocks + a MergeSettings block called `name` (overwritten if present).

        `gitlab_url` and `overrides` let tests route the merge through fault proxies."""
        from prefect_gitlab import GitLabCredentials
        from prefect_kubernetes.credentials import KubernetesClusterConfig, KubernetesCredentials

        GitLabCredentials(url=gitlab_url or self.gitlab_url, token=self.git_token).save(f"{name}-gitlab", overwrite=True)
        KubernetesCredentials(cluster_config=KubernetesClusterConfig.from_file(self.stack.kubeconfig_path)) \
            .save(f"{name}-kubernetes", overwrite=True)
        self._blocks = {"gitlab": f"{name}-gitlab", "kubernetes": f"{name}-kubernetes"}
        self.settings(**overrides).save(name, overwrite=True)
        return name
